"""Patch encoders and the feature-extraction engine (device, batching, prefetch, h5 store)."""

from her2viewer.features.encoders import (
    Encoder,
    build_encoder,
    encoder_for_bundle,
    encoder_names,
    register_encoder,
)
from her2viewer.features.engine import ExtractionResult, extract_features
from her2viewer.features.store import FeatureFile, read_features

__all__ = [
    "Encoder",
    "ExtractionResult",
    "FeatureFile",
    "build_encoder",
    "encoder_for_bundle",
    "encoder_names",
    "extract_features",
    "read_features",
    "register_encoder",
]
