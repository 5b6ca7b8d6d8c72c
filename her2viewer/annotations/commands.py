"""Every edit of an annotation document as an undoable command, and the command stack.

A command changes the document only through its low-level methods, remembers
what it replaced, and puts it back on undo. Redo runs the same command again
and produces the same annotation ids, so the commands after it still apply.
Commands check everything before changing anything: a refused edit (a locked
annotation, an unknown id) leaves the document and the stack as they were.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import shapely
import shapely.affinity
from shapely.geometry.base import BaseGeometry

from her2viewer.annotations.model import (
    Annotation,
    AnnotationDocument,
    AnnotationError,
    PathClass,
)


class AnnotationLocked(AnnotationError):
    """A locked annotation was asked to change its shape."""


def _plural(n: int, noun: str = "annotation") -> str:
    """Return ``"1 annotation"`` or ``"3 annotations"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _label(ann: Annotation) -> str:
    """Return how a sentence names ``ann``: its name, else its class, else its id."""
    return repr(ann.name) if ann.name else f"{ann.class_name or 'unclassified'} {ann.kind} {ann.id}"


def _require(document: AnnotationDocument, ann_id: str) -> Annotation:
    """Return the annotation ``ann_id`` or raise one sentence saying it is not there."""
    if ann_id not in document:
        raise AnnotationError(f"there is no annotation {ann_id} in this slide's annotations.")
    return document.get(ann_id)


def _check_unlocked(ann: Annotation) -> None:
    """Refuse a change of shape of a locked annotation."""
    if ann.locked:
        raise AnnotationLocked(
            f"annotation {_label(ann)} is locked; unlock it before changing its shape."
        )


class Command:
    """One undoable edit: ``do(document)``, ``undo(document)`` and a ``description``."""

    description = ""

    def do(self, document: AnnotationDocument) -> None:
        """Apply the edit (check first, so a refusal changes nothing)."""
        raise NotImplementedError

    def undo(self, document: AnnotationDocument) -> None:
        """Put back what :meth:`do` changed."""
        raise NotImplementedError


class Add(Command):
    """Add annotations at the end of the drawing order."""

    def __init__(self, anns: Iterable[Annotation], description: str | None = None) -> None:
        self.annotations = list(anns)
        self.description = description or f"Add {_plural(len(self.annotations))}"

    def do(self, document: AnnotationDocument) -> None:
        document._insert(self.annotations)

    def undo(self, document: AnnotationDocument) -> None:
        document._remove(a.id for a in self.annotations)


