"""Texture matrices and their features (PyRadiomics GLCM, GLRLM, GLSZM, GLDM, NGTDM).

Inputs are a discretised level array (levels 1..N inside the ROI, 0 outside) and
the boolean ROI. Neighbours are the 26 voxels at infinity-norm distance 1; the
13 directions of GLCM and GLRLM drop those that would leave a one-voxel-thick
ROI. Matrices keep only the gray levels present in the ROI, and GLCM/GLRLM
features are averaged over directions, as PyRadiomics does by default.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

EPS = np.spacing(1)


def directions(shape: tuple[int, ...]) -> np.ndarray:
    """The 13 unique (dz, dy, dx) unit offsets, without those crossing a size-1 axis."""
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=3) if o > (0, 0, 0)]
    keep = [o for o in offsets if all(s > 1 or d == 0 for s, d in zip(shape, o, strict=True))]
    return np.array(keep, dtype=np.int64).reshape(-1, 3)


def _neighbour_offsets(shape: tuple[int, ...]) -> np.ndarray:
    """All 26 (or fewer, see :func:`directions`) offsets, both senses."""
    half = directions(shape)
    return np.concatenate([half, -half])


def _overlap(shape: tuple[int, ...], offset) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices selecting voxels p and p + offset where both lie in the array."""
    src = tuple(slice(max(0, -o), n - max(0, o)) for n, o in zip(shape, offset, strict=True))
    dst = tuple(slice(max(0, o), n - max(0, -o)) for n, o in zip(shape, offset, strict=True))
    return src, dst


