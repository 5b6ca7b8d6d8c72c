"""Grad-CAM (Selvaraju et al., ICCV 2017) for the patch-grading CNNs, per patch and per slide.

For a class ``c`` the map is ``ReLU(sum_k w_k A_k)`` where ``A_k`` are the
activations of the target layer (the last convolutional block, or Swin-T's last
stage) and ``w_k`` the spatial mean of ``d y_c / d A_k``. It is upsampled to the
patch and scaled to [0, 1]. :func:`slide_gradcam` assembles per-patch maps into
one level-0-aligned score map (NaN where no patch was scored) for the viewer's
heatmap layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from her2viewer.errors import ModelError


def grad_cam(
    model: nn.Module,
    layer: nn.Module,
    x: torch.Tensor,
    class_index: int | None = None,
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM heatmaps for a batch.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits ``(N, C)``.
    layer : torch.nn.Module
        The module whose output is explained (see
        :func:`her2viewer.models.patch_cnn.target_layer`).
    x : torch.Tensor
        Input batch ``(N, 3, H, W)``.
    class_index : int, optional
        Class to explain; the predicted class of each input when omitted.
    channels_last : bool
        The layer's output is ``(N, h, w, K)`` (Swin) rather than ``(N, K, h, w)``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Heatmaps ``(N, H, W)`` in [0, 1] and the softmax probabilities ``(N, C)``.
    """
    saved: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        output.retain_grad()
        saved["act"] = output

    handle = layer.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x.detach())
            n_classes = logits.shape[1]
            if class_index is not None and not 0 <= class_index < n_classes:
                raise ModelError(f"Class {class_index} does not exist; the model has {n_classes}.")
            chosen = (
                logits.argmax(1)
                if class_index is None
                else torch.full((len(logits),), class_index, dtype=torch.long)
            )
            model.zero_grad(set_to_none=True)
            logits.gather(1, chosen[:, None]).sum().backward()
    finally:
        handle.remove()
        model.train(was_training)
    act, grad = saved["act"].detach(), saved["act"].grad.detach()
    if channels_last:
        act, grad = act.permute(0, 3, 1, 2), grad.permute(0, 3, 1, 2)
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True))
    cam = nn.functional.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    cam = cam[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
    return (cam / peak).cpu().numpy(), torch.softmax(logits.detach(), 1).cpu().numpy()


@dataclass
class GradCamMap:
    """A slide-level Grad-CAM score map.

    Attributes
    ----------
    values : numpy.ndarray
        ``(H, W)`` float32 in [0, 1], NaN where no patch was analysed.
    downsample : float
        Level-0 pixels per map pixel (pixel ``(r, c)`` covers level-0
        ``x = c * downsample``, ``y = r * downsample``).
    patch_probs : numpy.ndarray
        ``(N, C)`` class probabilities of the patches.
    """

    values: np.ndarray
    downsample: float
    patch_probs: np.ndarray


def assemble(
    cams: list[np.ndarray],
    coords: np.ndarray,
    patch_size_level0: int,
    slide_size: tuple[int, int],
    downsample: float,
) -> np.ndarray:
    """Paste per-patch heatmaps into a level-0-aligned map; overlaps take the maximum.

    Parameters
    ----------
    cams : list of numpy.ndarray
        One 2-D map per patch.
    coords : numpy.ndarray
        ``(N, 2)`` level-0 top-left ``(x, y)`` of the patches.
    patch_size_level0 : int
        Patch side in level-0 pixels.
    slide_size : tuple of int
        Level-0 ``(width, height)``.
    downsample : float
        Level-0 pixels per output pixel.
    """
    width = int(np.ceil(slide_size[0] / downsample))
    height = int(np.ceil(slide_size[1] / downsample))
    out = np.full((height, width), np.nan, dtype=np.float32)
    side = max(1, int(round(patch_size_level0 / downsample)))
    for cam, (x, y) in zip(cams, np.asarray(coords), strict=True):
        c0, r0 = int(round(x / downsample)), int(round(y / downsample))
        tile = cv2.resize(cam.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
        r1, c1 = min(height, r0 + side), min(width, c0 + side)
        if r1 <= r0 or c1 <= c0:
            continue
        region = out[r0:r1, c0:c1]
        piece = tile[: r1 - r0, : c1 - c0]
        out[r0:r1, c0:c1] = np.where(np.isnan(region), piece, np.fmax(region, piece))
    return out


def slide_gradcam(
    read_patch: Callable[[int], np.ndarray],
    coords: np.ndarray,
    patch_size_level0: int,
    slide_size: tuple[int, int],
    model: nn.Module,
    layer: nn.Module,
    to_input: Callable[[np.ndarray], torch.Tensor],
    class_index: int | None = None,
    channels_last: bool = False,
    downsample: float = 16.0,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> GradCamMap:
    """Grad-CAM over a patch grid, assembled into a level-0 score map.

    Parameters
    ----------
    read_patch : callable
        ``read_patch(i) -> RGB uint8`` for patch ``i`` (e.g. ``partial(grid.read_patch, slide)``).
    coords, patch_size_level0, slide_size
        The grid (level-0 pixels).
    model, layer, class_index, channels_last
        As in :func:`grad_cam`.
    to_input : callable
        ``to_input(patches (n, H, W, 3)) -> (n, 3, H, W)`` tensor (normalisation included).
    downsample : float
        Level-0 pixels per map pixel.
    batch_size : int
        Patches per forward/backward pass.
    progress : callable, optional
        ``progress(done, total)`` after each batch.
    """
    cams, probs, total = [], [], len(coords)
    for start in range(0, total, batch_size):
        index = range(start, min(total, start + batch_size))
        batch = to_input(np.stack([read_patch(i) for i in index]))
        heat, prob = grad_cam(model, layer, batch, class_index, channels_last)
        cams.extend(heat)
        probs.append(prob)
        if progress is not None:
            progress(index[-1] + 1, total)
    values = assemble(cams, coords, patch_size_level0, slide_size, downsample)
    return GradCamMap(
        values, float(downsample), np.concatenate(probs) if probs else np.zeros((0, 0))
    )
