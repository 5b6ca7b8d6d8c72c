"""Patch CNN inference and Grad-CAM time per 512 px patch, per backbone.

Usage: .venv/bin/python benchmarks/bench_gradcam.py [ARCH,...] [--device auto] [--batch 4]
Random weights (seed 0); times the best of 3 runs of a forward pass and of a
Grad-CAM (forward + backward + map) on a batch of 512x512 patches, then the
assembly of 1000 patch maps into a level-0 score map. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from her2viewer.analysis.gradcam import assemble, grad_cam
from her2viewer.devices import choose_device
from her2viewer.models.patch_cnn import ARCHITECTURES, PATCH_SIZE, build_patch_cnn, target_layer


def best_of(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("archs", nargs="?", default="resnet34,densenet121,swin_t")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    device = choose_device(args.device)
    x = torch.randn(args.batch, 3, PATCH_SIZE, PATCH_SIZE, device=device)
    results = {}
    for arch in args.archs.split(","):
        model = build_patch_cnn(arch, 3, seed=0).to(device)
        layer, channels_last = target_layer(model, arch)
        with torch.no_grad():
            forward = best_of(lambda m=model: m(x))
        cam = best_of(lambda m=model, t=layer, c=channels_last: grad_cam(m, t, x, None, c))
        results[arch] = {
            "forward_ms_per_patch": round(1000 * forward / args.batch, 1),
            "gradcam_ms_per_patch": round(1000 * cam / args.batch, 1),
        }
    rng = np.random.default_rng(0)
    cams = list(rng.random((1000, 64, 64), dtype=np.float32))
    coords = np.stack(np.meshgrid(np.arange(40), np.arange(25)), -1).reshape(-1, 2) * 512
    assembly = best_of(lambda: assemble(cams, coords, 512, (40 * 512, 25 * 512), 16.0))
    print(
        json.dumps(
            {
                "benchmark": "gradcam",
                "device": str(device),
                "torch_threads": torch.get_num_threads(),
                "batch": args.batch,
                "patch_size": PATCH_SIZE,
                "archs": results,
                "assemble_1000_patches_s": round(assembly, 3),
                "available_archs": list(ARCHITECTURES),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
