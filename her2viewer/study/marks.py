"""A reader's mark: the point or outline behind their call, stored with the answer.

A mark is drawn on one pane of the reading window (``he`` or ``ihc``) in that
slide's level-0 pixels and stored in the answer row as JSON
(``{"slide": "he", "geometry": <GeoJSON geometry>}``). Only the reader who drew
it sees it while reading; the owner exports every mark as QuPath GeoJSON
(:func:`her2viewer.study.exports.write_marks`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import shapely.geometry
from shapely.geometry.base import BaseGeometry

from her2viewer.errors import StudyError

#: Panes a mark may be drawn on.
MARK_SLIDES = ("he", "ihc")
#: Most vertices of one outline (a freehand outline of a few minutes is far fewer).
MAX_VERTICES = 20_000


@dataclass(frozen=True)
class ReaderMark:
    """A point or an outline on one slide of a case, in its level-0 pixels."""

    slide: str
    geometry: BaseGeometry

    def to_text(self) -> str:
        """Return the JSON stored in the answer row."""
        geometry = shapely.geometry.mapping(self.geometry)
        return json.dumps({"slide": self.slide, "geometry": geometry})

    @classmethod
    def from_text(cls, text: str, where: str = "a mark") -> ReaderMark:
        """Parse and check a stored mark, or raise :class:`StudyError` naming ``where``."""
        try:
            data = json.loads(text)
            geometry = shapely.geometry.shape(data["geometry"])
            slide = data["slide"]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StudyError(f"{where} is not a mark (a point or an outline as JSON).") from exc
        return check_mark(cls(slide, geometry), where)


def check_mark(mark: ReaderMark, where: str = "a mark") -> ReaderMark:
    """Return ``mark`` when it is a point or a valid outline with finite coordinates."""
    geom = mark.geometry
    if mark.slide not in MARK_SLIDES:
        raise StudyError(f"{where}: a mark is drawn on the he or ihc slide, not {mark.slide!r}.")
    if geom.geom_type not in ("Point", "Polygon") or geom.is_empty:
        raise StudyError(f"{where}: a mark is a point or an outline, not a {geom.geom_type}.")
    coords = list(geom.coords) if geom.geom_type == "Point" else list(geom.exterior.coords)
    if len(coords) > MAX_VERTICES or not all(math.isfinite(v) for xy in coords for v in xy):
        raise StudyError(f"{where}: the mark has non-finite or over {MAX_VERTICES} vertices.")
    if geom.geom_type == "Polygon" and (not geom.is_valid or geom.area <= 0):
        raise StudyError(f"{where}: the outline crosses itself or encloses nothing.")
    return mark
