"""The crash-safe annotation store: saved within a second, journal replay, kill -9, full disk."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shapely.geometry import Polygon, box

from her2viewer.annotations.commands import Add, CommandStack, Remove, SetClass, add_class
from her2viewer.annotations.model import Annotation, AnnotationDocument, AnnotationError
from her2viewer.annotations.store import AnnotationStore, journal_path, store_path
from her2viewer.errors import OutputError
from tests.reliability.conftest import fill_disk, leftovers, tiny_disk  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def _eventually(condition, within_s: float = 2.0) -> bool:
    """Poll ``condition`` until it holds or ``within_s`` passes."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _names_on_disk(path: Path) -> list[str]:
    """The annotation names in the snapshot file (empty when it is missing or being replaced)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [f["properties"].get("name", "") for f in data["features"]]


def test_store_path_is_under_the_data_folder(isolated_data):
    path = store_path("0123abcd")
    assert path == isolated_data / "annotations" / "0123abcd.geojson"
    assert path.parent.is_dir()
    with pytest.raises(AnnotationError, match="is not a slide fingerprint"):
        store_path("../etc")


def test_change_reaches_the_file_within_a_second(tmp_path):
    path = tmp_path / "slide.geojson"
    store = AnnotationStore.open(path, mpp=0.5)
    assert not path.exists()  # opening an empty store writes nothing
    stack = CommandStack(store.document)
    stack.push(Add([Annotation(box(0, 0, 10, 10), class_name="Tumor", name="first")]))
    assert _eventually(lambda: _names_on_disk(path) == ["first"])
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    assert data["features"][0]["properties"]["classification"]["color"] == [200, 0, 0]
    assert data["her2viewer"]["version"] == 1
    assert {"name": "Tumor", "color": [200, 0, 0]} in data["her2viewer"]["classes"]
    assert _eventually(lambda: journal_path(path).stat().st_size == 0)
    store.close()


def test_open_restores_annotations_and_classes(tmp_path):
    path = tmp_path / "slide.geojson"
    store = AnnotationStore.open(path)
    stack = CommandStack(store.document)
    stack.push(add_class(store.document, "Mitosis", (1, 2, 3)))
    stack.push(Add([Annotation(box(0, 0, 10, 10), name="a"), Annotation(box(1, 1, 2, 2))]))
    stack.push(SetClass([list(store.document)[0].id], "Mitosis"))
    store.close()
    again = AnnotationStore.open(path, mpp=0.25)
    doc = again.document
    assert [a.name for a in doc] == ["a", ""]
    assert list(doc)[0].class_name == "Mitosis"
    assert doc.path_class("Mitosis").color == (1, 2, 3)
    assert doc.mpp == 0.25 and again.notices == []
    again.close()


def _journal_only(monkeypatch, path: Path, edit) -> AnnotationDocument:
    """Run ``edit(stack)`` on a store whose snapshots never happen (as if killed first)."""
    with monkeypatch.context() as patch:
        patch.setattr(AnnotationStore, "_snapshot", lambda self: None)
        store = AnnotationStore.open(path)
        edit(CommandStack(store.document))
        store.close()
        return store.document


def test_journal_replays_edits_in_order_and_ignores_a_torn_line(tmp_path, monkeypatch):
    path = tmp_path / "slide.geojson"

    def edit(stack):
        stack.push(Add([Annotation(box(i, 0, i + 1, 1), name=n) for i, n in enumerate("abc")]))
        stack.push(Remove([list(stack.document)[1].id]))
        stack.undo()
        stack.push(SetClass([list(stack.document)[2].id], "Stroma"))
        stack.push(add_class(stack.document, "Mitosis", (1, 2, 3)))

    edited = _journal_only(monkeypatch, path, edit)
    assert not path.exists()
    with journal_path(path).open("ab") as handle:
        handle.write(b'{"seq": 99, "op": "removed", "ids": ["')  # a write cut by a kill
    store = AnnotationStore.open(path)
    assert [(a.name, a.class_name) for a in store.document] == [
        ("a", None),
        ("b", None),
        ("c", "Stroma"),
    ]
    assert [a.geometry.wkt for a in store.document] == [a.geometry.wkt for a in edited]
    assert store.document.path_class("Mitosis") is not None
    assert store.notices == []
    assert _names_on_disk(path) == ["a", "b", "c"]  # opening consolidates the journal
    assert journal_path(path).stat().st_size == 0
    store.close()


def test_damaged_journal_line_stops_replay_and_is_kept(tmp_path, monkeypatch):
    path = tmp_path / "slide.geojson"

    def edit(stack):
        for name in "abc":
            stack.push(Add([Annotation(box(0, 0, 1, 1), name=name)]))

    _journal_only(monkeypatch, path, edit)
    lines = journal_path(path).read_bytes().splitlines(keepends=True)
    journal_path(path).write_bytes(lines[0] + b"garbage\n" + b"".join(lines[1:]))
    store = AnnotationStore.open(path)
    assert [a.name for a in store.document] == ["a"]
    assert len(store.notices) == 1 and "line 2 of the annotation journal" in store.notices[0]
    kept = list(tmp_path.glob("slide.geojson.journal.corrupt-*"))
    assert len(kept) == 1 and b"garbage" in kept[0].read_bytes()
    store.close()


def test_damaged_snapshot_is_kept_aside_never_overwritten(tmp_path):
    path = tmp_path / "slide.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [ {"type": "Feat')
    store = AnnotationStore.open(path)
    assert len(store.document) == 0
    (notice,) = store.notices
    assert "was damaged and is kept as slide.geojson.corrupt-" in notice
    assert "\n" not in notice and notice.count(". ") == 0
    kept = list(tmp_path.glob("slide.geojson.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text().endswith('"Feat')
    store.close()


_EDITOR = """
import sys
from shapely.geometry import box
from her2viewer.annotations.commands import Add, CommandStack, SetClass
from her2viewer.annotations.model import Annotation
from her2viewer.annotations.store import AnnotationStore