class Remove(Command):
    """Delete annotations (undo puts each back at its place in the drawing order)."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = list(dict.fromkeys(ids))
        self.description = f"Delete {_plural(len(self.ids))}"
        self._removed: list[tuple[int, Annotation]] = []

    def do(self, document: AnnotationDocument) -> None:
        for ann_id in self.ids:
            _require(document, ann_id)
        self._removed = document._remove(self.ids)

    def undo(self, document: AnnotationDocument) -> None:
        document._insert([a for _, a in self._removed], [i for i, _ in self._removed])


class Replace(Command):
    """Replace annotations by edited versions with the same ids.

    Used for moves, vertex edits, brush strokes and any property change. A
    locked annotation refuses a new geometry (:class:`AnnotationLocked`).

    Parameters
    ----------
    old_to_new : mapping of id to Annotation
        The new version of each annotation, keyed by its (unchanged) id.
    description : str, optional
        What the edit log says (default "Edit N annotations").
    """

    def __init__(
        self, old_to_new: Mapping[str, Annotation] | None = None, description: str | None = None
    ) -> None:
        self._new = dict(old_to_new or {})
        for ann_id, ann in self._new.items():
            if ann.id != ann_id:
                raise ValueError(f"Replace: the new version of {ann_id} has id {ann.id}")
        self.description = description or f"Edit {_plural(len(self._new))}"
        self._old: dict[str, Annotation] = {}

    def replacements(self, document: AnnotationDocument) -> dict[str, Annotation]:
        """Return the new version of each annotation this command changes."""
        return self._new

    def do(self, document: AnnotationDocument) -> None:
        new = self.replacements(document)
        old = {ann_id: _require(document, ann_id) for ann_id in new}
        for ann_id, ann in new.items():
            if ann.geometry is not old[ann_id].geometry and not ann.geometry.equals(
                old[ann_id].geometry
            ):
                _check_unlocked(old[ann_id])
        document._put(*new.values())
        self._old = old

    def undo(self, document: AnnotationDocument) -> None:
        document._put(*self._old.values())


class _SetField(Replace):
    """Set one field of several annotations (class, locked flag, name)."""

    def __init__(self, ids: Iterable[str], description: str, **changes) -> None:
        super().__init__(description=description)
        self.ids = list(dict.fromkeys(ids))
        self.changes = changes

    def replacements(self, document: AnnotationDocument) -> dict[str, Annotation]:
        return {i: _require(document, i).replace(**self.changes) for i in self.ids}


class SetClass(_SetField):
    """Set the class of annotations (None removes it)."""

    def __init__(self, ids: Iterable[str], class_name: str | None) -> None:
        ids = list(ids)
        label = class_name or "Unclassified"
        super().__init__(ids, f"Set class {label} on {_plural(len(ids))}", class_name=class_name)


class SetLocked(_SetField):
    """Lock or unlock annotations."""

    def __init__(self, ids: Iterable[str], locked: bool) -> None:
        ids = list(ids)
        verb = "Lock" if locked else "Unlock"
        super().__init__(ids, f"{verb} {_plural(len(ids))}", locked=bool(locked))


class Rename(_SetField):
    """Rename one annotation."""

    def __init__(self, ann_id: str, name: str) -> None:
        super().__init__([ann_id], f"Rename annotation to {name!r}", name=name)


class _Sequence(Command):
    """Several commands applied as one edit, built from the document when it is done."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._parts: list[Command] = []

    def parts(self, document: AnnotationDocument) -> list[Command]:
        """Return the commands to apply, in order (checked before any is applied)."""
        raise NotImplementedError

    def do(self, document: AnnotationDocument) -> None:
        parts = self.parts(document)
        done: list[Command] = []
        try:
            for part in parts:
                part.do(document)
                done.append(part)
        except Exception:
            for part in reversed(done):
                part.undo(document)
            raise
        self._parts = parts

    def undo(self, document: AnnotationDocument) -> None:
        for part in reversed(self._parts):
            part.undo(document)


def _union_kind(anns: Sequence[Annotation]) -> str:
    """Return the kind of the union of ``anns``, refusing areas mixed with lines or points."""
    if all(a.is_area for a in anns):
        return "polygon"
    if all(a.kind == "points" for a in anns):
        return "points"
    if all(a.kind in ("line", "polyline") for a in anns):
        return "polyline"
    raise AnnotationError(
        "only annotations of the same kind can be merged (areas, lines or points, not a mix)."
    )


