"""Every file attnlab writes goes through here: atomically, and readable as the user's umask says.

A write goes to a temporary file beside the target, is flushed to disk (fsync)
and renamed into place, so a crash leaves the old file or the new one, never
half of one. ``tempfile.mkstemp`` creates its file with mode 0600 (and
``mkdtemp`` its directory with 0700); the result is given the mode an ordinary
``open()`` or ``mkdir`` would give it (0644 / 0755 under the usual umask 022), so
runs, figures and pages can be shared.

>>> from attnlab.files import atomic_write_text
>>> atomic_write_text(Path("/tmp/note.txt"), "hello\\n")
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "staging_dir", "current_umask",
           "fsync_dir"]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting, then put it back at once
    os.umask(mask)
    return mask


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path``; on success fsync it, give it the umask's mode, rename it in.

    On an exception (a full disk, an interrupt) the temporary file is removed
    and ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via temp file + fsync + rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def staging_dir(parent: Path, prefix: str) -> Path:
    """A new, empty directory under ``parent`` to fill before renaming it into place (mode per umask)."""
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(staging, 0o777 & ~current_umask())
    return staging
