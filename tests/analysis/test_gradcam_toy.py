"""Grad-CAM where the answer is known: a tiny CNN trained to find a bright square."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from her2viewer.analysis.gradcam import assemble, grad_cam, slide_gradcam
from her2viewer.errors import ModelError
from her2viewer.models.patch_cnn import build_patch_cnn, target_layer

SIDE, SQUARE = 32, 6


def _images(n: int, rng: np.random.Generator):
    """Dim noise; odd-indexed images carry one bright square at a random place."""
    x = rng.uniform(0.0, 0.3, (n, 3, SIDE, SIDE)).astype(np.float32)
    y = np.arange(n) % 2
    corners = rng.integers(0, SIDE - SQUARE, (n, 2))
    for k in np.flatnonzero(y):
        r, c = corners[k]
        x[k, :, r : r + SQUARE, c : c + SQUARE] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y), corners


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = Tiny()
    x, y, _ = _images(96, np.random.default_rng(0))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()


def test_cam_peaks_on_the_square(trained):
    x, y, corners = _images(20, np.random.default_rng(1))
    cams, probs = grad_cam(trained, trained.features, x, class_index=1)
    assert (probs.argmax(1) == y.numpy()).mean() >= 0.95
    hits = 0
    for k in np.flatnonzero(y.numpy()):
        r, c = np.unravel_index(cams[k].argmax(), cams[k].shape)
        r0, c0 = corners[k]
        hits += (r0 - 1 <= r <= r0 + SQUARE) and (c0 - 1 <= c <= c0 + SQUARE)
    assert hits == int(y.sum())
    assert cams.shape == (20, SIDE, SIDE) and cams.max() <= 1.0 and cams.min() >= 0.0


def test_bad_class_index(trained):
    x, _, _ = _images(2, np.random.default_rng(2))
    with pytest.raises(ModelError, match="Class 5 does not exist"):
        grad_cam(trained, trained.features, x, class_index=5)


def test_assemble_places_patches_in_level0_frame():
    cams = [np.full((8, 8), 0.5, np.float32), np.ones((8, 8), np.float32)]
    coords = np.array([[0, 0], [64, 32]])
    out = assemble(cams, coords, patch_size_level0=64, slide_size=(160, 100), downsample=16)
    assert out.shape == (7, 10)
    assert np.allclose(out[0:4, 0:4], 0.5)
    assert np.allclose(out[2:6, 4:8], 1.0)
    assert np.isnan(out[6, 9]) and np.isnan(out[0, 8])


def test_slide_gradcam_on_grid(trained):
    x, _, corners = _images(4, np.random.default_rng(3))
    patches = (x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    coords = np.array([[0, 0], [32, 0], [0, 32], [32, 32]])
    result = slide_gradcam(
        lambda i: patches[i],
        coords,
        32,
        (64, 64),
        trained,
        trained.features,
        lambda p: torch.from_numpy(p).permute(0, 3, 1, 2).float() / 255,
        class_index=1,
        downsample=1,
        batch_size=3,
    )
    assert result.values.shape == (64, 64) and result.patch_probs.shape == (4, 2)
    r0, c0 = corners[1]  # patch 1 (top right) holds a square
    r, c = np.unravel_index(np.nanargmax(result.values[:32, 32:]), (32, 32))
    assert r0 - 1 <= r <= r0 + SQUARE and c0 - 1 <= c <= c0 + SQUARE


@pytest.mark.parametrize("arch", ["resnet34", "swin_t"])
def test_backbone_cams_have_patch_shape(arch):
    model = build_patch_cnn(arch, 3, seed=0)
    layer, channels_last = target_layer(model, arch)
    cams, probs = grad_cam(model, layer, torch.randn(1, 3, 96, 96), None, channels_last)
    assert cams.shape == (1, 96, 96) and np.isfinite(cams).all()
    assert probs.shape == (1, 3) and np.isclose(probs.sum(), 1.0, atol=1e-5)
