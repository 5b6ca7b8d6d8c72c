"""Feature-extraction throughput: whole pipeline from the slide file vs encoder compute only.

Usage: .venv/bin/python benchmarks/bench_extract.py [--device auto] [--batch-size N]
       [--patches 96] [--workers N] [--encoder resnet50_trunc] [--slide-size 20000x16000]
       [--small]  (the encoder's reduced-depth CI variant: `her2viewer encoders list`)
       [--decode openslide|raw] [--slide-cache DIR] [--no-clam]

A synthetic Aperio slide is written into a temporary folder; its tissue is
segmented and patched at 20x / 256 px (1361 patches on the default 20000x16000 slide,
5439 on 40000x32000). ``patches_per_s`` is
``extract_features`` end to end (tile reads + decoding + resize by the thread pool,
device copy, encoder, h5 writes); ``compute_only_patches_per_s`` runs the same
encoder on the same batches already decoded (and resized to 224) in memory, measured
just before and just after the pipeline (their mean; the machine's load changes between
runs). On CUDA the pipeline's tiles are resized on the GPU, inside its time.
Batch size and decoding threads default to the engine's for the device.
``--decode raw`` reads the slide's raw JPEG tiles and decodes them in batches on the
device (``features/rawtiles.py``; ``decode`` says which path ran);
``decode_only_patches_per_s`` is reading and decoding the patches alone, on the same
threads, without the encoder's resize or the encoder; ``decoder_probe`` is how far
the GPU's decoding is from the CPU's on the tiles the engine compares them on.
The encoder has seeded random weights (speed does not depend on their values).
``--slide-cache DIR`` keeps the synthetic slide in DIR for later runs
(``benchmarks/gpu_session.sh``). Unless ``--no-clam``, also times CLAM inference
(CLAM_SB small, gated) on 50000 patches' 1024-d features, and the same three matrix
products alone (``clam_matmul_floor_50000_ms``, with their GFLOP): inference is bound
by those products.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from large_slide import cached_large_slide

from her2viewer.devices import choose_device
from her2viewer.features.encoders import build_encoder
from her2viewer.features.engine import (
    DeviceRunner,
    default_batching,
    extract_features,
    patches_per_job,
)
from her2viewer.features.rawtiles import (
    DECODE_CHOICES,
    decoder_difference,
    level_corners,
    patch_reader,
    probe_tiles,
    raw_level,
)
from her2viewer.features.registry import SPECS
from her2viewer.models.clam import CLAM, ClamConfig, predict
from her2viewer.slide import open_slide
from her2viewer.tissue import make_patch_grid, segment_tissue


def compute_only(runner: DeviceRunner, batches: list[torch.Tensor]) -> float:
    """Patches per second of the encoder on pre-decoded uint8 batches."""
    runner(batches[0])  # warm-up
    if runner.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        runner(batch)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def decode_only(slide, grid, device: torch.device, args) -> float:
    """Patches per second of reading and decoding ``grid``'s patches, nothing else: the
    engine's jobs (a batch per job for raw tiles on CUDA, else a few patches) on its threads."""
    reader, _ = patch_reader(slide, grid, device, args.decode)
    cuda_batches = reader is not None and reader.device.type == "cuda"
    step = args.batch_size if cuda_batches else patches_per_job(args.batch_size, args.workers)
    chunks = [range(i, min(i + step, len(grid))) for i in range(0, len(grid), step)]

    def job(rows: range) -> None:
        if reader is not None:
            reader.read(rows)
            return
        for i in rows:
            grid.read_patch(slide, i)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(job, chunks))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(grid) / (time.perf_counter() - start)


def decoder_probe(slide, grid, device: torch.device) -> dict | None:
    """How far a CUDA device's JPEG decoder is from the CPU's on the tiles the engine
    compares them on before a run (None on other devices)."""
    if device.type != "cuda":
        return None
    level = raw_level(slide, grid.patch_level)
    tiles = probe_tiles(level, level_corners(slide, grid), grid.patch_size)
    return decoder_difference(level, tiles, device)


