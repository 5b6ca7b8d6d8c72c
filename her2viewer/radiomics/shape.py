"""3D shape features of an ROI (PyRadiomics ``shape``): a marching-cubes mesh and PCA axes."""

from __future__ import annotations

import contextlib

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from her2viewer.radiomics.optional import optional_import


def _mesh(mask: np.ndarray, spacing: tuple[float, float, float]):
    """Marching-cubes surface of the padded mask at iso-level 0.5, in mm."""
    marching_cubes = optional_import("skimage.measure").marching_cubes
    padded = np.pad(mask.astype(np.float32), 1)
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=spacing, method="lorensen")
    return verts, faces


def _mesh_area_volume(verts: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    """Surface area and enclosed volume (signed tetrahedra) of a closed triangle mesh."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum()
    volume = abs(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0
    return float(area), float(volume)


def _max_distance(points: np.ndarray) -> float:
    """Largest pairwise Euclidean distance among points (on their convex hull when large)."""
    if len(points) < 2:
        return 0.0
    if len(points) > 64:
        with contextlib.suppress(QhullError):  # degenerate point sets: use them all
            points = points[ConvexHull(points).vertices]
    return float(pdist(points).max())


def _planar_diameter(verts: np.ndarray, axis: int) -> float:
    """Largest distance between mesh vertices that share a coordinate along ``axis``."""
    keys = np.round(verts[:, axis], 6)
    others = [d for d in range(3) if d != axis]
    best = 0.0
    for key in np.unique(keys):
        best = max(best, _max_distance(verts[keys == key][:, others]))
    return best


def _axes(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Eigenvalues (ascending) of the covariance of the ROI voxel centres in mm."""
    coords = np.argwhere(mask) * np.asarray(spacing)
    coords -= coords.mean(axis=0)
    eig = np.linalg.eigvalsh(coords.T @ coords / len(coords))
    return np.clip(eig, 0.0, None)


def shape_features(mask: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """3D shape features of a boolean ROI indexed ``(z, y, x)`` with spacing in mm.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        The ROI (cropped or not).
    spacing : tuple of float
        Voxel size ``(z, y, x)`` in mm.

    Returns
    -------
    dict
        PyRadiomics shape feature name -> value.
    """
    verts, faces = _mesh(mask, spacing)
    area, volume = _mesh_area_volume(verts, faces)
    least, minor, major = _axes(mask, spacing)

    def ratio(small: float) -> float:
        return float(np.sqrt(small / major)) if major > 0 else 0.0

    return {
        "MeshVolume": volume,
        "VoxelVolume": float(mask.sum() * np.prod(spacing)),
        "SurfaceArea": area,
        "SurfaceVolumeRatio": area / volume if volume > 0 else 0.0,
        "Sphericity": float((36 * np.pi * volume**2) ** (1 / 3) / area) if area > 0 else 0.0,
        "Maximum3DDiameter": _max_distance(verts),
        "Maximum2DDiameterSlice": _planar_diameter(verts, 0),
        "Maximum2DDiameterColumn": _planar_diameter(verts, 1),
        "Maximum2DDiameterRow": _planar_diameter(verts, 2),
        "MajorAxisLength": float(4 * np.sqrt(major)),
        "MinorAxisLength": float(4 * np.sqrt(minor)),
        "LeastAxisLength": float(4 * np.sqrt(least)),
        "Elongation": ratio(minor),
        "Flatness": ratio(least),
    }
