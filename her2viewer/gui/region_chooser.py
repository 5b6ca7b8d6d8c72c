"""The region chooser of every analysis dock: whole slide, selected annotations, or a class.

A :class:`RegionChooser` is a combo box (*Whole slide*, *Selected annotations*,
*Class: Tumor*, ...) and a *Score selected region* button. It turns the choice into a
:class:`~her2viewer.annotations.roi.Region` of one pane's annotations (minus the Ignore*
ones) with :func:`~her2viewer.annotations.roi.region_from_features`, and
:func:`record_figures` writes a result's figures into the annotations the region was made
of (one undoable command), so the annotation's measurements show them.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QPushButton, QWidget

from her2viewer.annotations.commands import Replace
from her2viewer.annotations.model import DEFAULT_CLASSES
from her2viewer.annotations.roi import Region, RoiError, is_ignore_class, region_from_features

#: The region choices before the classes ("Class: Tumor", ...).
WHOLE_SLIDE, SELECTED = "Whole slide", "Selected annotations"
CLASS_PREFIX = "Class: "
#: How the panes are named in a region's description.
PANE_NAMES = ("H&E", "IHC")


class RegionChooser(QWidget):
    """Which region of a pane's annotations an analysis covers.

    Signals
    -------
    score_region
        *Score selected region* was clicked (the box is set to the selection first).
    """

    score_region = Signal()

    def __init__(self) -> None:
        super().__init__()
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.box = QComboBox()
        self.box.setToolTip(
            "Where the analysis runs: the whole slide, the annotations selected on the pane, "
            "or every annotation of a class (Ignore* ones are always left out)"
        )
        self.refresh()
        button = QPushButton("Score selected region")
        button.setToolTip("Run the analysis inside the annotations selected on the pane only")
        form.addRow("region", self.box)
        form.addRow(button)
        button.clicked.connect(self.score_selected)

    def refresh(self, controller=None) -> None:
        """Offer the classes of ``controller``'s document (QuPath's defaults without one)."""
        classes = controller.document.classes if controller is not None else DEFAULT_CLASSES
        names = [CLASS_PREFIX + c.name for c in classes if not is_ignore_class(c.name)]
        current = self.box.currentText()
        self.box.clear()
        self.box.addItems([WHOLE_SLIDE, SELECTED, *names])
        self.box.setCurrentText(current)

    def score_selected(self) -> None:
        """Ask for a run inside the selected annotations."""
        self.box.setCurrentText(SELECTED)
        self.score_region.emit()

    def chosen(self, window, panes: tuple[int, ...]) -> tuple[int, Region] | None:
        """The pane and region the box asks for on ``window`` (None: the whole slide).

        The region is drawn on the active pane when it is one of ``panes``, else on the
        first of ``panes`` (the one analysed).

        Raises
        ------
        RoiError
            When the pane has no annotations, nothing is selected, or no such class.
        """
        choice = self.box.currentText()
        if choice == WHOLE_SLIDE:
            return None
        active = window.annotations.active
        views = list(window.views)
        pane = views.index(active.view) if active is not None else None
        if pane not in panes:
            pane = panes[0]
        where = f"the {pane_name(pane)} pane"
        controller = window.annotations.controllers.get(views[pane])
        if controller is None:
            raise RoiError(f"The slide of {where} has no annotations to use as a region.")
        annotations = list(controller.document)
        if choice == SELECTED:
            if not controller.selected_ids:
                raise RoiError(f"Select the annotations to score on {where} first.")
            ids = controller.selected_ids
            return pane, region_from_features(annotations, ids=ids, source=f"{where} (selected)")
        name = choice.removeprefix(CLASS_PREFIX)
        return pane, region_from_features(annotations, [name], source=where)


def pane_name(pane: int) -> str:
    """A pane's name in a region's description (``H&E``, ``IHC``, ``pane 3``)."""
    return PANE_NAMES[pane] if pane < len(PANE_NAMES) else f"pane {pane + 1}"


def area_figures(prefix: str, summary: dict) -> dict:
    """The region's area entries of a result's ``summary``, named ``"<prefix> region_area_*"``."""
    return {f"{prefix} {k}": v for k, v in summary.items() if k.startswith("region_area_")}


def record_figures(window, pane: int, region: Region, figures: dict, what: str) -> None:
    """Put ``figures`` into the results of ``region``'s annotations on ``pane`` (one
    undoable command named ``what``); nothing when the pane's annotations are gone."""
    controller = window.annotations.controllers.get(window.views[pane])
    if controller is None or not figures:
        return
    document = controller.document
    changed = {
        i: document.get(i).replace(results={**document.get(i).results, **figures})
        for i in region.ids
        if i in document
    }
    if changed:
        controller.push(Replace(changed, what))
