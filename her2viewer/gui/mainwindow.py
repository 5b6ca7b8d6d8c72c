"""The main window: panes side by side, docks (overview, layers, properties), menus."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCursor, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QToolBar,
    QWidget,
)

from her2viewer.errors import Her2ViewerError
from her2viewer.gui.about import AboutDialog
from her2viewer.gui.annotations.controller import AnnotationTools
from her2viewer.gui.annotations.pair import PairAnnotations
from her2viewer.gui.annotations.panel import AnnotationPanel
from her2viewer.gui.display_panel import DisplayPanel
from her2viewer.gui.exports import ExportActions
from her2viewer.gui.help import HelpActions
from her2viewer.gui.landmarks import LandmarkMode
from her2viewer.gui.magnifier import Magnifier
from her2viewer.gui.opener import SlideOpener
from her2viewer.gui.panels import LayersPanel, MiniMap, OverlayKeys, PropertiesPanel
from her2viewer.gui.project_panel import attach_project_panel
from her2viewer.gui.readout import readout_text
from her2viewer.gui.rotation import RotationControls
from her2viewer.gui.sessions import SessionKeeper
from her2viewer.gui.slideview import MAG_PRESETS, SlideView
from her2viewer.gui.sync import SyncGroup
from her2viewer.gui.tiles import TileLoader, shared_loader
from her2viewer.overlay.layers import OverlayLayer, VectorLayer
from her2viewer.slide import SUPPORTED_SUFFIXES
from her2viewer.slide.pairing import find_pair

MAX_RECENT = 10
#: Width of the right-hand dock column (px); slides and results never change it.
DOCK_WIDTH = 330


def scrolled(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless scroll area, so a dock's content never sizes the window."""
    area = QScrollArea()
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidgetResizable(True)
    area.setWidget(widget)
    return area


def _hover_text(name: str, value: str) -> str:
    """A layer's value under the cursor, without repeating what its name already says."""
    return name if value.lower() in name.lower() else f"{name}: {value}"


class Opening(QObject):
    """Slides being opened in panes on a worker; ``finished(ok)`` fires once, when every
    one opened or one failed (its error already shown) or was replaced by a newer open.

    ``ok`` is ``None`` until then.
    """

    finished = Signal(bool)

    def __init__(self, count: int):
        super().__init__()
        self.ok: bool | None = None if count else True
        self._left = count
        self._all_opened = True

    def part_done(self, opened: bool) -> None:
        """One of the slides opened (or did not)."""
        self._all_opened &= opened
        self._left -= 1
        if self._left == 0:
            self.ok = self._all_opened
            self.finished.emit(self.ok)

    def wait(self, timeout: float = 60.0) -> bool:
        """Process events until finished (scripts, tests, the headless CLI; never from a
        slot); whether every slide opened in time."""
        app = QApplication.instance()
        deadline = time.monotonic() + timeout
        while self.ok is None and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.005)
        return bool(self.ok)


