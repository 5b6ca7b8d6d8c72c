"""Undo/redo of every annotation edit, locked annotations, class list edits, the edit log."""

from __future__ import annotations

import pytest
from shapely.geometry import LineString, MultiPoint, box

from her2viewer.annotations.commands import (
    Add,
    AnnotationLocked,
    CommandStack,
    Duplicate,
    EditClasses,
    Merge,
    Remove,
    Rename,
    Replace,
    SetClass,
    SetLocked,
    Subtract,
    add_class,
    brush_stroke,
    recolor_class,
    remove_class,
    rename_class,
)
from her2viewer.annotations.model import (
    Annotation,
    AnnotationDocument,
    AnnotationError,
    PathClass,
)


def _state(doc: AnnotationDocument) -> tuple:
    """Everything a command may change: the annotations in order and the class list."""
    return (
        [(a.id, a.geometry.wkt, a.kind, a.class_name, a.name, a.locked) for a in doc],
        list(doc.classes),
    )


@pytest.fixture
def doc() -> AnnotationDocument:
    return AnnotationDocument(
        [
            Annotation(box(0, 0, 10, 10), "rectangle", "Tumor", "a"),
            Annotation(box(5, 0, 15, 10), class_name="Stroma", name="b"),
            Annotation(box(100, 100, 110, 110), name="c"),
            Annotation(MultiPoint([(1, 1)]), "points", "Positive", "d"),
        ]
    )


def _ids(doc: AnnotationDocument) -> dict[str, str]:
    return {a.name: a.id for a in doc}


def _check_undo_redo(doc: AnnotationDocument, command) -> CommandStack:
    """Push ``command``, then undo and redo it, checking the states each time."""
    stack = CommandStack(doc)
    before = _state(doc)
    stack.push(command)
    after = _state(doc)
    assert after != before
    stack.undo()
    assert _state(doc) == before
    stack.redo()
    assert _state(doc) == after
    return stack


def test_add_remove_undo_redo(doc):
    _check_undo_redo(doc, Add([Annotation(box(50, 50, 60, 60), name="e")]))
    ids = _ids(doc)
    _check_undo_redo(doc, Remove([ids["b"], ids["d"]]))
    assert [a.name for a in doc] == ["a", "c", "e"]


def test_remove_undo_restores_drawing_order(doc):
    stack = CommandStack(doc)
    ids = _ids(doc)
    stack.push(Remove([ids["a"], ids["c"]]))
    stack.undo()
    assert [a.name for a in doc] == ["a", "b", "c", "d"]


def test_replace_set_class_lock_rename(doc):
    ids = _ids(doc)
    moved = doc.get(ids["a"]).replace(geometry=box(1, 1, 11, 11))
    _check_undo_redo(doc, Replace({ids["a"]: moved}, "Move"))
    _check_undo_redo(doc, SetClass([ids["a"], ids["c"]], "Necrosis"))
    assert doc.get(ids["c"]).class_name == "Necrosis"
    _check_undo_redo(doc, SetLocked([ids["b"]], True))
    _check_undo_redo(doc, Rename(ids["c"], "hot spot"))
    assert doc.get(ids["c"]).name == "hot spot"


def test_locked_annotation_refuses_geometry_edits(doc):
    ids = _ids(doc)
    stack = CommandStack(doc)
    stack.push(SetLocked([ids["a"], ids["b"]], True))
    before = _state(doc)
    moved = doc.get(ids["a"]).replace(geometry=box(1, 1, 11, 11))
    refused = [
        Replace({ids["a"]: moved}),
        Merge([ids["a"], ids["c"]]),
        Subtract(ids["a"], [ids["c"]]),
    ]
    for command in refused:
        with pytest.raises(AnnotationLocked, match="'a' is locked; unlock it"):
            stack.push(command)
    with pytest.raises(AnnotationLocked, match="'b' is locked"):
        brush_stroke(doc, ids["b"], box(0, 0, 50, 50), subtract=False)
    assert _state(doc) == before
    assert stack.undo_description == "Lock 2 annotations"
    # a locked annotation can still be classed and renamed
    stack.push(SetClass([ids["a"]], "Other"))
    stack.push(Rename(ids["a"], "renamed"))


def test_merge_unions_areas_into_the_first(doc):
    ids = _ids(doc)
    _check_undo_redo(doc, Merge([ids["b"], ids["a"]]))
    assert [a.name for a in doc] == ["a", "c", "d"]
    merged = doc.get(ids["a"])
    assert merged.kind == "polygon" and merged.geometry.area == pytest.approx(150)
    assert merged.class_name == "Tumor"


def test_merge_refuses_mixed_kinds_and_single(doc):
    ids = _ids(doc)
    stack = CommandStack(doc)
    with pytest.raises(AnnotationError, match="same kind"):
        stack.push(Merge([ids["a"], ids["d"]]))
    with pytest.raises(AnnotationError, match="at least two"):
        stack.push(Merge([ids["a"]]))
    assert not stack.can_undo


