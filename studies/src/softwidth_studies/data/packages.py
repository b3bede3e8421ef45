"""Debian packages unpacked into the cache, without installing anything system-wide.

``fetch_package("festvox-ru", cache)`` runs ``apt-get download festvox-ru`` in a temporary directory inside
the cache, unpacks the ``.deb`` with ``dpkg-deb -x`` and moves the tree to ``<cache>/debs/festvox-ru/root``;
the package's files are then under that root at their usual paths (``root/usr/share/...``).
The marker ``<cache>/debs/<name>/.done`` (JSON: package, .deb file name, its SHA-256) is written last, so a
tree without it is a killed extraction: it is removed and redone. With the marker present nothing runs.
Dependencies are not fetched: ask for every package you need.

If ``apt-get download`` fails, ``apt-get update`` is run once per process (quietly; it may lack the
permission, which is then reported) in case the package lists are missing, and the download retried.
Failures raise a one-line :class:`SoftWidthError` that says what to install or check.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from softwidth.errors import SoftWidthError
from .cache import default_cache_dir, sha256_file, write_json

__all__ = ["fetch_package", "fetch_packages"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9+.\-]+$")  # Debian policy 5.6.1; also keeps names from being options
_MARKER = ".done"
_updated = False  # apt-get update runs at most once per process


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # LC_ALL=C keeps apt's messages in English, so the error we report is the same everywhere.
    env = {**os.environ, "LC_ALL": "C"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _last_error(proc: subprocess.CompletedProcess[str]) -> str:
    """apt's last ``E:`` line (its warnings ``W:`` are noise here), else the last output line."""
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E:")]
    return (errors or lines or [f"exit status {proc.returncode}"])[-1]


def _check_tools(name: str) -> None:
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise SoftWidthError(
            f"fetching Debian package {name!r} needs {' and '.join(missing)} on PATH (Debian/Ubuntu packages "
            f"apt and dpkg); run on a Debian-based system or install apt and dpkg")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SoftWidthError(f"{name!r} is not a Debian package name (lowercase letters, digits, + - .)")
    return name


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock, so parallel workers fetching the same package wait instead of racing."""
    with open(lock_file, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(name: str, workdir: Path) -> Path:
    """``apt-get download name`` into ``workdir``; return the .deb. Retries once after ``apt-get update``."""
    global _updated
    proc = _run(["apt-get", "download", "-q", name], cwd=workdir)
    if proc.returncode != 0 and not _updated:
        _updated = True
        update = _run(["apt-get", "update", "-qq"])
        proc = _run(["apt-get", "download", "-q", name], cwd=workdir)
        if proc.returncode != 0 and update.returncode != 0:
            raise SoftWidthError(
                f"cannot fetch Debian package {name!r}: {_last_error(proc)} (and `apt-get update` failed: "
                f"{_last_error(update)}); run `sudo apt-get update`, then check `apt-cache policy {name}`")
    if proc.returncode != 0:
        raise SoftWidthError(
            f"cannot fetch Debian package {name!r}: {_last_error(proc)}; check the name with "
            f"`apt-cache policy {name}` or install it with `sudo apt-get install {name}`")
    debs = sorted(workdir.glob(f"{name}_*.deb"))
    if len(debs) != 1:
        raise SoftWidthError(f"`apt-get download {name}` succeeded but left {len(debs)} matching .deb files "
                             f"in {workdir}; install it with `sudo apt-get install {name}` instead")
    return debs[0]


def fetch_package(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Download and unpack one Debian package into the cache, once; return its tree root.

    Args:
        name: the Debian package name, e.g. ``"asterisk-core-sounds-en-wav"``.
        cache_dir: the cache directory (default :func:`~softwidth_studies.data.cache.default_cache_dir`).

    Returns:
        ``<cache_dir>/debs/<name>/root``; the package's files are below it at their installed paths.

    Raises:
        SoftWidthError: one line, if apt-get/dpkg-deb are missing, the name is invalid or unknown, or the
        download or unpacking fails.
    """
    _check_name(name)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    home = cache / "debs" / name
    root, marker = home / "root", home / _MARKER
    if marker.is_file():
        return root
    _check_tools(name)
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    with _locked(debs / f".{name}.lock"):
        if marker.is_file():  # another process finished it while we waited
            return root
        for stale in debs.glob(f".{name}.*.partial"):  # temp dirs of a killed fetch
            shutil.rmtree(stale, ignore_errors=True)
        if home.exists():  # a tree without its marker: the extraction was interrupted
            shutil.rmtree(home)
        work = Path(tempfile.mkdtemp(dir=debs, prefix=f".{name}.", suffix=".partial"))
        try:
            deb = _download(name, work)
            proc = _run(["dpkg-deb", "-x", str(deb), str(work / "root")])
            if proc.returncode != 0:
                raise SoftWidthError(f"cannot unpack {deb.name}: {_last_error(proc)}; delete {work} and retry, "
                                     f"or install it with `sudo apt-get install {name}`")
            home.mkdir(parents=True)
            os.replace(work / "root", root)
            write_json(marker, {"package": name, "deb": deb.name, "sha256": sha256_file(deb)})
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return root


def fetch_packages(names: Iterable[str], cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """:func:`fetch_package` for each name (duplicates once, in order); return ``{name: tree root}``."""
    if isinstance(names, str):
        raise SoftWidthError(f"fetch_packages takes a list of package names, got the string {names!r}")
    return {name: fetch_package(name, cache_dir) for name in dict.fromkeys(names)}
