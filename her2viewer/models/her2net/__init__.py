"""HER2Net (seed 002): tumor detector, five fold tile classifiers, integrated classifier.

>>> from her2viewer.models.her2net import load_her2net
>>> from her2viewer.analysis.her2net import predict_slide
>>> result = predict_slide(slide, load_her2net())  # doctest: +SKIP
"""

from her2viewer.models.her2net.ensemble import KINDS, IntegratedClassifier, fit_integrated
from her2viewer.models.her2net.model import (
    Her2NetModel,
    demo_bundle_path,
    load_her2net,
    save_her2net,
)
from her2viewer.models.her2net.networks import (
    CLASSIFIERS,
    SEGMENTERS,
    build_segmenter,
    build_tile_classifier,
)

__all__ = [
    "CLASSIFIERS",
    "KINDS",
    "SEGMENTERS",
    "Her2NetModel",
    "IntegratedClassifier",
    "build_segmenter",
    "build_tile_classifier",
    "demo_bundle_path",
    "fit_integrated",
    "load_her2net",
    "save_her2net",
]
