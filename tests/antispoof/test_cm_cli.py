"""``softwidth antispoof score`` with the shipped countermeasure: found from the package, from any folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

import softwidth_studies
from softwidth_studies.antispoof.cli import DEFAULT_MODEL, load_countermeasure
from softwidth_studies.cli import main


def test_default_model_is_package_data_and_loads_from_another_folder(tmp_path, monkeypatch, capsys):
    package = Path(next(iter(softwidth_studies.__path__))).resolve()  # a namespace package: no __file__
    assert DEFAULT_MODEL.is_absolute() and DEFAULT_MODEL.resolve().parent.parent == package
    monkeypatch.chdir(tmp_path)  # no results/ here: only the package can supply the model
    model, features, meta = load_countermeasure()
    assert not model.training and meta["model"] in ("resnet", "lcnn") and features.sample_rate == 16000
    clip = tmp_path / "clip.wav"
    sf.write(clip, 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    assert main(["antispoof", "score", "clip.wav", "--json"]) == 0
    (scored,) = json.loads(capsys.readouterr().out)
    assert scored["file"] == "clip.wav" and 0.0 <= scored["bonafide"] <= 1.0
