"""CLAM on a slide: prediction plus an attention score map in level-0 coordinates.

The maths follows seed 000 and CLAM's ``create_heatmaps.py`` / ``visHeatmap``:
raw attention of the predicted-class branch (CLAM_MB) or the single branch
(CLAM_SB) becomes percentile scores in [0, 1] (``rankdata / N`` over the slide's
own patches, or ``percentileofscore(reference, a) / 100`` against the
non-overlapping block map when overlapping patches are scored); optional
binarisation; scores are averaged where patches overlap; optional Gaussian blur;
kept only inside tissue. Colours are the overlay room's job. With a region (annotations)
only the patches whose centre lies in it are given to the model and mapped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.stats import percentileofscore, rankdata

from her2viewer.analysis.contract import load_npz, save_npz
from her2viewer.annotations.roi import Region, RoiError, region_summary, summary_region
from her2viewer.errors import ModelError
from her2viewer.features.encoders import Encoder, encoder_for_bundle
from her2viewer.features.engine import BatchFn, extract_features
from her2viewer.features.store import FeatureFile, read_features
from her2viewer.jobs import JobContext
from her2viewer.models.bundle import is_bundle, load_bundle
from her2viewer.models.checks import demo_notice
from her2viewer.models.clam import CLAM, ClamPrediction, load_clam, predict
from her2viewer.overlay.layers import HeatmapLayer
from her2viewer.paths import cache_dir
from her2viewer.slide import Slide
from her2viewer.tissue import PatchGrid, TissueSegmentation, make_patch_grid, segment_tissue


def to_percentiles(scores: np.ndarray) -> np.ndarray:
    """CLAM's ``to_percentiles``: average rank / N, in (0, 1]."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    return rankdata(scores, "average") / len(scores)


def score_to_percentile(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """CLAM's ``score2percentile``: ``percentileofscore(reference, s, kind='rank') / 100``."""
    return np.asarray(percentileofscore(np.ravel(reference), np.ravel(scores), kind="rank")) / 100


def patch_score_map(
    coords: np.ndarray,
    scores: np.ndarray,
    patch_size_level0: int,
    slide_size: tuple[int, int],
    downsample: float,
    tissue: TissueSegmentation | None = None,
    blur: bool = False,
    overlap: float = 0.0,
    binarize_threshold: float | None = None,
) -> np.ndarray:
    """Paste per-patch scores into a map, averaging where patches overlap.

    Parameters
    ----------
    coords : array (N, 2)
        Level-0 top-left corners.
    scores : array (N,)
        Scores in [0, 1] (percentiles).
    patch_size_level0 : int
        Patch side in level-0 pixels.
    slide_size : (int, int)
        Level-0 ``(width, height)``.
    downsample : float
        Level-0 pixels per map pixel.
    tissue : TissueSegmentation, optional
        When given, pixels outside tissue are NaN.
    blur : bool
        Gaussian blur with CLAM's kernel ``2 * int(patch * (1 - overlap)) + 1``.
    overlap : float
        Overlap of neighbouring patches (0 or 0.5), for the blur kernel.
    binarize_threshold : float, optional
        Scores >= threshold become 1, others 0 (before averaging, as CLAM does).

    Returns
    -------
    np.ndarray
        (H, W) float32, NaN where no patch (or no tissue) is.
    """
    width, height = (int(np.ceil(s / downsample)) for s in slide_size)
    total = np.zeros((height, width), np.float64)
    count = np.zeros((height, width), np.int32)
    side = max(1, int(round(patch_size_level0 / downsample)))
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if binarize_threshold is not None:
        scores = (scores >= binarize_threshold).astype(np.float64)
    for (x, y), score in zip(np.asarray(coords), scores, strict=True):
        c0, r0 = int(round(x / downsample)), int(round(y / downsample))
        total[max(r0, 0) : r0 + side, max(c0, 0) : c0 + side] += score
        count[max(r0, 0) : r0 + side, max(c0, 0) : c0 + side] += 1
    out = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    if blur:
        k = int(side * (1 - overlap)) * 2 + 1
        out = cv2.GaussianBlur(out, (k, k), 0)
    out = np.where(count > 0, out, np.nan).astype(np.float32)
    if tissue is not None:
        out[~_tissue_on_grid(tissue, downsample, out.shape)] = np.nan
    return out


def _tissue_on_grid(tissue: TissueSegmentation, downsample: float, shape) -> np.ndarray:
    mask = tissue.mask.astype(np.uint8)
    scale = tissue.downsample / downsample
    resized = cv2.resize(
        mask,
        (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale))),
        interpolation=cv2.INTER_NEAREST,
    )
    out = np.zeros(shape, bool)
    h, w = min(shape[0], resized.shape[0]), min(shape[1], resized.shape[1])
    out[:h, :w] = resized[:h, :w] > 0
    return out


