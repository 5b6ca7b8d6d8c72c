"""Read tensors from untrusted PyTorch files without unpickling anything else.

The one place that loads a ``torch.save``-d file (a checkpoint, encoder weights or a
features tensor) for every room: :func:`load_tensors` reads it with
``weights_only=True``, keeps torch's warnings off the terminal, and turns any failure
into :func:`refuse_pickle`'s sentence, which never repeats torch's advice to load the
file with ``weights_only=False``. :func:`load_torchscript` is the one loader of the
TorchScript files users bring (encoders, nucleus detectors).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from her2viewer.errors import ModelError


def refuse_pickle(path: str | Path, exc: Exception, what: str = "weights") -> ModelError:
    """The error for a PyTorch file that cannot be read as plain tensors.

    A file that needs unpickling of arbitrary Python objects is refused for safety
    (never loaded with ``weights_only=False``); the sentence says how to convert it.

    Parameters
    ----------
    path : path
        The file, named in the sentence.
    exc : Exception
        What ``torch.load`` raised.
    what : str
        What the file should hold (``"weights"``, ``"features"``), for the sentence.
    """
    name = Path(path).name
    if "global" in str(exc).lower():  # the pickle asks for a Python object beyond tensors
        return ModelError(
            f"{name} is refused for safety: it holds pickled Python objects, not only tensors; "
            "convert it in a trusted Python session by loading it there and saving its "
            "state_dict or tensor with torch.save (or as .safetensors), then use that file."
        )
    return ModelError(f"Cannot read {what} from {name}: it is damaged or not a PyTorch file.")


def load_tensors(path: str | Path, what: str = "weights"):
    """Load a ``torch.save``-d file on the CPU with ``weights_only=True``, silently.

    ``what`` names what the file should hold, for the error sentence.

    Raises
    ------
    ModelError
        The sentence of :func:`refuse_pickle` when the file cannot be read as tensors.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or unsafe: the user's file to fix
        raise refuse_pickle(path, exc, what) from exc


#: torch's notice on every ``torch.jit.load`` (torch 2.14 here): TorchScript is deprecated.
JIT_LOAD_NOTICE = r"`torch\.jit\.load` is deprecated"


def load_torchscript(path: str | Path, map_location="cpu"):
    """Load a TorchScript file (``torch.jit.save``) onto ``map_location``.

    TorchScript stays the format users bring their own models in, and torch has no other
    reader of it (``torch.export.load`` reads a different format), so torch's deprecation
    notice of ``torch.jit.load`` says nothing the user can act on: exactly that warning is
    ignored here, every other one still shows.

    Raises
    ------
    Exception
        Whatever ``torch.jit.load`` raises for a missing or damaged file (callers turn it
        into their own sentence).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", JIT_LOAD_NOTICE, FutureWarning)
        return torch.jit.load(str(path), map_location=map_location)
