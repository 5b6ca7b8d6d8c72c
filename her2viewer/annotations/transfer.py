"""Annotations across a registered pair, and landmark registration.

An annotation drawn on one slide of a pair is carried onto the other through the
registration's 3x3 level-0 matrix: :func:`transfer` makes new annotations (new ids,
``transferred_from`` set, class and name kept); :func:`remap` moves copies already
made when the registration is corrected. :func:`fit_landmarks` fits the affine
correction a pathologist picks by hand (matching points on the two slides), with the
residual of every point, and :func:`landmark_registration` records it as a
:class:`~her2viewer.registration.Registration` whose method is ``landmarks``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from her2viewer.annotations.model import PROPERTY_KEY, Annotation
from her2viewer.errors import RegistrationError
from her2viewer.geometry.geojson import Feature
from her2viewer.geometry.shapes import apply_matrix
from her2viewer.registration import Registration, registration_from_landmarks
from her2viewer.registration.transform import matrix_problem

LANDMARK_METHOD = "landmarks"


def _usable(matrix, what: str) -> np.ndarray:
    """``matrix`` as a 3x3 array, or a one-sentence :class:`RegistrationError`."""
    problem = matrix_problem(matrix)
    if problem is not None:
        raise RegistrationError(f"Cannot carry annotations through {what}: {problem}.")
    return np.asarray(matrix, float).reshape(3, 3)


def transfer(
    anns: Iterable[Annotation], matrix, *, source: str, inverse: bool = False
) -> list[Annotation]:
    """Copy annotations onto the other slide of a pair.

    Parameters
    ----------
    anns : iterable of Annotation
        Annotations in the source slide's level-0 pixels.
    matrix : array_like, shape (3, 3)
        Source level-0 -> target level-0 (a registration's moving -> fixed matrix);
        with ``inverse`` the matrix goes target -> source and its inverse is applied.
    source : str
        Where they come from (``"he"``, ``"ihc"`` or a slide name), kept in each copy's
        ``transferred_from``.
    inverse : bool
        Apply the inverse of ``matrix`` (fixed -> moving).

    Returns
    -------
    list of Annotation
        New annotations (new ids) with mapped geometry, class, name and kind kept,
        unlocked, no analysis results (they belong to the other slide); a copy's parent
        is the copy of its parent when that was carried too.

    Raises
    ------
    RegistrationError
        When the matrix is not a usable affine map (one sentence).
    """
    m = _usable(matrix, "this registration")
    if inverse:
        m = np.linalg.inv(m)
    anns = list(anns)
    copies = [
        Annotation(
            apply_matrix(ann.geometry, m),
            kind=ann.kind,
            class_name=ann.class_name,
            name=ann.name,
            transferred_from=source,
        )
        for ann in anns
    ]
    new_id = {ann.id: copy.id for ann, copy in zip(anns, copies, strict=True)}
    return [
        copy.replace(parent_id=new_id[ann.parent_id]) if ann.parent_id in new_id else copy
        for ann, copy in zip(anns, copies, strict=True)
    ]


def remap(anns: Iterable[Annotation], old_matrix, new_matrix) -> list[Annotation]:
    """Move copies made through ``old_matrix`` to where ``new_matrix`` puts them.

    Use it when the registration of a pair is nudged or refitted: a copy that was not
    edited since it was carried follows the new registration. Ids and every other
    field are kept.

    Parameters
    ----------
    anns : iterable of Annotation
        Copies in the target slide's level-0 pixels.
    old_matrix, new_matrix : array_like, shape (3, 3)
        Source -> target level-0 matrices before and after the change.

    Returns
    -------
    list of Annotation
        The copies with geometry mapped by ``new_matrix @ inverse(old_matrix)``.
    """
    old = _usable(old_matrix, "the previous registration")
    new = _usable(new_matrix, "the new registration")
    step = new @ np.linalg.inv(old)
    return [ann.replace(geometry=apply_matrix(ann.geometry, step)) for ann in anns]


@dataclass(frozen=True)
class LandmarkFit:
    """A least-squares affine fitted to landmark pairs.

    Attributes
    ----------
    matrix : numpy.ndarray
        3x3 source level-0 -> destination level-0.
    residuals_px : numpy.ndarray
        ``(N,)`` distance in destination level-0 px between each mapped source point
        and its destination point.
    rms_px : float
        Root mean square of ``residuals_px``.
    """

    matrix: np.ndarray
    residuals_px: np.ndarray
    rms_px: float


def fit_landmarks(src_pts: Sequence, dst_pts: Sequence) -> LandmarkFit:
    """Fit the affine that maps ``src_pts`` onto ``dst_pts`` (least squares).

    Parameters
    ----------
    src_pts, dst_pts : array_like, shape (N, 2)
        Matching level-0 points on the source (moving) and destination (fixed)
        slides, ``N >= 3`` and not all on one line.

    Returns
    -------
    LandmarkFit
        The matrix, the residual of every pair and their RMS, in level-0 px.

    Raises
    ------
    RegistrationError
        With fewer than 3 pairs, unequal counts or collinear points (one sentence).
    """
    registration = registration_from_landmarks(src_pts, dst_pts)
    src = np.asarray(src_pts, float).reshape(-1, 2)
    dst = np.asarray(dst_pts, float).reshape(-1, 2)
    residuals = np.hypot(*(registration.transform_points(src) - dst).T)
    return LandmarkFit(registration.matrix, residuals, registration.error_px)


def landmark_registration(fit: LandmarkFit, moving: str = "", fixed: str = "") -> Registration:
    """Record a landmark fit as a registration (method ``landmarks``) to save as JSON.

    Parameters
    ----------
    fit : LandmarkFit
        A fit of moving -> fixed points (:func:`fit_landmarks`).
    moving, fixed : str
        The slides' paths, for the record.

    Returns
    -------
    Registration
        ``error_px`` is the RMS residual; ``quality`` holds the number of landmarks and
        the residual of each.
    """
    quality = {"landmarks": len(fit.residuals_px), "residuals_px": fit.residuals_px.tolist()}
    return Registration(fit.matrix, LANDMARK_METHOD, fit.rms_px, quality, fixed, moving)


def transfer_features(features: Iterable[Feature], matrix, *, source: str) -> list[Feature]:
    """Copy the objects of an annotation file onto the other slide of a pair.

    The file-level twin of :func:`transfer`: every object is carried (detections and cells
    too, nuclei included), ids kept, measurements dropped (they belong to the other slide),
    the link of an app pane copy to its source (``copy_link``) dropped too, and each is
    marked with the ``transferred_from`` field her2viewer keeps in a feature's properties,
    which :class:`~her2viewer.annotations.model.Annotation` reads back.

    Raises
    ------
    RegistrationError
        When the matrix is not a usable affine map (one sentence).
    """
    matrix = _usable(matrix, "this registration")
    copies = []
    for feature in features:
        properties = dict(feature.properties)
        extra = properties.get(PROPERTY_KEY)
        kept = dict(extra) if isinstance(extra, dict) else {}
        kept.pop("copy_link", None)  # a pane copy's link to its source holds on one slide only
        properties[PROPERTY_KEY] = {**kept, "transferred_from": source}
        copies.append(
            Feature(
                geometry=apply_matrix(feature.geometry, matrix),
                object_type=feature.object_type,
                class_name=feature.class_name,
                color=feature.color,
                name=feature.name,
                locked=feature.locked,
                measurements={},  # measured on the other slide; they no longer hold
                id=feature.id,
                nucleus=None if feature.nucleus is None else apply_matrix(feature.nucleus, matrix),
                properties=properties,
            )
        )
    return copies
