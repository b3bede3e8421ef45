"""``softwidth vad export-onnx``: the streaming VAD as a stateful ONNX graph (:mod:`.onnx_stream`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_export_onnx_parser"]

# the runner's file, named without importing it: it imports onnxruntime, which export_streaming_onnx asks for
_RUNNER = Path(__file__).with_name("onnx_runner.py")


def _hops(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an integer, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be in [1, 1000] hops of 10 ms, got {text}")
    return value


def _export_onnx(args: argparse.Namespace) -> None:
    from softwidth.errors import SoftWidthError
    from .onnx_stream import export_streaming_onnx
    from .store import DEFAULT_MODEL, load_vad

    model, meta = load_vad(DEFAULT_MODEL if args.model in (None, Path("default")) else args.model)
    if meta["model"] != "crnn":
        raise SoftWidthError(f"export-onnx streams frame by frame and needs a CRNN VAD; {args.model} holds a "
                             f"{meta['model']} model")
    path = export_streaming_onnx(model, args.out, hops=args.hops, threshold=meta["threshold"])
    print(f"{path} ({path.stat().st_size / 1000:.0f} kB, {args.hops} hop(s) of 10 ms per call, threshold "
          f"{meta['threshold']:.3f}); run it with NumPy and onnxruntime only: {_RUNNER}")


def add_export_onnx_parser(commands) -> None:
    """Register ``vad export-onnx`` on the ``vad`` sub-commands."""
    parser = commands.add_parser(
        "export-onnx", help="write the streaming VAD as a stateful ONNX graph (samples and state in, "
        "probabilities and state out)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out", type=Path, help="the .onnx file to write")
    parser.add_argument("--model", type=Path, default=None,
                        help="a model folder, or default (the shipped model; also when not given)")
    parser.add_argument("--hops", type=_hops, default=1,
                        help="10 ms hops per graph call: 1 streams with no added latency, more suit whole files")
    parser.set_defaults(func=_export_onnx)
