"""Annotation files in every format her2viewer reads: QuPath GeoJSON, ASAP and ImageScope XML.

A file is read by its content (JSON, or the XML root element ``<ASAP_Annotations>`` or
``<Annotations>``) once its suffix says it is an annotation file; it is written in the format
its suffix names (``.geojson``/``.json``), or the one asked for (``.xml`` is both ASAP and
ImageScope, so it needs ``format``).

>>> features = read_annotations("tumor.xml")  # doctest: +SKIP
>>> write_annotations("tumor.geojson", features)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from her2viewer.annotations.asap import read_asap, write_asap
from her2viewer.annotations.imagescope import read_imagescope, write_imagescope
from her2viewer.annotations.xmlio import AnnotationFormatError, read_annotation_bytes
from her2viewer.geometry.geojson import Feature, GeoJSONError, read_features, write_features

__all__ = [
    "FORMATS",
    "AnnotationFormatError",
    "detect_format",
    "output_format",
    "read_annotations",
    "write_annotations",
]

#: Format names, as ``--format`` takes them.
FORMATS = ("geojson", "asap", "imagescope")
JSON_SUFFIXES = (".geojson", ".json")
XML_SUFFIXES = (".xml",)
_READERS = {"geojson": read_features, "asap": read_asap, "imagescope": read_imagescope}
_WRITERS = {"geojson": write_features, "asap": write_asap, "imagescope": write_imagescope}
_XML_ROOTS = {b"ASAP_Annotations": "asap", b"Annotations": "imagescope"}
#: Bytes read to tell the formats apart.
_HEAD = 1 << 16
_SUFFIX_HELP = ".geojson or .json (QuPath GeoJSON) or .xml (ASAP or ImageScope)"


def detect_format(path: str | Path) -> str:
    """Return the format of an annotation file from its suffix and its first bytes.

    Raises
    ------
    AnnotationFormatError
        One sentence naming the file when it is missing, has an unknown suffix, is empty,
        or is neither GeoJSON nor ASAP/ImageScope XML.
    """
    path = Path(path)
    if path.suffix.lower() not in JSON_SUFFIXES + XML_SUFFIXES:
        what = f"the suffix '{path.suffix}'" if path.suffix else "no suffix"
        raise AnnotationFormatError(
            f"{path} has {what}, which is not an annotation file's; "
            f"use {_SUFFIX_HELP}, or name the format."
        )
    return _format_of(read_annotation_bytes(path, _HEAD), path)


def _format_of(head: bytes, path: Path) -> str:
    """Return the format the first bytes of ``path`` show."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not text:
        raise AnnotationFormatError(f"{path} is empty; it holds no annotations.")
    if text[:1] in (b"{", b"["):
        return "geojson"
    if text[:1] == b"<":
        text = re.sub(rb"<!--.*?-->", b"", text, flags=re.DOTALL)
        root = re.search(rb"<(?![?!])([A-Za-z_][\w:.-]*)", text)
        name = root.group(1) if root else b""
        if name in _XML_ROOTS:
            return _XML_ROOTS[name]
        raise AnnotationFormatError(
            f"{path} is XML with the root element <{name.decode(errors='replace')}>, "
            "neither ASAP (<ASAP_Annotations>) nor ImageScope (<Annotations>)."
        )
    raise AnnotationFormatError(
        f"{path} is neither GeoJSON nor ASAP or ImageScope XML (it starts with neither "
        "'{', '[' nor '<')."
    )


def read_annotations(path: str | Path, format: str | None = None) -> list[Feature]:
    """Read an annotation file in any supported format.

    Parameters
    ----------
    path : str or Path
        The file.
    format : str, optional
        One of :data:`FORMATS`; found from the suffix and content when left out.

    Raises
    ------
    AnnotationFormatError
        One sentence naming the file when it is unknown, corrupt or holds a bad shape.
    """
    name = format or detect_format(path)
    try:
        return _READERS[_checked(name)](path)
    except GeoJSONError as exc:
        raise AnnotationFormatError(str(exc)) from exc


def output_format(path: str | Path, format: str | None = None) -> str:
    """Return the format to write ``path`` in: ``format``, else the one its suffix names.

    Raises
    ------
    AnnotationFormatError
        When the suffix names no format (``.xml`` is ASAP or ImageScope: ``format`` decides).
    """
    if format:
        return _checked(format)
    suffix = Path(path).suffix.lower()
    if suffix in JSON_SUFFIXES:
        return "geojson"
    if suffix in XML_SUFFIXES:
        raise AnnotationFormatError(
            f"{path} is an .xml file, which can be ASAP or ImageScope; name the format "
            "(--format asap or --format imagescope)."
        )
    raise AnnotationFormatError(
        f"cannot tell the annotation format of {path} from its suffix '{Path(path).suffix}'; "
        f"use {_SUFFIX_HELP}."
    )


def write_annotations(
    path: str | Path, features: Sequence[Feature], format: str | None = None
) -> None:
    """Write ``features`` atomically in ``format`` or the one ``path``'s suffix names.

    Raises
    ------
    AnnotationFormatError
        When the format cannot be told (see :func:`output_format`).
    OutputError
        One sentence when the file cannot be written (nothing is left behind).
    """
    _WRITERS[output_format(path, format)](path, features)


def _checked(format: str) -> str:
    """Return ``format`` if it is one of :data:`FORMATS`, else refuse it in one sentence."""
    if format not in FORMATS:
        raise AnnotationFormatError(
            f"unknown annotation format {format!r}; choose one of {', '.join(FORMATS)}."
        )
    return format
