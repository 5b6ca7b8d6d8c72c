"""Issue 13, items 21-25: the viewer under a first day's use (offscreen, pytest-qt)."""

from __future__ import annotations

import pytest

from her2viewer.gui.her2net_panel import attach_her2net_panel
from her2viewer.gui.ihc_panel import attach_ihc_panel


@pytest.fixture()
def window(panel_window):
    return panel_window


def _her2net_layers(view) -> list[str]:
    return [layer.name for layer in view.layers if layer.name.startswith("HER2Net")]


# -- item 21: results belong to the slide they were computed on ------------------------------
def test_another_slide_drops_her2net_results_and_her2net_still_runs(
    window, synthetic_cohort, qtbot
):
    first, second = (synthetic_cohort.parent / f"case00{i}" / "he.svs" for i in (0, 1))
    panel = attach_her2net_panel(window)
    assert window.open_in_pane(str(first), 0)
    panel.run()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=120_000)
    assert _her2net_layers(window.views[0]) and panel.table.rowCount() > 0

    assert window.open_in_pane(str(second), 0)  # used to raise list.remove(x): x not in list
    assert panel.result is None and panel.bar.value is None
    assert panel.table.rowCount() == 0 and panel.layers == []
    assert panel.status.text() == "No result yet." and panel.progress.value() == 0

    panel.run()  # HER2Net still works, on the new slide, and its result is shown
    assert panel.progress.value() == 0  # a new run starts at 0, not at the last run's 100%
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    assert panel.status.text().startswith("HER2 ") and not window.errors
    assert "case001" in panel.result.slide
    assert len(_her2net_layers(window.views[0])) == 2


def test_a_running_job_of_the_old_slide_is_cancelled_and_never_shown(
    window, synthetic_cohort, qtbot
):
    first, second = (synthetic_cohort.parent / f"case00{i}" / "he.svs" for i in (2, 3))
    panel = attach_her2net_panel(window)
    assert window.open_in_pane(str(first), 0)
    panel.run()
    old = panel.job
    assert window.open_in_pane(str(second), 0)
    assert panel.job is None and panel.run_button.isEnabled()
    assert not panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: old.state not in ("pending", "running"), timeout=120_000)
    qtbot.wait(300)  # polls that would have shown it
    assert panel.result is None and not _her2net_layers(window.views[0])
    assert panel.status.text() == "No result yet."


def test_ihc_registration_goes_with_the_he_slide(window, synthetic_cohort, qtbot):
    case = synthetic_cohort.parent / "case000"
    panel = attach_ihc_panel(window)
    assert window.open_in_pane(str(case / "he.svs"), 0)
    assert window.open_in_pane(str(case / "ihc.svs"), 1)
    panel.run()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=180_000)
    assert window.sync.has_transform(window.views[1]) and window.views[1].layers

    other = synthetic_cohort.parent / "case001" / "he.svs"
    assert window.open_in_pane(str(other), 0)
    assert not window.sync.has_transform(window.views[1])  # the old registration is gone
    assert window.views[1].layers == [] and panel.layers == []
    assert panel.result is None and panel.registration is None
    assert panel.status.text() == "No result yet."
