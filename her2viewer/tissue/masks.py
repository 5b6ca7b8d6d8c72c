"""Binary masks on disk and their comparison."""

from __future__ import annotations

import os

import cv2
import numpy as np

from her2viewer.errors import TissueError


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask PNG (non-zero = inside) as a boolean array.

    Raises
    ------
    TissueError
        When the file is missing or not an image.
    """
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise TissueError(f"{path} is missing or not a mask image.")
    return image > 0


def mask_iou(predicted: np.ndarray, expected: np.ndarray) -> float:
    """Intersection over union of two masks of any resolution covering the same area.

    ``predicted`` is resized (nearest neighbour) to the shape of ``expected``.

    Returns
    -------
    float
        IoU in [0, 1]; 1.0 when both masks are empty.
    """
    resized = cv2.resize(
        predicted.astype(np.uint8),
        (expected.shape[1], expected.shape[0]),
        interpolation=cv2.INTER_NEAREST,
    ).astype(bool)
    union = np.logical_or(resized, expected).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(resized, expected).sum() / union)
