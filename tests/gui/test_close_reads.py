"""A closing window asks for no tile after it closed its slides."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from her2viewer.gui.slideview import SUBMIT_MS  # noqa: E402


def test_a_submit_queued_at_close_is_not_sent(window_factory, qtbot, synthetic_case):
    window = window_factory()
    loader = window.loader
    assert window.open_slides([synthetic_case / "he.svs", synthetic_case / "ihc.svs"]).wait()
    sent_after_close = []
    submit = loader.submit
    window.views[0].zoom_at(2.0)  # queues a submit on the pane's timer
    window.close()
    loader.submit = lambda owner, requests: (
        sent_after_close.append(owner) or submit(owner, requests)
    )
    qtbot.wait(SUBMIT_MS * 5)
    failures = []
    loader.failed.connect(lambda owner, message: failures.append(message))
    qtbot.wait(200)
    assert [owner for owner in sent_after_close if owner == id(window.views[0])] == []
    assert failures == []
