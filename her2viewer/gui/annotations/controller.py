"""Drawing and editing annotations in the slide panes.

:class:`AnnotationController` is one pane's: it owns the selection and the active
tool (it is the pane's ``SlideView.tool`` and draws the tool's preview as one of its
``vector_painters``), understands the keys, and turns every edit into a command on
the pane's :class:`~her2viewer.annotations.commands.CommandStack`, so each one can
be undone. :class:`AnnotationTools` is the window's: the Annotations menu and
toolbar (tools, class combo, edits), Edit > Undo/Redo, and per pane a document, a
command stack and an :class:`~her2viewer.annotations.store.AnnotationStore` opened
when a slide is shown (the store saves every change within a second).
"""

from __future__ import annotations

import shapely
from PySide6.QtCore import QObject, QPointF, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QComboBox, QMenu, QSpinBox, QToolBar
from shapely.geometry import MultiPoint, Point

from her2viewer.annotations.commands import (
    Add,
    CommandStack,
    Duplicate,
    Merge,
    Remove,
    Replace,
    SetClass,
    SetLocked,
    Subtract,
    brush_stroke,
)
from her2viewer.annotations.model import Annotation, AnnotationDocument
from her2viewer.annotations.store import AnnotationStore, store_path
from her2viewer.errors import Her2ViewerError
from her2viewer.gui.annotations.layer import AnnotationPainter
from her2viewer.gui.annotations.tools import BRUSH_SIZES, HANDLE_PX, make_tools, move_vertex

#: The tools in toolbar order: (name, label, QuPath's shortcut).
TOOLS = (
    ("move", "Move", "M"),
    ("rectangle", "Rectangle", "R"),
    ("ellipse", "Ellipse", "E"),
    ("line", "Line", "L"),
    ("polygon", "Polygon", "P"),
    ("polyline", "Polyline", "V"),
    ("brush", "Brush", "B"),
    ("wand", "Wand", "W"),
    ("points", "Points", "."),
)
#: What each tool does (its tooltip).
TOOL_TIPS = {
    "move": "Select, move and reshape annotations; drag empty slide to pan",
    "rectangle": "Draw a rectangle: press, drag, release",
    "ellipse": "Draw an ellipse: press, drag, release",
    "line": "Draw a straight line: press, drag, release",
    "polygon": "Draw a polygon: click the corners, close on the first one or press Enter",
    "polyline": "Draw a polyline: click the points, Enter to finish",
    "brush": "Paint an area with a round brush (Alt paints it away)",
    "wand": "Grow an area over similar colours from the click",
    "points": "Place points, one set per class",
}
#: The edits of the selection: (controller method, label, shortcut or "").
EDITS = (
    ("delete_selected", "Delete", "Del"),
    ("merge_selected", "Merge", "Ctrl+Shift+M"),
    ("subtract_selected", "Subtract (first selected minus the others)", ""),
    ("duplicate_selected", "Duplicate", "Ctrl+D"),
    ("toggle_lock", "Lock / unlock", "Ctrl+K"),
)
#: Screen pixels around a click within which a line or point is hit.
HIT_PX = 4.0
#: Screen pixels a duplicate is offset by, so it shows beside its original.
DUPLICATE_PX = 20.0


def _key_name(event) -> str:
    """A key event as a shortcut string ("Ctrl+D", "M", "Del")."""
    return QKeySequence(event.keyCombination()).toString()


