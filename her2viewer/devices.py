"""The one place that chooses the compute device (DESIGN.md, "Devices")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from her2viewer.errors import ModelError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def choose_device(name: str | torch.device = "auto") -> torch.device:
    """Return the torch device for a user's choice.

    Parameters
    ----------
    name : str or torch.device
        ``"auto"`` picks CUDA, then Apple MPS, then CPU. ``"cuda"``, ``"cuda:1"``,
        ``"mps"`` and ``"cpu"`` ask for that device.

    Returns
    -------
    torch.device

    Raises
    ------
    ModelError
        When the named device is not available on this machine.
    """
    import torch  # imported here so that building the CLI does not load torch

    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise ModelError(
            f"Unknown device '{name}'; use one of {', '.join(DEVICE_CHOICES)}."
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("CUDA was asked for but no CUDA GPU is available; use --device cpu.")
    if device.type == "mps" and not _mps_available():
        raise ModelError("Apple MPS was asked for but is not available; use --device cpu.")
    if device.type not in ("cuda", "mps", "cpu"):
        raise ModelError(f"Unsupported device '{name}'; use one of {', '.join(DEVICE_CHOICES)}.")
    return device


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