@dataclass
class ClamResult:
    """A CLAM result on one slide.

    Attributes
    ----------
    values : np.ndarray
        (H, W) percentile attention in [0, 1], NaN outside patches / tissue.
    downsample : float
        Level-0 pixels per map pixel.
    coords : np.ndarray
        (N, 2) level-0 corners of the scored patches.
    patch_scores : np.ndarray
        (N,) percentile score per patch.
    prediction : ClamPrediction
        Probabilities, predicted class and raw attention of the block map.
    class_names : list of str
    notice : str or None
        :data:`~her2viewer.models.checks.DEMO_NOTICE` for a synthetic demo bundle.
    partial : bool
        True for a provisional map of the patches encoded so far.
    roi : dict
        The region analysed and its area (:func:`~her2viewer.annotations.roi.region_summary`).
    """

    values: np.ndarray
    downsample: float
    coords: np.ndarray
    patch_scores: np.ndarray
    prediction: ClamPrediction
    class_names: list[str] = field(default_factory=list)
    notice: str | None = None
    partial: bool = False
    roi: dict = field(default_factory=dict)

    def top_patches(self, k: int = 8, high: bool = True) -> np.ndarray:
        """Level-0 corners of the ``k`` highest (or lowest) attention patches."""
        order = np.argsort(self.patch_scores, kind="stable")
        picked = order[::-1][:k] if high else order[:k]
        return self.coords[picked]

    @property
    def names(self) -> list[str]:
        """The class names, or the class indices as text when the bundle names none."""
        return self.class_names or [str(i) for i in range(len(self.prediction.probabilities))]

    def layers(self) -> list[HeatmapLayer]:
        """The attention heatmap as a viewer layer (coolwarm, as CLAM draws it)."""
        return [
            HeatmapLayer(
                "CLAM attention (partial)" if self.partial else "CLAM attention",
                values=self.values,
                downsample=self.downsample,
                colormap="coolwarm",
                vmin=0.0,
                vmax=1.0,
                opacity=0.5,
            )
        ]

    def summary(self) -> dict:
        """JSON-ready figures: predicted class, probabilities, patch count, notice."""
        probabilities = np.asarray(self.prediction.probabilities, dtype=float)
        return {
            "prediction": self.names[int(self.prediction.prediction)],
            "prediction_index": int(self.prediction.prediction),
            "class_names": list(self.class_names),
            "probabilities": dict(zip(self.names, probabilities.tolist(), strict=True)),
            "patches": int(len(self.coords)),
            "downsample": float(self.downsample),
            "partial": self.partial,
            "notice": self.notice,
            **self.roi,
        }

    def save(self, path: str | Path) -> Path:
        """Write the result to one ``.npz`` file, atomically (an :class:`OutputError` if not)."""
        return save_npz(
            path,
            self.summary(),
            values=self.values,
            coords=np.asarray(self.coords),
            patch_scores=np.asarray(self.patch_scores),
            probabilities=np.asarray(self.prediction.probabilities),
            attention=np.asarray(self.prediction.attention),
        )

    @classmethod
    def load(cls, path: str | Path) -> ClamResult:
        """Read a result written by :meth:`save` (a :class:`ModelError` when unreadable)."""
        summary, arrays = load_npz(path, "CLAM")
        prediction = ClamPrediction(
            arrays["probabilities"], summary["prediction_index"], arrays["attention"]
        )
        return cls(
            arrays["values"], summary["downsample"], arrays["coords"], arrays["patch_scores"],
            prediction, summary["class_names"], summary["notice"], summary["partial"],
            summary_region(summary),
        )  # fmt: skip


def attention_scores(
    model: CLAM,
    prediction: ClamPrediction,
    overlap_features: np.ndarray | None = None,
) -> np.ndarray:
    """Percentile scores per patch, as CLAM's heatmaps compute them.

    Without ``overlap_features``, the block map's own attention is ranked; with
    them, their raw attention (predicted-class branch) is scored against the
    block map's attention as reference.
    """
    reference = prediction.branch_attention()
    if overlap_features is None:
        return to_percentiles(reference)
    raw = predict_attention(model, overlap_features, prediction.prediction)
    return score_to_percentile(raw, reference)


