"""The annotation panels of the active pane: the annotation tree, the classes, the measurements.

:class:`AnnotationPanel` (the window's "Annotations" dock) holds three tabs that follow
the active pane's :class:`~her2viewer.gui.annotations.controller.AnnotationController`:

- :class:`AnnotationTree`: the annotations nested as QuPath nests them (each inside the
  smallest area that covers it), with class, name, area (um^2, or px^2 when the slide has
  no pixel size) and points; a click selects the annotation and centres the view on it,
  a double click renames it.
- :class:`ClassPanel`: the class list with colour swatch, count, total area and points;
  classes are added, renamed, recoloured and removed through undoable commands.
- :class:`MeasurementTable`: every measurement of every annotation, a
  :class:`MeasurementModel` updated row by row as annotations change (a bulk load is
  one model reset), exported to CSV through :func:`her2viewer.tables.write_csv`
  (formula-escaped, atomic).

Each follows its document's changes in batches (:class:`DocumentFollower`); the tree
updates only the rows a change touched unless the nesting changed.
"""

from __future__ import annotations

import functools

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QFileDialog,
    QGridLayout,
    QHeaderView,
    QInputDialog,
    QPushButton,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from her2viewer.annotations.commands import (
    Rename,
    add_class,
    recolor_class,
    remove_class,
    rename_class,
)
from her2viewer.annotations.model import UNCLASSIFIED
from her2viewer.errors import Her2ViewerError
from her2viewer.geometry.shapes import measure
from her2viewer.tables import write_csv

ID_ROLE = Qt.ItemDataRole.UserRole
#: Milliseconds over which document changes are gathered into one panel update.
REFRESH_MS = 50
#: Annotation fields before the measurements in the table and its CSV.
ID_COLUMNS = ("id", "name", "class", "kind")
#: A batch of changes touching more annotations than this reloads the measurement table
#: in one model reset (a bulk load) instead of row by row.
RELOAD_ABOVE = 500


@functools.lru_cache(maxsize=256)
def swatch(color: tuple[int, int, int]) -> QIcon:
    """A small square icon of ``color`` (one per colour, shared by the rows)."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(*color))
    return QIcon(pixmap)


def area_unit(mpp: float | None) -> tuple[str, str]:
    """The measurement key of an area and its column label, in um^2 or px^2."""
    return ("area_um2", "Area (µm²)") if mpp else ("area_px2", "Area (px²)")


def number_text(value) -> str:
    """A measurement as shown in a cell: floats to two decimals with separators."""
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "" if value is None else str(value)


def center_of(ann) -> tuple[float, float]:
    """The level-0 centre of an annotation's bounds (where the view goes to show it)."""
    x0, y0, x1, y1 = ann.geometry.bounds
    return (x0 + x1) / 2, (y0 + y1) / 2


class DocumentFollower(QObject):
    """Gathers the changes of one document and hands them over in one batch.

    Signals
    -------
    changed(list)
        The :class:`~her2viewer.annotations.model.DocumentChange` list since the last batch.
    """

    changed = Signal(list)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.document = None
        self._changes: list = []
        self._timer = QTimer(self, singleShot=True, interval=REFRESH_MS)
        self._timer.timeout.connect(self._flush)

    def follow(self, document) -> None:
        """Follow ``document`` (None: none) instead of the one followed so far."""
        if self.document is not None:
            self.document.unsubscribe(self._on_change)
        self.document = document
        self._changes = []
        self._timer.stop()
        if document is not None:
            document.subscribe(self._on_change)

    def _on_change(self, change) -> None:
        self._changes.append(change)
        if not self._timer.isActive():
            self._timer.start()

    def _flush(self) -> None:
        changes, self._changes = self._changes, []
        if changes:
            self.changed.emit(changes)


