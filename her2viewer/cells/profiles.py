"""Named parameter sets of the cell engine: how nuclei are found and how cells are classed.

Every length is in micrometres, so a 20x and a 40x scan of one section give the same cells.
A profile is a pydantic model: a saved profile (JSON) that is wrong is refused in one
sentence naming the file and the field.

The detection defaults start from QuPath's cell detection (background radius 8 um, nucleus
area 10-400 um^2, cell expansion 5 um) with three changes measured on two real Ki67 fields
with per-cell truth (DeepLIIF's Bladder1 and Lung1, 40x; benchmarks/bench_cells.py): a
Gaussian sigma of 1.0 um instead of 1.5 and a hematoxylin threshold of 0.15 instead of 0.1
(QuPath's values merge crowded nuclei over a tinted cytoplasm into blobs too big to keep:
F1 0.54 on the crowded field), and seeds at least 3.5 um apart (no nucleus centre is
closer to another; fewer elongated nuclei cut in two). The synthetic fields score the same.
The DAB thresholds follow QuPath's positive cell detection (0.2 / 0.4 / 0.6 OD for the
three intensity classes).

References
----------
Bankhead P. et al. (2017) QuPath: open source software for digital pathology image analysis.
Sci Rep 7:16878.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from her2viewer.errors import Her2ViewerError
from her2viewer.manifests import validated
from her2viewer.outputs import write_text_atomic

MARKERS = ("her2", "er", "pr", "ki67")


class ProfileError(Her2ViewerError):
    """A scoring profile file that cannot be used."""


class NucleusProfile(BaseModel):
    """How nuclei are detected on the hematoxylin channel and grown into cells."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    background_radius_um: float = Field(8.0, gt=0, le=100)
    smoothing_sigma_um: float = Field(1.0, ge=0, le=20)
    threshold_od: float = Field(0.15, gt=0, le=3)
    min_area_um2: float = Field(10.0, ge=0)
    max_area_um2: float = Field(400.0, gt=0)
    split_distance_um: float = Field(3.5, gt=0, le=50)
    min_circularity: float = Field(0.0, ge=0, le=1)
    cell_expansion_um: float = Field(5.0, ge=0, le=50)
    membrane_width_um: float = Field(1.0, gt=0, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> NucleusProfile:
        if self.min_area_um2 >= self.max_area_um2:
            raise ValueError("min_area_um2 must be smaller than max_area_um2")
        return self

    @property
    def max_diameter_um(self) -> float:
        """Diameter of the largest accepted nucleus, if it were round."""
        return 2.0 * (self.max_area_um2 / 3.141592653589793) ** 0.5


class Thresholds(BaseModel):
    """Three increasing DAB optical densities: weak (1+), moderate (2+), strong (3+)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weak: float = Field(0.2, gt=0, le=3)
    moderate: float = Field(0.4, gt=0, le=3)
    strong: float = Field(0.6, gt=0, le=3)

    @model_validator(mode="after")
    def _increasing(self) -> Thresholds:
        if not self.weak < self.moderate < self.strong:
            raise ValueError("thresholds must increase: weak < moderate < strong")
        return self


class ScoringProfile(BaseModel):
    """A lab's settings for one marker and antibody: detection plus classing thresholds.

    For HER2, ``thresholds`` apply to the membrane's DAB OD (faint, weak-moderate, strong)
    and a membrane is complete when at least ``complete_fraction`` of its circumference
    is stained; ``lateral_fraction`` is the gastric criterion (lateral or basolateral
    staining counts as complete). For ER, PR and Ki67 they apply to the nucleus' mean DAB.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    marker: Literal["her2", "er", "pr", "ki67"]
    antibody: str = ""
    nucleus: NucleusProfile = NucleusProfile()
    thresholds: Thresholds = Thresholds()
    complete_fraction: float = Field(0.9, gt=0, le=1)
    lateral_fraction: float = Field(0.5, gt=0, le=1)
    stained_fraction: float = Field(0.1, gt=0, le=1)


def _her2(name: str, antibody: str, **thresholds) -> ScoringProfile:
    return ScoringProfile(
        name=name, marker="her2", antibody=antibody, thresholds=Thresholds(**thresholds)
    )


#: Built-in starting points per antibody; labs calibrate and save their own.
BUILT_IN = {
    profile.name: profile
    for profile in (
        _her2("her2-4b5", "Ventana 4B5", weak=0.12, moderate=0.3, strong=0.6),
        _her2("her2-herceptest", "Dako HercepTest", weak=0.12, moderate=0.3, strong=0.6),
        ScoringProfile(name="er-sp1", marker="er", antibody="Ventana SP1"),
        ScoringProfile(name="pr-1e2", marker="pr", antibody="Ventana 1E2"),
        ScoringProfile(name="ki67-30-9", marker="ki67", antibody="Ventana 30-9"),
        ScoringProfile(name="ki67-mib1", marker="ki67", antibody="Dako MIB-1"),
    )
}

#: The profile used for a marker when none is named.
DEFAULT_FOR_MARKER = {"her2": "her2-4b5", "er": "er-sp1", "pr": "pr-1e2", "ki67": "ki67-30-9"}


def load_profile(name_or_path: str | Path | None, marker: str) -> ScoringProfile:
    """Return a built-in profile by name, or read a saved one from a JSON file.

    Raises
    ------
    ProfileError
        In one sentence: unknown name, unreadable file, bad field, or a profile for
        another marker.
    """
    if name_or_path is None:
        return BUILT_IN[DEFAULT_FOR_MARKER[marker]]
    if str(name_or_path) in BUILT_IN:
        profile = BUILT_IN[str(name_or_path)]
    else:
        profile = _read_profile(Path(name_or_path))
    if profile.marker != marker:
        raise ProfileError(
            f"Scoring profile {profile.name!r} is for {profile.marker}, not {marker}."
        )
    return profile


def _read_profile(path: Path) -> ScoringProfile:
    if not path.is_file():
        names = ", ".join(BUILT_IN)
        raise ProfileError(f"No scoring profile {str(path)!r}: give a JSON file or one of {names}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"Scoring profile {path.name} is not readable JSON ({exc}).") from exc
    return validated(ScoringProfile, data, path, "the scoring profile", ProfileError)


def save_profile(profile: ScoringProfile, path: str | Path) -> Path:
    """Write a profile as JSON (atomically), to be read back by :func:`load_profile`."""
    return write_text_atomic(path, profile.model_dump_json(indent=2) + "\n")