def _gray_index(levels: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gray levels present in the ROI and the level array mapped to 0..G-1 (-1 outside)."""
    present = np.unique(levels[mask])
    index = np.full(levels.shape, -1, dtype=np.int64)
    index[mask] = np.searchsorted(present, levels[mask])
    return present.astype(np.float64), index


def _nanmean(values) -> float:
    return float(np.nanmean(values))


# ----------------------------------------------------------------------------- GLCM
def glcm_matrices(levels: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric, normalised co-occurrence matrices, shape (G, G, directions).

    Returns the matrices and the gray levels of their rows.
    """
    gray, index = _gray_index(levels, mask)
    g = len(gray)
    mats = []
    for offset in directions(levels.shape):
        src, dst = _overlap(levels.shape, offset)
        a, b = index[src], index[dst]
        both = (a >= 0) & (b >= 0)
        counts = np.bincount(a[both] * g + b[both], minlength=g * g).reshape(g, g)
        counts = counts + counts.T
        if counts.sum() > 0:
            mats.append(counts / counts.sum())
    return np.stack(mats, axis=-1).astype(np.float64), gray


def _mcc(p: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Maximal correlation coefficient per direction."""
    if p.shape[0] < 2:
        return np.ones(p.shape[2])
    out = []
    for d in range(p.shape[2]):
        q = np.einsum("ik,jk->ij", p[:, :, d] / (px[:, None, d] * py[None, :, d] + EPS), p[:, :, d])
        eig = np.sort(np.linalg.eigvals(q).real)
        out.append(np.sqrt(eig[-2]) if eig[-2] >= 0 else np.nan)
    return np.array(out)


def glcm_features(levels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """GLCM features (PyRadiomics ``glcm``), averaged over directions."""
    p, gray = glcm_matrices(levels, mask)
    ng = float(gray.max())
    i = gray[:, None, None]
    j = gray[None, :, None]
    px, py = p.sum(1), p.sum(0)  # (G, D)
    ux = (p * i).sum((0, 1))
    uy = (p * j).sum((0, 1))
    sigx = np.sqrt((p * (i - ux) ** 2).sum((0, 1)))
    sigy = np.sqrt((p * (j - uy) ** 2).sum((0, 1)))
    k_sum = np.unique(gray[:, None] + gray[None, :])
    k_diff = np.unique(np.abs(gray[:, None] - gray[None, :]))
    ij_sum = (i + j)[..., 0]
    ij_diff = np.abs(i - j)[..., 0]
    p_sum = np.array([p[ij_sum == k].sum(0) for k in k_sum])  # (K, D)
    p_diff = np.array([p[ij_diff == k].sum(0) for k in k_diff])
    hx = -(px * np.log2(px + EPS)).sum(0)
    hy = -(py * np.log2(py + EPS)).sum(0)
    hxy = -(p * np.log2(p + EPS)).sum((0, 1))
    pxy = px[:, None, :] * py[None, :, :]
    hxy1 = -(p * np.log2(pxy + EPS)).sum((0, 1))
    hxy2 = -(pxy * np.log2(pxy + EPS)).sum((0, 1))
    sig = sigx * sigy
    corr = np.where(sig > 0, (p * (i - ux) * (j - uy)).sum((0, 1)) / np.where(sig > 0, sig, 1), 1.0)
    hmax = np.maximum(hx, hy)
    imc1 = np.where(hmax > 0, (hxy - hxy1) / np.where(hmax > 0, hmax, 1), 0.0)
    imc2 = np.where(hxy2 > hxy, np.sqrt(np.abs(1 - np.exp(-2 * (hxy2 - hxy)))), 0.0)
    diff_avg = (k_diff[:, None] * p_diff).sum(0)
    nonzero = k_diff > 0
    cluster = i + j - ux - uy
    return {
        "Autocorrelation": _nanmean((p * i * j).sum((0, 1))),
        "JointAverage": _nanmean(ux),
        "ClusterProminence": _nanmean((p * cluster**4).sum((0, 1))),
        "ClusterShade": _nanmean((p * cluster**3).sum((0, 1))),
        "ClusterTendency": _nanmean((p * cluster**2).sum((0, 1))),
        "Contrast": _nanmean((p * (i - j) ** 2).sum((0, 1))),
        "Correlation": _nanmean(corr),
        "DifferenceAverage": _nanmean(diff_avg),
        "DifferenceEntropy": _nanmean(-(p_diff * np.log2(p_diff + EPS)).sum(0)),
        "DifferenceVariance": _nanmean((p_diff * (k_diff[:, None] - diff_avg) ** 2).sum(0)),
        "JointEnergy": _nanmean((p**2).sum((0, 1))),
        "JointEntropy": _nanmean(hxy),
        "Imc1": _nanmean(imc1),
        "Imc2": _nanmean(imc2),
        "Idm": _nanmean((p_diff / (1 + k_diff[:, None] ** 2)).sum(0)),
        "MCC": _nanmean(_mcc(p, px, py)),
        "Idmn": _nanmean((p / (1 + (i - j) ** 2 / ng**2)).sum((0, 1))),
        "Id": _nanmean((p_diff / (1 + k_diff[:, None])).sum(0)),
        "Idn": _nanmean((p / (1 + np.abs(i - j) / ng)).sum((0, 1))),
        "InverseVariance": _nanmean((p_diff[nonzero] / k_diff[nonzero, None] ** 2).sum(0)),
        "MaximumProbability": _nanmean(p.max((0, 1))),
        "SumAverage": _nanmean((k_sum[:, None] * p_sum).sum(0)),
        "SumEntropy": _nanmean(-(p_sum * np.log2(p_sum + EPS)).sum(0)),
        "SumSquares": _nanmean((p * (i - ux) ** 2).sum((0, 1))),
    }


# ------------------------------------------------- size-zone style matrices (GLRLM, GLSZM, GLDM)
def _emphasis_features(
    counts: np.ndarray, gray: np.ndarray, sizes: np.ndarray, n_voxels: int, names: dict[str, str]
) -> dict[str, float]:
    """Features shared by GLRLM, GLSZM and GLDM from a (gray x size) count matrix.

    ``names`` maps the generic names (``S``: short/small, ``L``: long/large, ``N``: the
    size non-uniformity, ``E``: entropy, ``V``: size variance, ``P``: percentage) to the
    class's own feature names.
    """
    total = counts.sum()
    p = counts / total
    i2 = gray[:, None] ** 2
    j2 = sizes[None, :].astype(np.float64) ** 2
    mu_i = (p * gray[:, None]).sum()
    mu_j = (p * sizes[None, :]).sum()
    by_gray, by_size = counts.sum(1), counts.sum(0)
    out = {
        names["S"] + "Emphasis": (p / j2).sum(),
        names["L"] + "Emphasis": (p * j2).sum(),
        "GrayLevelNonUniformity": (by_gray**2).sum() / total,
        "GrayLevelNonUniformityNormalized": (by_gray**2).sum() / total**2,
        names["N"] + "NonUniformity": (by_size**2).sum() / total,
        names["N"] + "NonUniformityNormalized": (by_size**2).sum() / total**2,
        "GrayLevelVariance": (p * (gray[:, None] - mu_i) ** 2).sum(),
        names["V"] + "Variance": (p * (sizes[None, :] - mu_j) ** 2).sum(),
        names["E"] + "Entropy": -(p * np.log2(p + EPS)).sum(),
        names["G"] + "LowGrayLevel" + names["g"] + "Emphasis": (p / i2).sum(),
        names["G"] + "HighGrayLevel" + names["g"] + "Emphasis": (p * i2).sum(),
        names["S"] + "LowGrayLevelEmphasis": (p / (i2 * j2)).sum(),
        names["S"] + "HighGrayLevelEmphasis": (p * i2 / j2).sum(),
        names["L"] + "LowGrayLevelEmphasis": (p * j2 / i2).sum(),
        names["L"] + "HighGrayLevelEmphasis": (p * i2 * j2).sum(),
    }
    if "P" in names:
        out[names["P"] + "Percentage"] = total / n_voxels
    return {k: float(v) for k, v in out.items()}


_GLRLM_NAMES = {"S": "ShortRun", "L": "LongRun", "N": "RunLength", "E": "Run", "V": "Run",
                "G": "", "g": "Run", "P": "Run"}  # fmt: skip
_GLSZM_NAMES = {"S": "SmallArea", "L": "LargeArea", "N": "SizeZone", "E": "Zone", "V": "Zone",
                "G": "", "g": "Zone", "P": "Zone"}  # fmt: skip
_GLDM_NAMES = {"S": "SmallDependence", "L": "LargeDependence", "N": "Dependence",
               "E": "Dependence", "V": "Dependence", "G": "", "g": ""}  # fmt: skip


def _run_lengths(index: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gray index and length of every run along ``offset`` (voxels outside the ROI break runs)."""
    shape = np.array(index.shape)
    before = np.full(index.shape, -1, dtype=np.int64)
    src, dst = _overlap(index.shape, offset)
    before[dst] = index[src]
    starts = np.argwhere((index >= 0) & (before != index))
    gray = index[tuple(starts.T)]
    length = np.ones(len(starts), dtype=np.int64)
    pos, alive = starts.copy(), np.ones(len(starts), dtype=bool)
    while alive.any():
        pos = pos + offset
        inside = alive & np.all((pos >= 0) & (pos < shape), axis=1)
        same = np.zeros(len(pos), dtype=bool)
        same[inside] = index[tuple(pos[inside].T)] == gray[inside]
        length += same
        alive = same
    return gray, length


def glrlm_features(levels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """GLRLM features (PyRadiomics ``glrlm``), averaged over directions."""
    gray, index = _gray_index(levels, mask)
    n_voxels = int(mask.sum())
    per_direction = []
    for offset in directions(levels.shape):
        g, length = _run_lengths(index, offset)
        if len(g) == 0:
            continue
        counts = np.zeros((len(gray), int(length.max())))
        np.add.at(counts, (g, length - 1), 1)
        sizes = np.arange(1, counts.shape[1] + 1)
        per_direction.append(_emphasis_features(counts, gray, sizes, n_voxels, _GLRLM_NAMES))
    return {k: _nanmean([d[k] for d in per_direction]) for k in per_direction[0]}


def _size_matrix(gray_idx: np.ndarray, size: np.ndarray, n_gray: int) -> tuple[np.ndarray, ...]:
    """(gray x distinct size) count matrix and its size values."""
    sizes, col = np.unique(size, return_inverse=True)
    counts = np.zeros((n_gray, len(sizes)))
    np.add.at(counts, (gray_idx, col), 1)
    return counts, sizes


def glszm_features(levels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """GLSZM features (PyRadiomics ``glszm``): 26-connected zones of equal gray level."""
    gray, index = _gray_index(levels, mask)
    structure = np.ones((3, 3, 3), dtype=bool)
    zone_gray, zone_size = [], []
    for g in range(len(gray)):
        labels, n = ndimage.label(index == g, structure=structure)
        if n:
            zone_size.append(np.bincount(labels.ravel())[1:])
            zone_gray.append(np.full(n, g))
    counts, sizes = _size_matrix(np.concatenate(zone_gray), np.concatenate(zone_size), len(gray))
    return _emphasis_features(counts, gray, sizes, int(mask.sum()), _GLSZM_NAMES)


def gldm_features(levels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """GLDM features (PyRadiomics ``gldm``, alpha 0): dependence = equal-level neighbours + 1."""
    gray, index = _gray_index(levels, mask)
    dependence = np.ones(index.shape, dtype=np.int64)
    for offset in _neighbour_offsets(levels.shape):
        src, dst = _overlap(index.shape, offset)
        dependence[src] += (index[src] >= 0) & (index[src] == index[dst])
    counts, sizes = _size_matrix(index[mask], dependence[mask], len(gray))
    out = _emphasis_features(counts, gray, sizes, int(mask.sum()), _GLDM_NAMES)
    del out["GrayLevelNonUniformityNormalized"]  # not a GLDM feature in PyRadiomics
    return out


def ngtdm_features(levels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """NGTDM features (PyRadiomics ``ngtdm``): difference to the mean of ROI neighbours."""
    gray, index = _gray_index(levels, mask)
    value = np.where(mask, levels, 0).astype(np.float64)
    n_neigh = np.zeros(index.shape, dtype=np.int64)
    neigh_sum = np.zeros(index.shape, dtype=np.float64)
    for offset in _neighbour_offsets(levels.shape):
        src, dst = _overlap(index.shape, offset)
        n_neigh[src] += mask[dst]
        neigh_sum[src] += value[dst]
    valid = mask & (n_neigh > 0)
    diff = np.abs(value[valid] - neigh_sum[valid] / n_neigh[valid])
    n = np.bincount(index[valid], minlength=len(gray)).astype(np.float64)
    s = np.bincount(index[valid], weights=diff, minlength=len(gray))
    nvp = n.sum()
    keep = n > 0
    p, s, g = n[keep] / nvp, s[keep], gray[keep]
    ngp = len(p)
    dg = g[:, None] - g[None, :]
    ps = (p * s).sum()
    denom = np.abs(g[:, None] * p[:, None] - g[None, :] * p[None, :]).sum()
    pp = p[:, None] + p[None, :]
    return {
        "Coarseness": float(1 / ps) if ps != 0 else 1e6,
        "Contrast": float(
            (p[:, None] * p[None, :] * dg**2).sum() / (ngp * (ngp - 1)) * s.sum() / nvp
        )
        if ngp > 1
        else 0.0,
        "Busyness": float(ps / denom) if denom != 0 else 0.0,
        "Complexity": float(
            (np.abs(dg) * (p[:, None] * s[:, None] + p[None, :] * s[None, :]) / pp).sum() / nvp
        ),
        "Strength": float((pp * dg**2).sum() / s.sum()) if s.sum() != 0 else 0.0,
    }