store = AnnotationStore.open(sys.argv[1], delay_s=0.05)
stack = CommandStack(store.document)
i = 0
while True:
    ann = Annotation(box(i, 0, i + 1, 1), name=str(i))
    stack.push(Add([ann]))
    if i % 5 == 4:
        stack.push(SetClass([ann.id], "Tumor"))
    print(i, flush=True)
    i += 1
"""


def test_kill_9_during_editing_loses_at_most_the_last_edit(tmp_path):
    path = tmp_path / "slide.geojson"
    editor = subprocess.Popen(
        [sys.executable, "-c", _EDITOR, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        last = -1
        for line in editor.stdout:
            last = int(line)
            if last >= 300:
                break
        editor.send_signal(signal.SIGKILL)
        editor.wait(timeout=30)
    finally:
        if editor.poll() is None:
            editor.kill()
    assert last >= 300, editor.stderr.read()
    store = AnnotationStore.open(path)
    anns = list(store.document)
    names = [int(a.name) for a in anns]
    assert names == list(range(len(names)))  # no edit lost in the middle, none twice
    assert len(names) >= last + 1  # every edit reported done is there
    tumor = {int(a.name) for a in anns if a.class_name == "Tumor"}
    assert {i for i in range(last + 1) if i % 5 == 4} <= tumor
    assert store.notices == []
    store.close()


def test_full_disk_keeps_the_document_and_retries(tiny_disk):  # noqa: F811
    folder = tiny_disk(256)
    path = folder / "slide.geojson"
    store = AnnotationStore.open(path, delay_s=0.05)
    stack = CommandStack(store.document)
    stack.push(Add([Annotation(box(0, 0, 10, 10), name="saved")]))
    store.flush()
    fill_disk(folder)
    errors: list[OutputError] = []
    store.on_error = errors.append
    ring = [(500 + 400 * (i % 2 + 1) * 0.5, 500 + i) for i in range(3000)]
    stack.push(Add([Annotation(Polygon([*ring, (0, 4000)]), name="big")]))
    assert [a.name for a in store.document] == ["saved", "big"]  # the edit is kept in memory
    with pytest.raises(OutputError, match="disk is full"):
        store.flush()
    assert errors and "\n" not in str(errors[0])
    assert _names_on_disk(path) == ["saved"]  # the old file is intact
    assert leftovers(folder) == []
    (folder / ".filler").unlink()
    stack.push(Add([Annotation(box(20, 20, 30, 30), name="after")]))
    assert _eventually(lambda: _names_on_disk(path) == ["saved", "big", "after"])
    assert store.error is None
    store.close()
    again = AnnotationStore.open(path)
    assert [a.name for a in again.document] == ["saved", "big", "after"]
    again.close()


def test_delay_is_at_most_a_second(tmp_path):
    with pytest.raises(ValueError, match="delay_s"):
        AnnotationStore(tmp_path / "x.geojson", AnnotationDocument(), delay_s=5)


def test_one_store_per_slide_shared_in_process_refused_elsewhere(tmp_path):
    path = tmp_path / "slide.geojson"
    first = AnnotationStore.open(path)
    second = AnnotationStore.open(path)
    assert second is first  # two panes on one slide share its annotations
    with pytest.raises(AnnotationError, match="open in another her2viewer window or command"):
        AnnotationStore(path, AnnotationDocument())  # as another program would
    CommandStack(first.document).push(Add([Annotation(box(0, 0, 1, 1), name="a")]))
    first.close()
    assert _names_on_disk(path) == ["a"]  # a close saves even while the other pane keeps it
    second.close()
    third = AnnotationStore.open(path)
    assert third is not first and [a.name for a in third.document] == ["a"]
    third.close()
