"""Guideline rule tables: from counted tumor cells to the category a pathologist reports.

Each function takes counts of invasive tumor cells per class (the cell engine measures and
classes the cells) and returns the category with the percentages it was decided on, the
guideline sentence that decided it and the citation. Percent thresholds are compared on the
integer counts (``10 * n > total`` for "> 10 %"), so a boundary such as exactly 10 % falls
on the side the guideline's wording puts it, free of floating-point rounding.

References
----------
Wolff A.C. et al. (2018) Human epidermal growth factor receptor 2 testing in breast cancer:
ASCO/CAP clinical practice guideline focused update. J Clin Oncol 36:2105-2122 (affirmed by
the 2023 update, Wolff et al., J Clin Oncol 41:3867-3872, which asks that IHC 0 with
membrane staining be told apart from IHC 0 without: HER2-ultralow vs HER2-null).
Hofmann M. et al. (2008) Assessment of a HER2 scoring system for gastric cancer.
Histopathology 52:797-805; Bartley A.N. et al. (2016) HER2 testing and clinical decision
making in gastroesophageal adenocarcinoma: CAP/ASCP/ASCO guideline. Am J Clin Pathol 146:647.
Allison K.H. et al. (2020) Estrogen and progesterone receptor testing in breast cancer:
ASCO/CAP guideline update. J Clin Oncol 38:1346-1366.
Allred D.C. et al. (1998) Prognostic and predictive factors in breast cancer by
immunohistochemical analysis. Mod Pathol 11:155-168.
Nielsen T.O. et al. (2021) Assessment of Ki67 in breast cancer: updated recommendations from
the International Ki67 in Breast Cancer Working Group. J Natl Cancer Inst 113:808-819.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from her2viewer.errors import Her2ViewerError

#: Per-cell HER2 membrane classes, weakest first (the engine assigns one to every cell).
MEMBRANE_CLASSES = ("0", "faint incomplete", "weak-moderate complete", "strong complete")

HER2_BREAST_CITATION = "ASCO/CAP 2018 (Wolff et al., J Clin Oncol 2018), affirmed 2023"
HER2_GASTRIC_CITATION = "Hofmann et al. 2008; CAP/ASCP/ASCO 2016 (Bartley et al.)"
ER_PR_CITATION = "ASCO/CAP 2020 (Allison et al., J Clin Oncol 2020); Allred et al. 1998"
KI67_CITATION = "International Ki67 in Breast Cancer Working Group 2021 (Nielsen et al.)"

#: Cells in a cluster that a gastric biopsy's category needs (Hofmann 2008: ">= 5 cells").
GASTRIC_BIOPSY_CLUSTER = 5


class RuleError(Her2ViewerError):
    """Counts that no guideline rule can be applied to."""


@dataclass(frozen=True)
class Decision:
    """The category of a case and why.

    Attributes
    ----------
    category : str
        What the report says (``"0"``, ``"1+"``, ``"2+"``, ``"3+"``, ``"positive"``, ...).
    label : str
        The clinical label beside it (``"HER2-low"``, ``"ER-low positive"``, ...).
    rule : str
        The guideline sentence that decided it.
    citation : str
        The guideline.
    percentages : dict
        The percentages the rule read, by name.
    figures : dict
        Other figures the guideline reports (H-score, Allred score, reflex test, notes).
    """

    category: str
    label: str
    rule: str
    citation: str
    percentages: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Return the decision as a JSON-ready dict."""
        return asdict(self)


def _check_counts(total: int, parts: dict[str, int]) -> None:
    if total < 0 or any(n < 0 for n in parts.values()):
        raise RuleError("Cell counts cannot be negative.")
    if sum(parts.values()) > total:
        raise RuleError(
            f"The classed cells ({sum(parts.values())}) outnumber the tumor cells ({total})."
        )


def _percent(n: int, total: int) -> float:
    return 100.0 * n / total if total else 0.0


def _over(n: int, total: int, percent: int) -> bool:
    """``n`` is more than ``percent`` % of ``total`` (exact integer comparison)."""
    return 100 * n > percent * total