def clam_inference_ms(n: int = 50000, repeats: int = 5) -> float:
    """Median milliseconds of one CLAM_SB forward pass over ``n`` 1024-d features."""
    torch.manual_seed(0)
    model = CLAM(ClamConfig()).eval()
    feats = np.random.default_rng(0).normal(size=(n, 1024)).astype(np.float32)
    predict(model, feats)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(model, feats)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def clam_matmul_floor_ms(n: int = 50000, repeats: int = 5) -> tuple[float, float]:
    """Median ms of only CLAM_SB small's three big matrix products on ``n`` patches, and
    their GFLOP: the time no implementation of the same fp32 model can beat on this CPU."""
    config = ClamConfig()
    dims = [(config.embed_dim, 512), (512, 256), (512, 256)]  # fc, attention a, attention b
    x = torch.randn(n, config.embed_dim)
    h = torch.randn(n, 512)
    weights = [torch.randn(d_out, d_in) for d_in, d_out in dims]
    gflop = sum(2 * n * d_in * d_out for d_in, d_out in dims) / 1e9
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            torch.nn.functional.linear(x, weights[0])
            torch.nn.functional.linear(h, weights[1])
            torch.nn.functional.linear(h, weights[2])
            times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[1:])), gflop


def clam_timings() -> dict:
    """CLAM inference on 50000 patches, and the floor its matrix products set (CPU)."""
    floor_ms, gflop = clam_matmul_floor_ms()
    return {
        "clam_infer_50000_patches_ms": round(clam_inference_ms(), 1),
        "clam_matmul_floor_50000_ms": round(floor_ms, 1),
        "clam_gflop_50000": round(gflop, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, help="default: the device's (engine)")
    parser.add_argument("--patches", type=int, default=96)
    parser.add_argument("--workers", type=int, help="default: the device's (engine)")
    parser.add_argument("--encoder", default="resnet50_trunc", help="`her2viewer encoders list`")
    parser.add_argument("--small", action="store_true", help="the encoder's reduced-depth variant")
    parser.add_argument("--slide-size", default="20000x16000", help="WIDTHxHEIGHT, level 0")
    parser.add_argument("--decode", choices=DECODE_CHOICES, default="openslide")
    parser.add_argument("--slide-cache", help="folder keeping the synthetic slide between runs")
    parser.add_argument("--no-clam", action="store_true", help="skip the CLAM inference timings")
    args = parser.parse_args()
    if args.small and not (args.encoder in SPECS and SPECS[args.encoder].small):
        parser.error(f"--small: {args.encoder} has no reduced-depth variant (see encoders list)")
    width, height = (int(side) for side in args.slide_size.split("x"))
    encoder = build_encoder(args.encoder, random_seed=0, **({"small": True} if args.small else {}))
    batch_size, workers = default_batching(choose_device(args.device))
    args.batch_size = args.batch_size or batch_size
    args.workers = args.workers or workers
    with tempfile.TemporaryDirectory() as tmp:
        path = cached_large_slide(args.slide_cache or tmp, width, height)
        with open_slide(path) as slide:
            grid = make_patch_grid(slide, segment_tissue(slide), magnification=20, patch_size=256)
            grid = dataclasses.replace(grid, coords=grid.coords[: args.patches])
            warm = extract_features(
                slide,
                dataclasses.replace(grid, coords=grid.coords[:8]),
                encoder,
                Path(tmp) / "warm.h5",
                device=args.device,
                batch_size=args.batch_size,
                workers=args.workers,
                decode=args.decode,
            )
            runner = DeviceRunner(encoder, torch.device(warm.device))
            decode_rate = decode_only(slide, grid, runner.device, args)
            probe = decoder_probe(slide, grid, runner.device) if args.decode == "raw" else None
            tiles = np.stack(
                [encoder.prepare_tile(grid.read_patch(slide, i)) for i in range(len(grid))]
            )
            batches = [
                torch.from_numpy(tiles[i : i + args.batch_size])
                for i in range(0, len(tiles), args.batch_size)
            ]
            load_start = os.getloadavg()[0]
            compute_before = compute_only(runner, batches)
            result = extract_features(
                slide,
                grid,
                encoder,
                Path(tmp) / "f.h5",
                device=args.device,
                batch_size=args.batch_size,
                workers=args.workers,
                decode=args.decode,
            )
            compute_after = compute_only(runner, batches)
    compute = (compute_before + compute_after) / 2
    pipeline = result.patches_per_s
    print(
        json.dumps(
            {
                "benchmark": "extract_features",
                "encoder": encoder.name,
                "input_size": encoder.input_size,
                "device": result.device,
                "batch_size": args.batch_size,
                "workers": args.workers,
                "torch_threads": torch.get_num_threads(),
                "patches": len(grid),
                "decode": result.decode,
                "decoder_probe": probe,
                "decode_only_patches_per_s": round(decode_rate, 2),
                "patches_per_s": round(pipeline, 2),
                "compute_only_patches_per_s": round(compute, 2),
                "compute_only_before_after": [round(compute_before, 2), round(compute_after, 2)],
                "pipeline_over_compute": round(pipeline / compute, 3),
                **({} if args.no_clam else clam_timings()),
                "load_average_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
