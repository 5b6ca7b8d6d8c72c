"""Secrets of a reader study: readers' PINs, the owner secret and the seals of reader rows.

Secrets are never stored: a study file keeps a salted scrypt record (``hashlib.scrypt``,
a memory-hard KDF; salt and cost parameters stored with it). The owner secret also
derives a key that seals the readers table (an HMAC over every reader's name, seed
and PIN record, and the enrolment rule), so a reader row edited by hand in the
SQLite file is detected at the owner's next opening.

Secrets come from an environment variable (:data:`OWNER_ENV`, :data:`READER_ENV`)
or, on a terminal, from a ``getpass`` prompt; never from a command-line argument,
which would land in the shell's history and in ``ps``.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys

from her2viewer.errors import StudyError

#: Environment variables the CLI reads secrets from (a prompt on a terminal otherwise).
OWNER_ENV = "HER2VIEWER_OWNER_SECRET"
READER_ENV = "HER2VIEWER_READER_PIN"

#: scrypt cost of new records (about 16 MiB and 0.1 s); stored with each record.
SCRYPT_COST = {"n": 2**14, "r": 8, "p": 1}
#: Largest cost accepted from a file, so a tampered record cannot exhaust memory.
MAX_COST = {"n": 2**20, "r": 32, "p": 16}
#: Shortest reader PIN and owner secret accepted.
MIN_LENGTH = {"pin": 4, "owner secret": 8}


class AccessError(StudyError):
    """A secret is missing or wrong, or a reader tries to open what is not theirs."""


def _derive(secret: str, record: dict) -> bytes:
    """Return 64 bytes of scrypt output: 32 to verify, 32 for the owner's seal key."""
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=bytes.fromhex(record["salt"]),
        n=record["n"],
        r=record["r"],
        p=record["p"],
        maxmem=256 * 1024 * 1024,
        dklen=64,
    )


def new_record(secret: str, what: str = "pin") -> str:
    """Return the JSON scrypt record of a new secret (raises when it is too short)."""
    if len(secret) < MIN_LENGTH[what]:
        raise AccessError(f"the {what} must have at least {MIN_LENGTH[what]} characters.")
    record = {"kdf": "scrypt", **SCRYPT_COST, "salt": secrets.token_hex(16)}
    record["hash"] = _derive(secret, record)[:32].hex()
    return json.dumps(record)


def parse_record(text: str, where: str) -> dict:
    """Return a stored scrypt record, or raise :class:`AccessError` naming ``where``."""
    try:
        record = json.loads(text)
        for field in ("salt", "hash"):
            bytes.fromhex(record[field])
        costs_ok = all(
            isinstance(record[k], int) and 1 <= record[k] <= MAX_COST[k] for k in MAX_COST
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise AccessError(_damaged(where)) from exc
    if record.get("kdf") != "scrypt" or not costs_ok or record["n"] & (record["n"] - 1):
        raise AccessError(_damaged(where))
    return record


def _damaged(where: str) -> str:
    return f"{where} is damaged or edited by hand; restore the file from a backup."


def verify(secret: str, text: str, where: str) -> bytes:
    """Check a secret against a stored record; return the 32-byte seal key on success.

    Raises
    ------
    AccessError
        When the secret is wrong (one sentence naming ``where``, never the secret).
    """
    record = parse_record(text, f"the stored {where}")
    derived = _derive(secret, record)
    if not hmac.compare_digest(derived[:32].hex(), record["hash"]):
        raise AccessError(f"wrong {where}.")
    return derived[32:]


def seal(key: bytes, message: str) -> str:
    """Return the owner's HMAC of ``message`` (the readers table as JSON)."""
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def read_secret(env: str, prompt: str, confirm: bool = False) -> str | None:
    """Return a secret from the environment variable ``env`` or a terminal prompt.

    Returns ``None`` when neither is available (no variable, no terminal); the
    caller decides whether that is an error. A new secret (``confirm``) is asked twice.
    """
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        return None
    value = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass(f"{prompt} (again): ") != value:
        raise AccessError("the two entries differ; nothing was changed.")
    return value or None


def require_secret(env: str, prompt: str, what: str, confirm: bool = False) -> str:
    """Like :func:`read_secret`, but a missing secret is a one-sentence :class:`AccessError`."""
    value = read_secret(env, prompt, confirm)
    if value is None:
        raise AccessError(
            f"this needs the {what}: set the environment variable {env} "
            "or run in a terminal to be asked for it."
        )
    return value
