"""IHC panel in the viewer: background registration links the panes, layers and score appear."""

from __future__ import annotations

import json

import numpy as np
import pytest

from her2viewer.gui.ihc_panel import attach_ihc_panel
from her2viewer.overlay.layers import MaskLayer
from her2viewer.registration import Registration


@pytest.fixture()
def window(panel_window):
    return panel_window


def test_pair_is_registered_scored_and_mapped(window, synthetic_cohort, qtbot, tmp_path):
    case = synthetic_cohort.parent / "case000"  # the IHC 3+ case of the seed-0 cohort
    truth = json.loads((case / "truth.json").read_text())
    panel = attach_ihc_panel(window)
    assert window.open_in_pane(str(case / "he.svs"), 0).wait()
    panel.run()  # only one slide: a message, no job
    assert panel.job is None and "paired IHC" in window.errors[-1]
    assert window.open_in_pane(str(case / "ihc.svs"), 1).wait()
    tumor = MaskLayer.from_png("tumor", case / "tumor_mask.png", truth["mask_downsample"])
    window.add_layer(tumor, 0)
    panel.run()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=180_000)

    # the panes now move in step through the registration, close to the true transform
    sync = window.sync
    assert sync.has_transform(window.views[1])
    ihc_to_he = sync.matrix(window.views[1], window.views[0])
    expected = np.array(truth["transform_ihc_to_he"])
    points = np.array([[1000, 800, 1], [2000, 1600, 1], [1500, 1200, 1]], float).T
    error = np.linalg.norm((ihc_to_he @ points - expected @ points)[:2], axis=0)
    assert error.max() < 20

    names = [layer.name for layer in window.views[1].layers]
    assert {"DAB optical density", "HER2 score categories", "tumor (from H&E)"} <= set(names)
    assert panel.result.score.score == truth["ihc_score"]
    assert panel.status.text().startswith(f"IHC {truth['ihc_score']}+")
    mapped = next(layer for layer in window.views[1].layers if layer.name == "tumor (from H&E)")
    ihc_tumor_truth = np.asarray(tumor.labels) > 0
    assert (
        abs(int((mapped.labels > 0).sum()) - int(ihc_tumor_truth.sum()))
        < 0.1 * ihc_tumor_truth.sum()
    )

    # manual correction: a nudge moves the link by exactly the offset, and it saves
    before = ihc_to_he @ points
    panel.widget.dx.setValue(100.0)
    panel.widget.apply_nudge()
    after = window.sync.matrix(window.views[1], window.views[0]) @ points
    np.testing.assert_allclose(after[0] - before[0], 100.0, atol=1e-6)
    np.testing.assert_allclose(after[1], before[1], atol=1e-6)
    saved = tmp_path / "reg.json"
    panel.widget.save_transform(saved)
    loaded = Registration.load(saved)
    np.testing.assert_allclose(loaded.matrix, panel.widget.registration.matrix)
    assert loaded.method.endswith("+manual")


def test_opening_an_he_slide_opens_and_registers_its_pair(window, synthetic_cohort, qtbot):
    panel = attach_ihc_panel(window)
    he = synthetic_cohort.parent / "case001" / "he.svs"
    assert window.open_in_pane(str(he), 0).wait()
    with qtbot.waitSignal(window.pair_opened, timeout=10_000):
        assert window.open_pair_of(he).wait()
    assert window.views[1].slide.info.path.endswith("case001/ihc.svs")
    assert panel.job is not None  # registration started in the background
    qtbot.waitUntil(lambda: panel.job is None, timeout=180_000)
    assert panel.result is not None
