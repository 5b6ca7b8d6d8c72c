"""PyRadiomics parameter files (YAML or JSON) and settings recovered from feature names.

A parameter file has PyRadiomics' three sections::

    imageType:            # which images to extract from, with filter parameters
      Original: {}
      LoG: {sigma: [1.0, 3.0]}
      Wavelet: {}         # wavelet: coif1, start_level: 0, level: 1
    featureClass:         # classes, optionally limited to named features
      shape:
      firstorder: []
      glcm: [Contrast, Correlation]
    setting:              # binWidth, label, voxelArrayShift and filter defaults
      binWidth: 25

Settings that would change the values in ways this extractor does not implement
(resampling, normalisation, binCount, 2D extraction, ...) are refused with a
one-line error instead of being silently ignored.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from her2viewer.errors import RadiomicsError
from her2viewer.radiomics.features import FEATURE_CLASSES, RadiomicsSettings
from her2viewer.radiomics.filters import FILTER_PARAMS, canonical_type, filter_options
from her2viewer.radiomics.optional import optional_import

#: Settings read into :class:`RadiomicsSettings`.
_SETTINGS = {"binWidth": "bin_width", "label": "label", "voxelArrayShift": "voxel_array_shift"}
#: Settings that never change feature values here (diagnostics, speed, cropping).
_NO_EFFECT = {
    "additionalInfo",
    "enableCExtensions",
    "preCrop",
    "padDistance",
    "geometryTolerance",
    "correctMask",
    "minimumROIDimensions",
    "minimumROISize",
    "interpolator",
    "normalizeScale",
    "force2Ddimension",
    "label_channel",
}
#: Settings accepted only at PyRadiomics' default value.
_DEFAULT_ONLY = {
    "normalize": False,
    "resampledPixelSpacing": None,
    "force2D": False,
    "distances": [1],
    "weightingNorm": None,
    "gldm_a": 0,
    "resegmentRange": None,
    "removeOutliers": None,
    "binCount": None,
}
_FILTER_KEYS = {key for params in FILTER_PARAMS.values() for key in params}
_TYPE_PREFIX = re.compile(r"^(original|log-sigma-(.+)-mm-3D|wavelet(\d*)-[LH]{3}|[a-z]+)$")


def _load(path: Path) -> dict:
    """Parse the file as JSON (``.json``) or YAML (anything else)."""
    text = path.read_text()
    if path.suffix.lower() == ".json":
        return json.loads(text)
    yaml = optional_import("yaml")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(" ".join(str(exc).split())) from exc


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: What each setting read into :class:`RadiomicsSettings` must be, and its check.
_VALID = {
    "binWidth": ("a number above 0", lambda v: _is_number(v) and v > 0),
    "label": ("a whole number of at least 1", lambda v: _is_number(v) and v >= 1 and v == int(v)),
    "voxelArrayShift": ("a finite number", _is_number),
}


def _check_settings(setting: dict, name: str) -> None:
    for key, value in setting.items():
        if key in _VALID and not _VALID[key][1](value):
            raise RadiomicsError(f"{name}: setting {key}={value!r} must be {_VALID[key][0]}.")
        if key in _SETTINGS or key in _NO_EFFECT or key in _FILTER_KEYS:
            continue
        if key not in _DEFAULT_ONLY:
            raise RadiomicsError(f"{name}: unknown setting '{key}'.")
        if value != _DEFAULT_ONLY[key]:
            raise RadiomicsError(
                f"{name}: setting {key}={value!r} is not supported; "
                f"remove it or use {_DEFAULT_ONLY[key]!r}."
            )


def read_params(path: str | Path) -> RadiomicsSettings:
    """Read a PyRadiomics parameter file into :class:`RadiomicsSettings`.

    Parameters
    ----------
    path : str or Path
        ``.yaml``/``.yml`` (needs PyYAML, part of the radiomics extra) or ``.json``.

    Returns
    -------
    RadiomicsSettings

    Raises
    ------
    RadiomicsError
        Missing or unreadable file, an unknown section, image type, feature class
        or setting, or a setting this extractor does not implement.
    """
    path = Path(path)
    if not path.is_file():
        raise RadiomicsError(f"Parameter file not found: {path}")
    try:
        params = _load(path) or {}
    except (OSError, ValueError) as exc:
        raise RadiomicsError(f"Cannot read parameter file {path.name}: {exc}") from exc
    if not isinstance(params, dict):
        raise RadiomicsError(
            f"{path.name} must hold a mapping with imageType/featureClass/setting."
        )
    unknown = set(params) - {"imageType", "featureClass", "setting", "voxelSetting"}
    if unknown:
        raise RadiomicsError(f"{path.name}: unknown section '{sorted(unknown)[0]}'.")
    setting = params.get("setting") or {}
    classes = params.get("featureClass") or dict.fromkeys(FEATURE_CLASSES)
    types = params.get("imageType") or {"Original": {}}
    if not all(isinstance(section, dict) for section in (setting, classes, types)):
        raise RadiomicsError(f"{path.name}: imageType, featureClass and setting must be mappings.")
    _check_settings(setting, path.name)
    image_types = {}
    for name, custom in types.items():
        key = canonical_type(name)
        shared = {k: v for k, v in setting.items() if k in FILTER_PARAMS[key]}
        image_types[key] = filter_options(key, {**shared, **(custom or {})})
    unknown = sorted(set(classes) - set(FEATURE_CLASSES))
    if unknown:
        raise RadiomicsError(
            f"{path.name}: unknown feature class '{unknown[0]}'; "
            f"choose from {', '.join(FEATURE_CLASSES)}."
        )
    return RadiomicsSettings(
        **{_SETTINGS[k]: v for k, v in setting.items() if k in _SETTINGS},
        classes=tuple(c for c in FEATURE_CLASSES if c in classes),
        image_types=image_types,
        features={c: tuple(names) for c, names in classes.items() if names},
    )


def settings_for_features(
    names: list[str], base: RadiomicsSettings | None = None
) -> RadiomicsSettings:
    """Settings that compute the named features (e.g. a trained model's inputs).

    Image types and classes come from the ``<image type>_<class>_<Feature>`` names;
    bin width, label and shift from ``base`` (PyRadiomics defaults when omitted).
    A wavelet's type cannot be read from a name: ``base``'s wavelet options (coif1,
    start level 0 by default) are used, with as many levels as the names need.

    Raises
    ------
    RadiomicsError
        For a name that is not a radiomic feature name.
    """
    base = base or RadiomicsSettings()
    image_types: dict[str, dict] = {}
    classes: set[str] = set()
    for name in names:
        parts = name.split("_")
        match = _TYPE_PREFIX.match(parts[0]) if len(parts) == 3 else None
        if match is None or parts[1] not in FEATURE_CLASSES:
            raise RadiomicsError(f"'{name}' is not a radiomic feature name.")
        classes.add(parts[1])
        if match.group(2) is not None:
            sigma = float(match.group(2).replace("-", "."))
            sigmas = image_types.setdefault("log", {"sigma": []})["sigma"]
            sigmas.extend([] if sigma in sigmas else [sigma])
        elif match.group(3) is not None:
            wavelet = image_types.setdefault("wavelet", dict(base.image_types.get("wavelet", {})))
            wavelet["level"] = max(int(match.group(3) or 1), int(wavelet.get("level", 1)))
        elif parts[0] != "original" or parts[1] != "shape":
            image_types.setdefault(canonical_type(parts[0].split("-")[0]), {})
    return RadiomicsSettings(
        bin_width=base.bin_width,
        label=base.label,
        voxel_array_shift=base.voxel_array_shift,
        classes=tuple(c for c in FEATURE_CLASSES if c in classes),
        image_types={k: filter_options(k, v) for k, v in image_types.items()},
    )
