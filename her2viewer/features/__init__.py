"""Patch encoders and the feature-extraction engine (device, batching, prefetch, h5 store).

The names below load lazily, so that importing :mod:`her2viewer.cli.extract` (every
start of the command line) does not import torch.
"""

from importlib import import_module

_EXPORTS = {
    "Encoder": "encoders",
    "build_encoder": "encoders",
    "encoder_for_bundle": "encoders",
    "encoder_names": "encoders",
    "register_encoder": "encoders",
    "ExtractionResult": "engine",
    "extract_features": "engine",
    "FeatureFile": "store",
    "read_features": "store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"her2viewer.features.{_EXPORTS[name]}"), name)
