"""Replacing a directory's own files as one set, in place, so that a crash leaves the old set
or the new one whole, never a mix.

The directory itself is never renamed or replaced: it may be a mount point (a container
volume, where renaming it fails with ``EBUSY``), the target of a symlink the user named, or
hold files that are not ours. A save happens in three steps, all inside the directory:

1. :func:`stage` makes an empty hidden folder ``.seq2seq-kit-staging-*`` in it; the
   caller writes the complete new set of files there (its manifest, e.g. ``model.json``,
   among them).
2. :func:`commit` syncs them and writes the commit record ``.commit.json`` in the staging
   folder: the names to move (the manifest last) and the names of the old set to remove.
   Its atomic appearance is the commit point.
3. Each file is moved over its old version by ``rename`` (atomic within a file system), then
   the old set's leftovers are removed and the staging folder with them.

A save killed before step 2 leaves a staging folder without a record: the next save removes
it. One killed during step 3 leaves the record: whoever opens the directory next finishes the
moves (:func:`finish`; moving is idempotent, so two processes may both do it). Only names
the caller's manifests listed are ever moved over or removed: nothing else in the directory
is touched, and a symlink inside it is replaced as a link, never written through.

One process writes a given directory at a time: :func:`writer_lock` holds a lock on
``.seq2seq-kit-lock`` inside it while it writes. Every hidden name of ours starts with
``.seq2seq-kit-`` (:func:`ours`), so that checks for "an empty directory" can ignore them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

PREFIX = ".seq2seq-kit-"
STAGING_PREFIX = f"{PREFIX}staging-"
LOCK_FILE = f"{PREFIX}lock"
RECORD = ".commit.json"


class Refused(Exception):
    """:func:`writer_lock` cannot be had; the message says why, for ``PATH: MESSAGE``."""


class Busy(Refused):
    """Another process holds the directory's writer lock."""


class Unwritable(Refused):
    """The directory cannot be created, or its lock file not written."""


class InTheWay(Refused):
    """A folder stands where a file of the save goes: a file cannot be moved over it."""


def ours(name: str) -> bool:
    """Whether ``name`` is one of the hidden files or folders this module keeps in a
    directory (the lock, a staging folder)."""
    return name.startswith(PREFIX)


def user_entries(path: Path) -> list[Path]:
    """What ``path`` holds besides this module's hidden entries, sorted."""
    return sorted(child for child in path.iterdir() if not ours(child.name))