class AnnotationController(QObject):
    """The annotation tools of one pane.

    Parameters
    ----------
    view : SlideView
        The pane; the controller becomes its ``tool`` and one of its ``vector_painters``.
    document : AnnotationDocument
        The pane's annotations.
    stack : CommandStack
        Where every edit goes (undo/redo).

    Signals
    -------
    selection_changed()
        :attr:`selected_ids` changed.
    class_changed(str)
        :attr:`current_class` (the class of new shapes) changed; "" for none.
    tool_changed(str)
        Another tool is active.
    message(str)
        An edit was refused (a locked annotation, nothing selected), in one sentence.
    """

    selection_changed = Signal()
    class_changed = Signal(str)
    tool_changed = Signal(str)
    message = Signal(str)

    def __init__(self, view, document: AnnotationDocument, stack: CommandStack, parent=None):
        super().__init__(parent)
        self.view = view
        self.document = document
        self.stack = stack
        self.selected_ids: list[str] = []
        self.current_class: str | None = None
        self.tools = make_tools(self)
        self.tool = self.tools["move"]
        #: Draws the document on the pane and answers its hit-tests (one spatial index).
        self.painter = AnnotationPainter(document, lambda: self.selected_ids)
        document.subscribe(self._on_change)
        view.tool = self
        view.vector_painters.insert(0, self.painter)
        view.vector_painters.append(self)

    def detach(self) -> None:
        """Take the controller off its pane (another slide is shown there)."""
        self.document.unsubscribe(self._on_change)
        if self.view.tool is self:  # (another mode, e.g. landmarks, may hold the pane)
            self.view.tool = None
        for painter in (self, self.painter):
            if painter in self.view.vector_painters:
                self.view.vector_painters.remove(painter)
        self.painter.detach()  # its tile cache goes with it
        self.view.update()

    # -- tools and the pane's events -------------------------------------------------
    def set_tool(self, name: str) -> None:
        """Make tool ``name`` (see :data:`TOOLS`) the active one; a drawing in progress goes."""
        if name != self.tool.name:
            self.tool.cancel()
            self.tool = self.tools[name]
            self.view.update()
            self.tool_changed.emit(name)

    def press(self, view, event) -> bool:
        """Forwarded to the active tool (see ``SlideView.tool``)."""
        return self.tool.press(view, event)

    def move(self, view, event) -> bool:
        """Forwarded to the active tool."""
        return self.tool.move(view, event)

    def release(self, view, event) -> bool:
        """Forwarded to the active tool."""
        return self.tool.release(view, event)

    def double_click(self, view, event) -> bool:
        """Forwarded to the active tool."""
        return self.tool.double_click(view, event)

    def key(self, view, event) -> bool:
        """The tool's own keys, then Esc (cancel the drawing, else the selection), 1-9
        (class), Backspace and the shortcuts of :data:`TOOLS` and :data:`EDITS`."""
        if self.tool.key(view, event):
            return True
        name = _key_name(event)
        if name == "Esc":
            if not self.tool.cancel():
                self.select([])
            view.update()
        elif name in "123456789" and len(name) == 1:
            self.set_class_index(int(name) - 1)
        elif name == "Backspace":
            self.delete_selected()
        elif name in {shortcut for _n, _l, shortcut in TOOLS}:
            self.set_tool(next(n for n, _l, s in TOOLS if s == name))
        elif name in {shortcut for _m, _l, shortcut in EDITS if shortcut}:
            getattr(self, next(m for m, _l, s in EDITS if s == name))()
        else:
            return False
        return True

    def paint(self, painter, view) -> None:
        """Draw the active tool's preview (a ``vector_painters`` entry of the pane)."""
        self.tool.paint(painter, view)

    # -- hit-testing and selection ---------------------------------------------------
    def hit(self, sx: float, sy: float) -> str | None:
        """Id of the annotation under screen point ``(sx, sy)`` (the smallest one), or None."""
        x, y = self.view.screen_to_level0(sx, sy)
        hits = self.painter.ids_at(x, y, tolerance=HIT_PX * self.view.state.downsample)
        return hits[0] if hits else None

    def vertex_at(self, sx: float, sy: float) -> tuple[str, int] | None:
        """``(id, coordinate index)`` of a vertex handle of the one selected unlocked
        annotation within :data:`HANDLE_PX` of screen point ``(sx, sy)``, or None."""
        if len(self.selected_ids) != 1 or not self.editable(self.selected_ids):
            return None
        ann = self.document.get(self.selected_ids[0])
        x, y = self.view.screen_to_level0(sx, sy)
        coords = shapely.get_coordinates(ann.geometry)
        distances = ((coords - (x, y)) ** 2).sum(axis=1) ** 0.5
        nearest = int(distances.argmin())
        if distances[nearest] > HANDLE_PX * self.view.state.downsample:
            return None
        return ann.id, nearest

    def selected(self) -> list[Annotation]:
        """The selected annotations, in the order they were selected."""
        return [self.document.get(i) for i in self.selected_ids]

    def select(self, ids, add: bool = False) -> None:
        """Select ``ids`` (added to the selection when ``add``)."""
        chosen = list(self.selected_ids) if add else []
        chosen += [i for i in ids if i not in chosen]
        if chosen != self.selected_ids:
            self.selected_ids = chosen
            self.view.update()
            self.selection_changed.emit()

    def toggle(self, ann_id: str) -> None:
        """Add ``ann_id`` to the selection, or take it out (Shift-click)."""
        if ann_id in self.selected_ids:
            self.select([i for i in self.selected_ids if i != ann_id])
        else:
            self.select([ann_id], add=True)

    def select_in_box(self, start: QPointF, end: QPointF, add: bool = False) -> None:
        """Select what lies inside the screen rectangle from ``start`` to ``end``."""
        corners = [start, QPointF(start.x(), end.y()), end, QPointF(end.x(), start.y())]
        box = shapely.Polygon([self.view.screen_to_level0(p.x(), p.y()) for p in corners])
        candidates = self.painter.ids_in(*box.bounds)
        inside = [i for i in candidates if box.covers(self.document.get(i).geometry)]
        self.select(inside, add=add)

    def editable(self, ids) -> bool:
        """Whether none of ``ids`` is locked (locked ones keep their geometry)."""
        return not any(self.document.get(i).locked for i in ids)

    def _on_change(self, change) -> None:
        kept = [i for i in self.selected_ids if i in self.document]
        if kept != self.selected_ids:
            self.selected_ids = kept
            self.selection_changed.emit()
        self.view.update()

    # -- edits (each one command on the stack) ---------------------------------------
    def push(self, command) -> bool:
        """Do ``command`` through the stack; a refusal is reported by :attr:`message`."""
        try:
            self.stack.push(command)
        except Her2ViewerError as exc:
            self.message.emit(str(exc))
            return False
        return True

    def _push_and_select_new(self, command) -> None:
        """Do ``command`` and select the annotations it made, if any (merge, duplicate)."""
        before = {ann.id for ann in self.document}
        if self.push(command):
            made = [ann.id for ann in self.document if ann.id not in before]
            if made:
                self.select(made)

    def add(self, geometry, kind: str) -> None:
        """Add a new annotation of the current class and select it."""
        ann = Annotation(geometry, kind=kind, class_name=self.current_class)
        if self.push(Add([ann])):
            self.select([ann.id])

    def apply_stroke(self, stroke, subtract: bool) -> None:
        """Merge a brush or wand area into the one selected annotation (``subtract``:
        cut it out); with none selected, a new annotation of the current class."""
        selected = self.selected()
        target = selected[0].id if len(selected) == 1 else None
        try:
            command = brush_stroke(self.document, target, stroke, subtract, self.current_class)
        except Her2ViewerError as exc:
            self.message.emit(str(exc))
            return
        self._push_and_select_new(command)

    def _point_set(self) -> Annotation | None:
        """The point set of the current class, if there is one."""
        return next(
            (
                ann
                for ann in self.document
                if ann.kind == "points" and ann.class_name == self.current_class
            ),
            None,
        )

    def add_point(self, x: float, y: float) -> None:
        """Add a level-0 point to the current class's point set (made on the first point)."""
        points = self._point_set()
        if points is None:
            self.add(MultiPoint([(x, y)]), "points")
            return
        geometry = MultiPoint([*points.geometry.geoms, Point(x, y)])
        self.push(Replace({points.id: points.replace(geometry=geometry)}))

    def remove_point(self, x: float, y: float) -> None:
        """Remove the current class's point nearest ``(x, y)``, if within reach of a click."""
        points = self._point_set()
        reach = HIT_PX * self.view.state.downsample
        if points is None or points.geometry.distance(Point(x, y)) > reach:
            return
        kept = [p for p in points.geometry.geoms if p.distance(Point(x, y)) > reach]
        if kept:
            self.push(Replace({points.id: points.replace(geometry=MultiPoint(kept))}))
        else:
            self.push(Remove([points.id]))

    def translate_selected(self, dx: float, dy: float) -> None:
        """Move the selected annotations by ``(dx, dy)`` level-0 pixels."""
        moved = {
            a.id: a.replace(geometry=shapely.transform(a.geometry, lambda c: c + (dx, dy)))
            for a in self.selected()
        }
        self.push(Replace(moved))

    def move_vertex(self, ann_id: str, index: int, x: float, y: float) -> None:
        """Move one vertex of an annotation (a rectangle or ellipse becomes a polygon)."""
        ann = self.document.get(ann_id)
        kind = "polygon" if ann.kind in ("rectangle", "ellipse") else ann.kind
        edited = ann.replace(geometry=move_vertex(ann.geometry, index, x, y), kind=kind)
        self.push(Replace({ann_id: edited}))

    def _need(self, count: int, what: str) -> bool:
        if len(self.selected_ids) >= count:
            return True
        self.message.emit(f"Select {count} or more annotations to {what}.")
        return False

    def delete_selected(self) -> None:
        """Delete the selected annotations."""
        if self._need(1, "delete"):
            self.push(Remove(list(self.selected_ids)))

    def merge_selected(self) -> None:
        """Merge the selected annotations into one."""
        if self._need(2, "merge"):
            self._push_and_select_new(Merge(list(self.selected_ids)))

    def subtract_selected(self) -> None:
        """Cut the other selected annotations out of the first one selected."""
        if self._need(2, "subtract"):
            target, *cutters = self.selected_ids
            if self.push(Subtract(target, cutters)):
                self.select([target])

    def duplicate_selected(self) -> None:
        """Copy the selected annotations, a little offset, and select the copies."""
        if self._need(1, "duplicate"):
            offset = DUPLICATE_PX * self.view.state.downsample
            self._push_and_select_new(Duplicate(list(self.selected_ids), offset=(offset, offset)))

    def toggle_lock(self) -> None:
        """Lock the selected annotations, or unlock them when all are locked."""
        if self._need(1, "lock"):
            locked = not all(a.locked for a in self.selected())
            self.push(SetLocked(list(self.selected_ids), locked))

    def set_class(self, name: str | None) -> None:
        """Class the selected annotations as ``name``; with none selected, draw new
        shapes in that class."""
        if self.selected_ids:
            self.push(SetClass(list(self.selected_ids), name))
            return
        self.current_class = name
        self.class_changed.emit(name or "")

    def set_class_index(self, index: int) -> None:
        """:meth:`set_class` with the document's ``index``-th class (number keys 1-9)."""
        if index < len(self.document.classes):
            self.set_class(self.document.classes[index].name)

    def fill_menu(self, menu: QMenu, sx: float, sy: float) -> None:
        """Add the annotation entries to a pane's context menu opened at ``(sx, sy)``:
        the annotation under it is selected first (as QuPath does)."""
        hit = self.hit(sx, sy)
        if hit is not None and hit not in self.selected_ids:
            self.select([hit])
        if not self.selected_ids:
            return
        menu.addSeparator()
        classes = menu.addMenu("Set class")
        for path_class in self.document.classes:
            classes.addAction(path_class.name, lambda n=path_class.name: self.set_class(n))
        classes.addAction("Unclassified", lambda: self.set_class(None))
        for method, label, _shortcut in EDITS:
            menu.addAction(label, getattr(self, method))


