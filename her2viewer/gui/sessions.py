"""The window's session: captured and saved when it closes, restored on the next start.

What is kept is the Qt-free :class:`~her2viewer.session.Session`. Each analysis result
shown is saved with its own ``save()`` beside the session and shown again from that file
with its result class's ``load()`` (never recomputed), in the panel of the same title.
Each pane's display settings come back through the Display dock
(:meth:`~her2viewer.gui.display_panel.DisplayPanel.restore`); unusable ones are one
sentence in the status bar, and that pane keeps the defaults.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
from pydantic import ValidationError
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QDockWidget

from her2viewer.errors import Her2ViewerError
from her2viewer.gui.analysis_panel import AnalysisPanel
from her2viewer.gui.job_panel import ANALYSIS_DOCK
from her2viewer.manifests import validation_sentence
from her2viewer.outputs import output_error
from her2viewer.session import (
    AnalysisModel,
    DisplayModel,
    LayerModel,
    PaneModel,
    Session,
    SessionError,
    ViewModel,
    load_session,
    result_name,
    results_dir,
    save_session,
    session_path,
)
from her2viewer.viewport import ViewState

#: How long the status bar shows what a restore could not use.
NOTICE_MS = 15000


class SessionKeeper(QObject):
    """Saves ``window``'s session on close (when :attr:`autosave`) and restores it.

    Parameters
    ----------
    window : MainWindow
        The window kept.
    path : path, optional
        The session file; :func:`~her2viewer.session.session_path` by default (a project's
        own file once projects exist).

    Attributes
    ----------
    autosave : bool
        Save when the window closes: on for the interactive viewer, off for scripts,
        tests and offscreen renders (which must not replace the user's session).
    """

    def __init__(self, window, path: str | Path | None = None) -> None:
        super().__init__(window)
        self.window = window
        self._path = Path(path) if path is not None else None
        self.autosave = False
        self._geojson: dict[int, tuple[object, str]] = {}  # id(layer) -> (layer, its file)

    def remember_geojson(self, layer, path: str | Path) -> None:
        """Note that ``layer`` was read from the GeoJSON file ``path`` (read again on restore)."""
        self._geojson[id(layer)] = (layer, str(Path(path).resolve()))

    def _geojson_of(self, view) -> list[str]:
        """The GeoJSON files of ``view``'s layers, bottom to top."""
        entries = [self._geojson.get(id(layer)) for layer in view.layers]
        return [
            entry[1]
            for layer, entry in zip(view.layers, entries, strict=True)
            if entry is not None and entry[0] is layer
        ]

    @property
    def path(self) -> Path:
        """The session file."""
        return self._path if self._path is not None else session_path()

    def analysis_panels(self) -> dict[str, AnalysisPanel]:
        """The window's analysis panels by their dock's title."""
        docks = [d for d in self.window.findChildren(QDockWidget) if d.property(ANALYSIS_DOCK)]
        panels = {dock.windowTitle(): dock.widget().widget() for dock in docks}
        return {title: p for title, p in panels.items() if isinstance(p, AnalysisPanel)}

    def layer_group(self, layer) -> str | None:
        """The title of the analysis panel whose result drew ``layer``; None for others."""
        for title, panel in self.analysis_panels().items():
            if any(own is layer for own, _pane in panel.layers):
                return title
        return None

    # -- saving --------------------------------------------------------------------
    def capture(self) -> Session:
        """The session as the window is now; the results shown are saved beside it."""
        window = self.window
        panes = [
            PaneModel(
                slide=str(Path(slide.info.path).resolve()),
                view=ViewModel(**asdict(view.state)),
                display=self._display_of(view),
                sync=view.sync_enabled,
                geojson=self._geojson_of(view),
                layers=[
                    LayerModel(name=la.name, visible=la.visible, opacity=la.opacity)
                    for la in view.layers
                ],
            )
            for view, slide in zip(window.views, window.slides, strict=True)
            if slide is not None
        ]
        first_two = window.slides[:2]
        linked = len(first_two) == 2 and None not in first_two
        linked = linked and window.sync.has_transform(window.views[1])
        matrix = window.sync.matrix(window.views[1], window.views[0]) if linked else None
        registration = matrix.tolist() if linked else None
        return Session(panes=panes, registration=registration, analyses=self._save_results())

    def _display_of(self, view) -> DisplayModel:
        """How ``view`` draws its slide, with the slide's image type and user pixel size."""
        info = view.slide.info
        image_type = self.window.display_panel.image_type_of(view)
        return DisplayModel.of(
            view.display, image_type, info.mpp_x if info.mpp_set_by_user else None
        )

    def _save_results(self) -> list[AnalysisModel]:
        """Save every result shown to the results folder; what the session records of them."""
        folder = results_dir(self.path)
        analyses = []
        for title, panel in self.analysis_panels().items():
            if panel.result is None or panel.pane is None:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            name = result_name(title, panel.pane)
            panel.result.save(folder / name)
            panes = [panel.pane, *(p for p in panel.panes if p != panel.pane)]
            analyses.append(AnalysisModel(panel=title, panes=panes, file=name))
        return analyses

    def save(self) -> Path:
        """Save the session now.

        Raises
        ------
        Her2ViewerError
            One sentence naming the file when it, or a result saved beside it, cannot be
            written (a full or read-only disk), or when the window's state is not a valid
            session.
        """
        try:
            return save_session(self.capture(), self.path)
        except ValidationError as exc:
            raise SessionError(validation_sentence(self.path, "this session", exc)) from exc
        except OSError as exc:  # a result saved beside the session, or its folder
            raise output_error(exc.filename or self.path, exc) from exc

    def window_closing(self) -> None:
        """Save on close when :attr:`autosave`; a failure is one line on stderr (the window
        is going away: no dialog)."""
        if not self.autosave:
            return
        try:
            self.save()
        except Her2ViewerError as exc:
            print(f"her2viewer: the session was not saved: {exc}", file=sys.stderr)

    # -- restoring -----------------------------------------------------------------
    def restore(self):
        """Open the saved session's slides and, once open, put back views, sync, results and
        layer settings. Returns the :class:`~her2viewer.gui.mainwindow.Opening`, or None
        when there is nothing to restore (or the file is damaged: said in the usual box)."""
        try:
            session = load_session(self.path)
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return None
        if session is None or not session.panes:
            return None
        matrix = np.array(session.registration) if session.registration else None
        opening = self.window.open_slides([pane.slide for pane in session.panes], matrix)
        opening.finished.connect(lambda _ok: self._apply(session))
        return opening

    def _apply(self, session: Session) -> None:
        """Put back what the opened slides need: results first, then views and layers."""
        window = self.window
        shown = [
            index
            for index, pane in enumerate(session.panes)
            if window.slides[index] is not None
            and Path(window.slides[index].info.path).resolve() == Path(pane.slide)
        ]
        self._load_results(session, set(shown))
        for index in shown:
            for path in session.panes[index].geojson:
                window.add_geojson(path, pane=index)  # a file gone since: the usual box
        with window.sync.paused():
            for index in shown:
                self._apply_pane(window.views[index], session.panes[index])
        if session.notices:  # unusable display settings: that pane keeps the defaults
            window.statusBar().showMessage(" ".join(session.notices), NOTICE_MS)
        for index in shown[1:] if shown and shown[0] == 0 else []:
            view = window.views[index]
            if not window.sync.has_transform(view):
                window.sync.set_transform(view, None)  # relative sync, as the panes are now
            window.sync.set_view_sync(view, session.panes[index].sync)

    def _load_results(self, session: Session, shown: set[int]) -> None:
        panels = self.analysis_panels()
        folder = results_dir(self.path)
        for analysis in session.analyses:
            panel = panels.get(analysis.panel)
            if panel is None or not set(analysis.panes) <= shown:
                continue
            try:
                result = panel.widget.result_type.load(folder / analysis.file)
            except Her2ViewerError as exc:
                self.window.show_error(str(exc))
                continue
            panel.pane, panel.panes = analysis.panes[0], tuple(analysis.panes)
            panel.show_result(result)

    def _apply_pane(self, view, pane: PaneModel) -> None:
        if pane.view is not None:
            view.set_state(ViewState(**pane.view.model_dump()), clamp=False)
        if pane.display is not None:
            display = pane.display
            self.window.display_panel.restore(
                view, display.settings(), display.image_type, display.mpp
            )
        settings = {layer.name: layer for layer in pane.layers}
        for layer in view.layers:
            if layer.name in settings:
                layer.visible = settings[layer.name].visible
                layer.opacity = settings[layer.name].opacity
        view.layers_changed.emit()
        view.refresh()
