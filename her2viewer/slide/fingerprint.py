"""Content fingerprints used as cache keys for anything derived from a slide."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def file_fingerprint(path: str | Path, extra: str = "") -> str:
    """Return a short content hash of a file without reading all of it.

    The hash covers the file size, its first and last MiB and ``extra`` (for
    example OpenSlide's own ``quickhash-1``), which tells apart slides that share
    a name and changes when a file is rewritten.

    Parameters
    ----------
    path : str or Path
        The file to fingerprint.
    extra : str
        Additional identifying text mixed into the hash.

    Returns
    -------
    str
        16 hexadecimal characters.
    """
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(f"{size}:{extra}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_CHUNK))
        if size > _CHUNK:
            handle.seek(max(_CHUNK, size - _CHUNK))
            digest.update(handle.read(_CHUNK))
    return digest.hexdigest()[:16]
