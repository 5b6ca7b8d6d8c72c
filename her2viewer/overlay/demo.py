"""The demo case's overlay layers: segmented tissue and the synthetic ground truth.

Until the models land, ``make run`` shows what the synthetic case knows: tissue
contours found by :func:`her2viewer.tissue.segment_tissue`, the ground-truth tumor
mask, and a smoothed ground-truth HER2-high map drawn as a heatmap (a stand-in that
exercises the heatmap machinery; it is not a model output and is named so).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from her2viewer.overlay.layers import HeatmapLayer, MaskLayer, OverlayLayer, VectorLayer
from her2viewer.slide import open_slide
from her2viewer.slide.synthetic import load_truth
from her2viewer.tissue import segment_tissue


def demo_layers(case_dir: str | Path) -> tuple[list[OverlayLayer], list[OverlayLayer]]:
    """Build the demo's layers for the H&E and IHC panes.

    Parameters
    ----------
    case_dir : str or Path
        A synthetic case folder (``he.svs``, ``ihc.svs``, masks, ``truth.json``).

    Returns
    -------
    (list, list)
        H&E layers (bottom to top) and IHC layers.
    """
    case_dir = Path(case_dir)
    truth = load_truth(case_dir)
    ds = float(truth["mask_downsample"])
    masks = truth["masks"]
    with open_slide(case_dir / truth["he_path"]) as slide:
        seg = segment_tissue(slide)
    rings = list(seg.contours) + [h for holes in seg.holes for h in holes]
    tissue = VectorLayer("tissue (segment_tissue)", polygons=rings, color=(30, 200, 90))
    tumor = MaskLayer.from_png(
        "tumor (ground truth)",
        case_dir / masks["tumor"],
        ds,
        colors={1: (235, 50, 50)},
        mode="both",
        opacity=0.6,
    )
    high = MaskLayer.from_png("HER2-high (ground truth)", case_dir / masks["high_expression"], ds)
    smooth = cv2.GaussianBlur(high.labels.astype(np.float32), (0, 0), 6)
    smooth[smooth < 0.02] = np.nan
    heat = HeatmapLayer(
        "HER2-high density (smoothed truth, not a model)",
        values=smooth,
        downsample=ds,
        vmin=0.0,
        vmax=1.0,
        threshold=0.1,
        smooth=True,
        opacity=0.4,
    )
    ihc_tissue = MaskLayer.from_png(
        "IHC tissue (ground truth)",
        case_dir / masks["ihc_tissue"],
        ds,
        mode="outline",
        colors={1: (40, 110, 240)},
        opacity=0.9,
    )
    # the truth layers start hidden so that the models' layers are what the demo shows
    heat.visible = tumor.visible = False
    return [heat, tumor, tissue], [ihc_tissue]
