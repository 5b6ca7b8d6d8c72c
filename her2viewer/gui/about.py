"""Help > About: the version, what the shipped models are, and the licences of what is bundled."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from her2viewer import __version__

#: The statement every demo model carries in its bundle.json, in one sentence.
DEMO_STATEMENT = (
    "The demo models are synthetic demos: trained on generated slides, they demonstrate the "
    "software and make no clinical claim."
)

#: Models shipped with her2viewer: (name, what it is, licence).
MODELS = (
    ("HER2Net demo", "tumour segmenter and HER2 tile classifiers (H&E)", "MIT, as her2viewer"),
    ("CLAM demo", "attention-MIL slide classifier and heatmap (H&E)", "MIT, as her2viewer"),
    ("IHC grading demo", "patch CNN grading HER2 IHC 0 / 1+ / 2+ / 3+", "MIT, as her2viewer"),
)

#: Third-party data and libraries the application carries: (name, what it is, licence).
THIRD_PARTY = (
    ("viridis, magma, inferno, plasma, cividis", "colormaps (via matplotlib)", "CC0"),
    ("turbo", "colormap (via matplotlib)", "Apache-2.0"),
    ("coolwarm", "colormap of Moreland (2009), via matplotlib", "public domain"),
    ("Okabe-Ito", "colour-blind-safe palette of masks and figures", "free to use"),
    ("Qt 6 / PySide6", "user interface", "LGPL-3.0"),
    ("OpenSlide (openslide-bin)", "whole-slide image reading", "LGPL-2.1"),
    ("PyTorch, torchvision", "neural networks", "BSD-3-Clause"),
    ("NumPy, SciPy, scikit-learn, scikit-image", "numerics and image analysis", "BSD-3-Clause"),
    ("OpenCV", "image processing", "Apache-2.0"),
    ("matplotlib", "report figures and PDFs", "Matplotlib (PSF-based, BSD-compatible)"),
    ("DejaVu fonts (via matplotlib)", "text in figures", "Bitstream Vera / DejaVu (free)"),
    ("Jinja2", "report templates", "BSD-3-Clause"),
    ("h5py, tifffile, imagecodecs", "HDF5 and TIFF files", "BSD-3-Clause"),
    (
        "pyqtgraph, pydicom, PyWavelets, PyYAML, pydantic, platformdirs",
        "plots, DICOM, wavelets, settings and manifests, folders",
        "MIT",
    ),
    ("Pillow", "image files", "MIT-CMU (HPND)"),
    ("safetensors", "model weights files", "Apache-2.0"),
)


def _table(rows: tuple[tuple[str, str, str], ...]) -> str:
    """Return ``rows`` as an HTML table of name, what and licence."""
    cells = "".join(
        f"<tr><td><b>{escape(name)}</b></td><td>{escape(what)}</td><td>{escape(licence)}</td></tr>"
        for name, what, licence in rows
    )
    return f"<table cellspacing='0' cellpadding='3'>{cells}</table>"


def about_html() -> str:
    """Return the About text as HTML: version, demo statement, models and licences."""
    return (
        f"<h2>her2viewer {escape(__version__)}</h2>"
        "<p>A whole-slide viewer for HER2 pathology with AI overlays, reader studies and a "
        "headless command line. Licence: MIT.</p>"
        f"<p><b>{escape(DEMO_STATEMENT)}</b> They are not for diagnosis.</p>"
        f"<h3>Shipped models</h3>{_table(MODELS)}"
        "<p>No third-party weights are shipped: ImageNet or foundation-model encoders come from "
        "your own torchvision cache or a path you give, under their publishers' terms.</p>"
        f"<h3>Bundled third-party data and software</h3>{_table(THIRD_PARTY)}"
    )


class AboutDialog(QDialog):
    """A window-modal dialog showing :func:`about_html`; it deletes itself when closed.

    Parameters
    ----------
    parent : QWidget, optional
        The window it belongs to.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowTitle("About her2viewer")
        self.text = QTextBrowser(self)
        self.text.setOpenExternalLinks(True)
        self.text.setHtml(about_html())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(640, 560)
