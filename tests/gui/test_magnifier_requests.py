"""While Z is held with the mouse still, what the lens asks for settles: its slide tiles
once, and the annotation tiles around the pane and around the lens each at their own zoom
(one painter paints both; it used to keep one ring, which bounced between the two zooms
and left the pane's unrendered)."""

import pytest
import shapely

pytest.importorskip("PySide6")

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from her2viewer.annotations.commands import Add  # noqa: E402
from her2viewer.annotations.model import Annotation  # noqa: E402
from her2viewer.gui.annotations.layer import AnnotationPainter  # noqa: E402
from her2viewer.gui.magnifier import Magnifier  # noqa: E402
from her2viewer.viewport import ViewState  # noqa: E402


def test_holding_z_still_settles_the_requests_of_the_pane_and_the_lens(
    panel_window, synthetic_case, qtbot
):
    window = panel_window
    assert window.open_in_pane(synthetic_case / "he.svs", 0).wait()
    view = window.views[0]
    qtbot.waitUntil(view.fully_loaded, timeout=20000)
    squares = [
        Annotation(shapely.box(x, y, x + 40, y + 40))
        for x in range(0, 3000, 90)
        for y in range(0, 2400, 90)
    ]
    window.annotations.active.stack.push(Add(squares))
    painter = next(p for p in view.vector_painters if isinstance(p, AnnotationPainter))
    lens = next(p for p in view.vector_painters if isinstance(p, Magnifier))
    asked = []
    submit = view.loader.submit

    def counted(owner, requests):
        if owner == id(lens):
            asked.append({key for _, key, _ in requests})
        return submit(owner, requests)

    view.loader.submit = counted
    qtbot.mouseMove(view, QPoint(view.width() // 2, view.height() // 2))
    view.setFocus()
    view.set_state(ViewState(1500, 1000, 2.0))
    view.repaint()
    view.repaint()  # at rest: the pane wants the tiles on every side of it
    qtbot.keyPress(view, Qt.Key.Key_Z)  # (no event runs between: nothing rendered yet)
    view.repaint()  # the pane, then the lens, through the same annotation painter
    qtbot.waitUntil(lambda: view.loader.pending() == 0 and not painter.prefetching, timeout=20000)
    for _ in range(3):  # more frames, the mouse still: nothing new is asked for or drawn
        view.repaint()
        assert painter.stats.rendered == 0 and not painter.prefetching
    assert len(asked) == 1 and asked[0]
    assert {key.level for key in asked[0]} == {lens.level()}
    qtbot.keyRelease(view, Qt.Key.Key_Z)
    view.pan_by(-100, -75)  # under a tile: the pane's ring was rendered while Z was held
    view.repaint()
    assert painter.stats.rendered == 0 and painter.stats.tiles > 0
