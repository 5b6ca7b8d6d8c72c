"""Multi-reader multi-case (MRMC) analysis: Obuchowski-Rockette, DBM and sample sizes.

Every reader reads every case in every modality (a fully crossed design); the figure of
merit (FOM) of each reader in each modality is the empirical (Wilcoxon) AUC of their
confidence ratings, or the sensitivity, specificity or accuracy of their calls at a
threshold. The Obuchowski-Rockette (OR) model treats the reader x modality FOMs as a
two-way ANOVA whose errors are correlated through the shared cases; the error covariance
(Var(Error), Cov1, Cov2, Cov3) comes from the jackknife over cases, as in OR-DBM MRMC, or
from DeLong's structural components for the AUC. The analyses reproduce OR-DBM MRMC 2.5's
output for the Van Dyke data to its printed digits (tests/stats/test_mrmc.py).

References
----------
Obuchowski N.A., Rockette H.E. (1995) Hypothesis testing of diagnostic accuracy for
multiple readers and multiple tests: an ANOVA approach with dependent observations.
Communications in Statistics - Simulation and Computation 24:285-308.
Dorfman D.D., Berbaum K.S., Metz C.E. (1992) Receiver operating characteristic rating
analysis: generalization to the population of readers and patients with the jackknife
method. Investigative Radiology 27:723-731.
Hillis S.L. (2007) A comparison of denominator degrees of freedom methods for multiple
observer ROC analysis. Statistics in Medicine 26:596-619.
Hillis S.L., Berbaum K.S., Metz C.E. (2008) Recent developments in the Dorfman-Berbaum-Metz
procedure for multireader ROC study analysis. Academic Radiology 15:647-661.
Hillis S.L., Obuchowski N.A., Berbaum K.S. (2011) Power estimation for multireader ROC
methods: an updated and unified approach. Academic Radiology 18:129-142.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy import stats

from her2viewer.errors import StudyError
from her2viewer.outputs import write_text_atomic
from her2viewer.stats.delong import structural_components
from her2viewer.stats.metrics import roc_curve
from her2viewer.tables import read_csv_rows, write_csv

__all__ = [
    "COLUMNS",
    "COVARIANCES",
    "FOMS",
    "MrmcError",
    "Ratings",
    "averaged_roc",
    "dbm",
    "figures_of_merit",
    "mrmc",
    "obuchowski_rockette",
    "power",
    "read_ratings",
    "sample_size",
    "write_imrmc",
    "write_long_csv",
]

#: Columns of the long ratings table (one row per reader, modality and case).
COLUMNS = ("reader", "modality", "case", "truth", "rating")
#: Figures of merit: the empirical AUC of the ratings, or proportions of calls at a threshold.
FOMS = ("auc", "sensitivity", "specificity", "accuracy")
#: Estimates of the error covariance of the FOMs.
COVARIANCES = ("jackknife", "delong")


class MrmcError(StudyError):
    """Ratings cannot be analysed as an MRMC study (design, columns, values, options)."""


@dataclass(frozen=True)
class Ratings:
    """A fully crossed MRMC data set: every reader rated every case in every modality.

    Attributes
    ----------
    modalities, readers, cases : tuple of str
        Names, in the order of the axes of ``values``.
    truth : numpy.ndarray
        ``(c,)`` booleans, True for a positive (abnormal) case.
    values : numpy.ndarray
        ``(t, r, c)`` ratings, higher meaning more likely positive.
    calls : numpy.ndarray or None
        ``(t, r, c)`` positive calls, when the readers gave them (a study's answers); the
        proportion FOMs use them unless a threshold is given.
    """

    modalities: tuple[str, ...]
    readers: tuple[str, ...]
    cases: tuple[str, ...]
    truth: np.ndarray
    values: np.ndarray
    calls: np.ndarray | None = field(default=None)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping], source: str) -> Ratings:
        """Build the data set from long rows (reader, modality, case, truth, rating).

        Raises
        ------
        MrmcError
            One sentence naming ``source`` for a bad value, a case with two truths, a
            duplicate rating, or a design that is not fully crossed (split-plot or partially
            paired designs are refused, naming the first missing reading).
        """
        table: dict[tuple[str, str, str], float] = {}
        truth: dict[str, bool] = {}
        for number, row in enumerate(rows, start=2):
            key = tuple(str(row[c] or "").strip() for c in ("modality", "reader", "case"))
            if not all(key):
                raise MrmcError(f"{source} line {number}: reader, modality and case must be given.")
            _set_truth(truth, key[2], row["truth"], f"{source} line {number}")
            if key in table:
                raise MrmcError(
                    f"{source} line {number}: reader {key[1]!r} rated case {key[2]!r} twice "
                    f"in modality {key[0]!r}."
                )
            table[key] = _rating(row["rating"], f"{source} line {number}")
        return cls.from_table(table, truth, source)

    @classmethod
    def from_table(
        cls,
        table: Mapping[tuple[str, str, str], float],
        truth: Mapping[str, bool],
        source: str,
        calls: Mapping[tuple[str, str, str], bool] | None = None,
    ) -> Ratings:
        """Build the data set from ``{(modality, reader, case): rating}`` and the truths."""
        modalities = tuple(dict.fromkeys(k[0] for k in table))
        readers = tuple(dict.fromkeys(k[1] for k in table))
        cases = tuple(dict.fromkeys(k[2] for k in table))
        _check_sizes(source, modalities, readers, [truth[c] for c in cases])
        shape = (len(modalities), len(readers), len(cases))
        values = np.empty(shape)
        for (i, mod), (j, reader), (k, case) in _grid(modalities, readers, cases):
            if (mod, reader, case) not in table:
                raise MrmcError(
                    f"{source}: reader {reader!r} has no rating of case {case!r} in modality "
                    f"{mod!r}; split-plot and partially paired designs are not supported, so "
                    "every reader must rate every case in every modality."
                )
            values[i, j, k] = table[(mod, reader, case)]
        called = None
        if calls is not None:
            called = np.array([calls[key] for key in _keys(modalities, readers, cases)])
            called = called.reshape(shape)
        return cls(modalities, readers, cases, np.array([truth[c] for c in cases]), values, called)


def _grid(modalities, readers, cases):
    for i in enumerate(modalities):
        for j in enumerate(readers):
            for k in enumerate(cases):
                yield i, j, k


def _keys(modalities, readers, cases):
    return [(m, r, c) for (_, m), (_, r), (_, c) in _grid(modalities, readers, cases)]


def _set_truth(truth: dict[str, bool], case: str, text: object, where: str) -> None:
    value = str(text).strip()
    if value not in ("0", "1"):
        raise MrmcError(f"{where}: truth must be 0 (negative) or 1 (positive), not {value!r}.")
    if truth.setdefault(case, value == "1") != (value == "1"):
        raise MrmcError(f"{where}: case {case!r} has two different truths.")


def _rating(text: object, where: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise MrmcError(f"{where}: the rating must be a finite number, not {text!r}.")
    return value


def _check_sizes(source: str, modalities, readers, truth: list[bool]) -> None:
    positives = sum(truth)
    if len(modalities) < 2 or len(readers) < 2:
        raise MrmcError(
            f"{source}: an MRMC analysis needs at least 2 modalities and 2 readers "
            f"(found {len(modalities)} modality(ies) and {len(readers)} reader(s))."
        )
    if positives < 2 or len(truth) - positives < 2:
        raise MrmcError(
            f"{source}: an MRMC analysis needs at least 2 positive and 2 negative cases "
            f"(found {positives} positive and {len(truth) - positives} negative)."
        )


def read_ratings(path: str | Path) -> Ratings:
    """Read a long ratings CSV with the columns of :data:`COLUMNS`.

    Raises
    ------
    MrmcError
        One sentence naming the file (see :meth:`Ratings.from_rows`).
    """
    path = Path(path)
    rows = read_csv_rows(path, COLUMNS, MrmcError, "Ratings file")
    return Ratings.from_rows(rows, path.name)


def _calls(data: Ratings, threshold: float | None, fom: str) -> np.ndarray:
    if threshold is not None:
        return data.values >= threshold
    if data.calls is None:
        raise MrmcError(
            f"the {fom} of confidence ratings needs --threshold (a rating at or above it "
            "is a positive call)."
        )
    return data.calls


def figures_of_merit(
    data: Ratings, fom: str = "auc", threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return each reader's FOM per modality and its leave-one-case-out values.

    The AUC's leave-one-out values come exactly from DeLong's structural components
    (deleting positive case ``i`` gives ``(m A - V10_i) / (m - 1)``), so no refit is needed.

    Parameters
    ----------
    data : Ratings
    fom : {"auc", "sensitivity", "specificity", "accuracy"}
    threshold : float, optional
        A rating at or above it is a positive call (the proportion FOMs only).

    Returns
    -------
    (fom, loo) : tuple of numpy.ndarray
        ``(t, r)`` FOMs and ``(t, r, c)`` FOMs with each case left out.
    """
    t, r, c = data.values.shape
    if fom == "auc":
        loo = np.empty((t, r, c))
        for i in range(t):
            for j in range(r):
                loo[i, j] = _auc_loo(data.truth, data.values[i, j])
        return loo.mean(axis=2), loo
    hits = _calls(data, threshold, fom) == data.truth
    counted = {"sensitivity": data.truth, "specificity": ~data.truth}.get(fom, np.ones(c, bool))
    total = hits[..., counted].sum(axis=2, keepdims=True)
    n = counted.sum()
    loo = np.where(counted, (total - hits) / (n - 1), total / n)
    return total[..., 0] / n, loo


def _auc_loo(truth: np.ndarray, score: np.ndarray) -> np.ndarray:
    comp = structural_components(truth, score)
    m, n = comp.v10.size, comp.v01.size
    loo = np.empty(truth.size)
    loo[truth] = (m * comp.auc - comp.v10) / (m - 1)
    loo[~truth] = (n * comp.auc - comp.v01) / (n - 1)
    return loo


def _covariance(data: Ratings, loo: np.ndarray, method: str) -> np.ndarray:
    """Return the ``(t*r, t*r)`` error covariance of the FOMs (modality-major order)."""
    t, r, c = loo.shape
    if method == "jackknife":
        d = (loo - loo.mean(axis=2, keepdims=True)).reshape(t * r, c)
        return (c - 1) / c * d @ d.T
    comps = [structural_components(data.truth, s) for s in data.values.reshape(t * r, c)]
    m, n = comps[0].v10.size, comps[0].v01.size
    return np.cov([x.v10 for x in comps]) / m + np.cov([x.v01 for x in comps]) / n


def _components(fom: np.ndarray, cov: np.ndarray) -> dict:
    """Obuchowski-Rockette mean squares, covariances and variance components."""
    t, r = fom.shape
    same_mod = np.kron(np.eye(t), np.ones((r, r))).astype(bool)
    same_reader = np.kron(np.ones((t, t)), np.eye(r)).astype(bool)
    diag = same_mod & same_reader
    var, cov1 = cov[diag].mean(), cov[same_reader & ~diag].mean()
    cov2, cov3 = cov[same_mod & ~diag].mean(), cov[~same_mod & ~same_reader].mean()
    mean_t, mean_r, grand = fom.mean(axis=1), fom.mean(axis=0), fom.mean()
    ms_t = r * ((mean_t - grand) ** 2).sum() / (t - 1)
    ms_r = t * ((mean_r - grand) ** 2).sum() / (r - 1)
    inter = fom - mean_t[:, None] - mean_r[None, :] + grand
    ms_tr = (inter**2).sum() / ((t - 1) * (r - 1))
    return {
        "ms_t": ms_t,
        "ms_r": ms_r,
        "ms_tr": ms_tr,
        "var_r": (ms_r - ms_tr) / t - cov1 + cov3,
        "var_tr": ms_tr - var + cov1 + cov2 - cov3,
        "cov1": cov1,
        "cov2": cov2,
        "cov3": cov3,
        "var_error": var,
        "corr1": cov1 / var if var > 0 else math.nan,
        "corr2": cov2 / var if var > 0 else math.nan,
        "corr3": cov3 / var if var > 0 else math.nan,
    }


def _interval(estimate: float, stderr: float, df: float | None, alpha: float) -> dict:
    """Two-sided interval of ``estimate`` (t with ``df``, normal when ``df`` is None)."""
    half = (stats.norm if df is None else stats.t(df)).ppf(1 - alpha / 2) * stderr
    return {"stderr": stderr, "df": df, "ci_low": estimate - half, "ci_high": estimate + half}


def _test(estimate: float, stderr: float, df: float | None) -> dict:
    """Two-sided test of ``estimate`` = 0: the t (or z when ``df`` is None) and its p-value."""
    if stderr <= 0:
        return {"statistic": math.nan, "p": math.nan}
    statistic = estimate / stderr
    dist = stats.norm if df is None else stats.t(df)
    return {"statistic": statistic, "p": float(2 * dist.sf(abs(statistic)))}


def _pairs(modalities, means, stderr: float, df: float | None, alpha: float) -> list[dict]:
    rows = []
    for (a, ma), (b, mb) in combinations(zip(modalities, means, strict=True), 2):
        d = ma - mb
        rows.append({"modalities": [a, b], "difference": d, **_interval(d, stderr, df, alpha)})
        rows[-1].update(_test(d, stderr, df))
    return rows


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is 0 (all readers alike)."""
    return float(numerator / denominator) if denominator > 0 else math.nan


def _hillis_df(numerator: float, ms: float, df: float) -> float:
    """Satterthwaite-type df of ``numerator`` built on a mean square ``ms`` with ``df``."""
    return math.inf if ms == 0 else numerator**2 / (ms**2 / df)


def _single(
    modalities, fom: np.ndarray, cov: np.ndarray, alpha: float, random_readers: bool, cases: bool
) -> list[dict]:
    """Per-modality mean FOM with its CI (Hillis et al. 2008 for random readers)."""
    t, r = fom.shape
    rows = []
    for i, name in enumerate(modalities):
        block = cov[i * r : (i + 1) * r, i * r : (i + 1) * r]
        var = float(np.diag(block).mean())
        cov2 = float(block[~np.eye(r, dtype=bool)].mean())
        ms_r = float(fom[i].var(ddof=1))
        if random_readers and cases:
            denominator = ms_r + r * max(cov2, 0.0)
            df = _hillis_df(denominator, ms_r, r - 1)
        elif random_readers:
            denominator, df = ms_r, float(r - 1)
        else:
            denominator, df = var + (r - 1) * max(cov2, 0.0), None
        mean = float(fom[i].mean())
        stderr = math.sqrt(denominator / r)
        rows.append({"modality": name, "fom": mean, **_interval(mean, stderr, df, alpha)})
    return rows


def obuchowski_rockette(
    modalities: Sequence[str], fom: np.ndarray, cov: np.ndarray, alpha: float = 0.05
) -> dict:
    """Obuchowski-Rockette analysis of reader x modality FOMs with their error covariance.

    Three generalisations: random readers and random cases (Hillis 2007 denominator df),
    fixed readers and random cases (chi-square), random readers and fixed cases (the
    reader x modality interaction alone). Differences between modalities use the pooled
    denominator of the global test, as OR-DBM MRMC does; negative ``Cov2 - Cov3`` and
    ``Cov2`` are set to 0 (Hillis 2007).

    Parameters
    ----------
    modalities : sequence of str
        Names of the rows of ``fom``.
    fom : numpy.ndarray
        ``(t, r)`` FOM of each reader in each modality.
    cov : numpy.ndarray
        ``(t*r, t*r)`` error covariance of the FOMs (modality-major).
    alpha : float
        1 - coverage of the intervals.

    Returns
    -------
    dict
        ``components`` (MS(T), MS(R), MS(T*R), Var(R), Var(T*R), Cov1-3, Var(Error) and the
        correlations), ``rrrc``, ``frrc`` and ``rrfc``, each with the global test, the
        ``differences`` per pair of modalities and the ``modalities``' own intervals.
    """
    t, r = fom.shape
    comp = _components(fom, cov)
    means = fom.mean(axis=1)
    excess = r * max(comp["cov2"] - comp["cov3"], 0.0)
    den = comp["ms_tr"] + excess
    df2 = _hillis_df(den, comp["ms_tr"], (t - 1) * (r - 1))
    rrrc = {"f": _ratio(comp["ms_t"], den), "df1": t - 1, "df2": df2}
    rrrc["p"] = float(stats.f.sf(rrrc["f"], t - 1, df2))
    fixed_den = comp["var_error"] - comp["cov1"] + excess * (r - 1) / r
    frrc = {"chi2": _ratio((t - 1) * comp["ms_t"], fixed_den), "df": t - 1}
    frrc["p"] = float(stats.chi2.sf(frrc["chi2"], t - 1))
    rrfc = {"f": _ratio(comp["ms_t"], comp["ms_tr"]), "df1": t - 1, "df2": (t - 1) * (r - 1)}
    rrfc["p"] = float(stats.f.sf(rrfc["f"], t - 1, (t - 1) * (r - 1)))
    rrrc["differences"] = _pairs(modalities, means, math.sqrt(2 * den / r), df2, alpha)
    frrc["differences"] = _pairs(modalities, means, math.sqrt(2 * fixed_den / r), None, alpha)
    rrfc["differences"] = _pairs(
        modalities, means, math.sqrt(2 * comp["ms_tr"] / r), rrfc["df2"], alpha
    )
    for name, block, readers_random, cases_random in (
        ("rrrc", rrrc, True, True),
        ("frrc", frrc, False, True),
        ("rrfc", rrfc, True, False),
    ):
        block["modalities"] = _single(modalities, fom, cov, alpha, readers_random, cases_random)
        block["analysis"] = name
    return {"components": comp, "rrrc": rrrc, "frrc": frrc, "rrfc": rrfc}


def _mean_squares(y: np.ndarray) -> dict:
    """Mean squares of a three-way (modality x reader x case) table with one value per cell."""
    t, r, c = y.shape
    g = y.mean()
    m_t, m_r, m_c = y.mean(axis=(1, 2)), y.mean(axis=(0, 2)), y.mean(axis=(0, 1))
    m_tr, m_tc, m_rc = y.mean(axis=2), y.mean(axis=1), y.mean(axis=0)
    tr = m_tr - m_t[:, None] - m_r[None, :] + g
    tc = m_tc - m_t[:, None] - m_c[None, :] + g
    rc = m_rc - m_r[:, None] - m_c[None, :] + g
    residual = (
        y - m_tr[:, :, None] - m_tc[:, None, :] - m_rc[None, :, :]
        + m_t[:, None, None] + m_r[None, :, None] + m_c[None, None, :] - g
    )  # fmt: skip
    return {
        "t": r * c * ((m_t - g) ** 2).sum() / (t - 1),
        "r": t * c * ((m_r - g) ** 2).sum() / (r - 1),
        "c": t * r * ((m_c - g) ** 2).sum() / (c - 1),
        "tr": c * (tr**2).sum() / ((t - 1) * (r - 1)),
        "tc": r * (tc**2).sum() / ((t - 1) * (c - 1)),
        "rc": t * (rc**2).sum() / ((r - 1) * (c - 1)),
        "trc": (residual**2).sum() / ((t - 1) * (r - 1) * (c - 1)),
    }


def dbm(pseudovalues: np.ndarray) -> dict:
    """Dorfman-Berbaum-Metz analysis of jackknife pseudovalues, with Hillis (2007) df.

    With jackknife pseudovalues of the FOM, DBM's random-readers random-cases F and
    denominator df equal Obuchowski-Rockette's (Hillis et al. 2008), so this is the
    cross-check of :func:`obuchowski_rockette`.

    Parameters
    ----------
    pseudovalues : numpy.ndarray
        ``(t, r, c)``: ``c * FOM - (c - 1) * FOM without case k``.

    Returns
    -------
    dict
        ``ms`` (the seven mean squares), ``variance`` (the DBM variance components) and
        the random-readers random-cases test ``f``, ``df1``, ``df2``, ``p``.
    """
    t, r, c = pseudovalues.shape
    ms = _mean_squares(pseudovalues)
    den = ms["tr"] + max(ms["tc"] - ms["trc"], 0.0)
    df2 = _hillis_df(den, ms["tr"], (t - 1) * (r - 1))
    f = _ratio(ms["t"], den)
    variance = {
        "r": (ms["r"] - ms["tr"] - ms["rc"] + ms["trc"]) / (t * c),
        "c": (ms["c"] - ms["tc"] - ms["rc"] + ms["trc"]) / (t * r),
        "tr": (ms["tr"] - ms["trc"]) / c,
        "tc": (ms["tc"] - ms["trc"]) / r,
        "rc": (ms["rc"] - ms["trc"]) / t,
        "error": ms["trc"],
    }
    p = float(stats.f.sf(f, t - 1, df2))
    return {"ms": ms, "variance": variance, "f": f, "df1": t - 1, "df2": df2, "p": p}


def mrmc(
    data: Ratings,
    fom: str = "auc",
    covariance: str = "jackknife",
    threshold: float | None = None,
    alpha: float = 0.05,
) -> dict:
    """Run the MRMC analyses of a data set: OR (three ways), DBM and the FOM table.

    Parameters
    ----------
    data : Ratings
    fom : {"auc", "sensitivity", "specificity", "accuracy"}
    covariance : {"jackknife", "delong"}
        DeLong's covariance exists for the AUC only.
    threshold : float, optional
        Positive-call threshold of the proportion FOMs.
    alpha : float
        1 - coverage of the intervals.

    Returns
    -------
    dict
        JSON-ready: ``design``, ``fom`` (reader -> modality -> value), ``modality_means``,
        ``components``, ``rrrc``, ``frrc``, ``rrfc`` and ``dbm``.
    """
    if fom not in FOMS:
        raise MrmcError(f"unknown figure of merit {fom!r}; choose one of {', '.join(FOMS)}.")
    if covariance == "delong" and fom != "auc":
        raise MrmcError("--covariance delong exists for --fom auc only; use jackknife.")
    values, loo = figures_of_merit(data, fom, threshold)
    cov = _covariance(data, loo, covariance)
    result = obuchowski_rockette(data.modalities, values, cov, alpha)
    c = len(data.cases)
    result["dbm"] = dbm(c * values[..., None] - (c - 1) * loo)
    result["design"] = {
        "modalities": list(data.modalities),
        "readers": list(data.readers),
        "cases": c,
        "positive": int(data.truth.sum()),
        "negative": int((~data.truth).sum()),
        "fom": fom,
        "threshold": threshold,
        "covariance": covariance,
        "alpha": alpha,
    }
    result["fom"] = {
        reader: {m: float(values[i, j]) for i, m in enumerate(data.modalities)}
        for j, reader in enumerate(data.readers)
    }
    result["modality_means"] = dict(zip(data.modalities, values.mean(axis=1).tolist(), strict=True))
    return _plain(result)


def _plain(value):
    """Return ``value`` with numpy numbers as floats and non-finite numbers as None (JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def averaged_roc(data: Ratings, points: int = 101) -> dict[str, dict]:
    """Vertically averaged empirical ROC curve of the readers of each modality.

    Returns
    -------
    dict
        Modality -> ``{"fpr": [...], "tpr": [...]}``: (0, 0), then the mean TPR at
        ``points`` equally spaced FPRs (the top of a vertical step at each).
    """
    grid = np.linspace(0.0, 1.0, points)
    curves = {}
    for i, name in enumerate(data.modalities):
        tprs = []
        for scores in data.values[i]:
            fpr, tpr, _ = roc_curve(data.truth, scores)
            tprs.append(np.interp(grid, fpr, tpr))
        curves[name] = {"fpr": [0.0, *grid], "tpr": [0.0, *np.mean(tprs, axis=0)]}
    return curves


def power(
    components: Mapping[str, float],
    pilot_cases: int,
    readers: int,
    cases: int,
    effect: float,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """Power of the random-readers random-cases test of two modalities (Hillis et al. 2011).

    The pilot's error covariances (Var(Error), Cov1, Cov2, Cov3) shrink in proportion to
    the number of cases; Var(T*R) does not depend on it (a negative estimate counts as 0).

    Parameters
    ----------
    components : mapping
        The pilot's OR ``components`` (see :func:`obuchowski_rockette`).
    pilot_cases : int
        Cases of the pilot study.
    readers, cases : int
        The planned study.
    effect : float
        Difference of the modalities' mean FOMs to detect.
    alpha : float
        Significance level.

    Returns
    -------
    (power, noncentrality, df2) : tuple of float
    """
    scale = pilot_cases / cases
    var_tr = max(components["var_tr"], 0.0)
    error = (components["var_error"] - components["cov1"]) * scale
    excess = max(components["cov2"] - components["cov3"], 0.0) * scale
    den = var_tr + error + (readers - 1) * excess
    if den <= 0:  # readers and cases all alike in the pilot: any difference is certain
        return 1.0, math.inf, math.inf
    lam = readers * effect**2 / (2 * den)
    df2 = _hillis_df(den, max(var_tr + error - excess, 0.0), readers - 1)
    critical = stats.f.ppf(1 - alpha, 1, df2)
    return float(stats.ncf.sf(critical, 1, df2, lam)), float(lam), float(df2)


def sample_size(
    components: Mapping[str, float],
    pilot_cases: int,
    effect: float,
    readers: Iterable[int],
    target: float = 0.8,
    alpha: float = 0.05,
    max_cases: int = 100_000,
) -> list[dict]:
    """Fewest cases giving ``target`` power for each number of readers (Hillis et al. 2011).

    Returns
    -------
    list of dict
        Per reader count: ``readers``, ``cases`` (None when even ``max_cases`` cases fall
        short: more readers are needed) and the ``power`` reached.
    """
    rows = []
    for r in readers:
        reach = power(components, pilot_cases, r, max_cases, effect, alpha)[0]
        if reach < target:
            rows.append({"readers": r, "cases": None, "power": reach})
            continue
        low, high = 1, max_cases  # power(low) < target <= power(high)
        while high - low > 1:
            middle = (low + high) // 2
            enough = power(components, pilot_cases, r, middle, effect, alpha)[0] >= target
            low, high = (low, middle) if enough else (middle, high)
        rows.append(
            {"readers": r, "cases": high,
             "power": power(components, pilot_cases, r, high, effect, alpha)[0]}
        )  # fmt: skip
    return rows


def _long_rows(data: Ratings) -> list[list]:
    return [
        [reader, mod, case, int(data.truth[k]), float(data.values[i, j, k])]
        for (i, mod), (j, reader), (k, case) in _grid(data.modalities, data.readers, data.cases)
    ]


def write_long_csv(data: Ratings, path: str | Path) -> Path:
    """Write the long table (reader, modality, case, truth, rating) read by MRMCaov and RJafroc."""
    return write_csv(path, COLUMNS, _long_rows(data))


def write_imrmc(data: Ratings, path: str | Path) -> Path:
    """Write iMRMC's input file: a header with the counts, then ``BEGIN DATA:`` and the rows.

    Truth rows have reader ``-1`` and modality ``0`` (score 0 or 1), then one row per
    reading: ``readerID,caseID,modalityID,score``. Cases are numbered 1..c in the order of
    ``data.cases`` (RJafroc's reader of .imrmc files needs integer case IDs).
    """
    for name in (*data.readers, *data.modalities):
        if "," in name or not name.isprintable():
            raise MrmcError(
                f"cannot write {Path(path).name}: the name {name!r} holds a comma or a control "
                "character, which iMRMC's comma-separated rows cannot carry."
            )
    lines = [
        "her2viewer MRMC export",
        f"NR: {len(data.readers)}",
        f"N0: {int((~data.truth).sum())}",
        f"N1: {int(data.truth.sum())}",
        f"NM: {len(data.modalities)}",
        "",
        "BEGIN DATA:",
    ]
    lines += [f"-1,{k + 1},0,{int(t)}" for k, t in enumerate(data.truth)]
    lines += [
        f"{reader},{k + 1},{mod},{data.values[i, j, k]:g}"
        for (i, mod), (j, reader), (k, _) in _grid(data.modalities, data.readers, data.cases)
    ]
    return write_text_atomic(path, "\n".join(lines) + "\n")
