"""A full disk during a corpus build: the builders stop with one clear line (``OSError(errno.ENOSPC)`` naming
the file), leave no half-written file (temporary files removed, every file present is complete), and a rerun
after space is freed finishes with the same bytes as an uninterrupted build.

The full disk is simulated in process: ``open`` (and ``io.open``, which pathlib uses) is replaced so that
writes under the output folder stop with ENOSPC once a byte (or file) budget is spent, after writing the
part that fits, as a real file system does. One more test fills a real, small tmpfs (a private mount in a
user namespace; skipped where unavailable), which also covers writers that lose the errno (numpy, libsndfile).
Uses the fixture sources of tests/data/test_vad_corpus.py and test_antispoof_corpus.py (no network).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_antispoof_corpus import FIXTURE_SIZE, SYSTEMS, make_sources
from test_vad_corpus import sources as vad_sources  # noqa: F401 - the fixture, registered as vad_sources

from softwidth_studies.data import antispoof_corpus as ac
from softwidth_studies.data.vad_corpus import VadCorpusSize, build_vad_corpus

VAD_SIZE = VadCorpusSize("unit", 6, 2, 4)


class FullDisk:
    """Writes under ``root`` may use ``budget`` bytes and ``files`` newly opened files in all; then ENOSPC."""

    def __init__(self, root: Path, *, budget: int = 1 << 62, files: int = 1 << 30) -> None:
        self.root, self.left, self.files_left, self.failures = root.resolve(), budget, files, 0

    def install(self, monkeypatch) -> None:
        real_open = builtins.open

        def limited_open(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if not isinstance(file, int) and any(c in mode for c in "wax+") and self._inside(file):
                if "r" not in mode:
                    self.files_left -= 1
                return _Limited(handle, self)
            return handle

        monkeypatch.setattr(builtins, "open", limited_open)
        monkeypatch.setattr(io, "open", limited_open)  # pathlib's write_bytes/write_text

    def _inside(self, file) -> bool:
        try:
            return Path(file).resolve().is_relative_to(self.root)
        except (TypeError, ValueError):
            return False

    def take(self, n: int) -> int:
        """Bytes of a write of ``n`` that fit (all of them, or what is left)."""
        fit = 0 if self.files_left < 0 else min(n, self.left)
        self.left -= fit
        return fit


class _Limited:
    """A file object whose writes draw on a :class:`FullDisk` budget."""

    def __init__(self, handle, disk: FullDisk) -> None:
        self._handle, self._disk = handle, disk

    def write(self, data):
        size = len(data.encode() if isinstance(data, str) else memoryview(data).cast("B"))
        fit = self._disk.take(size)
        if fit < size:
            if fit:
                part = data.encode()[:fit] if isinstance(data, str) else bytes(memoryview(data).cast("B")[:fit])
                (self._handle.buffer if isinstance(data, str) else self._handle).write(part)
                self._handle.flush()
            self._disk.failures += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_nothing_half_written(out: Path, reference: dict[str, bytes]) -> None:
    """No temporary file is left, and every file present is one the finished build has, byte for byte (the
    builds are deterministic, so a complete file equals the reference's)."""
    present = files(out)
    assert not [name for name in present if name.endswith(".tmp")], sorted(present)
    for name, content in present.items():
        assert content == reference.get(name), name


def assert_one_clear_line(err: OSError, out: Path) -> None:
    message = str(err)
    assert err.errno == errno.ENOSPC and "\n" not in message
    assert message.startswith(f"[Errno 28] No space left on device while writing {out}")
    assert "free space and rerun" in message


# -- VAD corpus ---------------------------------------------------------------------------------------------

def _vad(out: Path, sources):
    return build_vad_corpus(out, size=VAD_SIZE, seed=0, speech=sources[0], noise=sources[1], progress=False)


@pytest.fixture
def vad_reference(tmp_path, vad_sources):
    return files(_vad(tmp_path / "reference", vad_sources))


@pytest.mark.parametrize("share", [0.0, 0.02, 0.5, 0.999])  # of the finished build's bytes
def test_vad_build_on_a_full_disk_stops_cleanly_and_resumes(tmp_path, vad_sources, vad_reference, monkeypatch, share):
    out = tmp_path / "out"
    total = sum(len(c) for c in vad_reference.values())
    disk = FullDisk(out, budget=int(share * total))
    with monkeypatch.context() as patch:
        disk.install(patch)
        with pytest.raises(OSError) as info:
            _vad(out, vad_sources)
    assert disk.failures == 1  # the first failing write ends the build
    assert_one_clear_line(info.value, out)
    assert_nothing_half_written(out, vad_reference)
    assert files(_vad(out, vad_sources)) == vad_reference  # space freed: the rerun finishes identically


def test_vad_build_out_of_files_stops_cleanly_and_resumes(tmp_path, vad_sources, vad_reference, monkeypatch):
    out = tmp_path / "out"
    disk = FullDisk(out, files=7)  # e.g. no inodes left after a few files
    with monkeypatch.context() as patch:
        disk.install(patch)
        with pytest.raises(OSError) as info:
            _vad(out, vad_sources)
    assert_one_clear_line(info.value, out)
    assert_nothing_half_written(out, vad_reference)
    assert files(_vad(out, vad_sources)) == vad_reference


# -- anti-spoofing corpus -----------------------------------------------------------------------------------

@pytest.fixture
def antispoof(tmp_path, monkeypatch):
    monkeypatch.setitem(ac.SIZES, "tiny", FIXTURE_SIZE)
    (tmp_path / "src").mkdir()
    groups = make_sources(tmp_path / "src")

    def build(out: Path) -> Path:
        return ac.build_antispoof_corpus(out, size="tiny", seed=0, progress=False, sources=groups, systems=SYSTEMS)
    return build, files(build(tmp_path / "reference"))


@pytest.mark.parametrize("share", [0.3, 0.98])
def test_antispoof_build_on_a_full_disk_stops_cleanly_and_resumes(tmp_path, antispoof, monkeypatch, share):
    build, reference = antispoof
    out = tmp_path / "out"
    disk = FullDisk(out, budget=int(share * sum(len(c) for c in reference.values())))
    with monkeypatch.context() as patch:
        disk.install(patch)
        with pytest.raises(OSError) as info:
            build(out)
    assert disk.failures == 1
    assert_one_clear_line(info.value, out)
    assert_nothing_half_written(out, reference)
    assert files(build(out)) == reference


# -- a real full file system --------------------------------------------------------------------------------

def _can_mount_tmpfs() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d"
    try:
        return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", probe],
                              capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


SCRIPT = textwrap.dedent('''
    import json, pickle, subprocess, sys
    from pathlib import Path
    from softwidth_studies.data.vad_corpus import VadCorpusSize, build_vad_corpus

    mount, sources_file, report = Path(sys.argv[1]), sys.argv[2], {}
    speech, noise = pickle.loads(Path(sources_file).read_bytes())
    size = VadCorpusSize("unit", 6, 2, 4)
    out = mount / "vad"
    try:
        build_vad_corpus(out, size=size, seed=0, speech=speech, noise=noise, progress=False)
        report["first"] = "finished"
    except OSError as err:
        report["first"] = [err.errno, str(err)]
    report["left"] = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)  # space is freed
    build_vad_corpus(out, size=size, seed=0, speech=speech, noise=noise, progress=False)
    report["files"] = {p.relative_to(out).as_posix(): p.read_bytes().hex() for p in sorted(out.rglob("*"))
                       if p.is_file()}
    print(json.dumps(report))
''')


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unprivileged user and mount namespaces (unshare)")
def test_vad_build_on_a_real_full_tmpfs(tmp_path, vad_sources, vad_reference):
    """A 1 MiB tmpfs fills up inside the build (real ENOSPC from the kernel, through numpy and soundfile too);
    the error is one clear line, nothing half-written is left, and after a remount with space the rerun
    gives the reference bytes."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    (tmp_path / "sources.pkl").write_bytes(pickle.dumps(vad_sources))
    (tmp_path / "script.py").write_text(SCRIPT)
    shell = f"mount -t tmpfs -o size=1m tmpfs {mount} && {sys.executable} {tmp_path / 'script.py'} {mount} " \
            f"{tmp_path / 'sources.pkl'}"
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", shell],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    code, message = report["first"]
    assert code == errno.ENOSPC and "\n" not in message
    assert message.startswith(f"[Errno 28] No space left on device while writing {mount / 'vad'}")
    assert report["left"] and not [name for name in report["left"] if name.endswith(".tmp")]
    assert {k: bytes.fromhex(v) for k, v in report["files"].items()} == vad_reference
