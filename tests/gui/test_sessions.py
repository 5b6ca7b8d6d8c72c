"""Sessions in the viewer: saved on close, restored on start (results reloaded from their
files, never recomputed); file dialogs in the last slide's folder; several slides dropped
open side by side (issue 19)."""

import json
from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from her2viewer.analysis.contract import load_npz, save_npz  # noqa: E402
from her2viewer.cli import main as cli_main  # noqa: E402
from her2viewer.gui.analysis_panel import ResultWidget, dock_analysis  # noqa: E402
from her2viewer.overlay import MaskLayer  # noqa: E402
from her2viewer.session import results_dir, session_path  # noqa: E402
from tests.reliability.conftest import fill_disk, tiny_disk  # noqa: E402, F401

TO_FIRST = np.array([[1.0, 0.0, 12.0], [0.0, 1.0, -7.0], [0.0, 0.0, 1.0]])
RUNS = []


@dataclass
class ToyResult:
    """A result honouring the analysis contract: layers(), summary(), save()/load()."""

    labels: np.ndarray

    def layers(self):
        return [MaskLayer("Toy tumour", labels=self.labels, downsample=100)]

    def summary(self) -> dict:
        return {"tumour_pixels": int(self.labels.sum())}

    def save(self, path):
        return save_npz(path, self.summary(), labels=self.labels)

    @classmethod
    def load(cls, path):
        _summary, arrays = load_npz(path, "toy")
        return cls(arrays["labels"])


def toy_analyse(slide, bundle, options, context):
    RUNS.append(slide)
    raise AssertionError("a restored session must not recompute its analyses")


class ToyWidget(ResultWidget):
    analyse = toy_analyse
    result_type = ToyResult

    def describe(self, result) -> str:
        return f"{result.summary()['tumour_pixels']} tumour pixels"


@pytest.fixture()
def make_window(window_factory):
    """Windows made one after the other (same user data), each with the toy analysis."""

    def make():
        window = window_factory((1000, 600))
        return window, dock_analysis(window, ToyWidget(), "Toy analysis")

    return make


def test_a_session_comes_back_as_it_was_left(make_window, synthetic_case, tmp_path):
    window, panel = make_window()
    he, ihc = synthetic_case / "he.svs", synthetic_case / "ihc.svs"
    assert window.open_slides([he, ihc], TO_FIRST).wait()
    square = [[[100, 100], [900, 100], [900, 700], [100, 700], [100, 100]]]
    shapes = tmp_path / "drawn.geojson"
    shapes.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Polygon", "coordinates": square},
                        "properties": {"objectType": "annotation"},
                    }
                ],
            }
        )
    )
    assert window.add_geojson(shapes, pane=1)
    window.views[1].layers[0].visible = False
    window.set_active(window.views[0])
    window.rotation.rotate_to(30.0)
    window.rotation.flip()
    window.views[0].zoom_at(2.0)
    window.sync.set_view_sync(window.views[1], False)
    window.views[1].pan_by(40.0, 10.0)
    panel.pane, panel.panes = 0, (0,)
    labels = np.zeros((24, 30), np.uint8)
    labels[5:15, 8:20] = 1
    panel.show_result(ToyResult(labels))
    layer = window.views[0].layers[0]
    layer.visible, layer.opacity = False, 0.3
    states = [view.state for view in window.views]
    window.sessions.autosave = True
    window.close()
    saved = json.loads(session_path().read_text())
    assert [pane["slide"] for pane in saved["panes"]] == [str(he.resolve()), str(ihc.resolve())]

    again, toy = make_window()
    opening = again.sessions.restore()
    assert opening is not None and opening.wait()
    assert [s.info.path for s in again.slides] == [str(he.resolve()), str(ihc.resolve())]
    for view, state in zip(again.views, states, strict=True):
        assert (view.state.cx, view.state.cy, view.state.downsample) == pytest.approx(
            (state.cx, state.cy, state.downsample)
        )
        assert view.state.angle == pytest.approx(state.angle) and view.state.flip == state.flip
    assert again.sync.has_transform(again.views[1])
    assert again.sync.matrix(again.views[1], again.views[0]) == pytest.approx(TO_FIRST)
    assert not again.views[1].sync_enabled
    assert RUNS == []  # reloaded from its file, not recomputed
    assert isinstance(toy.result, ToyResult) and np.array_equal(toy.result.labels, labels)
    assert toy.status.text() == f"{labels.sum()} tumour pixels"
    restored = again.views[0].layers[0]
    assert restored.name == "Toy tumour" and not restored.visible
    assert restored.opacity == pytest.approx(0.3)
    drawn = again.views[1].layers  # the GeoJSON file read again, hidden as it was left
    assert [layer.kind for layer in drawn] == ["vector"] and not drawn[0].visible


