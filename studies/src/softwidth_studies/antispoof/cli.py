"""``softwidth antispoof train | evaluate | score``: the anti-spoofing case study on the command line.

A trained countermeasure is saved without pickle as ``model.json`` (kind, sizes, feature configuration) and
``model.safetensors`` (the consolidated model's weights) in ``<out>/model/``; ``score`` rebuilds it from those.
:data:`DEFAULT_MODEL` is the model of the full study (``softwidth antispoof train``), shipped in the package (so
``score`` works from any folder and after a plain ``pip install``) and scored when no ``--model`` is given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from softwidth.errors import SoftWidthError
from ..experiments.cli import add_study_parser, read_results

__all__ = ["DEFAULT_MODEL", "add_antispoof_parser", "load_countermeasure", "save_countermeasure"]

DEFAULT_OUT = {False: Path("results/antispoof"), True: Path("results/antispoof_quick")}
DEFAULT_MODEL = Path(__file__).with_name("default_model")  # package data (studies/pyproject.toml), not the cwd's


def save_countermeasure(model, directory: Path, *, kind: str, sizes: dict, features: dict, **info) -> Path:
    """Write the consolidated ``model`` of ``kind`` at ``sizes`` (and its features) to ``directory``."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(directory / "model.safetensors"))
    meta = {"model": kind, "sizes": {k: int(v) for k, v in sizes.items()}, "features": features, **info}
    (directory / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def load_countermeasure(directory: Path = DEFAULT_MODEL):
    """``(consolidated model in eval mode, FeatureConfig, metadata)`` from :func:`save_countermeasure`'s folder."""
    from safetensors.torch import load_file

    from softwidth.consolidate import consolidate
    from ..data.features import FeatureConfig
    from .models import build_model

    try:
        meta = json.loads((directory / "model.json").read_text())
        features = FeatureConfig(**meta["features"])
        model = consolidate(build_model(meta["model"], meta["sizes"], n_features=features.dim).eval())
        model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    except FileNotFoundError as err:
        raise SoftWidthError(f"no countermeasure in {directory} ({Path(err.filename).name} is missing); train one "
                             f"with `softwidth antispoof train` or pass --model DIR") from None
    except (ValueError, KeyError, TypeError, RuntimeError, OSError) as err:
        raise SoftWidthError(f"{directory} does not hold a loadable countermeasure: "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    return model.eval(), features, meta


def _train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .study import AntispoofStudyConfig, run_study

    if args.corpus is None:
        from ..data.antispoof_corpus import build_antispoof_corpus
        from ..data.cache import default_cache_dir

        size = "small" if args.quick else "full"
        args.corpus = build_antispoof_corpus(default_cache_dir() / "corpora" / f"antispoof-{size}", size=size)
    config = AntispoofStudyConfig.quick(str(args.corpus)) if args.quick else AntispoofStudyConfig(corpus=str(args.corpus))
    config = replace(config, workers=args.workers)
    out = args.out or DEFAULT_OUT[args.quick]
    results = run_study(config, out, resume=not args.fresh)
    _store_model(results, out, install=not args.quick)
    print(f"results written to {out}/ (results.json, summary.md, summary.json, eer_vs_cost.png, model/)")


def _store_model(results: dict, out: Path, *, install: bool) -> None:
    """Save the scoring model: the cheapest all-stage dynamic ResNet run (else any model's); the full study
    (``install``) also installs it as the package's :data:`DEFAULT_MODEL`."""
    import shutil

    from .study import _key, config_from_results, load_run_model

    runs = [r for r in results["runs"] if r["kind"] == "dynamic"]
    if not runs:
        return
    chosen = min(runs, key=lambda r: (r["model"] != "resnet", r["flops_per_s"]))
    task = {k: chosen[k] for k in ("model", "kind", "seed", "target", "absolute") if k in chosen}
    config = config_from_results(results)
    model = load_run_model(out, task, chosen, config)
    save_countermeasure(model, out / "model", kind=chosen["model"], sizes=chosen["sizes"],
                        features=config.features.to_dict(), flops_per_s=chosen["flops_per_s"],
                        params=chosen["params"], run=_key(task, config),
                        test_eer=chosen["metrics"]["test"]["pooled"], corpus=config.corpus)
    if install:
        shutil.copytree(out / "model", DEFAULT_MODEL, dirs_exist_ok=True)


def _evaluate(args: argparse.Namespace) -> None:
    from .report import write_report

    out = args.out or DEFAULT_OUT[args.quick]
    results = read_results(out, "antispoof", "anti-spoofing", args.quick)
    print(json.dumps(write_report(results, out)["checks"], indent=2))


def _score(args: argparse.Namespace) -> None:
    import torch

    from ..data.audio import AudioError, read_audio
    from ..data.features import extract

    model, features, _ = load_countermeasure(args.model or DEFAULT_MODEL)
    results = []
    for path in args.files:
        try:
            audio = read_audio(path, features.sample_rate)
        except AudioError as err:
            raise SoftWidthError(str(err)) from None
        if audio.size < 8 * features.hop_length + features.n_fft:
            raise SoftWidthError(f"{path}: too short to score ({audio.size} samples; needs "
                                 f"{8 * features.hop_length + features.n_fft})")
        with torch.no_grad():
            x = extract(torch.as_tensor(audio, dtype=torch.float32)[None], features)
            x = x.half().float()  # the training features were stored as float16
            results.append({"file": str(path), "bonafide": float(torch.sigmoid(model(x))[0])})
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"{r['bonafide']:.4f}\t{r['file']}")


def add_antispoof_parser(sub, positive_int) -> None:
    """Register ``antispoof train``, ``antispoof evaluate`` and ``antispoof score`` on the top-level subparsers."""
    asub, _ = add_study_parser(
        sub, "antispoof", help="the anti-spoofing case study and bona fide scoring", train=_train,
        train_help="train and score every countermeasure of the study, tables and plot",
        quick_help="small corpus, one seed, short training (~3 minutes)", evaluate=_evaluate,
        corpus_help="a built anti-spoofing corpus (default: build/reuse the cached full or small one)",
        positive_int=positive_int)
    score = asub.add_parser("score", help="print a bona fide probability per audio file")
    score.add_argument("files", type=Path, nargs="+", help="audio files (resampled to 16 kHz mono)")
    score.add_argument("--model", type=Path, default=None, help="a model folder (default: the shipped model)")
    score.add_argument("--json", action="store_true", help="print JSON")
    score.set_defaults(func=_score)