class MainWindow(QMainWindow):
    """Two (or more) synchronised slide panes with overview, layers and properties docks.

    Parameters
    ----------
    loader : TileLoader, optional
        Tile loader (and cache) shared by the panes; the application's by default.
    settings : QSettings, optional
        Where the recent-files list lives.
    """

    #: Emitted when an H&E slide was opened together with the IHC slide found beside it.
    pair_opened = Signal()
    #: Emitted with a pane's index when it shows another slide (results of the old one go).
    slide_changed = Signal(int)
    #: Emitted with a pane's index when its level-0 link to pane 0 was set or cleared.
    pane_transform_changed = Signal(int)

    def __init__(self, loader: TileLoader | None = None, settings: QSettings | None = None):
        super().__init__()
        self.loader = loader or shared_loader()
        self.settings = settings or QSettings("her2viewer", "viewer")
        self.errors: list[str] = []
        self._tile_failures: dict[int, int] = {}  # pane owner id -> failed tile reads
        self.tile_failure_messages: list[str] = []  # every failed tile read, in order
        self.views: list[SlideView] = []
        self.slides = []
        self._openers: list[SlideOpener] = []
        self._pending: dict[int, tuple[int, Opening]] = {}  # pane -> (token, its opening)
        self._retired = []
        self._retire_timer = QTimer(self, interval=200)
        self._retire_timer.timeout.connect(self._close_retired)
        self.sync = SyncGroup(self)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.setCentralWidget(self.splitter)
        self.minimap = MiniMap()
        self.layers_panel = LayersPanel()
        self.properties = PropertiesPanel(self.loader)
        self.annotation_panel = AnnotationPanel()
        self.display_panel = DisplayPanel(self.loader)  # levels, stain view, image type, pixel size
        self.display_panel.error.connect(self.show_error)
        self.display_panel.pixel_size_changed.connect(self.set_active)  # properties, presets
        self.active: SlideView | None = None
        self.pages: QTabWidget | None = None  # made when a second page (Radiology, ...) joins
        self._slide_bars: list[QWidget] = []
        self._status = {"pos": QLabel(), "mag": QLabel(), "value": QLabel()}
        for label in self._status.values():
            self.statusBar().addPermanentWidget(label)
        self._docks()
        self._menus()
        self.annotations = AnnotationTools(self)  # tools, and a store per pane's slide
        self.annotations.active_changed.connect(self.annotation_panel.set_controller)
        self.annotation_panel.error.connect(self.show_error)
        self.pair_annotations = PairAnnotations(self, self.annotations)  # copy across, follow
        self.sessions = SessionKeeper(self)  # saved on close, restored on start (gui.app)
        self.layers_panel.group_of = self.sessions.layer_group  # layers under their analysis
        self.add_pane()
        self.setAcceptDrops(True)
        self.setWindowTitle("her2viewer")
        self.resize(1600, 1000)
        self.loader.failed.connect(self._on_tile_failed)

    # -- layout --------------------------------------------------------------------
    def _docks(self) -> None:
        """Overview on top, then Layers with Properties and Annotations in tabs behind it
        (the label and macro images no longer crowd the analysis docks below on a small
        screen)."""
        docks = []
        for title, widget in (
            ("Overview", self.minimap),
            ("Layers", self.layers_panel),
            ("Properties", self.properties),
            ("Annotations", self.annotation_panel),
            ("Display", self.display_panel),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(title)
            scrolls = widget is self.minimap or widget is self.annotation_panel  # by itself
            dock.setWidget(widget if scrolls else scrolled(widget))
            dock.setFeatures(
                QDockWidget.DockWidgetFeature.DockWidgetMovable
                | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            )
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            docks.append(dock)
        self.tabifyDockWidget(docks[1], docks[2])
        self.tabifyDockWidget(docks[2], docks[3])
        self.tabifyDockWidget(docks[3], docks[4])
        docks[1].raise_()
        self.resizeDocks([docks[0]], [DOCK_WIDTH], Qt.Orientation.Horizontal)

    def add_page(self, widget: QWidget, title: str) -> QTabWidget:
        """Add a full-window page in a tab beside the slide panes ("Slides").

        The slide docks and toolbars show only on the Slides page. Returns the tabs.
        """
        if self.pages is None:
            overview = self.findChild(QDockWidget, "Overview")
            width = overview.width()
            self.pages = QTabWidget()
            self.pages.setDocumentMode(True)
            self.pages.addTab(self.takeCentralWidget(), "Slides")
            self.setCentralWidget(self.pages)
            # a new central widget re-spreads the window (once laid out): the docks keep width
            QTimer.singleShot(
                0, self, lambda: self.resizeDocks([overview], [width], Qt.Orientation.Horizontal)
            )
            self.pages.currentChanged.connect(self._on_page)
        self.pages.addTab(widget, title)
        return self.pages

    def _on_page(self, index: int) -> None:
        for label in self._status.values():  # slide readouts only beside the slides
            label.setVisible(index == 0)
        if index == 0:
            for bar in self._slide_bars:
                bar.show()
            self._slide_bars = []
        elif not self._slide_bars:
            bars = self.findChildren(QDockWidget) + self.findChildren(QToolBar)
            self._slide_bars = [bar for bar in bars if bar.isVisible()]
            for bar in self._slide_bars:
                bar.hide()

    def add_file_action(self, text: str, slot, tip: str = "") -> QAction:
        """Add an *Open …* action to the File menu, above *Recent files*; ``tip`` says what
        it does (tooltip and status bar)."""
        action = QAction(text, self)
        action.setToolTip(tip)
        action.setStatusTip(tip)
        action.triggered.connect(lambda checked=False: slot())
        self.file_menu.insertAction(self.recent_menu.menuAction(), action)
        return action

    def _menus(self) -> None:
        self.file_menu = file_menu = self.menuBar().addMenu("&File")
        self._action(
            file_menu,
            "&Open slide…",
            self.open_dialog,
            QKeySequence.StandardKey.Open,
            "Open a slide in the left pane (its IHC pair, when found, on the right)",
        )
        self._action(
            file_menu,
            "Open &paired slide…",
            lambda: self.open_dialog(paired=True),
            tip="Open a slide in the right pane, synced with the left one",
        )
        self._action(
            file_menu,
            "Add &GeoJSON layer…",
            self.geojson_dialog,
            tip="Draw a GeoJSON file's shapes as a layer of the active pane",
        )
        self.recent_menu = file_menu.addMenu("&Recent files")
        self._fill_recent()
        self.projects = attach_project_panel(self, file_menu)  # projects, the Project dock
        file_menu.addSeparator()
        self._action(
            file_menu,
            "Save &screenshot…",
            self.screenshot_dialog,
            tip="Save the whole window as a PNG image",
        )
        self.exports = ExportActions(self, file_menu)  # snapshot of the pane, region export
        self._action(
            file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit, "Close the viewer"
        )
        view_menu = self.menuBar().addMenu("&View")
        toolbar = QToolBar("Navigation")
        toolbar.setObjectName("navigation")
        self.addToolBar(toolbar)
        fit = self._action(
            view_menu,
            "&Fit (Home)",
            lambda: self._on_active(SlideView.fit),
            tip="Show the whole slide in the active pane (Home)",
        )
        toolbar.addAction(fit)
        self.preset_actions = {}
        for mag in MAG_PRESETS:
            action = self._action(
                view_menu,
                f"{mag:g}x",
                lambda m=mag: self._on_active(lambda v: v.set_magnification(m)),
            )
            toolbar.addAction(action)
            self.preset_actions[mag] = action
        toolbar.addSeparator()
        self.sync_box = QCheckBox("Sync panes")
        self.sync_box.setToolTip("Move, zoom and turn the panes together (the same tissue)")
        self.sync_box.setChecked(True)
        self.sync_box.toggled.connect(self._on_sync_toggled)
        toolbar.addWidget(self.sync_box)
        view_menu.addSeparator()
        self.landmarks = LandmarkMode(self, view_menu)  # pick matching points on both panes
        self.rotation = RotationControls(self, view_menu)  # rotate/flip the active pane
        self.overlay_keys = OverlayKeys(self, view_menu, self.layers_panel)  # O, Alt+1..9
        help_menu = self.menuBar().addMenu("&Help")
        self.about_action = self._action(
            help_menu,
            "&About her2viewer",
            self.show_about,
            tip="Version, the shipped demo models (no clinical claim) and licences",
        )
        self.help = HelpActions(self, help_menu, self.about_action)  # shortcuts sheet, guide

    def show_about(self) -> None:
        """Open Help > About (version, shipped models, licences) over this window."""
        AboutDialog(self).open()

    def _action(self, menu, text, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(lambda checked=False: slot())
        menu.addAction(action)
        return action

    def add_pane(self) -> SlideView:
        """Add an empty pane to the right and link it to the others."""
        view = SlideView(self.loader, parent=self.splitter)
        self.splitter.addWidget(view)
        self.views.append(view)
        self.slides.append(None)
        index = len(self._openers)
        opener = SlideOpener(self)
        opener.opened.connect(lambda token, slide, *_, i=index: self._on_opened(i, token, slide))
        opener.failed.connect(lambda token, message, i=index: self._on_failed(i, token, message))
        self._openers.append(opener)
        view.activated.connect(lambda v=view: self.set_active(v))
        self.display_panel.watch(view)  # its image type is guessed from its overview
        view.cursor_moved.connect(lambda x, y, v=view: self._on_cursor(v, x, y))
        view.view_changed.connect(lambda v=view: self._on_view_changed(v))
        view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        view.customContextMenuRequested.connect(lambda pos, v=view: self._pane_menu(v, pos))
        Magnifier(view)  # hold Z: the tissue under the cursor at 4x
        self.sync.add(view)
        if self.active is None:
            self.set_active(view)
        return view

    def _pane_menu(self, view: SlideView, pos) -> None:
        """Right-click menu of a pane: its own sync toggle and fit."""
        menu = QMenu(self)
        sync = menu.addAction("Sync this pane")
        sync.setCheckable(True)
        sync.setChecked(view.sync_enabled)
        sync.toggled.connect(lambda on: self.sync.set_view_sync(view, on))
        menu.addAction("Fit (Home)", view.fit)
        if view in self.annotations.controllers:
            self.annotations.controllers[view].fill_menu(menu, pos.x(), pos.y())
            self.pair_annotations.fill_menu(menu, view)
        menu.popup(view.mapToGlobal(pos))

    def set_active(self, view: SlideView) -> None:
        """Make ``view`` the pane the docks and toolbar act on."""
        self.active = view
        self.minimap.set_view(view)
        self.layers_panel.set_view(view)
        self.display_panel.set_view(view)
        if view.slide is not None:
            self.properties.set_slide(view.slide, id(view.slide))
        self.annotations.pane_activated(view)
        self._update_presets()
        self.rotation.follow(view)
        self._on_view_changed(view)

    # -- opening -------------------------------------------------------------------
    def open_slides(self, paths, to_first: np.ndarray | None = None) -> Opening:
        """Open one slide per pane (left to right) on a worker; ``to_first`` maps pane 2 px
        -> pane 1 px, applied once all are open.

        Errors are shown in a message box; the returned :class:`Opening` says when all
        are open and whether every slide opened.
        """
        opening = Opening(len(paths))
        if len(paths) > 1:
            opening.finished.connect(lambda ok: ok and self.set_pane_transform(1, to_first))
        for index, path in enumerate(paths):
            self._request(path, index, opening)
        return opening

    def open_in_pane(self, path, index: int = 0) -> Opening:
        """Open ``path`` in pane ``index`` (created if needed) on a worker, the pane saying
        "opening <name>…" meanwhile; errors are shown, never raised."""
        opening = Opening(1)
        self._request(path, index, opening)
        return opening

    @property
    def opening(self) -> bool:
        """Whether a slide is being opened in some pane."""
        return bool(self._pending)

    def _request(self, path, index: int, opening: Opening) -> None:
        while len(self.views) <= index:
            self.add_pane()
        replaced = self._pending.pop(index, None)
        if replaced is not None:
            replaced[1].part_done(False)
        self.views[index].set_message(f"opening {Path(path).name}…")
        token = self._openers[index].request(Path(path))
        self._pending[index] = (token, opening)

    def _take_pending(self, index: int, token: int) -> Opening | None:
        """The opening that ``token`` answers in pane ``index``; None when it is stale."""
        pending = self._pending.get(index)
        if pending is None or pending[0] != token:
            return None
        del self._pending[index]
        self.views[index].set_message(None)
        return pending[1]

    def _on_opened(self, index: int, token: int, slide) -> None:
        opening = self._take_pending(index, token)
        if opening is None:
            slide.close()
            return
        self._show_slide(index, slide)
        opening.part_done(True)

    def _on_failed(self, index: int, token: int, message: str) -> None:
        opening = self._take_pending(index, token)
        if opening is not None:
            self.show_error(message)
            opening.part_done(False)

    def _show_slide(self, index: int, slide) -> None:
        """Show an opened slide in pane ``index``, retiring the one it replaces."""
        old = self.slides[index]
        view = self.views[index]
        path = Path(slide.info.path)
        with self.sync.paused():  # a pane fitting its new slide does not move the others
            view.set_slide(slide, title=path.name)
        self.annotations.slide_shown(view, slide)
        self._tile_failures.pop(id(view), None)
        self.slides[index] = slide
        if old is not None:
            self._retire(old)
        if index > 0:
            self.sync.set_transform(view, None)
        self._remember(str(path))
        self.set_active(view)
        self.setWindowTitle(
            " | ".join(Path(s.info.path).name for s in self.slides if s) + " — her2viewer"
        )
        self.slide_changed.emit(index)

    def set_pane_transform(self, index: int, to_first: np.ndarray | None) -> None:
        """Link pane ``index`` to pane 0 by a level-0 transform (``None``: relative sync)."""
        view = self.views[index]
        self.sync.set_transform(view, to_first)
        source = self.views[0]
        if to_first is not None and source.slide is not None:
            source.view_changed.emit()
        self.pane_transform_changed.emit(index)

    def add_layer(self, layer: OverlayLayer, index: int = 0) -> None:
        """Add an overlay layer to pane ``index``."""
        self.views[index].add_layer(layer)

    def show_error(self, message: str) -> None:
        """Show a user error without blocking; the app keeps running."""
        self.errors.append(message)
        self.statusBar().showMessage(message, 10000)
        box = QMessageBox(
            QMessageBox.Icon.Warning, "her2viewer", message, QMessageBox.StandardButton.Ok, self
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def open_dialog(self, paired: bool = False) -> None:
        """Ask for a slide file and open it (in the second pane when ``paired``)."""
        patterns = " ".join(f"*{s}" for s in SUPPORTED_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(
            self, "Open slide", self.last_folder(), f"Slides ({patterns});;All files (*)"
        )
        if not path:
            return
        opening = self.open_in_pane(path, 1 if paired else 0)
        if not paired:
            opening.finished.connect(lambda ok: ok and self.open_pair_of(path))

    def open_pair_of(self, path) -> Opening | None:
        """Open the IHC slide paired with H&E ``path`` (cohort CSV or file name) in pane 2;
        ``pair_opened`` is emitted once it is open. None when no pair is found."""
        pair = find_pair(path)
        if pair is None:
            return None
        opening = self.open_in_pane(pair, 1)
        opening.finished.connect(lambda ok: ok and self.pair_opened.emit())
        return opening

    def geojson_dialog(self) -> None:
        """Ask for a GeoJSON file and add it as a vector layer of the active pane."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Add GeoJSON layer", self.last_folder(), "GeoJSON (*.geojson *.json)"
        )
        if path:
            self.add_geojson(path)

    def add_geojson(self, path, pane: int | None = None) -> bool:
        """Add a GeoJSON file as a vector layer of pane ``pane`` (the active one when None).

        Errors are shown in the usual box; returns whether the layer was added.
        """
        view = self.active if pane is None else self.views[pane]
        try:
            layer = VectorLayer.from_geojson(path, color=(250, 190, 0))
        except Her2ViewerError as exc:
            self.show_error(str(exc))
            return False
        self.sessions.remember_geojson(layer, path)
        view.add_layer(layer)
        return True

    def screenshot_dialog(self) -> None:
        """Save the window as a PNG."""
        start = str(Path(self.last_folder()) / "view.png")
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", start, "PNG (*.png)")
        if path:
            self.grab().save(path)

    # -- recent files --------------------------------------------------------------
    def last_folder(self) -> str:
        """The folder of the slide opened last (where file dialogs open); "" before any."""
        recent = self.recent_files()
        return str(Path(recent[0]).parent) if recent else ""

    def recent_files(self) -> list[str]:
        """Most recently opened slide paths, newest first."""
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember(self, path: str) -> None:
        path = str(Path(path).resolve())
        recent = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_files():
            self._action(
                self.recent_menu,
                path,
                lambda p=path: self.open_in_pane(p, 0),
                tip=f"Open {path} in the left pane",
            )
        self.recent_menu.setEnabled(bool(self.recent_files()))

    # -- drag and drop -------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        geojson = [p for p in paths if p.lower().endswith((".geojson", ".json"))]
        slides = [p for p in paths if p not in geojson]
        if slides:  # first, so dropped annotations land on the new slide; side by side
            opening = self.open_slides(slides)
            opening.finished.connect(lambda _ok: self._add_geojsons(geojson))
        else:
            self._add_geojsons(geojson)

    def _add_geojsons(self, paths) -> None:
        for path in paths:
            self.add_geojson(path)

    # -- readouts ------------------------------------------------------------------
    def _on_active(self, action) -> None:
        if self.active is not None and self.active.slide is not None:
            try:
                action(self.active)
            except Her2ViewerError as exc:
                self.show_error(str(exc))

    def _update_presets(self) -> None:
        """Enable the presets the active slide can show; a disabled one's tooltip says why."""
        for mag, action in self.preset_actions.items():
            refusal = self.active.preset_refusal(mag) if self.active else "Open a slide first."
            action.setEnabled(refusal is None)
            action.setToolTip(f"{mag:g}x: {refusal}" if refusal else f"Zoom to {mag:g}x")

    def _on_sync_toggled(self, on: bool) -> None:
        for view in self.views[1:]:
            self.sync.set_view_sync(view, on)

    def _on_view_changed(self, view: SlideView) -> None:
        if view is not self.active or view.slide is None:
            return
        self.rotation.follow(view)
        mag = view.magnification()
        self._status["mag"].setText(
            f"{mag:.2f}x" if mag else f"downsample {view.state.downsample:.2f} (no mpp)"
        )
        # the point under a still mouse moved with the view (Home, keys, presets)
        pos = view.mapFromGlobal(QCursor.pos())
        if view.underMouse() and view.rect().contains(pos):
            self._on_cursor(view, *view.screen_to_level0(pos.x(), pos.y()))
        else:
            self._on_cursor(view, math.nan, math.nan)

    def _on_cursor(self, view: SlideView, x: float, y: float) -> None:
        if math.isnan(x):
            self._status["pos"].setText("")
            self._status["value"].setText("")
            return
        self._status["pos"].setText(readout_text(view, x, y))
        values = [
            _hover_text(layer.name, value)
            for layer in reversed(view.layers)
            if layer.visible and (value := layer.value_at(x, y)) is not None
        ]
        self._status["value"].setText("   ".join(values))

    def _on_tile_failed(self, owner, message: str) -> None:
        """One message box per damaged slide; later failures only count in the status bar."""
        self.tile_failure_messages.append(message)
        count = self._tile_failures.get(owner, 0) + 1
        self._tile_failures[owner] = count
        if count == 1:
            self.show_error(f"Part of the slide could not be read: {message}")
        else:
            self.statusBar().showMessage(
                f"{count} tiles of this slide could not be read; the rest is shown.", 10000
            )

    def _retire(self, slide) -> None:
        """Close ``slide`` once no tile read can still be using it (never blocks the GUI)."""
        self._retired.append(slide)
        self._retire_timer.start()

    def _close_retired(self) -> None:
        if self.loader.pending():
            return
        self._retire_timer.stop()
        for slide in self._retired:
            slide.close()
        self._retired = []

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.sessions.window_closing()
        self.annotations.close_all()
        for opener in self._openers:
            opener.shutdown()
        for view in self.views:
            view.stop_loading()
        if self.loader.wait_idle(2.0):  # the window is going away; a short wait is fine
            self._retire_timer.stop()
            for slide in [*self.slides, *self._retired]:
                if slide is not None:
                    slide.close()
            self._retired = []
        super().closeEvent(event)