class AnnotationTools(QObject):
    """The window's annotation tools and one annotation store per pane.

    Parameters
    ----------
    window : MainWindow
        Gets an Annotations menu and toolbar, and Edit > Undo/Redo; errors go to its
        ``show_error``, refusals to its status bar.

    Signals
    -------
    active_changed(object)
        The active pane's :class:`AnnotationController` (None when it has no slide).
    save_failed(str)
        A store could not save (a full disk), in one sentence; shown by the window.
    """

    active_changed = Signal(object)
    save_failed = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.controllers: dict[object, AnnotationController] = {}
        self.stores: dict[object, AnnotationStore] = {}
        self.tool_name = "move"
        self.tool_actions: dict[str, QAction] = {}
        #: The brush diameter by unit (µm on slides with a pixel size, slide px otherwise).
        self.brush_sizes = dict(BRUSH_SIZES)
        #: fingerprint -> a slide's store file (an open project points it into its folder)
        self.store_path = store_path
        self._menus()
        self.save_failed.connect(window.show_error)  # queued: stores save on a thread
        window.display_panel.pixel_size_changed.connect(self.pixel_size_changed)

    @property
    def active(self) -> AnnotationController | None:
        """The controller of the window's active pane."""
        return self.controllers.get(self.window.active)

    def _menus(self) -> None:
        window = self.window
        bar = window.menuBar()
        view_menu, help_menu = bar.actions()[1], bar.actions()[-1]  # File, View, ..., Help
        edit = bar.insertMenu(view_menu, QMenu("&Edit", bar)).menu()
        self.undo_action = self._action(edit, "&Undo", lambda c: self._step(c.stack.undo), "Ctrl+Z")
        self.redo_action = self._action(
            edit, "&Redo", lambda c: self._step(c.stack.redo), "Ctrl+Shift+Z"
        )
        self.menu = menu = bar.insertMenu(help_menu, QMenu("&Annotations", bar)).menu()
        toolbar = QToolBar("Annotations")
        toolbar.setObjectName("annotations")
        window.addToolBar(toolbar)
        group = QActionGroup(self)
        for name, label, shortcut in TOOLS:
            action = QAction(f"{label}", self, checkable=True, shortcut=QKeySequence(shortcut))
            action.setToolTip(f"{TOOL_TIPS[name]} ({shortcut})")
            action.setStatusTip(action.toolTip())
            action.triggered.connect(lambda _checked=False, n=name: self.set_tool(n))
            group.addAction(action)
            menu.addAction(action)
            toolbar.addAction(action)
            self.tool_actions[name] = action
        self.tool_actions["move"].setChecked(True)
        menu.addSeparator()
        for method, label, shortcut in EDITS:
            self._action(menu, label, lambda c, m=method: getattr(c, m)(), shortcut)
        self.class_menu = menu.addMenu("Set &class")
        self.class_box = QComboBox()
        self.class_box.setToolTip("Class of new annotations (1-9 set it by number)")
        self.class_box.activated.connect(self._on_class_chosen)
        toolbar.addWidget(self.class_box)
        self.brush_box = QSpinBox(minimum=1, maximum=5000)
        self.brush_box.setToolTip(
            "Brush diameter on the slide: µm when it has a pixel size (its pixels otherwise); "
            "a stroke keeps that size at any zoom"
        )
        self._show_brush_size()
        self.brush_box.valueChanged.connect(self._on_brush_size)
        toolbar.addWidget(self.brush_box)
        self._fill_classes()

    def _action(self, menu, text: str, slot, shortcut: str = "") -> QAction:
        """A menu action calling ``slot(active controller)`` when a pane has annotations."""
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        tip = f"{text.replace('&', '')}: the selected annotations of the active pane"
        action.setToolTip(tip)
        action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: self.active and slot(self.active))
        menu.addAction(action)
        return action

    def set_tool(self, name: str) -> None:
        """Make tool ``name`` the active one in every pane."""
        self.tool_name = name
        self.tool_actions[name].setChecked(True)
        for controller in self.controllers.values():
            controller.set_tool(name)

    # -- panes ---------------------------------------------------------------------
    def slide_shown(self, view, slide) -> None:
        """Open the annotation store of ``slide`` (shown in ``view``) and its tools."""
        self.pane_closed(view)
        try:
            store = AnnotationStore.open(
                self.store_path(slide.info.fingerprint), mpp=slide.info.mpp_x
            )
        except Her2ViewerError as exc:
            self.window.show_error(str(exc))
            return
        store.on_error = lambda exc: self.save_failed.emit(str(exc))
        for notice in store.notices:  # a damaged file was kept aside
            self.window.show_error(notice)
        controller = AnnotationController(view, store.document, CommandStack(store.document), self)
        controller.set_tool(self.tool_name)
        brush = controller.tools["brush"]
        brush.size = self.brush_sizes[brush.unit]
        controller.message.connect(lambda text: self.window.statusBar().showMessage(text, 8000))
        controller.tool_changed.connect(self._on_tool_changed)
        controller.class_changed.connect(self._on_class_changed)
        # after the command is recorded (documents notify while it is done)
        store.document.subscribe(
            lambda change: QTimer.singleShot(0, self, lambda: self._on_document_changed(change))
        )
        self.stores[view], self.controllers[view] = store, controller
        self.pane_activated(view)

    def pane_closed(self, view) -> None:
        """Save and close the annotations of ``view`` (its slide goes)."""
        controller = self.controllers.pop(view, None)
        if controller is not None:
            controller.detach()
            self.stores.pop(view).close()

    def close_all(self) -> None:
        """Save and close every pane's annotations (the window closes)."""
        for view in list(self.controllers):
            self.pane_closed(view)

    def pixel_size_changed(self, view) -> None:
        """Measure the annotations of ``view`` with its slide's new pixel size; the brush
        keeps its size in the unit that comes with it (µm or px)."""
        controller = self.controllers.get(view)
        if controller is None:
            return
        controller.document.mpp = view.slide.info.mpp_x
        brush = controller.tools["brush"]
        brush.size = self.brush_sizes[brush.unit]
        self._show_brush_size()

    def pane_activated(self, view) -> None:
        """Show the active pane's classes and undo state."""
        self._fill_classes()
        self._update_undo()
        self._show_brush_size()
        self.active_changed.emit(self.active)

    # -- readouts ------------------------------------------------------------------
    def _on_tool_changed(self, name: str) -> None:
        if name != self.tool_name:  # a key in one pane: every pane follows
            self.set_tool(name)

    def _fill_classes(self) -> None:
        """The class combo and menu list the active document's classes."""
        controller = self.active
        classes = controller.document.classes if controller else []
        self.class_box.clear()
        self.class_box.addItem("Unclassified", None)
        self.class_menu.clear()
        for number, path_class in enumerate(classes, start=1):
            self.class_box.addItem(path_class.name, path_class.name)
            shortcut = f"\t{number}" if number <= 9 else ""
            action = self.class_menu.addAction(
                f"{path_class.name}{shortcut}",
                lambda n=path_class.name: self.active and self.active.set_class(n),
            )
            action.setStatusTip(f"Give the selected annotations the class {path_class.name}")
        if controller is not None:
            self._on_class_changed(controller.current_class or "")

    def _on_document_changed(self, change) -> None:
        if change.kind == "classes":
            self._fill_classes()
        self._update_undo()

    def _brush_unit(self) -> str:
        """The brush unit of the active pane (µm without one)."""
        return self.active.tools["brush"].unit if self.active else "µm"

    def _show_brush_size(self) -> None:
        """The brush box shows the size in the active pane's unit."""
        unit = self._brush_unit()
        self.brush_box.blockSignals(True)
        self.brush_box.setSuffix(f" {unit}")
        self.brush_box.setValue(round(self.brush_sizes[unit]))
        self.brush_box.blockSignals(False)

    def _on_brush_size(self, size: int) -> None:
        unit = self._brush_unit()
        self.brush_sizes[unit] = size
        for controller in self.controllers.values():
            if controller.tools["brush"].unit == unit:
                controller.tools["brush"].size = size

    def _on_class_chosen(self, row: int) -> None:
        name = self.class_box.itemData(row)
        for controller in self.controllers.values():
            controller.current_class = name

    def _on_class_changed(self, name: str) -> None:
        row = self.class_box.findData(name or None)
        self.class_box.setCurrentIndex(max(row, 0))
        for controller in self.controllers.values():
            controller.current_class = name or None

    def _step(self, undo_or_redo) -> None:
        undo_or_redo()
        self._update_undo()

    def _update_undo(self) -> None:
        stack = self.active.stack if self.active else None
        for action, verb, can, what in (
            (self.undo_action, "&Undo", "can_undo", "undo_description"),
            (self.redo_action, "&Redo", "can_redo", "redo_description"),
        ):
            action.setEnabled(bool(stack and getattr(stack, can)))
            description = getattr(stack, what) if action.isEnabled() else None
            action.setText(f"{verb} {description}" if description else verb)
            action.setStatusTip(
                f"{verb[1:]} the last annotation edit of the active pane: {description}"
                if description
                else f"Nothing to {verb[1:].lower()} in the active pane"
            )