def plain_name(name: object) -> bool:
    """Whether ``name`` names a file directly inside a directory: a non-empty string with no
    separator, not ``.`` or ``..``, and not one of this module's hidden names."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and os.sep not in name
        and "\0" not in name
        and not ours(name)
    )


def fsync(path: Path) -> None:
    """Flush ``path`` (a file or a directory) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Create directory ``path`` if it is missing and hold an OS file lock on
    ``path/.seq2seq-kit-lock`` while the block runs (``flock``: released when the process
    ends, even by a kill). The file is removed when the block ends, and a directory this
    call created that is empty then is removed too, so a run that failed before writing
    leaves nothing behind.

    Raises:
        Busy: another process holds the lock (a seq2seq-kit command writing there).
        Unwritable: the directory cannot be created or the lock file not written there.
    """
    import fcntl

    busy = Busy(
        f"another seq2seq-kit command is writing this directory (it holds {path / LOCK_FILE}); "
        f"wait for it to end or choose another directory"
    )

    created = not path.exists()
    lock_file = path / LOCK_FILE
    for _ in range(3):
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise Unwritable(
                f"cannot write there ({exc.strerror or exc}: {exc.filename or path})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the holder before us removes the file as it lets go: a lock on a file no longer
            # at that path locks nothing, so take the lock again on the new one
            if os.fstat(fd).st_ino == os.stat(lock_file).st_ino:
                break
        except BlockingIOError:
            os.close(fd)
            raise busy from None
        except FileNotFoundError:
            pass
        os.close(fd)
    else:
        raise busy
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_file.unlink()
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty: nothing was written


@contextlib.contextmanager
def stage(path: Path) -> Iterator[Path]:
    """Prepare directory ``path`` (created if missing) for a save: finish a committed save
    that was interrupted, remove uncommitted staging folders, and give a new empty staging
    folder inside it, on the same file system. The block writes the new files there and
    calls :func:`commit`; a block that ends without committing leaves nothing behind.

    Raises:
        OSError: the directory cannot be written.
    """
    path.mkdir(parents=True, exist_ok=True)
    finish(path)
    for stale in path.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a save killed before its commit
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=path))
    try:
        yield staging
    finally:
        if not (staging / RECORD).exists():  # committed: whoever opens it next finishes it
            shutil.rmtree(staging, ignore_errors=True)


def commit(path: Path, staging: Path, manifest: str, obsolete: Iterable[str] = ()) -> None:
    """Make the files in ``staging`` (from :func:`stage`) the directory's own, the
    ``manifest`` file last, and remove the ``obsolete`` names (the old set's files that the
    new set does not have). Every name must be a plain file name (:func:`plain_name`).

    Raises:
        InTheWay: a folder in ``path`` has the name of a file of the save.
        ValueError: ``staging`` holds a folder, a link or a name that is not plain, or no
            ``manifest``.
        OSError: writing or moving failed; before the commit record is written the old set
            is untouched (the staging folder is removed by the next :func:`stage`).
    """
    names = sorted(child.name for child in staging.iterdir())
    for name in names:
        child = staging / name
        if not plain_name(name) or child.is_symlink() or not child.is_file():
            raise ValueError(f"{child}: only plain files can be saved, not this")
    if manifest not in names:
        raise ValueError(f"{staging}: the manifest {manifest} was not written")
    in_the_way = in_the_way_of(path, names)
    if in_the_way:
        raise InTheWay(
            f"{in_the_way[0].name}: a folder where a file of the save goes; move it away"
        )
    for name in names:
        fsync(staging / name)
    moves = [n for n in names if n != manifest] + [manifest]
    removals = sorted({n for n in obsolete if plain_name(n)} - set(names))
    record = staging / f"{RECORD}.tmp"
    record.write_text(json.dumps({"move": moves, "remove": removals}) + "\n", encoding="utf-8")
    fsync(record)
    os.replace(record, staging / RECORD)
    fsync(staging)
    _roll_forward(path, staging)


def committed(path: Path) -> bool:
    """Whether a save into ``path`` has committed and not yet finished its moves."""
    return any((staging / RECORD).is_file() for staging in path.glob(f"{STAGING_PREFIX}*"))


def in_the_way_of(path: Path, names: Iterable[str]) -> list[Path]:
    """Those of ``names`` that are folders in ``path`` (not links to them): a save cannot
    move a file over a folder, so they are refused before anything is written."""
    return [path / n for n in sorted(names) if (path / n).is_dir() and not (path / n).is_symlink()]


def finish(path: Path) -> bool:
    """Finish a save into ``path`` that was killed after its commit (moves are idempotent:
    another process finishing it at the same time is harmless). Returns whether one is
    still unfinished (the directory cannot be written: a reader's checks then report the
    mixed files, and its message should say why).
    """
    pending = False
    for staging in path.glob(f"{STAGING_PREFIX}*"):
        if (staging / RECORD).is_file():
            try:
                _roll_forward(path, staging)
            except (OSError, ValueError):
                pending = True
    return pending


def _roll_forward(path: Path, staging: Path) -> None:
    record = json.loads((staging / RECORD).read_text(encoding="utf-8"))
    for name in record["move"]:
        if plain_name(name):
            with contextlib.suppress(FileNotFoundError):  # moved already
                os.replace(staging / name, path / name)
    fsync(path)
    for name in record["remove"]:
        if plain_name(name):
            with contextlib.suppress(OSError):  # gone already, or now a folder: not ours
                (path / name).unlink()
    shutil.rmtree(staging, ignore_errors=True)
    fsync(path)
