"""Where softwidth keeps downloaded packages and built corpora, and how it writes files there.

Every file a builder produces goes through :func:`atomic_path` (or :func:`write_atomic` / :func:`write_json`):
the content is written to a temporary file in the same directory and moved into place with ``os.replace``,
which is atomic on POSIX. A build killed at any moment therefore leaves either the old file or the complete
new one, never half a file, and a rerun can trust every file it finds. Left-over temporary files are named
``.<name>.<random>.tmp`` and are removed by :func:`remove_stale_temps`.

The cache directory is ``$SOFTWIDTH_CACHE`` if set, else ``$XDG_CACHE_HOME/softwidth``, else
``~/.cache/softwidth``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from softwidth.errors import SoftWidthError

__all__ = [
    "Manifest",
    "atomic_path",
    "default_cache_dir",
    "read_json",
    "remove_stale_temps",
    "sha256_file",
    "write_atomic",
    "write_json",
]

_TMP_SUFFIX = ".tmp"


def default_cache_dir() -> Path:
    """The user cache directory (not created): ``$SOFTWIDTH_CACHE``, ``$XDG_CACHE_HOME/softwidth`` or
    ``~/.cache/softwidth``, in that order of precedence; empty variables count as unset."""
    explicit = os.environ.get("SOFTWIDTH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "softwidth"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on normal exit move it onto ``path`` atomically.

    The caller writes the whole file to the yielded path (any writer that takes a path works, e.g.
    ``soundfile.write`` with an explicit ``format``). If the block raises, the temporary file is removed
    and ``path`` is untouched. Parent directories are created. A write that fails because the disk is full
    raises ``OSError(errno.ENOSPC)`` with a one-line message naming ``path``, whatever the writer raised
    (numpy and libsndfile lose the errno).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=_TMP_SUFFIX)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600; cached data should be readable like any other file
    try:
        yield tmp
        # Flush the data to disk before the rename so a power cut cannot leave a renamed, empty file.
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except (OSError, RuntimeError) as err:
        if _disk_full(err, target.parent):
            raise OSError(errno.ENOSPC, f"No space left on device while writing {target}; nothing half-written "
                                        "is kept: free space and rerun (finished files are reused)") from err
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _disk_full(err: BaseException, directory: Path) -> bool:
    """True if ``err`` says ENOSPC/EDQUOT, or carries no errno while ``directory``'s file system is full
    (under 1 MiB free): numpy raises ``OSError("N requested and M written")``, libsndfile an empty error."""
    code = getattr(err, "errno", None)
    if code is not None:
        return code in (errno.ENOSPC, errno.EDQUOT)
    try:
        stat = os.statvfs(directory)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < (1 << 20)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (bytes, or str encoded as UTF-8) to ``path`` atomically; return the path."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON atomically, with sorted keys, 2-space indent and a final newline, so the
    same object always gives the same bytes (builds compare outputs byte for byte)."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return write_atomic(path, text + "\n")


def read_json(path: str | os.PathLike[str], default: Any = None) -> Any:
    """Read a JSON file; return ``default`` if it does not exist.

    Raises :class:`SoftWidthError` naming the file if it exists but is not valid JSON.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SoftWidthError(f"{p} is not valid JSON ({err}); delete it and rerun to rebuild it") from None


def sha256_file(path: str | os.PathLike[str], *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks of ``chunk_bytes``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temps(directory: str | os.PathLike[str]) -> int:
    """Delete temporary files left by :func:`atomic_path` in ``directory`` and below (a killed build);
    return how many were removed. Call it only when no other process is writing there."""
    root = Path(directory)
    if not root.is_dir():
        return 0
    removed = 0
    for tmp in root.rglob(f".*{_TMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink()
            removed += 1
    return removed


class Manifest:
    """A JSON object of ``str`` keys on disk: the record of what a resumable build has finished.

    Args:
        path: the JSON file (read now if it exists).

    ``manifest[key] = value`` marks an item done in memory; :meth:`save` writes the whole manifest
    atomically (call it after each item, or every few items: a crash loses at most the unsaved items,
    and those are simply redone). Values must be JSON-serialisable.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        data = read_json(self.path, default={})
        if not isinstance(data, dict):
            raise SoftWidthError(f"{self.path} should hold a JSON object, got {type(data).__name__}; "
                                 "delete it and rerun to rebuild it")
        self._data: dict[str, Any] = data

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise SoftWidthError(f"Manifest keys are strings (JSON object keys), got {type(key).__name__}")
        self._data[key] = value

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def keys(self) -> list[str]:
        """The recorded keys, sorted."""
        return sorted(self._data)

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy of the recorded entries."""
        return dict(self._data)

    def save(self) -> Path:
        """Write the manifest atomically (sorted keys: the same entries always give the same bytes)."""
        return write_json(self.path, self._data)