def test_merge_points_and_lines():
    doc = AnnotationDocument(
        [
            Annotation(MultiPoint([(0, 0)]), "points", name="p"),
            Annotation(MultiPoint([(1, 1), (2, 2)]), "points", name="q"),
            Annotation(LineString([(0, 0), (1, 0)]), "line", name="l"),
            Annotation(LineString([(5, 5), (6, 6), (7, 5)]), "polyline", name="m"),
        ]
    )
    ids = _ids(doc)
    _check_undo_redo(doc, Merge([ids["p"], ids["q"]]))
    assert doc.measurements(doc.get(ids["p"]))["n_points"] == 3
    _check_undo_redo(doc, Merge([ids["l"], ids["m"]]))
    assert doc.get(ids["l"]).kind == "polyline"


def test_subtract_cuts_and_keeps_cutters(doc):
    ids = _ids(doc)
    _check_undo_redo(doc, Subtract(ids["b"], [ids["a"]]))
    assert doc.get(ids["b"]).geometry.area == pytest.approx(50)
    assert ids["a"] in doc
    stack = CommandStack(doc)
    big = Annotation(box(-1, -1, 20, 20))
    stack.push(Add([big]))
    with pytest.raises(AnnotationError, match="leave nothing of annotation 'a'"):
        stack.push(Subtract(ids["a"], [big.id]))
    with pytest.raises(AnnotationError, match="at least one"):
        stack.push(Subtract(ids["a"], [ids["a"]]))
    with pytest.raises(AnnotationError, match="only areas"):
        stack.push(Subtract(ids["a"], [ids["d"]]))


def test_duplicate_redo_keeps_copy_ids(doc):
    ids = _ids(doc)
    command = Duplicate([ids["a"], ids["d"]], offset=(100, 0))
    stack = _check_undo_redo(doc, command)
    copies = [a for a in doc if a.id not in ids.values()]
    assert [c.id for c in copies] == [c.id for c in command.copies]
    assert copies[0].geometry.bounds == (100, 0, 110, 10)
    stack.push(Rename(copies[0].id, "copy"))
    stack.undo()
    stack.undo()
    stack.redo()
    stack.redo()
    assert doc.get(copies[0].id).name == "copy"


def test_brush_adds_subtracts_and_creates(doc):
    ids = _ids(doc)
    stack = CommandStack(doc)
    stack.push(brush_stroke(doc, ids["c"], box(105, 105, 120, 110), subtract=False))
    assert doc.get(ids["c"]).geometry.area == pytest.approx(100 + 50)
    stack.push(brush_stroke(doc, ids["c"], box(100, 100, 105, 110), subtract=True))
    assert doc.get(ids["c"]).geometry.area == pytest.approx(100)
    stack.push(brush_stroke(doc, None, box(200, 200, 201, 201), False, "Tumor"))
    assert list(doc)[-1].class_name == "Tumor" and len(doc) == 5
    stack.push(brush_stroke(doc, ids["c"], box(0, 0, 500, 500), subtract=True))
    assert ids["c"] not in doc
    for _ in range(4):
        stack.undo()
    assert doc.get(ids["c"]).geometry.equals(box(100, 100, 110, 110))
    with pytest.raises(AnnotationError, match="no area"):
        brush_stroke(doc, ids["d"], box(0, 0, 1, 1), subtract=False)
    with pytest.raises(AnnotationError, match="select an annotation"):
        brush_stroke(doc, None, box(0, 0, 1, 1), subtract=True)


def test_class_list_edits(doc):
    _check_undo_redo(doc, add_class(doc, "Mitosis", (1, 2, 3)))
    assert doc.path_class("Mitosis") == PathClass("Mitosis", (1, 2, 3))
    _check_undo_redo(doc, rename_class(doc, "Tumor", "Invasive tumor"))
    assert doc.get(_ids(doc)["a"]).class_name == "Invasive tumor"
    assert doc.path_class("Tumor") is None
    _check_undo_redo(doc, recolor_class(doc, "Stroma", (0, 0, 0)))
    assert doc.color_of(doc.get(_ids(doc)["b"])) == (0, 0, 0)
    _check_undo_redo(doc, remove_class(doc, "Stroma"))
    assert doc.get(_ids(doc)["b"]).class_name == "Stroma"
    stack = CommandStack(doc)
    with pytest.raises(AnnotationError, match="'Other' more than once"):
        stack.push(add_class(doc, "Other", (0, 0, 0)))
    with pytest.raises(AnnotationError, match="not empty"):
        stack.push(EditClasses([PathClass(" ", (0, 0, 0))]))


def test_unknown_id_is_one_sentence(doc):
    with pytest.raises(AnnotationError, match="no annotation nope"):
        CommandStack(doc).push(Remove(["nope"]))


def test_log_and_stack_state(doc):
    stack = CommandStack(doc)
    assert not stack.can_undo and not stack.can_redo
    stack.undo()
    stack.redo()
    stack.push(Add([Annotation(box(0, 0, 1, 1))]))
    stack.undo()
    assert stack.can_redo and stack.redo_description == "Add 1 annotation"
    stack.redo()
    stack.push(Remove([_ids(doc)["a"]]))
    stack.undo()
    stack.push(SetClass([_ids(doc)["a"]], None))
    assert not stack.can_redo
    assert [e.description for e in stack.log] == [
        "Add 1 annotation",
        "Undo: Add 1 annotation",
        "Redo: Add 1 annotation",
        "Delete 1 annotation",
        "Undo: Delete 1 annotation",
        "Set class Unclassified on 1 annotation",
    ]
    assert all(e.time.tzinfo is not None for e in stack.log)
