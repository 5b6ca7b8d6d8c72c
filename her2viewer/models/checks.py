"""Checks every model answer passes: finite numbers, demo notices, the slides a bundle accepts.

One place for the rules that keep a model from answering when it should not:

- :func:`require_finite`: NaN or infinity in features, weights or outputs is an error
  naming the file, never a class;
- :func:`demo_notice`: a synthetic demo bundle (``"synthetic": true`` in its
  ``bundle.json``) says so on every result line;
- :func:`check_slide_scope`: a bundle's ``accepts`` (its stain, magnification range and
  whether a pixel size is required) against a slide -- the CLI and the GUI both call it
  (a stain cannot be measured, so it is stated in the warning, not checked);
- :func:`apply_pixel_size`: the pixel size a user gives (``--mpp``) for a slide that
  records none;
- :func:`refuse_pickle` (from :mod:`her2viewer.weights`, below features/ too): a
  checkpoint that needs unpickling is refused for safety, with the way to convert it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from her2viewer.errors import Her2ViewerError, ModelError
from her2viewer.slide.base import estimate_objective_power
from her2viewer.weights import refuse_pickle as refuse_pickle  # re-exported

#: Appended to every result of a bundle whose ``bundle.json`` says ``"synthetic": true``.
DEMO_NOTICE = "synthetic demo model, no clinical meaning"


def require_finite(values, what: str, error: type[Her2ViewerError] = ModelError) -> None:
    """Raise ``error`` unless every value is finite.

    Parameters
    ----------
    values : array-like or torch.Tensor
        Features, weights, probabilities...
    what : str
        What holds them, naming the file (e.g. ``"Features file a.h5"``).
    error : type
        The exception class (``ModelError`` by default).
    """
    if isinstance(values, torch.Tensor):
        finite = not values.is_floating_point() or bool(torch.isfinite(values).all())
    else:
        array = np.asarray(values)
        finite = array.dtype.kind not in "fc" or bool(np.isfinite(array).all())
    if not finite:
        raise error(f"{what} holds NaN or infinite values, so no result can be given from it.")


def demo_notice(meta: dict) -> str | None:
    """The notice of a synthetic demo bundle, or None for a real model."""
    return DEMO_NOTICE if meta.get("synthetic") is True else None


def with_notice(text: str, notice: str | None) -> str:
    """``text`` with a demo notice (from :func:`demo_notice`) appended on the same line."""
    return f"{text} ({notice})" if notice else text


def add_mpp_option(parser) -> None:
    """Add ``--mpp``: the pixel size of a slide that records none."""
    parser.add_argument(
        "--mpp",
        type=float,
        help="pixel size in micrometres per pixel, for a slide that records none (e.g. 0.25)",
    )


def apply_pixel_size(slide, mpp: float | None):
    """Give an open slide the pixel size ``mpp`` (um/px) a user stated; return the slide.

    The stated size wins over what the file records: the magnification becomes the
    estimate from it.

    Raises
    ------
    ModelError
        When ``mpp`` is not a positive finite number.
    """
    if mpp is None:
        return slide
    if not np.isfinite(mpp) or not 0 < mpp < 1000:
        raise ModelError(f"--mpp must be a pixel size in micrometres (e.g. 0.25), got {mpp}.")
    slide.info = dataclasses.replace(
        slide.info,
        mpp_x=mpp,
        mpp_y=mpp,
        objective_power=None,
        objective_power_estimate=estimate_objective_power(mpp),
    )
    return slide


def check_slide_scope(meta: dict, info, model_name: str) -> str | None:
    """Check a slide against what a bundle accepts (its ``accepts`` in ``bundle.json``).

    Parameters
    ----------
    meta : dict
        The bundle manifest.
    info : SlideInfo
        The slide's info (``slide.info``).
    model_name : str
        How to name the model in the sentence (its path).

    Returns
    -------
    str or None
        A one-sentence warning when the slide's magnification is outside the accepted
        range (the result may be meaningless), else None.

    Raises
    ------
    ModelError
        When the bundle requires a pixel size and the slide records none.
    """
    accepts = meta.get("accepts")
    if not accepts:
        return None
    name = Path(str(info.path)).name
    if accepts.get("pixel_size_required") and not info.mpp_x:
        raise ModelError(
            f"{name} records no pixel size, so its magnification is unknown, and {model_name} "
            "needs it; "
            "give it with --mpp (micrometres per pixel, e.g. 0.25 at 40x)."
        )
    low, high = accepts.get("magnification") or (0.0, float("inf"))
    power = info.magnification
    if power is not None and not low <= power <= high:
        return (
            f"Warning: {name} is at {power:g}x but {model_name} accepts {accepts['stain']} "
            f"slides at {low:g}x to {high:g}x only; its result may be meaningless."
        )
    return None


def demo_manifest(stain: str) -> dict:
    """The ``bundle.json`` fields every synthetic demo bundle carries.

    ``synthetic`` makes each result say :data:`DEMO_NOTICE`; ``accepts`` states the
    slides it was made for (the synthetic cohorts are 20x, 0.5 um/px).
    """
    return {
        "synthetic": True,
        "accepts": {"stain": stain, "magnification": [20.0, 40.0], "pixel_size_required": True},
    }