@torch.inference_mode()
def predict_attention(model: CLAM, features: np.ndarray, branch: int) -> np.ndarray:
    """Raw attention of ``features`` for one branch (CLAM's ``attention_only``)."""
    model.eval()
    attention = model.attention_only(torch.as_tensor(features, dtype=torch.float32))
    row = branch if attention.shape[0] > 1 else 0
    return attention[row].numpy()


@dataclass(frozen=True)
class ClamOptions:
    """Options of :func:`analyse_clam` (CLAM's heatmap defaults)."""

    magnification: float = 20.0
    patch_size: int = 256
    overlap: float = 0.0
    blur: bool = False
    binarize_threshold: float | None = None
    map_downsample: float | None = None
    device: str = "auto"
    batch_size: int | None = None  # None: the device's default (features.engine.default_batching)
    workers: int | None = None
    region: Region | None = None  # only patches whose centre lies in it (level-0 pixels)


def analyse_clam(
    slide: Slide,
    bundle: str | Path,
    options: ClamOptions | None = None,
    context: JobContext | None = None,
    *,
    encoder: Encoder | None = None,
    cache: str | Path | None = None,
    on_partial: Callable[[ClamResult], None] | None = None,
) -> ClamResult:
    """Segment -> patch -> extract -> CLAM -> attention heatmap, cached per slide and encoder.

    Parameters
    ----------
    slide : Slide
    bundle : path
        A CLAM bundle (its encoder is rebuilt from ``bundle.json``) or a
        reference checkpoint (then ``encoder`` is needed, e.g. ImageNet resnet50_trunc).
    options : ClamOptions, optional
    context : JobContext, optional
        Progress and cancellation, passed to the extraction engine (features are the
        slow step).
    encoder : Encoder, optional
        Overrides the bundle's encoder.
    cache : path, optional
        Cache folder (default: the user cache); features are kept per slide
        fingerprint + encoder, so a second call only runs the (fast) model.
    on_partial : callable, optional
        Called with a heatmap of the patches encoded so far (at most once per
        second while the block-map features are extracted), for progressive display.

    Raises
    ------
    ModelError
        No encoder known for a plain checkpoint, or features that do not fit.
    RoiError
        A region outside the slide, or holding no patch centre.
    """
    options = options or ClamOptions()
    region = options.region.on_slide(slide.info) if options.region is not None else None
    model, meta = load_clam(bundle)
    encoder = encoder or _bundle_encoder(bundle, meta)
    if encoder.dim != model.config.embed_dim:
        raise ModelError(
            f"Encoder {encoder.name} gives {encoder.dim}-d features but the model "
            f"expects {model.config.embed_dim}."
        )
    seg = segment_tissue(slide)
    folder = Path(cache or cache_dir()) / "clam" / slide.info.fingerprint
    names = list(meta.get("class_names", []))

    def heatmap(coords, scores, prediction, overlap: float, size0: int, partial=False):
        downsample = options.map_downsample or size0 * (1 - options.overlap) / 4
        size = (slide.info.width, slide.info.height)
        values = patch_score_map(
            coords,
            scores,
            size0,
            size,
            downsample,
            seg,
            options.blur,
            overlap,
            options.binarize_threshold,
        )
        scores = scores.astype(np.float32)
        notice = demo_notice(meta)
        roi = region_summary(region, slide.info.mpp_x)
        return ClamResult(
            values, float(downsample), coords, scores, prediction, names, notice, partial, roi
        )

    def watch(grid: PatchGrid) -> BatchFn:
        return _PartialMaps(model, grid, heatmap, on_partial, region)

    run = dict(
        progress=context.report if context else None, cancel=context.token if context else None
    )
    block = _features_for(
        slide, seg, encoder, folder, options, 0.0, on_batch_for=watch if on_partial else None, **run
    )
    size0 = int(block.attrs["patch_size_level0"])
    block = _within(block, region, size0, slide)
    prediction = predict(model, block.features, f"The features of {Path(slide.info.path).name}")
    if options.overlap <= 0:
        return heatmap(block.coords, attention_scores(model, prediction), prediction, 0.0, size0)
    over = _features_for(slide, seg, encoder, folder, options, options.overlap, **run)
    over = _within(over, region, size0, slide)
    scores = attention_scores(model, prediction, over.features)
    return heatmap(over.coords, scores, prediction, options.overlap, size0)


