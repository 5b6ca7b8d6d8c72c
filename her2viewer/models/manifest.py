"""The schema of ``bundle.json``: what every bundle and each model kind must state.

:func:`validate_manifest` checks a manifest with pydantic models and returns it with
the checked fields in their proper types; anything wrong is one :class:`ModelError`
sentence naming the file and the field. Fields a kind does not check are kept as
they are (provenance, metrics, notes). Optional fields that are absent stay absent,
so the model's own defaults apply; an explicit ``null`` is refused except where it
means "not known".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from her2viewer.errors import ModelError
from her2viewer.manifests import validated

#: The newest ``bundle.json`` schema this version reads.
SCHEMA_VERSION = 1
#: The largest layer width or feature size a manifest may declare (bigger is a typo or an attack).
MAX_DIM = 16384
#: The largest patch or tile side in pixels.
MAX_SIDE = 16384

Side = Annotated[StrictInt, Field(ge=16, le=MAX_SIDE)]
Dim = Annotated[StrictInt, Field(ge=1, le=MAX_DIM)]
Power = Annotated[float, Field(gt=0, le=400)]


class _Checked(BaseModel):
    """Finite numbers only; fields not named here are kept unchecked."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=False)


class Accepts(_Checked):
    """The slides a bundle is made for."""

    stain: Literal["H&E", "HER2 IHC"]
    magnification: tuple[Power, Power]
    pixel_size_required: StrictBool = False

    @model_validator(mode="after")
    def _ordered(self) -> Accepts:
        if self.magnification[0] > self.magnification[1]:
            raise ValueError("the magnification range must be [lowest, highest]")
        return self


class EncoderProvenance(_Checked):
    """Where an encoder's weights come from (``"random"`` ones from ``seed``)."""

    weights: str = None
    seed: StrictInt = None


class Encoder(_Checked):
    """The encoder that made a model's features."""

    name: Annotated[str, Field(min_length=1)]
    dim: Dim = None
    input_size: Side | None = None  # null: the legacy 256 px resnet50_trunc input
    provenance: EncoderProvenance = None


class Common(_Checked):
    """Fields every bundle has or may have."""

    schema_version: Annotated[StrictInt, Field(ge=1)]
    model_kind: Annotated[str, Field(min_length=1)]
    synthetic: StrictBool = False
    accepts: Accepts = None  # absent: no scope check
    magnification: Power | None = None  # null: not known (e.g. features of any slide)
    patch_size: Side | None = None
    encoder: Encoder = None


class ClamArchitecture(_Checked):
    """``config`` of a CLAM bundle (:class:`~her2viewer.models.clam.ClamConfig`)."""

    model_type: Literal["clam_sb", "clam_mb"]
    n_classes: Annotated[StrictInt, Field(ge=2, le=1000)]
    embed_dim: Dim
    hidden_dim: Dim
    attention_dim: Dim
    gated: StrictBool = None
    dropout: Annotated[float, Field(ge=0, lt=1)] = None
    k_sample: Annotated[StrictInt, Field(ge=1, le=MAX_DIM)] = None
    subtyping: StrictBool = None
    standardize: StrictBool = None


class Clam(Common):
    """A CLAM bundle."""

    config: ClamArchitecture
    class_names: list[str] = None

    @model_validator(mode="after")
    def _one_name_per_class(self) -> Clam:
        if self.class_names is not None and len(self.class_names) != self.config.n_classes:
            raise ValueError("class_names must name each of config.n_classes classes")
        return self


class PatchCnn(Common):
    """A patch-grading CNN bundle."""

    arch: Annotated[str, Field(min_length=1)]
    classes: Annotated[list[str], Field(min_length=2, max_length=100)]
    input_size: Side | None = None  # null: patches go in at their own size


class Network(_Checked):
    """A HER2Net network config (segmenter or tile classifier)."""

    arch: Annotated[str, Field(min_length=1)]
    width: Annotated[StrictInt, Field(ge=2, le=1024)] = None
    depth: Annotated[StrictInt, Field(ge=1, le=8)] = None


class Integrated(_Checked):
    """HER2Net's integrated classifier record."""

    kind: Annotated[str, Field(min_length=1)]
    spec: dict


class Her2Net(Common):
    """A HER2Net bundle."""

    magnification: Power
    tile_size: Side
    input_size: Side
    segmenter: Network
    classifier: Network
    integrated: Integrated
    thresholds: dict[str, float] = None


class MilArchitecture(_Checked):
    """``architecture`` of an IHC attention-MIL bundle."""

    in_dim: Dim
    hidden: Dim
    attention: Dim


class IhcMil(Common):
    """An IHC attention-MIL bundle."""

    architecture: MilArchitecture


#: The schema of each model kind; other kinds get the common checks only.
KINDS: dict[str, type[Common]] = {
    "clam": Clam,
    "patch_cnn": PatchCnn,
    "her2net": Her2Net,
    "ihc_attention_mil": IhcMil,
}


def validate_manifest(meta: object, path: str | Path, kind: str | None = None) -> dict:
    """Check a parsed ``bundle.json`` and return it with the checked fields typed.

    Parameters
    ----------
    meta : object
        The parsed JSON.
    path : path
        The bundle, for the error sentence.
    kind : str, optional
        The model kind the caller needs; another kind is refused before its fields
        are checked.

    Raises
    ------
    ModelError
        One sentence naming the bundle and the first wrong field, a schema newer than
        this version reads, or another model kind than ``kind``.
    """
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: bundle.json must hold a JSON object.")
    common = validated(Common, meta, path, "bundle.json", ModelError)
    if common.schema_version > SCHEMA_VERSION:
        raise ModelError(
            f"{path} uses bundle schema {common.schema_version}; this version of "
            f"her2viewer reads up to {SCHEMA_VERSION}. Update her2viewer."
        )
    if kind is not None and common.model_kind != kind:
        raise ModelError(f"{path} is a '{common.model_kind}' bundle; this needs a '{kind}' bundle.")
    checked = validated(KINDS.get(common.model_kind, Common), meta, path, "bundle.json", ModelError)
    return {**meta, **checked.model_dump(exclude_unset=True)}