class Merge(_Sequence):
    """Merge annotations into the first of them (in drawing order): the union of their shapes."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = list(dict.fromkeys(ids))
        super().__init__(f"Merge {_plural(len(self.ids))}")

    def parts(self, document: AnnotationDocument) -> list[Command]:
        if len(self.ids) < 2:
            raise AnnotationError("select at least two annotations to merge.")
        anns = sorted((_require(document, i) for i in self.ids), key=lambda a: document.index(a.id))
        for ann in anns:
            _check_unlocked(ann)
        kind = _union_kind(anns)
        merged = anns[0].replace(geometry=shapely.union_all([a.geometry for a in anns]), kind=kind)
        return [Replace({merged.id: merged}), Remove(a.id for a in anns[1:])]


class Subtract(Replace):
    """Cut the area of other annotations out of a target annotation (the cutters stay)."""

    def __init__(self, target_id: str, cutter_ids: Iterable[str]) -> None:
        self.target_id = target_id
        self.cutter_ids = [i for i in dict.fromkeys(cutter_ids) if i != target_id]
        super().__init__(description=f"Subtract {_plural(len(self.cutter_ids))}")

    def replacements(self, document: AnnotationDocument) -> dict[str, Annotation]:
        target = _require(document, self.target_id)
        cutters = [_require(document, i) for i in self.cutter_ids]
        if not cutters:
            raise AnnotationError("select at least one annotation to subtract from the first.")
        if not target.is_area or not all(c.is_area for c in cutters):
            raise AnnotationError("only areas can be subtracted from an area annotation.")
        _check_unlocked(target)
        rest = target.geometry.difference(shapely.union_all([c.geometry for c in cutters]))
        if rest.is_empty:
            raise AnnotationError(
                f"subtracting would leave nothing of annotation {_label(target)}."
            )
        return {target.id: target.replace(geometry=rest, kind="polygon")}


class Duplicate(Command):
    """Copy annotations, shifted by ``offset`` level-0 pixels; the copies get new ids."""

    def __init__(self, ids: Iterable[str], offset: tuple[float, float] = (0.0, 0.0)) -> None:
        self.ids = list(dict.fromkeys(ids))
        self.offset = offset
        self.description = f"Duplicate {_plural(len(self.ids))}"
        self.copies: list[Annotation] = []

    def do(self, document: AnnotationDocument) -> None:
        if not self.copies:  # redo makes the same copies (later commands use their ids)
            dx, dy = self.offset
            self.copies = [
                _require(document, i).replace(
                    geometry=shapely.affinity.translate(document.get(i).geometry, dx, dy),
                    id=uuid.uuid4().hex,
                    parent_id=None,
                )
                for i in self.ids
            ]
        document._insert(self.copies)

    def undo(self, document: AnnotationDocument) -> None:
        document._remove(a.id for a in self.copies)


def _check_classes(classes: Sequence[PathClass]) -> None:
    """Refuse a class list with an empty or repeated name."""
    names = [c.name.strip() for c in classes]
    if any(not n for n in names):
        raise AnnotationError("a class needs a name that is not empty.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AnnotationError(f"the class list has {repeated[0]!r} more than once.")


class EditClasses(_Sequence):
    """Replace the class list; ``renamed`` (old name -> new) re-classes the annotations too."""

    def __init__(
        self,
        classes: Sequence[PathClass],
        renamed: Mapping[str, str] | None = None,
        description: str = "Edit the class list",
    ) -> None:
        self.classes = list(classes)
        self.renamed = dict(renamed or {})
        super().__init__(description)

    def parts(self, document: AnnotationDocument) -> list[Command]:
        _check_classes(self.classes)
        parts: list[Command] = [_SetClasses(self.classes)]
        for old, new in self.renamed.items():
            ids = [a.id for a in document if a.class_name == old]
            if ids:
                parts.append(SetClass(ids, new))
        return parts


class _SetClasses(Command):
    """Replace the class list (the part of :class:`EditClasses` that changes it)."""

    def __init__(self, classes: Sequence[PathClass]) -> None:
        self.classes = list(classes)
        self._old: list[PathClass] = []

    def do(self, document: AnnotationDocument) -> None:
        self._old = list(document.classes)
        document._set_classes(self.classes)

    def undo(self, document: AnnotationDocument) -> None:
        document._set_classes(self._old)


def add_class(document: AnnotationDocument, name: str, color: tuple[int, int, int]) -> EditClasses:
    """Return the command adding class ``name`` with ``color`` to the end of the class list."""
    return EditClasses([*document.classes, PathClass(name, color)], description=f"Add class {name}")


def rename_class(document: AnnotationDocument, old: str, new: str) -> EditClasses:
    """Return the command renaming class ``old`` to ``new``, its annotations included."""
    classes = [PathClass(new, c.color) if c.name == old else c for c in document.classes]
    return EditClasses(classes, {old: new}, f"Rename class {old} to {new}")


def recolor_class(
    document: AnnotationDocument, name: str, color: tuple[int, int, int]
) -> EditClasses:
    """Return the command giving class ``name`` a new colour."""
    classes = [PathClass(name, color) if c.name == name else c for c in document.classes]
    return EditClasses(classes, description=f"Recolour class {name}")


def remove_class(document: AnnotationDocument, name: str) -> EditClasses:
    """Return the command removing class ``name`` from the list (its annotations keep it)."""
    classes = [c for c in document.classes if c.name != name]
    return EditClasses(classes, description=f"Remove class {name}")


def brush_stroke(
    document: AnnotationDocument,
    target_id: str | None,
    stroke_geom: BaseGeometry,
    subtract: bool,
    class_name: str | None = None,
) -> Command:
    """Return the command of one brush stroke (a polygon in level-0 pixels).

    The stroke is unioned into the target area annotation, or cut out of it with
    ``subtract`` (Alt); a cut that leaves nothing deletes the target. Without a
    target the stroke becomes a new polygon annotation of ``class_name``.

    Returns
    -------
    Replace, Add or Remove
        The command to push on the :class:`CommandStack`.
    """
    if target_id is None:
        if subtract:
            raise AnnotationError("select an annotation before subtracting with the brush.")
        return Add([Annotation(stroke_geom, class_name=class_name)], "Brush a new annotation")
    target = _require(document, target_id)
    if not target.is_area:
        raise AnnotationError(
            f"annotation {_label(target)} has no area to paint on with the brush."
        )
    _check_unlocked(target)
    if subtract:
        rest = target.geometry.difference(stroke_geom)
        if rest.is_empty:
            return Remove([target.id])
        return Replace({target.id: target.replace(geometry=rest, kind="polygon")}, "Brush erase")
    union = target.geometry.union(stroke_geom)
    return Replace({target.id: target.replace(geometry=union, kind="polygon")}, "Brush stroke")


@dataclass(frozen=True)
class LogEntry:
    """One line of the edit log: when, and what was done (undo and redo included)."""

    time: datetime
    description: str


class CommandStack:
    """Undo/redo of every edit of a document, and the edit log.

    Parameters
    ----------
    document : AnnotationDocument
        The document the commands edit.
    """

    def __init__(self, document: AnnotationDocument) -> None:
        self.document = document
        self.log: list[LogEntry] = []
        self._done: list[Command] = []
        self._undone: list[Command] = []

    @property
    def can_undo(self) -> bool:
        """True when there is an edit to undo."""
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        """True when there is an undone edit to redo."""
        return bool(self._undone)

    @property
    def undo_description(self) -> str | None:
        """What :meth:`undo` would undo (for a menu), or None."""
        return self._done[-1].description if self._done else None

    @property
    def redo_description(self) -> str | None:
        """What :meth:`redo` would redo (for a menu), or None."""
        return self._undone[-1].description if self._undone else None

    def _record(self, description: str) -> None:
        """Append one line to the edit log."""
        self.log.append(LogEntry(datetime.now().astimezone(), description))

    def push(self, command: Command) -> None:
        """Do ``command`` and record it; a refused command raises and records nothing."""
        command.do(self.document)
        self._done.append(command)
        self._undone.clear()
        self._record(command.description)

    def undo(self) -> None:
        """Undo the last edit (nothing when there is none)."""
        if not self._done:
            return
        command = self._done.pop()
        command.undo(self.document)
        self._undone.append(command)
        self._record(f"Undo: {command.description}")

    def redo(self) -> None:
        """Redo the last undone edit (nothing when there is none)."""
        if not self._undone:
            return
        command = self._undone.pop()
        command.do(self.document)
        self._done.append(command)
        self._record(f"Redo: {command.description}")
