"""The :class:`Registration` record: a 3x3 level-0 moving -> fixed matrix and its JSON.

A registration file is checked by the pydantic model :class:`RegistrationFile`, so a
bad file is refused in one sentence naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from her2viewer.errors import RegistrationError
from her2viewer.manifests import validated
from her2viewer.outputs import describe_os_error, write_text_atomic

SCHEMA_VERSION = 1
#: Plausible scales of a moving -> fixed map: paired slides differ by a scanner's
#: magnification (40x against 20x is 2), never by a factor of a thousand.
SCALE_RANGE = (1e-3, 1e3)
#: Largest plausible translation in level-0 pixels (far beyond any slide's size).
MAX_TRANSLATION = 1e7


def matrix_problem(matrix) -> str | None:
    """Say what makes ``matrix`` unusable as a level-0 affine registration, or None.

    The whole 3x3 matrix is checked: numbers, finite, an affine bottom row
    ``[0, 0, 1]``, both scales (singular values of the 2x2 block) within
    :data:`SCALE_RANGE`, which also makes it invertible, and a translation within
    :data:`MAX_TRANSLATION`.
    """
    try:
        m = np.asarray(matrix, float).reshape(3, 3)
    except (TypeError, ValueError):
        return "it must be 3x3 numbers"
    if not np.all(np.isfinite(m)):
        return "it holds NaN or infinite values"
    if not np.allclose(m[2], [0.0, 0.0, 1.0], rtol=0.0, atol=1e-9):
        return f"its bottom row is {m[2].tolist()}, not [0, 0, 1] (an affine transform)"
    scales = np.linalg.svd(m[:2, :2], compute_uv=False)
    if scales.min() < SCALE_RANGE[0] or scales.max() > SCALE_RANGE[1]:
        return (
            f"its scales {scales.max():.3g} and {scales.min():.3g} are outside "
            f"{SCALE_RANGE[0]:g}-{SCALE_RANGE[1]:g} (a flat or exploding map)"
        )
    if np.abs(m[:2, 2]).max() > MAX_TRANSLATION:
        return f"its translation {m[:2, 2].tolist()} is beyond {MAX_TRANSLATION:g} px"
    return None


def _check_matrix(matrix) -> np.ndarray:
    problem = matrix_problem(matrix)
    if problem is not None:
        raise RegistrationError(f"The registration matrix is unusable: {problem}.")
    return np.asarray(matrix, float).reshape(3, 3)


class RegistrationFile(BaseModel):
    """The checked fields of a registration JSON (others, such as ``kind``, are kept).

    ``matrix`` must pass :func:`matrix_problem`; ``error_px`` is a measured error in
    pixels, so it is never negative or infinite (NaN: not measured).
    """

    model_config = ConfigDict(extra="allow")

    matrix: list  # shape and values checked by matrix_problem, whose sentence says "3x3"
    method: str = "unknown"
    error_px: float = math.nan
    quality: dict = Field(default_factory=dict)
    fixed: str = ""
    moving: str = ""

    @field_validator("matrix")
    @classmethod
    def _usable(cls, matrix: list) -> list[list[float]]:
        problem = matrix_problem(matrix)
        if problem is not None:
            raise ValueError(problem)
        return np.asarray(matrix, float).reshape(3, 3).tolist()

    @field_validator("error_px")
    @classmethod
    def _measured(cls, error_px: float) -> float:
        if error_px < 0 or math.isinf(error_px):
            raise ValueError("a measured error is a pixel distance, never negative or infinite")
        return error_px


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
        """Write the JSON file atomically and return its path.

        Raises
        ------
        OutputError
            When the file cannot be written (nothing is left behind).
        """
        return write_text_atomic(path, json.dumps(self.to_json_dict(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Registration:
        """Read a file written by :meth:`save`.

        Raises
        ------
        RegistrationError
            When the file is missing, unreadable, not JSON, or a field is wrong (see
            :class:`RegistrationFile`), in one sentence naming the file and the field.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise RegistrationError(f"{path}: no such registration file.") from exc
        except OSError as exc:
            raise RegistrationError(
                f"cannot read the registration file {path}: {describe_os_error(exc)}."
            ) from exc
        except ValueError as exc:
            raise RegistrationError(f"{path} is not a registration JSON file ({exc}).") from exc
        if not isinstance(data, dict):
            raise RegistrationError(f"{path}: a registration file must hold a JSON object.")
        record = validated(RegistrationFile, data, path, "the registration file", RegistrationError)
        return cls(
            np.asarray(record.matrix, float),
            record.method,
            record.error_px,
            record.quality,
            record.fixed,
            record.moving,
        )


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
