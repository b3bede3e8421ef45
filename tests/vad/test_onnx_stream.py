"""Tests of softwidth_studies.vad.onnx_stream and onnx_runner: the stateful ONNX graph, run by the NumPy runner,
gives StreamingVAD's (and the batch model's) probabilities for any chunking; the runner needs no torch."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

import softwidth as sw  # noqa: E402
from softwidth_studies.vad import onnx_runner  # noqa: E402
from softwidth_studies.vad.data import power_spectrum  # noqa: E402
from softwidth_studies.vad.models import build_model  # noqa: E402
from softwidth_studies.vad.onnx_runner import OnnxStreamingVAD  # noqa: E402
from softwidth_studies.vad.onnx_stream import export_streaming_onnx  # noqa: E402
from softwidth_studies.vad.store import load_vad  # noqa: E402
from softwidth_studies.vad.stream import StreamingVAD  # noqa: E402
from vad_test_models import stepped  # noqa: E402

SHIPPED, META = load_vad()
TOL = 1e-5


def trained_crnn() -> torch.nn.Module:
    """A consolidated CRNN with other widths than the shipped one, its weights moved off their init by 3 steps."""
    return stepped("crnn", {"bands": 32, "conv1": 12, "conv2": 10, "hidden": 8}, 0.7)


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory) -> Path:
    return export_streaming_onnx(SHIPPED, tmp_path_factory.mktemp("onnx") / "vad.onnx", threshold=META["threshold"])


@pytest.fixture(scope="module")
def block_onnx(tmp_path_factory) -> Path:
    """The shipped model with 7 hops (70 ms) per graph call."""
    return export_streaming_onnx(SHIPPED, tmp_path_factory.mktemp("onnx") / "block.onnx", hops=7)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    model = trained_crnn()
    return model, export_streaming_onnx(model, tmp_path_factory.mktemp("onnx") / "trained.onnx")


def audio(n: int, seed: int) -> np.ndarray:
    """Noise of varying loudness, a tone burst and a stretch of digital silence: probabilities that move.
    float32, as decoded audio is (the graph's samples are float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = rng.normal(0, 0.05, n) * (1 + np.sin(2 * np.pi * t / rng.integers(800, 8000)))
    a, b = sorted(rng.integers(0, n, 2))
    x[a:b] += 0.3 * np.sin(2 * np.pi * 220 * t[a:b] / 16000)
    c = int(rng.integers(0, n))
    x[c:c + 700] = 0.0
    return x.astype(np.float32)


def hard(n: int, seed: int) -> np.ndarray:
    """16-bit audio of a loud gated tone over a quiet noise floor: the quiet bins next to the tone are where a
    float32 DFT's rounding shows (the batch model's float32 STFT moves probabilities by ~1e-5 there)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = 0.5 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2 * t) > 0) + rng.normal(0, 3e-4, n)
    return (np.round(x * 32767) / 32768).astype(np.float32)


def chunked(vad, x: np.ndarray, sizes) -> list[np.ndarray]:
    """Push ``x`` in chunks of the cycled ``sizes``, then flush; the per-call outputs."""
    out, i, k = [], 0, 0
    while i < x.size:
        size = int(sizes[k % len(sizes)])
        out.append(vad.push(x[i:i + size]))
        i, k = i + size, k + 1
    return [*out, vad.flush()]


def batch_probs(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(model(power_spectrum(x)[None]))[0].numpy()


def assert_same_stream(model, path: Path, x: np.ndarray, sizes, *, batch: bool = True) -> float:
    """ONNX runner and StreamingVAD give the same probabilities within TOL (and the batch model's, if ``batch``);
    with one hop per graph call, the same frames at the same calls. Returns the largest difference."""
    vad = OnnxStreamingVAD(path)
    got, want = chunked(vad, x, sizes), chunked(StreamingVAD(model), x, sizes)
    if vad.hops == 1:
        assert [g.shape for g in got] == [w.shape for w in want]
    else:
        assert all(g.size % vad.hops == 0 for g in got[:-1])
    got, want = np.concatenate(got), np.concatenate(want)
    assert got.shape == (x.size // 160,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    if batch:
        np.testing.assert_allclose(got, batch_probs(model, x), atol=TOL, rtol=0)
    return float(np.abs(got - want).max())


@settings(max_examples=25, deadline=None)
@given(n=st.integers(201, 5000), sizes=st.lists(st.integers(1, 900), min_size=1, max_size=40),
       seed=st.integers(0, 100))
def test_onnx_streaming_equals_torch_streaming_for_any_chunking(shipped_onnx, n, sizes, seed):
    assert_same_stream(SHIPPED, shipped_onnx, audio(n, seed), sizes)


@pytest.mark.parametrize("sizes", [[160], [512], [1], [7, 100, 159, 161, 333], [80, 1000, 3], [4000]],
                         ids=["10ms", "32ms", "1", "ragged", "mixed", "250ms"])
def test_10ms_32ms_and_ragged_pushes_of_both_models(shipped_onnx, trained, sizes):
    x = audio(16000 * 2 + 37, seed=len(sizes))
    assert_same_stream(SHIPPED, shipped_onnx, x, sizes)
    assert_same_stream(*trained, x, sizes)


@pytest.mark.parametrize("seed", range(6))
def test_seeded_random_chunkings_of_a_wider_model(trained, seed):
    rng = np.random.default_rng(seed)
    x = audio(int(rng.integers(201, 9000)), seed)
    assert_same_stream(*trained, x, rng.integers(1, 600, 50))


@pytest.mark.parametrize("seed", range(3))
def test_loud_tones_over_a_quiet_floor_stream_the_same(shipped_onnx, trained, seed):
    x = hard(16000 * 3 + 77 * seed, seed)
    assert_same_stream(SHIPPED, shipped_onnx, x, [512, 160, 33], batch=False)
    assert_same_stream(*trained, x, [512, 160, 33], batch=False)


def test_a_whole_file_in_one_push_equals_streaming(shipped_onnx):
    x = audio(16000 * 12 + 123, seed=3)
    assert_same_stream(SHIPPED, shipped_onnx, x, [x.size])


@pytest.mark.parametrize("sizes", [[160], [512], [7, 100, 159, 161, 333], [1120], [16037]])
def test_a_graph_of_7_hops_per_call_gives_the_same_probabilities_in_blocks(block_onnx, sizes):
    x = audio(16000 + 37, seed=len(sizes))  # 100 frames: the last block is completed with zeros at flush
    assert OnnxStreamingVAD(block_onnx).hops == 7
    assert_same_stream(SHIPPED, block_onnx, x, sizes)
    vad = OnnxStreamingVAD(block_onnx)
    assert vad.push(x[:1159]).size == 0  # frames 0-5 are complete (frame t needs 160 t + 200 samples) ...
    assert vad.push(x[1159:1160]).size == 7  # ... and come with frame 6, in one block


def test_frames_are_emitted_as_soon_as_their_window_is_complete(shipped_onnx):
    vad = OnnxStreamingVAD(shipped_onnx)
    assert vad.push(np.zeros(200)).size == 0
    assert vad.push(np.zeros(1)).size == 1  # frame 0 needs samples up to 200 (reflected start)
    assert vad.push(np.zeros(158)).size == 0
    assert vad.push(np.zeros(1)).size == 1  # frame 1 needs samples up to 359
    assert vad.flush().size == 0  # 360 samples: 2 frames in all
    assert vad.flush().size == 0


def test_memory_is_bounded_over_a_long_stream(shipped_onnx):
    vad = OnnxStreamingVAD(shipped_onnx)
    rng = np.random.default_rng(0)
    emitted = 0
    for _ in range(300):  # 30 s in 100 ms chunks
        emitted += vad.push(rng.normal(0, 0.1, 1600)).size
        assert vad._pending.size < 160 and vad._context.size == 240
    assert emitted == 300 * 10 - 1  # the last frame waits for 40 more samples (or flush)
    assert vad.flush().size == 1


def test_reset_starts_an_identical_stream(shipped_onnx):
    x = audio(3000, seed=1)
    vad = OnnxStreamingVAD(shipped_onnx)
    first = np.concatenate(chunked(vad, x, [512]))
    vad.reset()
    vad.push(audio(1000, seed=2))  # a half-pushed stream is dropped by reset too
    vad.reset()
    np.testing.assert_array_equal(np.concatenate(chunked(vad, x, [512])), first)


def test_the_graph_declares_its_state_and_metadata(shipped_onnx, block_onnx):
    import onnx
    import onnxruntime as ort

    bands, hidden = SHIPPED.norm0.num_features, SHIPPED.gru.hidden_size
    for path, hops in [(shipped_onnx, 1), (block_onnx, 7)]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shapes = {v.name: v.shape for v in [*session.get_inputs(), *session.get_outputs()]}
        assert shapes == {"samples": [160 * hops], "context": [240], "conv_context": [bands, 4], "hidden": [hidden],
                          "probs": [hops], "next_context": [240], "next_conv_context": [bands, 4],
                          "next_hidden": [hidden]}
        meta = session.get_modelmeta().custom_metadata_map
        assert meta["format"] == "softwidth.vad.stream/1" and meta["hops"] == str(hops)
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        assert path.stat().st_size < 64_000  # the DFT tables are made on load, not stored
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # one self-contained file, no .data beside
        assert not any(len(node.metadata_props) for node in proto.graph.node)  # no stack traces with local paths
    assert OnnxStreamingVAD(shipped_onnx).threshold == META["threshold"]
    assert OnnxStreamingVAD(block_onnx).threshold is None


def test_the_graph_is_pure_one_call_of_7_hops_equals_7_calls_of_one(shipped_onnx, block_onnx):
    import onnxruntime as ort

    one, seven = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (shipped_onnx, block_onnx))
    rng = np.random.default_rng(0)
    bands, hidden = SHIPPED.norm0.num_features, SHIPPED.gru.hidden_size
    state = {"context": rng.normal(0, 0.1, 240), "conv_context": rng.normal(0, 1, (bands, 4)),
             "hidden": rng.uniform(-0.5, 0.5, hidden)}
    state = {k: v.astype(np.float32) for k, v in state.items()}
    samples = rng.normal(0, 0.1, 160 * 7).astype(np.float32)
    names = ["probs", "next_context", "next_conv_context", "next_hidden"]
    whole = seven.run(names, {"samples": samples, **state})
    probs = []
    for k in range(7):
        p, context, conv, h = one.run(names, {"samples": samples[160 * k:160 * k + 160], **state})
        state = {"context": context, "conv_context": conv, "hidden": h}
        probs.append(p)
    for a, b in zip(whole, [np.concatenate(probs), *state.values()]):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_the_runner_needs_neither_torch_nor_softwidth(tmp_path, shipped_onnx):
    """Copied next to the .onnx file, with torch and softwidth unimportable, the runner gives torch's probabilities."""
    shutil.copy(shipped_onnx, tmp_path / "vad.onnx")
    shutil.copy(onnx_runner.__file__, tmp_path / "onnx_runner.py")
    x = audio(16000 * 3 + 11, seed=5)
    np.save(tmp_path / "audio.npy", x)
    code = textwrap.dedent("""
        import importlib.abc, sys
        BLOCKED = ("torch", "softwidth", "softwidth_studies")

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{name} is blocked in this test")

        sys.meta_path.insert(0, Block())
        import numpy as np
        from onnx_runner import OnnxStreamingVAD

        vad = OnnxStreamingVAD("vad.onnx")
        x = np.load("audio.npy")
        probs = [vad.push(x[i:i + 512]) for i in range(0, x.size, 512)]
        np.save("probs.npy", np.concatenate([*probs, vad.flush()]))
        loaded = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
        assert not loaded, loaded
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    probs = np.load(tmp_path / "probs.npy")
    want = np.concatenate(chunked(StreamingVAD(SHIPPED), x, [512]))
    np.testing.assert_allclose(probs, want, atol=TOL, rtol=0)
    np.testing.assert_allclose(probs, batch_probs(SHIPPED, x), atol=TOL, rtol=0)
    blocked = subprocess.run([sys.executable, "-c", code.replace("from onnx_runner", "import torch\nfrom onnx_runner")],
                             cwd=tmp_path, capture_output=True, text=True)
    assert "torch is blocked" in blocked.stderr  # the guard works: the check above could fail


def test_the_runner_rejects_bad_input_and_misuse(tmp_path, shipped_onnx):
    vad = OnnxStreamingVAD(shipped_onnx)
    with pytest.raises(ValueError, match="1-D"):
        vad.push(np.zeros((2, 160)))
    with pytest.raises(ValueError, match="NaN or inf"):
        vad.push(np.array([0.0, np.inf]))
    vad.push(np.zeros(200))
    with pytest.raises(ValueError, match="too short"):
        vad.flush()
    with pytest.raises(ValueError, match="flushed"):
        vad.push(np.zeros(10))
    vad.reset()
    assert vad.push(np.zeros(400)).size == 2
    with pytest.raises(ValueError, match="no file"):
        OnnxStreamingVAD(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="threads"):
        OnnxStreamingVAD(shipped_onnx, threads=0)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load"):
        OnnxStreamingVAD(tmp_path / "junk.onnx")
    import onnx
    from onnx import TensorProto, helper

    other = tmp_path / "other.onnx"
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [160])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [160])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), other)
    with pytest.raises(ValueError, match="not a streaming VAD"):
        OnnxStreamingVAD(other)


def test_export_refuses_what_it_cannot_stream_and_leaves_the_model_alone(tmp_path, trained):
    torch.manual_seed(0)
    transformer = sw.consolidate(build_model("transformer", {"bands": 16, "ff1": 8, "ff2": 8}).eval())
    with pytest.raises(sw.SoftWidthError, match="export_streaming_onnx: .*CRNN"):
        export_streaming_onnx(transformer, tmp_path / "t.onnx")
    model = copy.deepcopy(trained[0])
    for bad in (1.5, -0.1, "0.5"):
        with pytest.raises(sw.SoftWidthError, match="threshold"):
            export_streaming_onnx(model, tmp_path / "m.onnx", threshold=bad)
    for bad in (0, 1001, 2.0, True):
        with pytest.raises(sw.SoftWidthError, match="hops"):
            export_streaming_onnx(model, tmp_path / "m.onnx", hops=bad)
    assert not (tmp_path / "t.onnx").exists() and not (tmp_path / "m.onnx").exists()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    path = export_streaming_onnx(model, tmp_path / "m.onnx")
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert OnnxStreamingVAD(path).threshold is None


def test_the_export_onnx_command_writes_the_shipped_model(tmp_path, capsys):
    import argparse

    from softwidth_studies.vad.onnx_cli import add_export_onnx_parser

    parser = argparse.ArgumentParser()
    add_export_onnx_parser(parser.add_subparsers())
    args = parser.parse_args(["export-onnx", str(tmp_path / "vad.onnx"), "--hops", "3", "--model", "default"])
    args.func(args)
    out = capsys.readouterr().out
    runner = out.split()[-1]  # named without importing it (it imports onnxruntime)
    assert "vad.onnx" in out and Path(runner) == Path(onnx_runner.__file__)
    vad = OnnxStreamingVAD(tmp_path / "vad.onnx")
    assert vad.hops == 3 and vad.threshold == META["threshold"]
    for bad in ("0", "1001", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["export-onnx", str(tmp_path / "v.onnx"), "--hops", bad])
