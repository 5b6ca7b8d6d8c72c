"""Validate a parsed JSON manifest with a pydantic model, failing in one sentence.

Every manifest the project reads (``bundle.json``, a registration file, a study's
definition) is checked by a pydantic model; :func:`validated` runs one and turns the
first problem into one sentence that names the file and the field, raised as the
caller's :class:`~her2viewer.errors.Her2ViewerError` subclass.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from her2viewer.errors import Her2ViewerError

Model = TypeVar("Model", bound=BaseModel)


def validated(
    schema: type[Model], data: object, path: str | Path, what: str, error: type[Her2ViewerError]
) -> Model:
    """Return ``data`` checked by ``schema``, or raise ``error`` in one sentence.

    Parameters
    ----------
    schema : type of pydantic.BaseModel
        The model of the manifest.
    data : object
        The parsed JSON.
    path : path
        The file, for the sentence.
    what : str
        What the file is, e.g. ``"bundle.json"`` or ``"the registration file"``.
    error : type
        The error to raise.

    Raises
    ------
    Her2ViewerError
        ``error`` with one sentence naming ``path`` and the first wrong field.
    """
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise error(validation_sentence(path, what, exc)) from None


def validation_sentence(path: str | Path, what: str, exc: ValidationError) -> str:
    """One sentence for the first error of a validation."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return f"{path}: {what} lacks the field '{field}'."
    reason = error["msg"].rstrip(".")
    reason = reason[0].lower() + reason[1:]
    reason = reason.removeprefix("value error, ")
    got = repr(error["input"])
    got = got if len(got) <= 40 else got[:37] + "..."
    subject = f"{what} field '{field}'" if field else what
    return f"{path}: {subject} is invalid ({reason}; got {got})."