def _within(feats: FeatureFile, region: Region | None, size0: int, slide: Slide) -> FeatureFile:
    """The patches of ``feats`` whose centre lies in ``region`` (all of them without one).

    Raises
    ------
    RoiError
        When no patch centre lies inside the region.
    """
    if region is None:
        return feats
    inside = region.contains_patches(feats.coords, size0)
    if not inside.any():
        raise RoiError(
            f"No tissue inside the region ({region.description}) of "
            f"{Path(slide.info.path).name}: no tissue patch has its centre there."
        )
    return replace(feats, features=feats.features[inside], coords=feats.coords[inside])


def bundle_encoder(bundle: str | Path) -> Encoder:
    """The encoder a CLAM bundle was trained with (a :class:`ModelError` for a checkpoint)."""
    return _bundle_encoder(bundle, load_clam(bundle)[1])


def _bundle_encoder(model_path, meta: dict) -> Encoder:
    if not is_bundle(model_path):
        raise ModelError(
            "A plain CLAM checkpoint does not say which encoder made its features; "
            "use a bundle or choose the encoder."
        )
    return encoder_for_bundle(meta, load_bundle(model_path).tensors)


class _PartialMaps:
    """Turns the batches of a running extraction into provisional heatmaps."""

    def __init__(self, model, grid: PatchGrid, heatmap, callback, region=None, interval=1.0):
        self.model, self.grid, self.heatmap, self.callback = model, grid, heatmap, callback
        self.region = region
        self.rows: dict[int, np.ndarray] = {}
        self.interval, self.last = interval, 0.0

    def __call__(self, start: int, feats: np.ndarray) -> None:
        self.rows[start] = feats
        now = time.monotonic()
        finished = sum(len(f) for f in self.rows.values()) == len(self.grid)
        if now - self.last < self.interval and not finished:
            return
        self.last = now
        starts = sorted(self.rows)
        feats_done = np.concatenate([self.rows[s] for s in starts])
        coords = np.concatenate([self.grid.coords[s : s + len(self.rows[s])] for s in starts])
        size0 = self.grid.patch_size_level0
        if self.region is not None:
            inside = self.region.contains_patches(coords, size0)
            if not inside.any():
                return
            feats_done, coords = feats_done[inside], coords[inside]
        prediction = predict(self.model, feats_done)
        scores = to_percentiles(prediction.branch_attention())
        self.callback(self.heatmap(coords, scores, prediction, 0.0, size0, partial=True))


def clam_features(
    slide: Slide,
    bundle: str | Path,
    options: ClamOptions | None = None,
    context: JobContext | None = None,
    *,
    cache: str | Path | None = None,
    encoder: Encoder | None = None,
) -> FeatureFile:
    """Extract (or reuse) the features :func:`analyse_clam` reads, in the same cache folder.

    Lets a cohort run extract features as a step of its own; :func:`analyse_clam` with the
    same ``bundle``, ``options``, ``cache`` and ``encoder`` (the bundle's by default, as
    :func:`bundle_encoder` builds it) then only runs the model.
    """
    options = options or ClamOptions()
    folder = Path(cache or cache_dir()) / "clam" / slide.info.fingerprint
    run = dict(
        progress=context.report if context else None, cancel=context.token if context else None
    )
    encoder = encoder or bundle_encoder(bundle)
    return _features_for(slide, segment_tissue(slide), encoder, folder, options, 0.0, **run)


def _features_for(
    slide, seg, encoder, folder, options, overlap, progress, cancel, on_batch_for=None
):
    step = max(1, int(round(options.patch_size * (1 - overlap))))
    key = hashlib.sha256(
        json.dumps([encoder.identity, options.magnification, options.patch_size, step]).encode()
    ).hexdigest()[:16]
    path = folder / f"features_{key}.h5"
    if not path.exists():
        grid = make_patch_grid(
            slide,
            seg,
            magnification=options.magnification,
            patch_size=options.patch_size,
            step_size=step,
        )
        extract_features(
            slide,
            grid,
            encoder,
            path,
            device=options.device,
            batch_size=options.batch_size,
            workers=options.workers,
            progress=progress,
            cancel=cancel,
            on_batch=on_batch_for(grid) if on_batch_for else None,
        )
    return read_features(path)
