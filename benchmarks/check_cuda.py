"""Checks of the CUDA path against the CPU path, for a machine with an NVIDIA GPU.

Usage: python benchmarks/check_cuda.py [--patches 256] [--batch-size 64] [--device cuda]
       [--decode openslide|raw] [--slide-cache DIR] [--slide-size 20000x16000]

``--device cpu`` runs the same checks CPU against CPU (a smoke test of this script).

On one synthetic Aperio slide (as ``bench_extract.py``) and ResNet-50-trunc with seeded
random weights:

- features from CUDA (channels-last, bf16/fp16 autocast; tiles decoded by ``--decode``,
  raw JPEG tiles on the GPU with ``raw``) against CPU fp32 through OpenSlide: relative
  Frobenius error and the smallest per-patch cosine similarity;
- CLAM_SB on those two feature sets: largest probability difference, whether the
  predictions agree, and the Spearman correlation of the attention; CLAM itself run on
  the GPU against the CPU (same features);
- a CUDA run stopped by an error after two batches, then resumed: rows resumed and the
  largest difference from an uninterrupted CUDA run;
- a cancelled CUDA run: that it raised ``Cancelled`` and left no file behind.

Prints one JSON object; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from large_slide import cached_large_slide
from scipy.stats import spearmanr

from her2viewer.features.encoders import build_encoder
from her2viewer.features.engine import extract_features
from her2viewer.features.rawtiles import DECODE_CHOICES, patch_reader
from her2viewer.features.store import read_features
from her2viewer.jobs import Cancelled, CancelToken
from her2viewer.models.clam import CLAM, ClamConfig, predict
from her2viewer.slide import open_slide
from her2viewer.tissue import make_patch_grid, segment_tissue


class StopAfter(Exception):
    """Raised from the progress callback to stop a run as a crash would."""


def _features(slide, grid, encoder, path, device, batch_size, **kwargs) -> np.ndarray:
    extract_features(slide, grid, encoder, path, device=device, batch_size=batch_size, **kwargs)
    return read_features(path).features


def _clam_agreement(cpu: np.ndarray, cuda: np.ndarray, device: str) -> dict:
    torch.manual_seed(0)
    model = CLAM(ClamConfig()).eval()
    on_cpu, on_cuda_feats = predict(model, cpu), predict(model, cuda)
    gpu_model = predict(model.to(device), cpu)
    return {
        "clam_prob_max_diff_cuda_features": float(
            np.abs(on_cpu.probabilities - on_cuda_feats.probabilities).max()
        ),
        "clam_same_prediction_cuda_features": on_cpu.prediction == on_cuda_feats.prediction,
        "clam_attention_spearman_cuda_features": float(
            spearmanr(on_cpu.attention[0], on_cuda_feats.attention[0]).statistic
        ),
        "clam_on_gpu_prob_max_diff": float(
            np.abs(on_cpu.probabilities - gpu_model.probabilities).max()
        ),
        "clam_on_gpu_attention_max_diff": float(
            np.abs(on_cpu.attention - gpu_model.attention).max()
        ),
    }


def _resume_check(
    slide, grid, encoder, tmp: Path, batch_size: int, device: str, reference, decode: str
) -> dict:
    out = tmp / "resumed.h5"
    kwargs = {"device": device, "batch_size": batch_size, "decode": decode}

    def crash(done, total):
        if done >= 2 * batch_size:
            raise StopAfter

    with contextlib.suppress(StopAfter):
        extract_features(slide, grid, encoder, out, progress=crash, **kwargs)
    partial_left = out.with_name(out.name + ".partial").exists()
    result = extract_features(slide, grid, encoder, out, **kwargs)
    diff = float(np.abs(read_features(out).features - reference).max())
    return {
        "resume_partial_left_by_crash": partial_left,
        "resume_rows_resumed": result.resumed_from,
        "resume_max_abs_diff_vs_uninterrupted": diff,
    }


def _cancel_check(slide, grid, encoder, tmp: Path, batch_size: int, device: str) -> dict:
    token = CancelToken()
    out = tmp / "cancelled.h5"
    try:
        extract_features(
            slide,
            grid,
            encoder,
            out,
            device=device,
            batch_size=batch_size,
            progress=lambda done, total: token.cancel(),
            cancel=token,
        )
        raised = False
    except Cancelled:
        raised = True
    return {"cancel_raised": raised, "cancel_files_left": sorted(p.name for p in tmp.glob("can*"))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patches", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--decode", choices=DECODE_CHOICES, default="openslide")
    parser.add_argument("--slide-cache", help="folder keeping the synthetic slide between runs")
    parser.add_argument("--slide-size", default="20000x16000", help="WIDTHxHEIGHT, level 0")
    args = parser.parse_args()
    width, height = (int(side) for side in args.slide_size.split("x"))
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("No CUDA GPU is available; this script checks the CUDA path.")
    encoder = build_encoder("resnet50_trunc", random_seed=0)
    batch = args.batch_size
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        path = cached_large_slide(args.slide_cache or tmp, width, height)
        with open_slide(path) as slide:
            grid = make_patch_grid(slide, segment_tissue(slide), magnification=20, patch_size=256)
            grid = dataclasses.replace(grid, coords=grid.coords[: args.patches])
            cpu = _features(slide, grid, encoder, tmp / "cpu.h5", "cpu", batch)
            cuda = _features(
                slide, grid, encoder, tmp / "cuda.h5", device, batch, decode=args.decode
            )
            decode = patch_reader(slide, grid, torch.device(device), args.decode)[1]
            norms = np.linalg.norm(cpu, axis=1) * np.linalg.norm(cuda, axis=1)
            cosine = (cpu * cuda).sum(1) / norms
            report = {
                "device": torch.cuda.get_device_name() if device == "cuda" else device,
                "torch": torch.__version__,
                "patches": len(grid),
                "decode": decode,
                "features_relative_error_cuda_vs_cpu": float(
                    np.linalg.norm(cuda - cpu) / np.linalg.norm(cpu)
                ),
                "features_min_cosine_cuda_vs_cpu": float(cosine.min()),
                **_clam_agreement(cpu, cuda, device),
                **_resume_check(slide, grid, encoder, tmp, batch, device, cuda, args.decode),
                **_cancel_check(slide, grid, encoder, tmp, batch, device),
            }
    passed = (
        report["features_relative_error_cuda_vs_cpu"] < 2e-2
        and report["clam_same_prediction_cuda_features"]
        and report["clam_on_gpu_prob_max_diff"] < 1e-4
        and report["resume_partial_left_by_crash"]
        and report["resume_rows_resumed"] == 2 * batch
        and report["resume_max_abs_diff_vs_uninterrupted"] == 0.0
        and report["cancel_raised"]
        and not report["cancel_files_left"]
    )
    report["passed"] = passed
    print(json.dumps(report, indent=2))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
