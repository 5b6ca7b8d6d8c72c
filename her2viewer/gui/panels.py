"""Side panels: overview minimap, layers with their controls and legend, slide properties."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QImage,
    QKeySequence,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QPolygonF,
)
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from her2viewer.gui.slideview import SlideView
from her2viewer.gui.tiles import QUEUED, TileKey, TileLoader, rgb_to_image
from her2viewer.overlay.colormaps import COLORMAPS, Legend
from her2viewer.overlay.layers import HeatmapLayer, MaskLayer, OverlayLayer

#: The least height of the layer list (about six rows): controls and legend scroll instead.
LIST_MIN_HEIGHT = 150
#: Height of a legend (title, colour bar, ticks).
LEGEND_HEIGHT = 64
#: Layers with a key each (Alt+1 toggles the top one).
KEYED_LAYERS = 9


class MiniMap(QWidget):
    """The whole slide small, as the pane draws it (display settings, shown layers: its
    :attr:`~SlideView.displayed_overview`), with the viewport outline; click or drag to
    move there."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view: SlideView | None = None
        self.setMinimumSize(180, 140)

    def set_view(self, view: SlideView | None) -> None:
        """Follow ``view`` (the active pane)."""
        if self.view is not None:
            self.view.view_changed.disconnect(self.update)
            self.view.overview_changed.disconnect(self.update)
        self.view = view
        if view is not None:
            view.view_changed.connect(self.update)
            view.overview_changed.connect(self.update)
        self.update()

    def _image_rect(self) -> QRectF | None:
        if self.view is None or self.view.slide is None:
            return None
        info = self.view.slide.info
        scale = min((self.width() - 8) / info.width, (self.height() - 8) / info.height)
        w, h = info.width * scale, info.height * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(30, 32, 36))
        rect = self._image_rect()
        if rect is None:
            return
        overview = self.view.displayed_overview  # as the pane draws the slide
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.fillRect(rect, Qt.GlobalColor.white)
        if overview is not None:
            painter.drawImage(rect, overview.image)
        info = self.view.slide.info
        sx, sy = rect.width() / info.width, rect.height() / info.height
        corners = [
            self.view.screen_to_level0(x, y)
            for x, y in (
                (0, 0),
                (self.view.width(), 0),
                (self.view.width(), self.view.height()),
                (0, self.view.height()),
            )
        ]
        polygon = QPolygonF([QPointF(rect.x() + x * sx, rect.y() + y * sy) for x, y in corners])
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setClipRect(rect.adjusted(-2, -2, 2, 2))
        outside = QPainterPath()
        outside.addRect(QRectF(rect))
        outside.addPolygon(polygon)  # odd-even fill: everything but the viewport
        painter.fillPath(outside, QColor(0, 0, 0, 90))
        painter.setPen(QPen(QColor(255, 200, 0), 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPolygon(polygon)

    def _move_to(self, pos: QPointF) -> None:
        rect = self._image_rect()
        if rect is None:
            return
        info = self.view.slide.info
        x = (pos.x() - rect.x()) / rect.width() * info.width
        y = (pos.y() - rect.y()) / rect.height() * info.height
        self.view.center_on(x, y)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._move_to(event.position())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._move_to(event.position())


class LegendWidget(QWidget):
    """Draws a :class:`Legend`: title, colour bar and tick numbers."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.legend: Legend | None = None
        self.setFixedHeight(LEGEND_HEIGHT)  # never grows into the layer list's room

    def set_legend(self, legend: Legend | None) -> None:
        """Show ``legend`` (``None`` hides it)."""
        self.legend = legend
        self.setVisible(legend is not None)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.legend is None:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        margin = 12
        width = self.width() - 2 * margin
        bar = self.legend.bar(length=max(width, 2), thickness=14)
        image = QImage(
            bar.data, bar.shape[1], bar.shape[0], bar.shape[1] * 4, QImage.Format.Format_RGBA8888
        )
        painter.setPen(QColor(230, 230, 230))
        painter.drawText(
            QRectF(margin, 2, width, 18), Qt.AlignmentFlag.AlignLeft, self.legend.title
        )
        painter.drawImage(QRectF(margin, 22, width, 14), image)
        painter.setPen(QColor(160, 160, 160))
        painter.drawRect(QRectF(margin, 22, width, 14))
        painter.setPen(QColor(230, 230, 230))
        for _, position, label in self.legend.ticks():
            x = margin + position * width
            painter.drawLine(QPointF(x, 36), QPointF(x, 41))
            painter.drawText(QRectF(x - 30, 42, 60, 16), Qt.AlignmentFlag.AlignHCenter, label)


class LayersPanel(QWidget):
    """The layer stack of the active pane: show/hide, reorder, opacity, colours, legend.

    Layers an analysis added sit under its name (a group row whose box shows or hides
    them all); the list keeps :data:`LIST_MIN_HEIGHT` whatever the controls and legend
    below it need. :attr:`group_of` names a layer's group (the window sets it).
    """

    #: The list was rebuilt (another pane, layers added, removed, shown or hidden).
    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view: SlideView | None = None
        self.group_of: Callable[[OverlayLayer], str | None] = lambda layer: None
        self.list = QListWidget()
        self.list.setMinimumHeight(LIST_MIN_HEIGHT)
        self.up = QPushButton("▲ Up")
        self.up.setToolTip("Move the selected layer up the stack (drawn over the ones below)")
        self.down = QPushButton("▼ Down")
        self.down.setToolTip("Move the selected layer down the stack")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.colormap = QComboBox()
        self.colormap.addItems(list(COLORMAPS))
        self.vmin, self.vmax, self.threshold = (QDoubleSpinBox() for _ in range(3))
        for box in (self.vmin, self.vmax, self.threshold):
            box.setRange(-1e6, 1e6)
            box.setDecimals(3)
            box.setSingleStep(0.05)
        self.mode = QComboBox()
        self.mode.addItems(list(MaskLayer.MODES))
        self.legend = LegendWidget()
        self._build()
        self._syncing = False

    def _build(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.up)
        buttons.addWidget(self.down)
        form = QFormLayout()
        form.addRow("Opacity", self.opacity)
        form.addRow("Colormap", self.colormap)
        form.addRow("Min", self.vmin)
        form.addRow("Max", self.vmax)
        form.addRow("Threshold", self.threshold)
        form.addRow("Mask mode", self.mode)
        self._form = form
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        layout.addLayout(form)
        layout.addWidget(self.legend)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.currentRowChanged.connect(lambda _: self._show_controls())
        self.up.clicked.connect(lambda: self._move(1))
        self.down.clicked.connect(lambda: self._move(-1))
        self.opacity.valueChanged.connect(self._on_opacity)
        self.colormap.currentTextChanged.connect(lambda _: self._on_heatmap())
        for box in (self.vmin, self.vmax, self.threshold):
            box.valueChanged.connect(lambda _: self._on_heatmap())
        self.mode.currentTextChanged.connect(self._on_mode)

    def set_view(self, view: SlideView | None) -> None:
        """Show the layers of ``view``."""
        if self.view is not None:
            self.view.layers_changed.disconnect(self.reload)
        self.view = view
        if view is not None:
            view.layers_changed.connect(self.reload)
        self.reload()

    def reload(self) -> None:
        """Rebuild the list from the view's stack (top layer first)."""
        current = self.current_layer()
        self._syncing = True
        self.list.clear()
        stack = list(reversed(self.view.layers if self.view else []))
        previous = None
        for layer in stack:
            group = self.group_of(layer)
            if group is not None and group != previous:
                self.list.addItem(self._group_item(group, stack))
            previous = group
            indent = "    " if group is not None else ""
            item = QListWidgetItem(f"{indent}{layer.name}  [{layer.kind}]")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
            item.setData(Qt.ItemDataRole.UserRole, layer)
            self.list.addItem(item)
            if layer is current:
                self.list.setCurrentItem(item)
        if self.list.currentRow() < 0 and stack:
            self.list.setCurrentItem(self._item_of(stack[0]))
        self._syncing = False
        self._show_controls()
        self.changed.emit()

    def _group_item(self, group: str, stack: list[OverlayLayer]) -> QListWidgetItem:
        """The row of an analysis's layers: its box shows or hides them all."""
        members = [layer for layer in stack if self.group_of(layer) == group]
        shown = sum(layer.visible for layer in members)
        item = QListWidgetItem(f"▾ {group}")
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
        state = Qt.CheckState.Checked if shown == len(members) else Qt.CheckState.Unchecked
        item.setCheckState(Qt.CheckState.PartiallyChecked if 0 < shown < len(members) else state)
        item.setData(Qt.ItemDataRole.UserRole + 1, group)
        item.setToolTip(f"The layers of {group}: tick to show them all, untick to hide them")
        font = item.font()
        font.setBold(True)
        item.setFont(font)
        return item

    def _item_of(self, layer: OverlayLayer) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) is layer:
                return self.list.item(row)
        return None

    def current_layer(self) -> OverlayLayer | None:
        """The selected layer, if any."""
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def set_visible(self, layers: list[OverlayLayer], visible: bool) -> None:
        """Show or hide ``layers`` of the pane and redraw."""
        for layer in layers:
            layer.visible = visible
        self.reload()
        self.view.refresh()

    def toggle(self, position: int) -> bool:
        """Show or hide the ``position``-th layer from the top (1 is the top); whether there
        was one."""
        stack = list(reversed(self.view.layers)) if self.view else []
        if not 1 <= position <= len(stack):
            return False
        layer = stack[position - 1]
        self.set_visible([layer], not layer.visible)
        return True

    def _show_controls(self) -> None:
        layer = self.current_layer()
        heat = isinstance(layer, HeatmapLayer)
        mask = isinstance(layer, MaskLayer)
        for widget in (self.colormap, self.vmin, self.vmax, self.threshold):
            self._form.setRowVisible(widget, heat)
        self._form.setRowVisible(self.mode, mask)
        self._form.setRowVisible(self.opacity, layer is not None)
        self.up.setEnabled(layer is not None)
        self.down.setEnabled(layer is not None)
        self._syncing = True
        if layer is not None:
            self.opacity.setValue(round(layer.opacity * 100))
        if heat:
            self.colormap.setCurrentText(layer.colormap)
            self.vmin.setValue(layer.vmin)
            self.vmax.setValue(layer.vmax)
            self.threshold.setValue(layer.threshold if layer.threshold is not None else layer.vmin)
        if mask:
            self.mode.setCurrentText(layer.mode)
        self._syncing = False
        self._show_legend()

    def _show_legend(self) -> None:
        """Legend of the selected layer, else of the topmost visible heatmap."""
        layer = self.current_layer()
        if layer is None or layer.legend() is None:
            stack = reversed(self.view.layers) if self.view else []
            layer = next((x for x in stack if x.visible and x.legend() is not None), None)
        self.legend.set_legend(layer.legend() if layer is not None else None)

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if self._syncing:
            return
        group = item.data(Qt.ItemDataRole.UserRole + 1)
        if group is not None:
            members = [layer for layer in self.view.layers if self.group_of(layer) == group]
            self.set_visible(members, item.checkState() != Qt.CheckState.Unchecked)
            return
        layer = item.data(Qt.ItemDataRole.UserRole)
        layer.visible = item.checkState() == Qt.CheckState.Checked
        self.reload()  # the group row's box follows
        self.view.refresh()

    def _move(self, steps: int) -> None:
        layer = self.current_layer()
        if layer is not None:
            self.view.move_layer(layer, steps)

    def _on_opacity(self, value: int) -> None:
        layer = self.current_layer()
        if layer is None or self._syncing:
            return
        layer.opacity = value / 100
        self.view.refresh()

    def _on_heatmap(self) -> None:
        layer = self.current_layer()
        if self._syncing or not isinstance(layer, HeatmapLayer):
            return
        if self.vmax.value() <= self.vmin.value():
            return
        threshold = self.threshold.value() if self.threshold.value() > self.vmin.value() else None
        layer.set_display(
            colormap=self.colormap.currentText(),
            vmin=self.vmin.value(),
            vmax=self.vmax.value(),
            threshold=threshold,
        )
        self.legend.set_legend(layer.legend())
        self.view.refresh()

    def _on_mode(self, mode: str) -> None:
        layer = self.current_layer()
        if self._syncing or not isinstance(layer, MaskLayer):
            return
        layer.set_display(mode=mode)
        self.view.refresh()


class PropertiesPanel(QWidget):
    """What the slide records, and its label and macro images (loaded in the background)."""

    images_ready = Signal()
    SHOWN = ("label", "macro", "thumbnail")

    def __init__(self, loader: TileLoader, parent=None):
        super().__init__(parent)
        self.loader = loader
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Property", "Value"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.images = QHBoxLayout()
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(self.images)
        self._keys: dict[TileKey, QLabel] = {}
        loader.tile_ready.connect(self._on_ready, QUEUED)

    def set_slide(self, slide, source: int) -> None:
        """Show ``slide``'s properties and request its associated images."""
        info = slide.info
        power = f"{info.objective_power:g}x" if info.objective_power else "not recorded"
        if not info.objective_power and info.objective_power_estimate:
            power += f" (estimated {info.objective_power_estimate:g}x from mpp)"
        mpp = f"{info.mpp_x:.4f} x {info.mpp_y:.4f} µm/px" if info.mpp_x else "not recorded"
        mpp += " (set by user)" if info.mpp_set_by_user else ""
        rows = [
            ("File", info.path),
            ("Vendor", info.vendor),
            ("Size", f"{info.width} x {info.height} px"),
            ("Pixel size", mpp),
            ("Objective", power),
            ("Levels", ", ".join(f"{lv.downsample:g}" for lv in info.levels)),
            ("Associated", ", ".join(info.associated_images) or "none"),
        ] + sorted(info.properties.items())[:60]
        self.table.setRowCount(len(rows))
        for i, (key, value) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(str(key)))
            self.table.setItem(i, 1, QTableWidgetItem(str(value)))
        while self.images.count():
            old = self.images.takeAt(0).widget()
            old.hide()  # at once: deletion waits for the event loop
            old.deleteLater()
        self._keys.clear()
        requests = []
        for index, name in enumerate(n for n in self.SHOWN if n in info.associated_images):
            label = QLabel(f"{name}\nloading…")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setToolTip(name)
            self.images.addWidget(label)
            key = TileKey("associated", source, 0, index, 0, 0)
            self._keys[key] = label
            requests.append(
                ((0, index), key, lambda n=name: rgb_to_image(slide.associated_image(n)))
            )
        self.loader.submit(id(self), requests)
        for key in list(self._keys):
            if self.loader.cache.peek(key) is not None:
                self._on_ready(id(self), key)

    def _on_ready(self, owner, key) -> None:
        label = self._keys.get(key) if owner == id(self) else None
        tile = self.loader.cache.peek(key) if label is not None else None
        if tile is None:
            return
        pixmap = QPixmap.fromImage(tile.image).scaled(
            140,
            110,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        label.setPixmap(pixmap)
        if all(
            lbl.pixmap() is not None and not lbl.pixmap().isNull() for lbl in self._keys.values()
        ):
            self.images_ready.emit()


class OverlayKeys(QObject):
    """View > Overlays: hide every overlay layer of every pane with one key, and show or
    hide the active pane's top nine layers with one key each.

    Parameters
    ----------
    window : MainWindow
        Its panes and active pane.
    menu : QMenu
        The View menu.
    panel : LayersPanel
        The active pane's layer list (it follows every change).
    """

    def __init__(self, window, menu, panel: LayersPanel) -> None:
        super().__init__(window)
        self.window, self.panel = window, panel
        overlays = menu.addMenu("&Overlays")
        self.hide_all = QAction("&Hide all overlays", window, checkable=True)
        self.hide_all.setShortcut(QKeySequence("O"))
        tip = "Hide every overlay layer of every pane, to look at the tissue alone (O)"
        self.hide_all.setToolTip(tip)
        self.hide_all.setStatusTip(tip)
        self.hide_all.toggled.connect(self.set_hidden)
        overlays.addAction(self.hide_all)
        overlays.addSeparator()
        self.toggles = []
        for position in range(1, KEYED_LAYERS + 1):
            action = QAction(f"Show/hide layer {position}", window)
            action.setShortcut(QKeySequence(f"Alt+{position}"))
            action.triggered.connect(lambda _checked=False, p=position: panel.toggle(p))
            overlays.addAction(action)
            self.toggles.append(action)
        panel.changed.connect(self.follow)
        self.follow()

    def set_hidden(self, hidden: bool) -> None:
        """Hide (or show again) the overlay layers of every pane; each keeps its own tick."""
        for view in self.window.views:
            view.overlays_shown = not hidden
            view.refresh()
        self.hide_all.setChecked(hidden)

    def follow(self) -> None:
        """Name the layer each key toggles in the active pane (keys without one disabled),
        and hide its overlays too while all are hidden (a pane added since)."""
        view = self.window.active
        if view is not None and view.overlays_shown == self.hide_all.isChecked():
            view.overlays_shown = not self.hide_all.isChecked()
            view.refresh()
        stack = list(reversed(view.layers)) if view is not None else []
        for position, action in enumerate(self.toggles, start=1):
            layer = stack[position - 1] if position <= len(stack) else None
            action.setEnabled(layer is not None)
            tip = (
                f"Show or hide '{layer.name}', layer {position} from the top (Alt+{position})"
                if layer is not None
                else f"Disabled: the active pane has fewer than {position} layers"
            )
            action.setToolTip(tip)
            action.setStatusTip(tip)
