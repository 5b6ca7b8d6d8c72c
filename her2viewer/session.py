"""Sessions: what the viewer showed, saved when it closes and restored on the next start.

A :class:`Session` holds the open slides (one per pane, left to right), each pane's view
(centre, downsample, rotation, flip), display settings (levels per channel, stain view
and its vectors, the slide's image type and a pixel size the user gave it) and sync
toggle, the GeoJSON files drawn on it, the layers' visibility and opacity by name, the
registration linking pane 2 to pane 1, and the analyses whose results were shown (each
saved to its own file beside the session, reloaded with its result class's ``load()``,
never recomputed). It is plain data (Qt-free), checked by pydantic when read; a damaged
file is one sentence. Display settings that do not validate are dropped on reading, one
sentence each in :attr:`Session.notices` (the pane then opens with the defaults), and
version 1 files, which have none, still load.

Where it lives: :func:`session_path` (``paths.data_dir()/sessions/last.json``; a project
folder's ``session.json`` once projects exist).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from her2viewer.errors import Her2ViewerError
from her2viewer.manifests import validated, validation_sentence
from her2viewer.outputs import write_text_atomic
from her2viewer.overlay.display import STAINS, DisplaySettings, Levels
from her2viewer.paths import data_dir
from her2viewer.slide.settings import IMAGE_TYPES, MPP_RANGE

#: Version of the session file written (2: panes' display settings).
SESSION_VERSION = 2
#: Suffix of the folder holding a session's analysis results, beside the session file.
RESULTS_SUFFIX = "-results"


class SessionError(Her2ViewerError):
    """A session file that cannot be read (one sentence naming it)."""


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Finite = Annotated[float, AfterValidator(_finite)]


class ViewModel(BaseModel):
    """A pane's view: centre (level-0 px), downsample, rotation (radians), mirror flip."""

    cx: Finite
    cy: Finite
    downsample: Finite = Field(gt=0)
    angle: Finite = 0.0
    flip: bool = False


class LayerModel(BaseModel):
    """How a layer was shown, found again by its name."""

    name: str
    visible: bool = True
    opacity: float = Field(default=1.0, ge=0.0, le=1.0)


def _invertible_3x3(rows: list[list[float]]) -> bool:
    """Whether ``rows`` is a 3x3 matrix a stain view can invert."""
    if len(rows) != 3 or any(len(row) != 3 for row in rows):
        return False
    try:
        np.linalg.inv(np.array(rows))
    except np.linalg.LinAlgError:
        return False
    return True


class LevelsModel(BaseModel):
    """One channel's display range (:class:`~her2viewer.overlay.display.Levels`)."""

    black: Finite = 0.0
    white: Finite = 255.0
    gamma: Finite = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _range(self) -> LevelsModel:
        if self.white <= self.black:
            raise ValueError("white must be above black")
        return self