def _at_least(n: int, total: int, percent: int) -> bool:
    """``n`` is at least ``percent`` % of ``total`` (exact integer comparison)."""
    return 100 * n >= percent * total


def _not_evaluable(citation: str) -> Decision:
    return Decision(
        "not evaluable", "no invasive tumor cells", "no tumor cells were counted", citation
    )


# -- HER2, breast -----------------------------------------------------------------------------


def her2_breast(faint: int, weak_moderate: int, strong: int, total: int) -> Decision:
    """HER2 IHC category of a breast cancer from per-cell membrane classes.

    The classes are cumulative as the guideline reads them: a cell with strong complete
    staining is also stained, and complete. ``faint`` counts faint/barely perceptible
    incomplete membranes, ``weak_moderate`` weak to moderate complete ones, ``strong``
    intense complete ones.

    Parameters
    ----------
    faint, weak_moderate, strong : int
        Tumor cells in each membrane class.
    total : int
        Invasive tumor cells counted (unstained ones included).

    Returns
    -------
    Decision
        ``category`` 0 / 1+ / 2+ / 3+; ``label`` HER2-null, HER2-ultralow, HER2-low
        (1+, or 2+ pending ISH), HER2-equivocal or HER2-positive; ``figures`` says whether
        reflex ISH is required.
    """
    _check_counts(total, {"faint": faint, "weak_moderate": weak_moderate, "strong": strong})
    if total == 0:
        return _not_evaluable(HER2_BREAST_CITATION)
    complete = weak_moderate + strong
    stained = faint + complete
    percentages = {
        "strong_complete": _percent(strong, total),
        "weak_moderate_complete": _percent(weak_moderate, total),
        "faint_incomplete": _percent(faint, total),
        "complete_any": _percent(complete, total),
        "stained_any": _percent(stained, total),
    }
    counts = _Her2Counts(faint, complete, strong, total)
    row = next(row for row in HER2_BREAST_TABLE if row.applies(counts))
    figures = {"reflex_ish": row.category == "2+"}
    if row.note:
        figures["note"] = row.note
    return Decision(
        row.category, row.label, row.wording, HER2_BREAST_CITATION, percentages, figures
    )


@dataclass(frozen=True)
class _Row:
    """One row of a rule table: the first row whose test passes decides."""

    category: str
    label: str
    applies: Callable[[_Her2Counts], bool]
    wording: str
    note: str = ""


@dataclass(frozen=True)
class _Her2Counts:
    faint: int
    complete: int
    strong: int
    total: int

    @property
    def stained(self) -> int:
        return self.faint + self.complete


_EQUIVOCAL = "HER2-equivocal (HER2-low if ISH is not amplified)"

#: ASCO/CAP 2018 Figure 1, read from the top; the 2023 update splits IHC 0 in two.
HER2_BREAST_TABLE = (
    _Row("3+", "HER2-positive", lambda c: _over(c.strong, c.total, 10),
         "Circumferential membrane staining that is complete, intense and in >10% of tumor cells"),
    _Row("2+", _EQUIVOCAL, lambda c: _over(c.complete, c.total, 10),
         "Weak to moderate complete membrane staining in >10% of tumor cells",
         "Reflex ISH on the same specimen is required."),
    _Row("2+", _EQUIVOCAL, lambda c: c.strong > 0,
         "Intense complete membrane staining in <=10% of tumor cells",
         "An unusual pattern the guideline asks to consider 2+ equivocal; reflex ISH."),
    _Row("1+", "HER2-low", lambda c: _over(c.stained, c.total, 10),
         "Incomplete membrane staining that is faint/barely perceptible in >10% of tumor cells"),
    _Row("0", "HER2-ultralow", lambda c: c.stained > 0,
         "Membrane staining that is incomplete and faint/barely perceptible in >0% and <=10% "
         "of tumor cells (IHC 0 with membrane staining)"),
    _Row("0", "HER2-null", lambda c: True,
         "No staining is observed (IHC 0 without membrane staining)"),
)  # fmt: skip


# -- HER2, gastric and gastroesophageal ----------------------------------------------------------