class AnnotationTree(QTreeWidget):
    """The annotations of a document nested by :meth:`AnnotationDocument.hierarchy`.

    Signals
    -------
    error(str)
        A refused edit (a rename), in one sentence.
    """

    error = Signal(str)
    COLUMNS = ("Class", "Name", "Area", "Points")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = None
        self.items: dict[str, QTreeWidgetItem] = {}
        self._parents: dict[str, str | None] = {}
        self._area_key = "area_px2"
        self._quiet = False  # True while the tree itself changes items or the selection
        self.setColumnCount(len(self.COLUMNS))
        self.setHeaderLabels(self.COLUMNS)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setUniformRowHeights(True)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)  # names give way
        self.follower = DocumentFollower(self)
        self.follower.changed.connect(self._apply)
        self.itemSelectionChanged.connect(self._on_selection)
        self.itemClicked.connect(self._on_clicked)
        self.itemDoubleClicked.connect(lambda item, _column: self.editItem(item, 1))
        self.itemChanged.connect(self._on_edited)

    @property
    def document(self):
        """The followed document (None without a controller)."""
        return self.follower.document

    def set_controller(self, controller) -> None:
        """Show the annotations of ``controller``'s document (None: nothing)."""
        if self.controller is not None:
            self.controller.selection_changed.disconnect(self._show_selection)
        self.controller = controller
        self.follower.follow(controller.document if controller else None)
        if controller is not None:
            controller.selection_changed.connect(self._show_selection)
        self.rebuild()

    # -- building --------------------------------------------------------------------
    def rebuild(self) -> None:
        """Fill the tree again from the document."""
        self._quiet = True
        self.clear()
        self.items = {}
        self._parents = {}
        document = self.document
        if document is not None:
            self._area_key, label = area_unit(document.mpp)
            self.setHeaderLabels([self.COLUMNS[0], self.COLUMNS[1], label, self.COLUMNS[3]])
            self._parents = document.hierarchy()
            for ann in document:
                self._item(ann.id)
        self._quiet = False
        self._show_selection()

    def _item(self, ann_id: str) -> QTreeWidgetItem:
        """The item of ``ann_id``, made (after its parent's) when it is not there yet."""
        item = self.items.get(ann_id)
        if item is None:
            parent_id = self._parents.get(ann_id)
            parent = self._item(parent_id) if parent_id is not None else self.invisibleRootItem()
            item = self.items[ann_id] = QTreeWidgetItem(parent)
            item.setData(0, ID_ROLE, ann_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self._fill(item, self.document.get(ann_id))
        return item

    def _fill(self, item: QTreeWidgetItem, ann) -> None:
        """Write an annotation's class, name, area and points into its row."""
        document = self.document
        values = measure(ann.geometry, document.mpp)
        item.setText(0, ann.class_name or UNCLASSIFIED)
        item.setIcon(0, swatch(document.color_of(ann)))
        item.setText(1, ann.name)
        font = item.font(1)
        font.setItalic(ann.locked)
        item.setFont(1, font)
        notes = [f"transferred from {ann.transferred_from}"] if ann.transferred_from else []
        item.setToolTip(1, "; ".join(notes + ["locked"] * ann.locked))
        item.setText(2, number_text(values.get(self._area_key)))
        item.setText(3, number_text(values.get("n_points")))
        for column in (2, 3):
            item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight)

    def _apply(self, changes: list) -> None:
        """Bring the tree up to date with a batch of changes, row by row when the nesting
        of the annotations that stay is unchanged, else by a rebuild."""
        kinds = {c.kind for c in changes}
        document = self.document
        if "mpp" in kinds or document is None:  # mpp: every area in new units
            self.rebuild()
            return
        ids = {i for c in changes for i in c.ids}
        parents = document.hierarchy()
        staying = [i for i in self.items if i in document]
        if any(parents[i] != self._parents.get(i) for i in staying):
            self.rebuild()
            return
        self._quiet = True
        self._parents = parents
        for ann_id in [i for i in self.items if i not in document]:
            item = self.items.pop(ann_id)
            (item.parent() or self.invisibleRootItem()).removeChild(item)
        refill = self.items if "classes" in kinds else ids  # class colours or names changed
        for ann_id in refill:
            if ann_id in self.items:
                self._fill(self.items[ann_id], document.get(ann_id))
        for ann in document:
            if ann.id in ids:
                self._item(ann.id)
        self._quiet = False
        self._show_selection()

    # -- selection, centring, renaming -------------------------------------------------
    def selected_ids(self) -> list[str]:
        """Ids of the selected rows."""
        return [item.data(0, ID_ROLE) for item in self.selectedItems()]

    def _show_selection(self) -> None:
        """Select the rows of the controller's selection (without echoing it back)."""
        if self.controller is None:
            return
        self._quiet = True
        self.clearSelection()
        for ann_id in self.controller.selected_ids:
            item = self.items.get(ann_id)
            if item is not None:
                item.setSelected(True)
                self.scrollToItem(item)
        self._quiet = False

    def _on_selection(self) -> None:
        if not self._quiet and self.controller is not None:
            self.controller.select(self.selected_ids())

    def _on_clicked(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        """Centre the pane on the clicked annotation (the zoom stays)."""
        ann_id = item.data(0, ID_ROLE)
        if self.controller is not None and ann_id in self.document:
            self.controller.view.center_on(*center_of(self.document.get(ann_id)))

    def _on_edited(self, item: QTreeWidgetItem, column: int) -> None:
        """A name typed into a row renames the annotation (an undoable command)."""
        if self._quiet or column != 1 or self.controller is None:
            return
        ann = self.document.get(item.data(0, ID_ROLE))
        name = item.text(1).strip()
        if name != ann.name:
            try:
                self.controller.stack.push(Rename(ann.id, name))
            except Her2ViewerError as exc:
                self.error.emit(str(exc))
        self._quiet = True
        self._fill(item, self.document.get(ann.id))
        self._quiet = False


class ClassPanel(QWidget):
    """The class list of a document: swatch, count, total area and points per class, and
    buttons to add, rename, recolour and remove classes (each an undoable command).

    Signals
    -------
    error(str)
        A refused edit (an empty or repeated name), in one sentence.
    """

    error = Signal(str)
    COLUMNS = ("Class", "Count", "Area", "Points")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = None
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        buttons = QGridLayout()  # two by two: four buttons in a row outgrow the 330 px dock
        for place, (text, slot, tip) in enumerate(
            (
                ("Add…", self._ask_add, "Add a class"),
                ("Rename…", self._ask_rename, "Rename the chosen class (its annotations follow)"),
                ("Colour…", self._ask_color, "Change the chosen class's colour"),
                ("Remove", self._remove_chosen, "Remove the chosen class (undoable)"),
            )
        ):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _checked=False, s=slot: s())
            buttons.addWidget(button, place // 2, place % 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.follower = DocumentFollower(self)
        self.follower.changed.connect(lambda _changes: self.refresh())

    def set_controller(self, controller) -> None:
        """Show the classes of ``controller``'s document (None: nothing)."""
        self.controller = controller
        self.follower.follow(controller.document if controller else None)
        self.refresh()

    def refresh(self) -> None:
        """Fill the table from :meth:`AnnotationDocument.class_summary`."""
        document = self.follower.document
        rows = document.class_summary() if document is not None else []
        key, label = area_unit(document.mpp if document is not None else None)
        self.table.setHorizontalHeaderLabels([*self.COLUMNS[:2], label, self.COLUMNS[3]])
        self.table.setRowCount(len(rows))
        for row, summary in enumerate(rows):
            name = QTableWidgetItem(swatch(summary["color"]), summary["class"])
            self.table.setItem(row, 0, name)
            for column, value in enumerate((summary["count"], summary[key], summary["n_points"])):
                cell = QTableWidgetItem(number_text(value))
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column + 1, cell)

    def chosen_class(self) -> str | None:
        """The class of the selected row (None: no row, or the unclassified row)."""
        row = self.table.currentRow()
        document = self.follower.document
        if row < 0 or document is None:
            return None
        name = self.table.item(row, 0).text()
        return name if document.path_class(name) is not None else None

    # -- edits (each one command on the pane's stack) ------------------------------------
    def _push(self, make, *args) -> None:
        if self.controller is None:
            return
        try:
            self.controller.stack.push(make(self.controller.document, *args))
        except Her2ViewerError as exc:
            self.error.emit(str(exc))

    def add_class(self, name: str, color: tuple[int, int, int]) -> None:
        """Add class ``name`` with ``color`` to the end of the list."""
        self._push(add_class, name.strip(), color)

    def rename_class(self, old: str, new: str) -> None:
        """Rename class ``old`` (and its annotations' class) to ``new``."""
        self._push(rename_class, old, new.strip())

    def recolor_class(self, name: str, color: tuple[int, int, int]) -> None:
        """Give class ``name`` a new colour."""
        self._push(recolor_class, name, color)

    def remove_class(self, name: str) -> None:
        """Take class ``name`` off the list (its annotations keep the name)."""
        self._push(remove_class, name)

    # -- the buttons' dialogs --------------------------------------------------------------
    def _ask_add(self) -> None:
        name, ok = QInputDialog.getText(self, "Add class", "Name of the new class:")
        if ok and name.strip():
            color = QColorDialog.getColor(QColor(0, 150, 200), self, f"Colour of {name}")
            if color.isValid():
                self.add_class(name, color.getRgb()[:3])

    def _ask_rename(self) -> None:
        old = self.chosen_class()
        if old is not None:
            new, ok = QInputDialog.getText(self, "Rename class", f"New name of {old}:", text=old)
            if ok and new.strip() and new.strip() != old:
                self.rename_class(old, new)

    def _ask_color(self) -> None:
        name = self.chosen_class()
        if name is not None:
            current = QColor(*self.follower.document.path_class(name).color)
            color = QColorDialog.getColor(current, self, f"Colour of {name}")
            if color.isValid():
                self.recolor_class(name, color.getRgb()[:3])

    def _remove_chosen(self) -> None:
        name = self.chosen_class()
        if name is not None:
            self.remove_class(name)