def test_only_the_interactive_viewer_saves_its_session(make_window, synthetic_case):
    window, _ = make_window()
    assert window.open_in_pane(synthetic_case / "he.svs", 0).wait()
    window.close()  # autosave is off for scripts, tests and offscreen renders
    assert not session_path().exists()
    fresh, _ = make_window()
    assert fresh.sessions.restore() is None  # nothing saved: nothing opened


def test_a_damaged_session_is_said_in_one_sentence(make_window):
    path = session_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"panes": [{"slide": 3, "view": {"cx": "left"}}]}')
    window, _ = make_window()
    assert window.sessions.restore() is None
    assert str(path) in window.errors[-1] and "\n" not in window.errors[-1]


def test_view_without_a_slide_says_there_is_no_session(capsys):
    assert cli_main(["view"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no saved session to restore" in err and len(err.splitlines()) == 1


def test_file_dialogs_open_in_the_last_slides_folder(make_window, synthetic_cohort, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    window, _ = make_window()
    asked = []
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *args: asked.append(args[2]) or ("", "")
    )
    window.open_dialog()
    case = synthetic_cohort.parent / "case001"
    assert window.open_in_pane(case / "he.svs", 0).wait()
    window.open_dialog()
    window.geojson_dialog()
    assert asked[1:] == [str(case.resolve())] * 2
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", lambda *args: asked.append(args[2]) or ("", "")
    )
    window.screenshot_dialog()
    assert asked[-1] == str(case.resolve() / "view.png")


def test_several_slides_dropped_open_side_by_side(make_window, synthetic_cohort, qtbot):
    window, _ = make_window()
    root = synthetic_cohort.parent
    paths = [root / "case000" / "he.svs", root / "case000" / "ihc.svs", root / "case001" / "he.svs"]
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    qtbot.waitUntil(lambda: all(window.slides) and len(window.slides) == 3, timeout=30000)
    assert [s.info.path for s in window.slides] == [str(p) for p in paths]


def test_a_full_disk_at_close_loses_neither_the_window_nor_the_last_session(
    make_window,
    synthetic_case,
    monkeypatch,
    capsys,
    tiny_disk,  # noqa: F811
):
    data = tiny_disk(512)
    monkeypatch.setenv("HER2VIEWER_DATA", str(data))
    window, panel = make_window()
    assert window.open_in_pane(synthetic_case / "he.svs", 0).wait()
    window.sessions.save()
    before = session_path().read_text()
    fill_disk(data, leave_bytes=0)
    panel.pane, panel.panes = 0, (0,)
    noise = np.random.default_rng(0).integers(0, 2, (400, 400), dtype=np.uint8)
    panel.show_result(ToyResult(noise))  # its file must be written beside the session
    window.views[0].zoom_at(2.0)
    window.sessions.autosave = True
    window.close()
    assert not window.isVisible()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("her2viewer: the session was not saved: cannot write ")
    assert line.endswith("the disk is full.")
    assert session_path().read_text() == before


def test_a_results_folder_that_cannot_be_made_is_one_line_at_close(
    make_window, synthetic_case, capsys
):
    window, panel = make_window()
    assert window.open_in_pane(synthetic_case / "he.svs", 0).wait()
    blocked = results_dir(session_path())
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the results folder goes")
    panel.pane, panel.panes = 0, (0,)
    panel.show_result(ToyResult(np.ones((4, 4), np.uint8)))
    window.sessions.autosave = True
    window.close()
    assert not window.isVisible()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"her2viewer: the session was not saved: cannot write {blocked}")
