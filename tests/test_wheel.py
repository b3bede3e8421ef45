"""The softwidth-studies wheel carries the default models that ``vad detect`` and ``antispoof score`` load."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def test_studies_wheel_holds_both_default_models(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    source = tmp_path / "studies"  # a copy: building in the checkout would leave build/ and egg-info behind
    shutil.copytree(STUDIES, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    str(source), "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("softwidth_studies-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for study in ("vad", "antispoof"):
        for name in ("model.json", "model.safetensors"):
            assert f"softwidth_studies/{study}/default_model/{name}" in names, (study, name)