class MeasurementModel(QAbstractTableModel):
    """The measurement table's rows: one per annotation of a document in drawing order,
    its name, class and kind, then every measurement key (the id is kept for the CSV).

    :meth:`reload` measures every annotation in one model reset; :meth:`apply` brings the
    rows up to date with a batch of document changes row by row: rows inserted and removed,
    ``dataChanged`` for the rows whose annotation changed (and for the areas around a
    changed point set, whose point counts follow), columns as measurement keys come and go.
    A new pixel size or a batch of more than :data:`RELOAD_ABOVE` annotations is one
    reload.
    """

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.document = None
        self._mpp: float | None = None
        self._ids: list[str] = []
        self._anns: dict[str, object] = {}
        self._measured: dict[str, dict] = {}
        self._keys: list[str] = []
        self._key_rows: dict[str, int] = {}  # how many rows have each measurement key

    # -- the Qt model ------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(ID_COLUMNS) - 1 + len(self._keys)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        return number_text(self._value(self._ids[index.row()], index.column() + 1))

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if role != Qt.ItemDataRole.DisplayRole or orientation != Qt.Orientation.Horizontal:
            return None
        return self.header()[section + 1]

    # -- the table as data -------------------------------------------------------------------
    def header(self) -> list[str]:
        """The column names: the annotation fields, then the measurement keys."""
        return [*ID_COLUMNS, *self._keys]

    def rows(self) -> list[list]:
        """One row of values per annotation, in the order of :meth:`header`."""
        columns = range(len(ID_COLUMNS) + len(self._keys))
        return [[self._value(ann_id, c) for c in columns] for ann_id in self._ids]

    def _value(self, ann_id: str, column: int):
        """The value of a row's ``column`` (of :meth:`header`)."""
        if column >= len(ID_COLUMNS):
            return self._measured[ann_id].get(self._keys[column - len(ID_COLUMNS)])
        ann = self._anns[ann_id]
        return (ann.id, ann.name, ann.class_name or UNCLASSIFIED, ann.kind)[column]

    # -- following the document ----------------------------------------------------------------
    def reload(self, document) -> None:
        """Measure every annotation of ``document`` (None: no rows) in one model reset."""
        self.beginResetModel()
        self.document = document
        self._mpp = document.mpp if document is not None else None
        self._ids, self._anns, self._measured = [], {}, {}
        self._key_rows = {}
        for ann in document if document is not None else ():
            self._ids.append(ann.id)
            self._keep(ann)
        self._keys = list(self._key_rows)
        self.endResetModel()

    def apply(self, changes: list) -> None:
        """Bring the rows up to date with a batch of changes of :attr:`document`."""
        document = self.document
        ids = {i for change in changes for i in change.ids}
        if document is None or document.mpp != self._mpp or len(ids) > RELOAD_ABOVE:
            self.reload(document)
            return
        near_points = self._point_boxes(ids)
        order = [ann.id for ann in document]
        self._remove_rows([row for row, i in enumerate(self._ids) if i not in document])
        self._insert_rows(order)
        if self._ids != order:  # moved in the drawing order: not a case of its own
            self.reload(document)
            return
        stale = {i for i in ids if i in self._anns and document.get(i) is not self._anns[i]}
        self._remeasure(stale | self._areas_meeting(near_points))
        self._sync_columns()

    def _keep(self, ann) -> None:
        """Measure ``ann`` and count its keys (its row is being added or refreshed)."""
        self._anns[ann.id] = ann
        measured = self._measured[ann.id] = self.document.measurements(ann)
        for key in measured:
            self._key_rows[key] = self._key_rows.get(key, 0) + 1

    def _forget(self, ann_id: str) -> None:
        """Drop a row's annotation and its keys' counts."""
        del self._anns[ann_id]
        for key in self._measured.pop(ann_id):
            self._key_rows[key] -= 1

    def _remove_rows(self, rows: list[int]) -> None:
        for run in reversed(_runs(rows)):
            self.beginRemoveRows(QModelIndex(), run[0], run[-1])
            for row in reversed(run):
                self._forget(self._ids.pop(row))
            self.endRemoveRows()

    def _insert_rows(self, order: list[str]) -> None:
        """Insert the rows of the annotations of ``order`` that have none, at their places."""
        for run in _runs([row for row, i in enumerate(order) if i not in self._anns]):
            self.beginInsertRows(QModelIndex(), run[0], run[-1])
            for row in run:
                self._ids.insert(row, order[row])
                self._keep(self.document.get(order[row]))
            self.endInsertRows()

    def _point_boxes(self, ids: set[str]) -> list[tuple[float, float, float, float]]:
        """Bounds of the point sets among ``ids``, before and after the change."""
        versions = [self._anns.get(i) for i in ids]
        versions += [self.document.get(i) for i in ids if i in self.document]
        return [a.geometry.bounds for a in versions if a is not None and a.kind == "points"]

    def _areas_meeting(self, boxes: list) -> set[str]:
        """The area annotations whose bounds meet any of ``boxes`` (their point counts)."""
        if not boxes:
            return set()
        return {
            i
            for i, ann in self._anns.items()
            if ann.is_area and any(_meet(ann.geometry.bounds, box) for box in boxes)
        }

    def _remeasure(self, ids: set[str]) -> None:
        """Measure ``ids`` again and tell the view about their rows only."""
        if not ids:
            return
        last = self.columnCount() - 1
        for row in sorted(row for row, i in enumerate(self._ids) if i in ids):
            self._forget(self._ids[row])
            self._keep(self.document.get(self._ids[row]))
            self.dataChanged.emit(self.index(row, 0), self.index(row, last))

    def _sync_columns(self) -> None:
        """Remove the columns of keys no row has any more; add those of new keys at the end."""
        start = len(ID_COLUMNS) - 1
        for column in reversed([c for c, k in enumerate(self._keys) if not self._key_rows[k]]):
            self.beginRemoveColumns(QModelIndex(), start + column, start + column)
            del self._key_rows[self._keys.pop(column)]
            self.endRemoveColumns()
        new = [k for k, rows in self._key_rows.items() if rows and k not in set(self._keys)]
        if new:
            first = self.columnCount()
            self.beginInsertColumns(QModelIndex(), first, first + len(new) - 1)
            self._keys += new
            self.endInsertColumns()


