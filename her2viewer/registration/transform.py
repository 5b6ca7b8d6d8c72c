"""The :class:`Registration` record: a 3x3 level-0 moving -> fixed matrix and its JSON."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from her2viewer.errors import RegistrationError

SCHEMA_VERSION = 1


def _check_matrix(matrix) -> np.ndarray:
    try:
        m = np.asarray(matrix, float).reshape(3, 3)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"A registration matrix must be 3x3 numbers: {exc}.") from exc
    if not np.all(np.isfinite(m)) or abs(np.linalg.det(m[:2, :2])) < 1e-9:
        raise RegistrationError("The registration matrix is not finite or not invertible.")
    return m


@dataclass
class Registration:
    """A transform from the moving slide's level-0 pixels to the fixed slide's.

    Attributes
    ----------
    matrix : numpy.ndarray
        3x3 homogeneous matrix: ``[x_f, y_f, 1] = matrix @ [x_m, y_m, 1]`` in
        level-0 pixels (for H&E fixed and IHC moving, the same convention as a
        synthetic case's ``transform_ihc_to_he``).
    method : str
        How it was found (e.g. ``rotation-search+ecc-affine``, ``landmarks``).
    error_px : float
        Measured error in fixed level-0 pixels: the median residual shift of local
        blocks over the tissue after registration (or the landmark RMS residual).
    quality : dict
        Further figures (mask Dice, correlation, residual percentiles).
    fixed, moving : str
        Slide paths, for the record.
    """

    matrix: np.ndarray
    method: str
    error_px: float
    quality: dict = field(default_factory=dict)
    fixed: str = ""
    moving: str = ""

    def __post_init__(self) -> None:
        self.matrix = _check_matrix(self.matrix)

    def transform_points(self, points) -> np.ndarray:
        """Map ``(N, 2)`` moving level-0 points to fixed level-0 points."""
        pts = np.asarray(points, float).reshape(-1, 2)
        return pts @ self.matrix[:2, :2].T + self.matrix[:2, 2]

    def inverse(self) -> Registration:
        """Return the fixed -> moving registration (slides swapped)."""
        return Registration(
            np.linalg.inv(self.matrix),
            self.method,
            self.error_px,
            dict(self.quality),
            self.moving,
            self.fixed,
        )

    def to_json_dict(self) -> dict:
        """Return the JSON form (see DESIGN.md: matrix moving -> fixed, method, error)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "her2viewer.registration",
            "direction": "moving level-0 px -> fixed level-0 px",
            "matrix": self.matrix.tolist(),
            "method": self.method,
            "error_px": float(self.error_px),
            "quality": self.quality,
            "fixed": self.fixed,
            "moving": self.moving,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON file atomically and return its path."""
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.to_json_dict(), indent=2))
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Registration:
        """Read a file written by :meth:`save`.

        Raises
        ------
        RegistrationError
            When the file is missing or is not a registration.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(
                data["matrix"],
                str(data.get("method", "unknown")),
                float(data.get("error_px", float("nan"))),
                dict(data.get("quality", {})),
                str(data.get("fixed", "")),
                str(data.get("moving", "")),
            )
        except FileNotFoundError as exc:
            raise RegistrationError(f"{path}: no such registration file.") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistrationError(
                f"{path.name} is not a registration JSON (needs a 3x3 'matrix'): {exc}."
            ) from exc


def warp_map(
    values: np.ndarray,
    downsample: float,
    matrix: np.ndarray,
    out_shape: tuple[int, int],
    out_downsample: float,
    nearest: bool = True,
) -> np.ndarray:
    """Resample a low-resolution map from one slide's frame into another's.

    Use it to show an H&E tumor mask in place on the IHC (``matrix`` =
    ``registration.inverse().matrix``) or to bring an IHC score-category map onto
    the H&E (``matrix`` = ``registration.matrix``).

    Parameters
    ----------
    values : numpy.ndarray
        ``(h, w)`` map (mask, categories, heat) in the source frame.
    downsample : float
        Source level-0 pixels per map pixel.
    matrix : numpy.ndarray
        3x3 source level-0 -> target level-0.
    out_shape : (int, int)
        ``(rows, cols)`` of the result.
    out_downsample : float
        Target level-0 pixels per result pixel.
    nearest : bool
        Nearest-neighbour (masks, categories) instead of bilinear.

    Returns
    -------
    numpy.ndarray
        ``out_shape`` map in the target frame; 0 where the source has no data.
    """

    def pixels_to_level0(ds: float) -> np.ndarray:
        return np.array([[ds, 0, ds / 2], [0, ds, ds / 2], [0, 0, 1.0]])

    target_to_source = (
        np.linalg.inv(pixels_to_level0(downsample))
        @ np.linalg.inv(_check_matrix(matrix))
        @ pixels_to_level0(out_downsample)
    )
    source = np.asarray(values)
    dtype = source.dtype
    work = source.astype(np.uint8) if dtype.kind == "b" else source
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(work, target_to_source[:2], (out_shape[1], out_shape[0]), flags=flags)
    return out.astype(dtype)