def her2_gastric(
    faint: int,
    weak_moderate: int,
    strong: int,
    total: int,
    specimen: str = "resection",
    largest_clusters: dict[str, int] | None = None,
) -> Decision:
    """HER2 IHC category of a gastric or gastroesophageal adenocarcinoma.

    Complete, basolateral or lateral membranes count as one (the engine classes a cell
    as "complete" when its lateral/basolateral membrane is stained). A resection uses the
    ">= 10 % of tumor cells" rules; a biopsy the cluster rule: a cluster of at least five
    cells of the class, whatever the percentage.

    Parameters
    ----------
    faint, weak_moderate, strong, total : int
        As in :func:`her2_breast`.
    specimen : {"resection", "biopsy"}
        Which table of Hofmann et al. (2008) applies.
    largest_clusters : dict, optional
        For a biopsy, the largest cluster of touching tumor cells stained at least
        ``"faint"``, ``"weak_moderate"`` and ``"strong"``.

    Returns
    -------
    Decision
    """
    _check_counts(total, {"faint": faint, "weak_moderate": weak_moderate, "strong": strong})
    if specimen not in ("resection", "biopsy"):
        raise RuleError(f"Unknown gastric specimen {specimen!r}; choose resection or biopsy.")
    if total == 0:
        return _not_evaluable(HER2_GASTRIC_CITATION)
    complete = weak_moderate + strong
    stained = faint + complete
    percentages = {
        "strong_complete": _percent(strong, total),
        "complete_any": _percent(complete, total),
        "stained_any": _percent(stained, total),
    }
    if specimen == "biopsy":
        clusters = largest_clusters or {}
        sizes = [clusters.get(name, 0) for name in ("strong", "weak_moderate", "faint")]
        passed = [size >= GASTRIC_BIOPSY_CLUSTER for size in sizes]
        words = (
            "a cluster of >=5 tumor cells with {} membranous reactivity, whatever the percentage"
        )
    else:
        passed = [_at_least(n, total, 10) for n in (strong, complete, stained)]
        words = "{} membranous reactivity in >=10% of tumor cells"
    kinds = ("strong complete, basolateral or lateral", "weak to moderate complete, basolateral "
             "or lateral", "faint/barely perceptible")  # fmt: skip
    for category, label, ok, kind in zip(
        ("3+", "2+", "1+"),
        ("HER2-positive", "HER2-equivocal", "HER2-negative"),
        passed,
        kinds,
        strict=True,
    ):
        if ok:
            figures = {"reflex_ish": category == "2+", "specimen": specimen}
            return Decision(
                category, label, words.format(kind).capitalize(), HER2_GASTRIC_CITATION,
                percentages, figures,
            )  # fmt: skip
    rule = (
        "No tumor cell cluster of >=5 cells with membranous reactivity"
        if specimen == "biopsy"
        else "No reactivity or membranous reactivity in <10% of tumor cells"
    )
    figures = {"reflex_ish": False, "specimen": specimen}
    return Decision("0", "HER2-negative", rule, HER2_GASTRIC_CITATION, percentages, figures)


# -- ER and PR ----------------------------------------------------------------------------------


def allred_proportion_score(positive: int, total: int) -> int:
    """Allred proportion score 0-5 (none, <1 %, 1-10 %, >10-33 %, >33-67 %, >67 %).

    Boundaries follow Allred et al. (1998): 1/100 and 1/10 belong to score 2, 1/3 to 3,
    2/3 to 4.
    """
    if positive == 0:
        return 0
    if 100 * positive < total:
        return 1
    if 10 * positive <= total:
        return 2
    if 3 * positive <= total:
        return 3
    if 3 * positive <= 2 * total:
        return 4
    return 5


def allred_intensity_score(weak: int, moderate: int, strong: int) -> int:
    """Allred intensity score 0-3: the average intensity of the positive cells, rounded."""
    positive = weak + moderate + strong
    if positive == 0:
        return 0
    mean = (weak + 2 * moderate + 3 * strong) / positive
    return int(mean + 0.5)


