"""SHA-256 digests of the files and JSON fields that change what a saved model, corpus or
export computes, so that a truncated file or an edited field is caught before use.

A field's digest is the SHA-256 of its canonical JSON (keys sorted, no spaces, UTF-8), so
rewriting a file with other whitespace or key order changes nothing, while any change of a
value (a token removed from a vocabulary, two tokens swapped, another ``max_length``) does.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The key of a manifest (``model.json``, ``corpus.json``) holding its fields' digests.
DIGESTS = "fields_sha256"


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path``, hex, read in 1 MiB chunks.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not a plain file (:func:`check_plain_file`).
    """
    digest = hashlib.sha256()
    check_plain_file(path)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: The largest JSON manifest read (``model.json``, ``corpus.json``, ``manifest.json``), in
#: bytes: a vocabulary of a million pieces takes about 20 MB, so this is far above any real
#: one, and a device or a huge file put in its place is refused before it is read whole.
MAX_JSON_BYTES = 256 << 20


def read_json(path: Path, max_bytes: int | None = None) -> Any:
    """The JSON document in file ``path``, read only if it is at most ``max_bytes`` long
    (default :data:`MAX_JSON_BYTES`).

    Raises:
        OSError: it cannot be read (``FileNotFoundError`` when missing).
        ValueError: it is not a plain file (a FIFO or a device would block or never end),
            it is longer (the message says so), not UTF-8, not JSON or nested too deeply
            (``json.JSONDecodeError`` and ``UnicodeDecodeError`` are ``ValueError``s).
    """
    max_bytes = MAX_JSON_BYTES if max_bytes is None else max_bytes
    check_plain_file(path)
    with path.open("rb") as fh:
        # read(n) sets n bytes aside first: ask for what the file holds (and one more, in
        # case it grew), not for the bound, or a 5 kB model.json takes 256 MB under a
        # memory limit (ulimit -v) and fails there
        size = os.fstat(fh.fileno()).st_size
        raw = fh.read(min(size, max_bytes) + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"over {max_bytes} bytes, far more than such a file holds")
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


def check_plain_file(path: Path) -> None:
    """Raises ValueError: ``path`` (a symlink is followed) is a FIFO, a device, a socket or
    a folder, not a plain file; reading one could block or never end.
    OSError: it does not exist or cannot be looked at."""
    import stat

    if not stat.S_ISREG(path.stat().st_mode):
        raise ValueError("not a plain file (a FIFO, a device or a folder)")


def field_sha256(value: Any) -> str:
    """The SHA-256 of ``value``'s canonical JSON, hex."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _field_digests(doc: dict[str, Any], nested: str | None) -> dict[str, str]:
    """The digest of each of ``doc``'s fields but :data:`DIGESTS`, and with ``nested``, of
    each field of ``doc[nested]`` instead of it whole (named ``NESTED.KEY``), so that a
    mismatch names the field."""
    digests = {
        key: field_sha256(value) for key, value in doc.items() if key not in (DIGESTS, nested)
    }
    if nested is not None:
        digests.update(
            {f"{nested}.{key}": field_sha256(value) for key, value in doc[nested].items()}
        )
    return digests


def seal(doc: dict[str, Any], nested: str | None = None) -> dict[str, Any]:
    """``doc`` as JSON reads it back, with :data:`DIGESTS` recording each field's digest
    (each field of ``doc[nested]`` apart), ready to write."""
    sealed = json.loads(json.dumps(doc, ensure_ascii=False))
    sealed[DIGESTS] = _field_digests(sealed, nested)
    return sealed


def changed_fields(doc: dict[str, Any], nested: str | None = None) -> list[str]:
    """The fields of ``doc`` (named as :func:`seal` digests them) that were added, removed
    or changed since it was sealed; empty when it all agrees.

    Raises:
        KeyError: ``doc`` holds no :data:`DIGESTS`.
        TypeError: they are not an object of hex strings, or ``doc[nested]`` is not an
            object.
    """
    recorded = doc[DIGESTS]
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise TypeError("the recorded digests must be an object of SHA-256 strings")
    if nested is not None and not isinstance(doc.get(nested), dict):
        raise TypeError(f"{nested} must be an object")
    now = _field_digests(doc, nested)
    return sorted(k for k in now.keys() | recorded.keys() if now.get(k) != recorded.get(k))


def manifest_of(path: Path, format: str) -> dict[str, Any] | None:
    """The JSON object in file ``path`` when its ``format`` is ``format``; None when there
    is none, it cannot be read, or it is another program's (never acted on as ours)."""
    try:
        doc = read_json(path)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == format else None


def read_manifest(
    path: Path,
    format: str,
    newest: int,
    refuse: Callable[[str], Exception],
    missing: str,
    kind: str = "file",
) -> tuple[dict[str, Any], int]:
    """The JSON object in file ``path`` (a ``model.json``, a ``corpus.json``) and its
    ``format_version``, for a reader of ``format`` up to version ``newest``.

    Raises:
        Exception: ``refuse(reason)``, the reader's own error, with the reason: ``missing``
            when there is no file; it cannot be read or is not JSON; it is ``not a FORMAT
            KIND`` (``kind``); its ``format_version`` is not a positive integer, or is newer
            than ``newest``.
    """
    try:
        doc = read_json(path)
    except FileNotFoundError:
        raise refuse(missing) from None
    except ValueError as exc:
        raise refuse(f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise refuse(f"cannot read it ({exc.strerror or exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != format:
        raise refuse(f"not a {format} {kind}")
    version = doc.get("format_version")
    if type(version) is not int or version < 1:
        raise refuse(f"format_version {version!r} is not a version")
    if version > newest:
        raise refuse(
            f"format version {version!r} is newer than this seq2seq-kit reads ({newest}); "
            f"upgrade seq2seq-kit"
        )
    return doc, version