class DisplayModel(BaseModel):
    """How a pane drew its slide: levels (red, green, blue), the stain shown alone with the
    stain matrix it was deconvolved with and grey, the slide's image type and the pixel
    size the user gave a file that records none."""

    levels: list[LevelsModel] = Field(
        default_factory=lambda: [LevelsModel()] * 3, min_length=3, max_length=3
    )
    stain: str | None = None
    matrix: list[list[Finite]] | None = None
    grey: bool = False
    image_type: str | None = None
    mpp: float | None = Field(default=None, ge=MPP_RANGE[0], le=MPP_RANGE[1])

    @field_validator("image_type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value not in IMAGE_TYPES:
            raise ValueError(f"must be one of {', '.join(IMAGE_TYPES)}")
        return value

    @field_validator("matrix")
    @classmethod
    def _invertible(cls, value):
        if value is not None and not _invertible_3x3(value):
            raise ValueError("must be an invertible 3x3 stain matrix")
        return value

    @model_validator(mode="after")
    def _stain_of_type(self) -> DisplayModel:
        if self.stain is None:
            return self
        if self.stain not in STAINS.get(self.image_type, {}):
            raise ValueError(f"stain {self.stain!r} is not a stain of image type {self.image_type}")
        if self.matrix is None:
            raise ValueError(f"the {self.stain} view needs its stain matrix")
        return self

    @classmethod
    def of(
        cls, settings: DisplaySettings, image_type: str | None = None, mpp: float | None = None
    ) -> DisplayModel:
        """The model of a pane's ``settings``, its slide's ``image_type`` and user pixel size."""
        return cls(
            levels=[
                LevelsModel(black=x.black, white=x.white, gamma=x.gamma) for x in settings.levels
            ],
            stain=settings.stain,
            matrix=None if settings.matrix is None else [list(row) for row in settings.matrix],
            grey=settings.grey,
            image_type=image_type,
            mpp=mpp,
        )

    def settings(self) -> DisplaySettings:
        """The :class:`~her2viewer.overlay.display.DisplaySettings` a pane draws with."""
        return DisplaySettings(
            levels=tuple(Levels(x.black, x.white, x.gamma) for x in self.levels),
            stain=self.stain,
            matrix=None if self.matrix is None else tuple(tuple(row) for row in self.matrix),
            grey=self.grey,
        )


class PaneModel(BaseModel):
    """One pane: its slide, view, display settings, sync toggle, the GeoJSON files drawn on
    it as layers (bottom to top) and layer settings."""

    slide: str
    view: ViewModel | None = None
    display: DisplayModel | None = None
    sync: bool = True
    geojson: list[str] = []
    layers: list[LayerModel] = []


class AnalysisModel(BaseModel):
    """An analysis result shown: its panel (the dock's title), the panes it belongs to (the
    analysed one first) and its saved file (a name in the session's results folder)."""

    panel: str
    panes: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    file: str

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if Path(value).name != value or value in ("", ".", ".."):
            raise ValueError("must be a file name in the session's results folder")
        return value


class Session(BaseModel):
    """Everything restored on the next start (see the module's docstring)."""

    version: int = SESSION_VERSION
    panes: list[PaneModel] = []
    registration: list[list[float]] | None = None
    analyses: list[AnalysisModel] = []
    #: What reading dropped (a pane's unusable display settings), one sentence each; not saved.
    notices: list[str] = Field(default=[], exclude=True)

    @field_validator("registration")
    @classmethod
    def _matrix(cls, value):
        if value is not None and (
            len(value) != 3
            or any(len(row) != 3 for row in value)
            or not all(math.isfinite(v) for row in value for v in row)
        ):
            raise ValueError("must be a 3x3 matrix of finite numbers")
        return value

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SESSION_VERSION:
            raise ValueError(f"this her2viewer reads session versions up to {SESSION_VERSION}")
        return value


def session_path(project: str | Path | None = None) -> Path:
    """Where the session is kept: the user's last session, or a project folder's own
    (``<project>/session.json``: the seam for projects)."""
    if project is not None:
        return Path(project) / "session.json"
    return data_dir() / "sessions" / "last.json"


def results_dir(path: str | Path) -> Path:
    """The folder of a session's analysis results (``last-results`` beside ``last.json``)."""
    path = Path(path)
    return path.with_name(path.stem + RESULTS_SUFFIX)


def result_name(panel: str, pane: int) -> str:
    """The name of the saved result of analysis ``panel`` on pane ``pane``: no suffix, as
    each result's ``save()`` writes its own format (one ``.npz``, a JSON or a folder)."""
    slug = re.sub(r"[^a-z0-9]+", "-", panel.lower()).strip("-") or "analysis"
    return f"{slug}-pane{pane}"


def save_session(session: Session, path: str | Path) -> Path:
    """Write ``session`` to ``path`` atomically and delete saved results it no longer names.

    Raises
    ------
    OutputError
        One sentence naming the file when it cannot be written (the old one stays).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, session.model_dump_json(indent=2) + "\n")
    kept = {analysis.file for analysis in session.analyses}
    folder = results_dir(path)
    if folder.is_dir():
        for stale in folder.iterdir():
            if stale.name in kept:
                continue
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
    return path


def load_session(path: str | Path) -> Session | None:
    """The session saved at ``path``; None when there is none.

    Raises
    ------
    SessionError
        One sentence naming the file when it is not a session this version reads.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionError(f"{path}: the saved session cannot be read ({exc}).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SessionError(
            f"{path}: the saved session is not valid JSON (line {exc.lineno})."
        ) from None
    notices = _drop_bad_displays(data, path)
    session = validated(Session, data, path, "the saved session", SessionError)
    session.notices = notices
    return session


def _drop_bad_displays(data, path: Path) -> list[str]:
    """Remove from the parsed ``data`` the panes' display settings that do not validate
    (those panes open with the defaults); one sentence for each."""
    panes = data.get("panes") if isinstance(data, dict) else None
    notices = []
    for index, pane in enumerate(panes if isinstance(panes, list) else []):
        if not isinstance(pane, dict) or pane.get("display") is None:
            continue
        try:
            DisplayModel.model_validate(pane["display"])
        except ValidationError as exc:
            what = f"pane {index + 1}'s display"
            sentence = validation_sentence(path, what, exc).removesuffix(".")
            notices.append(f"{sentence}; the defaults are used.")
            del pane["display"]
    return notices