def er_pr(marker: str, weak: int, moderate: int, strong: int, total: int) -> Decision:
    """ER or PR status from nuclear staining of invasive tumor cells (ASCO/CAP 2020).

    Positive when at least 1 % of tumor nuclei stain at any intensity; for ER, 1-10 % is
    reported as "ER-low positive". The H-score (0-300) and the Allred score (0, 2-8) are
    reported beside it.

    Parameters
    ----------
    marker : {"er", "pr"}
    weak, moderate, strong : int
        Tumor nuclei stained at each intensity.
    total : int
        Tumor nuclei counted.

    Returns
    -------
    Decision
    """
    if marker not in ("er", "pr"):
        raise RuleError(f"Unknown nuclear marker {marker!r}; choose er or pr.")
    _check_counts(total, {"weak": weak, "moderate": moderate, "strong": strong})
    if total == 0:
        return _not_evaluable(ER_PR_CITATION)
    positive = weak + moderate + strong
    name = marker.upper()
    percentages = {
        "positive": _percent(positive, total),
        "weak": _percent(weak, total),
        "moderate": _percent(moderate, total),
        "strong": _percent(strong, total),
    }
    proportion, intensity = allred_proportion_score(positive, total), 0
    if positive:
        intensity = allred_intensity_score(weak, moderate, strong)
    figures = {
        "h_score": (weak + 2 * moderate + 3 * strong) * 100 / total,
        "allred": {
            "proportion": proportion,
            "intensity": intensity,
            "total": proportion + intensity,
        },
    }
    if not _at_least(positive, total, 1):
        rule = "<1% of tumor cell nuclei are immunoreactive"
        return Decision("negative", f"{name}-negative", rule, ER_PR_CITATION, percentages, figures)
    if marker == "er" and not _over(positive, total, 10):
        rule = "1% to 10% of tumor cell nuclei are immunoreactive"
        figures["note"] = (
            "ER-low positive: limited data on endocrine benefit; report with a comment."
        )
        return Decision(
            "low positive", "ER-low positive", rule, ER_PR_CITATION, percentages, figures
        )
    rule = ">10% of tumor cell nuclei are immunoreactive" if marker == "er" else (
        ">=1% of tumor cell nuclei are immunoreactive"
    )  # fmt: skip
    return Decision("positive", f"{name}-positive", rule, ER_PR_CITATION, percentages, figures)


# -- Ki67 ------------------------------------------------------------------------------------------


def ki67(positive: int, total: int, method: str = "global") -> Decision:
    """Ki67 index of invasive tumor cells and the IKWG 2021 reading of it.

    The IKWG recommends the global method (the index over the whole invasive tumor, or
    evenly spread fields) and regards an index of <= 5 % or >= 30 % as informative for
    prognosis in ER+/HER2- T1-2 N0-1 disease; values between are uncertain.

    Parameters
    ----------
    positive, total : int
        Positive tumor nuclei and all tumor nuclei counted.
    method : {"global", "hot spot"}
        How the cells were chosen (reported as given).

    Returns
    -------
    Decision
    """
    _check_counts(total, {"positive": positive})
    if method not in ("global", "hot spot"):
        raise RuleError(f"Unknown Ki67 method {method!r}; choose global or hot spot.")
    if total == 0:
        return _not_evaluable(KI67_CITATION)
    index = _percent(positive, total)
    figures = {"index": index, "method": method, "n_counted": total}
    percentages = {"positive": index}
    if 100 * positive <= 5 * total:
        return Decision("low", "Ki67 <=5%", "Ki67 <=5%: low (IKWG 2021)", KI67_CITATION,
                        percentages, figures)  # fmt: skip
    if 100 * positive >= 30 * total:
        return Decision("high", "Ki67 >=30%", "Ki67 >=30%: high (IKWG 2021)", KI67_CITATION,
                        percentages, figures)  # fmt: skip
    figures["note"] = "Between 5% and 30% the IKWG finds the index not reliable for decisions."
    return Decision("intermediate", "Ki67 6-29%", "Ki67 >5% and <30%: uncertain (IKWG 2021)",
                    KI67_CITATION, percentages, figures)  # fmt: skip
