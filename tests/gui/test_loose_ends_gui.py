"""GUI loose ends: the grading dock keeps its model loaded, the magnifier shows what the pane
shows (display settings and overlays), the measurement table updates row by row."""

from __future__ import annotations

import os
import shutil

import pytest
import shapely

pytest.importorskip("PySide6")

from her2viewer.annotations.commands import Add  # noqa: E402
from her2viewer.annotations.model import Annotation  # noqa: E402
from her2viewer.gui import grading_model  # noqa: E402
from her2viewer.gui.grading_panel import attach_grading_panel  # noqa: E402
from her2viewer.models.patch_cnn import default_grading_bundle  # noqa: E402


@pytest.fixture(autouse=True)
def own_stores(tmp_path, monkeypatch):
    """Annotation stores of this test only: what it draws on the shared cases stays here."""
    monkeypatch.setenv("HER2VIEWER_DATA", str(tmp_path / "data"))


# -- the grading dock keeps its model -----------------------------------------------------


@pytest.fixture()
def counted_loads(monkeypatch):
    """The checkpoints the grading dock's worker side loads, in order (none kept before)."""
    loads = []
    load = grading_model.load_patch_cnn

    def counting(path, *args, **kwargs):
        loads.append(path)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(grading_model, "load_patch_cnn", counting)
    monkeypatch.setattr(grading_model, "_kept", {})
    return loads


def _grade(panel, qtbot, start) -> None:
    start()
    assert panel.job is not None, panel.window.errors
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    assert panel.result is not None, panel.status.text()


def test_grading_dock_loads_its_model_once_until_the_checkpoint_changes(
    panel_window, synthetic_case, qtbot, tmp_path, counted_loads
):
    window = panel_window
    bundle = tmp_path / "grading"
    shutil.copytree(default_grading_bundle(), bundle)
    panel = attach_grading_panel(window, bundle)
    panel.widget.process = False  # in this process, where the loads are counted
    assert window.open_in_pane(str(synthetic_case / "ihc.svs"), 0).wait()
    _grade(panel, qtbot, panel.run)
    controller = window.annotations.active
    region = Annotation(shapely.box(600, 500, 2400, 1900), kind="rectangle", class_name="Tumor")
    assert controller.push(Add([region]))
    controller.select([region.id])
    _grade(panel, qtbot, panel.chooser.score_selected)  # another region: no second load
    assert panel.result.roi["region"] and len(counted_loads) == 1
    stamp = grading_model.checkpoint_stamp(bundle)
    weights = next(p for p in bundle.iterdir() if p.suffix == ".safetensors")
    os.utime(weights, ns=(stamp + 10**9, stamp + 10**9))  # the checkpoint rewritten
    _grade(panel, qtbot, panel.run)
    assert counted_loads == [bundle, bundle]