def _runs(rows: list[int]) -> list[list[int]]:
    """Ascending ``rows`` cut into runs of consecutive numbers."""
    runs: list[list[int]] = []
    for row in rows:
        if runs and runs[-1][-1] == row - 1:
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


def _meet(a: tuple, b: tuple) -> bool:
    """Whether two ``(x0, y0, x1, y1)`` boxes overlap or touch."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


class MeasurementTable(QWidget):
    """Every measurement of every annotation (:meth:`AnnotationDocument.measurements`) in a
    :class:`MeasurementModel` kept up to date row by row while shown (measured again when
    next shown otherwise), and exported to CSV.

    Signals
    -------
    error(str)
        The CSV could not be written, in one sentence.
    """

    error = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = MeasurementModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        export = QPushButton("Export CSV…")
        export.setToolTip("Save every measurement in the table as a CSV file")
        export.clicked.connect(lambda _checked=False: self._ask_export())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(export)
        self._stale = True
        self.follower = DocumentFollower(self)
        self.follower.changed.connect(self._on_changes)

    def set_controller(self, controller) -> None:
        """Measure the annotations of ``controller``'s document (None: nothing)."""
        self.follower.follow(controller.document if controller else None)
        self._stale = True
        if self.isVisible():
            self.refresh()

    def rows(self) -> tuple[list[str], list[list]]:
        """The header and one row per annotation: its fields, then every measurement."""
        if self._stale:
            self.refresh()
        return self.model.header(), self.model.rows()

    def refresh(self) -> None:
        """Measure every annotation again (names and measures; the id column is left to
        the CSV)."""
        self._stale = False
        self.model.reload(self.follower.document)

    def _on_changes(self, changes: list) -> None:
        """Update the changed rows when shown; else measure everything when next shown."""
        if self._stale or not self.isVisible():
            self._stale = True
        else:
            self.model.apply(changes)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._stale:
            self.refresh()
        super().showEvent(event)

    def export_csv(self, path) -> None:
        """Write the measurements to ``path`` (formula-escaped, atomically)."""
        header, rows = self.rows()
        write_csv(path, header, ([("" if v is None else v) for v in row] for row in rows))

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export measurements", "measurements.csv", "CSV (*.csv)"
        )
        if path:
            try:
                self.export_csv(path)
            except Her2ViewerError as exc:
                self.error.emit(str(exc))


class AnnotationPanel(QTabWidget):
    """The "Annotations" dock: the tree, the classes and the measurements of the active pane.

    Signals
    -------
    error(str)
        A refused edit or export from any of the tabs, in one sentence.
    """

    error = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.tree = AnnotationTree()
        self.classes = ClassPanel()
        self.measurements = MeasurementTable()
        for widget, title in (
            (self.tree, "Annotations"),
            (self.classes, "Classes"),
            (self.measurements, "Measurements"),
        ):
            self.addTab(widget, title)
            widget.error.connect(self.error)

    def set_controller(self, controller) -> None:
        """Follow the annotations of ``controller`` (the active pane's; None: none); the
        same controller again (a click into its pane) changes nothing."""
        if controller is self.tree.controller:
            return
        for widget in (self.tree, self.classes, self.measurements):
            widget.set_controller(controller)
