"""Tests of softwidth_studies.data.packages. apt-get (and, in most tests, dpkg-deb) are replaced by a fake, so the
unit tests need no network; one test marked ``network`` fetches a real 384 kB package."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from softwidth_studies.data import packages
from softwidth_studies.data.audio import read_audio
from softwidth_studies.data.cache import sha256_file
from softwidth_studies.data.packages import fetch_package, fetch_packages
from softwidth.errors import SoftWidthError

_REAL_RUN = subprocess.run


class FakeTools:
    """Stands in for ``subprocess.run`` of apt-get and dpkg-deb.

    A fake .deb is a JSON file ``{relative path: text}``; ``dpkg-deb -x`` writes those files. ``lists``
    False mimics a machine whose package lists were never downloaded (``apt-get update`` fixes it).
    ``real_dpkg`` passes dpkg-deb calls to the real tool (for real .deb files given in ``debs``).
    """

    def __init__(self, contents=None, *, lists=True, update_ok=True, dpkg_fails=False, real_dpkg=False, debs=None):
        self.contents = contents or {"tiny-pkg": {"usr/share/tiny/a.txt": "hello"}}
        self.lists, self.update_ok, self.dpkg_fails = lists, update_ok, dpkg_fails
        self.real_dpkg, self.debs = real_dpkg, debs or {}
        self.calls: list[list[str]] = []

    def __call__(self, cmd, cwd=None, env=None, **kwargs):
        self.calls.append(list(cmd))
        ok = lambda out="": subprocess.CompletedProcess(cmd, 0, out, "")
        fail = lambda err, rc=100: subprocess.CompletedProcess(cmd, rc, "", err)
        if cmd[:2] == ["apt-get", "update"]:
            if not self.update_ok:
                return fail("E: Could not open lock file /var/lib/apt/lists/lock - open (13: Permission denied)")
            self.lists = True
            return ok()
        if cmd[:2] == ["apt-get", "download"]:
            name = cmd[-1]
            if not self.lists or (name not in self.contents and name not in self.debs):
                return fail(f"W: some warning\nE: Unable to locate package {name}")
            target = Path(cwd) / f"{name}_1.0-1_all.deb"
            if name in self.debs:
                shutil.copy(self.debs[name], target)
            else:
                target.write_text(json.dumps(self.contents[name]))
            return ok(f"Get:1 http://deb.debian.org {name} 1.0-1 [1 kB]")
        if cmd[0] == "dpkg-deb":
            if self.real_dpkg:
                return _REAL_RUN(cmd, cwd=cwd, env=env, **kwargs)
            if self.dpkg_fails:
                return fail("dpkg-deb: error: 'x.deb' is not a Debian format archive", rc=2)
            deb, dest = Path(cmd[2]), Path(cmd[3])
            for rel, text in json.loads(deb.read_text()).items():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                (dest / rel).write_text(text)
            return ok()
        raise AssertionError(f"unexpected command {cmd}")

    def count(self, *prefix: str) -> int:
        return sum(1 for c in self.calls if c[: len(prefix)] == list(prefix))


@pytest.fixture
def fake(monkeypatch):
    tools = FakeTools()
    monkeypatch.setattr(packages.subprocess, "run", tools)
    monkeypatch.setattr(packages.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(packages, "_updated", False)
    return tools


def _hidden(debs: Path) -> list[str]:
    """Temp dirs and files left in the debs folder (the per-package lock files are expected)."""
    return sorted(p.name for p in debs.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


def test_fetch_extracts_writes_marker_and_is_idempotent(fake, tmp_path):
    root = fetch_package("tiny-pkg", tmp_path)
    assert root == tmp_path / "debs" / "tiny-pkg" / "root"
    assert (root / "usr/share/tiny/a.txt").read_text() == "hello"
    marker = json.loads((tmp_path / "debs/tiny-pkg/.done").read_text())
    assert marker["package"] == "tiny-pkg" and marker["deb"] == "tiny-pkg_1.0-1_all.deb"
    assert len(marker["sha256"]) == 64
    assert _hidden(tmp_path / "debs") == []  # the download dir (and the .deb) are gone
    assert fake.count("apt-get", "download") == 1 and fake.count("dpkg-deb") == 1
    assert fetch_package("tiny-pkg", tmp_path) == root  # marker present: nothing runs
    assert len(fake.calls) == 2


def test_default_cache_dir_is_used(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTWIDTH_CACHE", str(tmp_path / "c"))
    assert fetch_package("tiny-pkg") == tmp_path / "c" / "debs" / "tiny-pkg" / "root"


def test_partial_extraction_is_removed_and_redone(fake, tmp_path):
    home = tmp_path / "debs" / "tiny-pkg"
    (home / "root" / "usr").mkdir(parents=True)
    (home / "root" / "usr" / "half-written").write_text("junk")  # killed before the marker
    (tmp_path / "debs" / ".tiny-pkg.abc123.partial").mkdir()  # killed download dir
    root = fetch_package("tiny-pkg", tmp_path)
    assert not (root / "usr" / "half-written").exists()
    assert (root / "usr/share/tiny/a.txt").read_text() == "hello"
    assert (home / ".done").is_file() and _hidden(tmp_path / "debs") == []


def test_kill_before_marker_is_redone(fake, tmp_path, monkeypatch):
    real_write_json, kills = packages.write_json, []

    def killed_once(*args, **kwargs):
        if not kills:  # the process dies after unpacking, before the marker
            kills.append(1)
            raise KeyboardInterrupt
        return real_write_json(*args, **kwargs)

    monkeypatch.setattr(packages, "write_json", killed_once)
    with pytest.raises(KeyboardInterrupt):
        fetch_package("tiny-pkg", tmp_path)
    home = tmp_path / "debs" / "tiny-pkg"
    assert (home / "root" / "usr/share/tiny/a.txt").is_file() and not (home / ".done").exists()
    assert fetch_package("tiny-pkg", tmp_path) == home / "root"
    assert fake.count("dpkg-deb") == 2 and (home / ".done").is_file()  # unpacked again, then marked


def test_failed_unpack_leaves_no_marker_and_retry_succeeds(fake, tmp_path):
    fake.dpkg_fails = True
    with pytest.raises(SoftWidthError, match="cannot unpack tiny-pkg_1.0-1_all.deb") as info:
        fetch_package("tiny-pkg", tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "debs" / "tiny-pkg").exists() and _hidden(tmp_path / "debs") == []
    fake.dpkg_fails = False
    assert (fetch_package("tiny-pkg", tmp_path) / "usr/share/tiny/a.txt").is_file()


def test_missing_lists_run_apt_get_update_once(fake, tmp_path):
    fake.lists = False
    assert fetch_package("tiny-pkg", tmp_path).is_dir()
    assert fake.count("apt-get", "update") == 1 and fake.count("apt-get", "download") == 2
    with pytest.raises(SoftWidthError, match="no-such-pkg"):
        fetch_package("no-such-pkg", tmp_path)
    assert fake.count("apt-get", "update") == 1  # once per process, not once per failure


def test_unknown_package_is_a_one_line_error(fake, tmp_path):
    with pytest.raises(SoftWidthError) as info:
        fetch_package("no-such-pkg", tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and "E: Unable to locate package no-such-pkg" in msg and "W:" not in msg
    assert "apt-get install no-such-pkg" in msg and "apt-cache policy no-such-pkg" in msg
    assert not (tmp_path / "debs" / "no-such-pkg").exists() and _hidden(tmp_path / "debs") == []


def test_update_without_permission_is_reported(fake, tmp_path):
    fake.lists, fake.update_ok = False, False
    with pytest.raises(SoftWidthError, match=r"apt-get update. failed: .*Permission denied.*sudo apt-get update"):
        fetch_package("tiny-pkg", tmp_path)


def test_missing_tools_say_what_to_install(monkeypatch, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # the real shutil.which finds neither tool
    with pytest.raises(SoftWidthError) as info:
        fetch_package("tiny-pkg", tmp_path / "cache")
    msg = str(info.value)
    assert "\n" not in msg and "apt-get and dpkg-deb" in msg and "install apt and dpkg" in msg
    monkeypatch.setattr(packages.shutil, "which", lambda tool: None if tool == "dpkg-deb" else "/x")
    with pytest.raises(SoftWidthError, match="needs dpkg-deb on PATH"):
        fetch_package("tiny-pkg", tmp_path / "cache")


@pytest.mark.parametrize("name", ["", "A", "x", "-o", "--help", "../etc", "a/b", "Tiny-Pkg", 3])
def test_invalid_names_run_nothing(fake, tmp_path, name):
    with pytest.raises(SoftWidthError, match="not a Debian package name"):
        fetch_package(name, tmp_path)
    assert fake.calls == []


def test_fetch_packages_dedupes_in_order(fake, tmp_path):
    fake.contents["other-pkg"] = {"usr/share/o.txt": "o"}
    roots = fetch_packages(["other-pkg", "tiny-pkg", "other-pkg"], tmp_path)
    assert list(roots) == ["other-pkg", "tiny-pkg"]
    assert (roots["other-pkg"] / "usr/share/o.txt").read_text() == "o"
    assert fake.count("apt-get", "download") == 2
    with pytest.raises(SoftWidthError, match="list of package names"):
        fetch_packages("tiny-pkg", tmp_path)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_real_dpkg_deb_unpacks_a_real_deb(fake, tmp_path):
    tree = tmp_path / "build"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: real-tiny\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: t\n")
    (tree / "usr/share/real").mkdir(parents=True)
    (tree / "usr/share/real/data.bin").write_bytes(bytes(range(256)))
    (tree / "usr/share/real/link.bin").symlink_to("data.bin")
    deb = tmp_path / "real-tiny.deb"
    _REAL_RUN(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True)
    fake.real_dpkg, fake.debs = True, {"real-tiny": deb}
    root = fetch_package("real-tiny", tmp_path / "cache")
    assert (root / "usr/share/real/data.bin").read_bytes() == bytes(range(256))
    assert (root / "usr/share/real/link.bin").is_symlink()
    marker = json.loads((root.parent / ".done").read_text())
    assert marker["sha256"] == sha256_file(deb)


@pytest.mark.network
@pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None, reason="needs apt")
def test_network_fetch_real_package(tmp_path):
    # sound-theme-freedesktop: 384 kB, 35 stereo 48 kHz Ogg Vorbis files.
    root = fetch_package("sound-theme-freedesktop", tmp_path)
    oga = root / "usr/share/sounds/freedesktop/stereo/bell.oga"
    assert oga.is_file()
    x = read_audio(oga, 16000)
    assert x.dtype == np.float32 and x.ndim == 1 and len(x) > 1000 and np.abs(x).max() > 0.01
    assert fetch_package("sound-theme-freedesktop", tmp_path) == root
