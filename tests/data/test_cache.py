"""Tests of softwidth_studies.data.cache: cache location, atomic writes, JSON and the manifest."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from softwidth_studies.data.cache import (Manifest, atomic_path, default_cache_dir, read_json, remove_stale_temps,
                                  sha256_file, write_atomic, write_json)
from softwidth.errors import SoftWidthError


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SOFTWIDTH_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "softwidth"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "softwidth"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "softwidth"
    monkeypatch.setenv("SOFTWIDTH_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    assert not (tmp_path / "mine").exists()  # resolving does not create it


def test_atomic_path_replaces_on_success_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"first")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644

    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:  # a build killed halfway through writing
        tmp.write_bytes(b"half a fi")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"first"
    assert _leftovers(target.parent) == []


def test_write_atomic_bytes_and_text(tmp_path):
    assert write_atomic(tmp_path / "a.txt", "héllo\n").read_bytes() == "héllo\n".encode()
    write_atomic(tmp_path / "a.txt", b"\x00\x01")
    assert (tmp_path / "a.txt").read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == []


def test_write_json_is_deterministic_and_read_json_roundtrips(tmp_path):
    a = write_json(tmp_path / "a.json", {"b": 1, "a": [1.5, "x"], "c": {"z": None, "y": True}})
    b = write_json(tmp_path / "b.json", {"c": {"y": True, "z": None}, "a": [1.5, "x"], "b": 1})
    assert a.read_bytes() == b.read_bytes()
    assert a.read_text().endswith("}\n") and a.read_text().index('"a"') < a.read_text().index('"b"')
    assert read_json(a) == {"a": [1.5, "x"], "b": 1, "c": {"y": True, "z": None}}
    assert read_json(tmp_path / "missing.json", default={"d": 1}) == {"d": 1}
    with pytest.raises(ValueError):  # NaN is not JSON; refuse rather than write a file others cannot read
        write_json(tmp_path / "nan.json", {"x": float("nan")})


def test_read_json_corrupt_names_the_file(tmp_path):
    bad = tmp_path / "manifest.json"
    bad.write_text('{"a": 1,')
    with pytest.raises(SoftWidthError, match="manifest.json is not valid JSON.*delete it"):
        read_json(bad)


def test_sha256_file_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk_bytes=1000) == hashlib.sha256(data).hexdigest()


def test_remove_stale_temps_only_removes_temps(tmp_path):
    (tmp_path / "keep.wav").write_bytes(b"x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".keep.wav.k3j2.tmp").write_bytes(b"partial")
    (tmp_path / ".other.json.abcd.tmp").write_bytes(b"partial")
    assert remove_stale_temps(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["d", "keep.wav"]
    assert remove_stale_temps(tmp_path / "nope") == 0


def test_manifest_roundtrip(tmp_path):
    path = tmp_path / "m.json"
    m = Manifest(path)
    assert len(m) == 0 and "a" not in m and m.get("a", 3) == 3
    m["b"] = {"sha256": "00", "seconds": 8.0}
    m["a"] = 1
    assert not path.exists()  # only save() writes
    m.save()
    again = Manifest(path)
    assert again.keys() == ["a", "b"] and again["b"] == {"sha256": "00", "seconds": 8.0}
    assert again.to_dict() == {"a": 1, "b": {"sha256": "00", "seconds": 8.0}}
    assert json.loads(path.read_text()) == again.to_dict()
    with pytest.raises(SoftWidthError, match="keys are strings"):
        again[3] = 1


def test_manifest_rejects_non_object(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("[1, 2]")
    with pytest.raises(SoftWidthError, match="JSON object"):
        Manifest(path)
