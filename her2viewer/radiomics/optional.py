"""The radiomics extra: optional modules and the one sentence that says how to get them.

``pip install 'her2viewer[radiomics]'`` brings scikit-image (shape features),
pydicom (DICOM series), PyWavelets (wavelet filter) and PyYAML (PyRadiomics
parameter files). Everything else in radiomics needs only the core dependencies.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from her2viewer.errors import RadiomicsError

INSTALL_HINT = "pip install 'her2viewer[radiomics]'"

#: Optional module -> what needs it.
OPTIONAL_MODULES = {
    "skimage.measure": "shape features",
    "pydicom": "reading DICOM series",
    "pywt": "the wavelet filter",
    "yaml": "YAML parameter files",
}


def optional_import(module: str) -> ModuleType:
    """Import one of :data:`OPTIONAL_MODULES`, or raise a one-line install hint.

    Raises
    ------
    RadiomicsError
        When the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RadiomicsError(missing_message([module])) from exc


def missing_modules() -> list[str]:
    """The optional modules that cannot be imported in this environment."""
    missing = []
    for module in OPTIONAL_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def missing_message(modules: list[str]) -> str:
    """One sentence naming what is unavailable and the command that enables it."""
    needs = ", ".join(OPTIONAL_MODULES.get(m, m) for m in modules)
    return f"The radiomics extra is not installed (needed for {needs}); install it: {INSTALL_HINT}"
