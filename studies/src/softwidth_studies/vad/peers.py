"""Peer VADs that run offline, scored on the same split as ours: Silero VAD, WebRTC VAD and TEN VAD.

Each peer gives a score per 10 ms frame of a canvas (``(canvases, 800)``):

- **Silero VAD** (``silero-vad`` package, its bundled TorchScript model, 16 kHz): speech probability per 512-sample
  chunk with its streaming state reset per canvas; a frame takes the chunk holding its centre.
- **WebRTC VAD** (``webrtcvad-wheels``): a 0/1 decision per 10 ms frame for each aggressiveness mode 0-3 (each
  mode is a single ROC point), plus ``webrtc-combined``: the number of modes that say speech (0-4), a graded
  score that gives WebRTC its best ROC curve.
- **TEN VAD** (``ten-vad``): probability per 256-sample hop (16 ms). Its native library links LLVM's
  ``libc++.so.1``; if that is missing, the Debian packages ``libc++1-14``, ``libc++abi1-14`` and ``libunwind-14``
  are fetched into the softwidth cache (like the corpus packages) and preloaded. If it still cannot run, the
  result says why it was skipped.

Silero's FLOP/s are counted with ``torch.utils.flop_counter.FlopCounterMode`` over 10 s of audio (convolutions and
matrix products; its element-wise operations are not counted, so the figure is a slight underestimate).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.audio import read_audio
from softwidth.errors import SoftWidthError
from .data import load_split
from .evaluate import evaluate_scores
from .models import HOP, SAMPLE_RATE

__all__ = ["PEERS", "score_peers", "silero_flops_per_second"]

SILERO_CHUNK, TEN_HOP = 512, 256


def _frame_index(n_frames: int, hop: int) -> np.ndarray:
    """For each 10 ms frame, the index of the peer's hop that holds the frame's centre."""
    return (np.arange(n_frames) * HOP + HOP // 2) // hop


class _Silero:
    name = "silero"

    def __init__(self) -> None:
        try:
            from silero_vad import load_silero_vad
        except ImportError:
            raise SoftWidthError("Silero VAD needs its package: pip install silero-vad") from None
        self.model = load_silero_vad()

    def __call__(self, audio: np.ndarray, n_frames: int) -> np.ndarray:
        self.model.reset_states()
        with torch.no_grad():
            probs = self.model.audio_forward(torch.from_numpy(audio.astype(np.float32)), SAMPLE_RATE)[0].numpy()
        idx = np.minimum(_frame_index(n_frames, SILERO_CHUNK), probs.size - 1)
        return probs[idx]


class _WebRTC:
    name = "webrtc"

    def __init__(self) -> None:
        try:
            import webrtcvad
        except ImportError:
            raise SoftWidthError("WebRTC VAD needs its package: pip install webrtcvad-wheels") from None
        self.vads = [webrtcvad.Vad(mode) for mode in range(4)]

    def __call__(self, audio: np.ndarray, n_frames: int) -> np.ndarray:
        """``(4, n_frames)``: the 0/1 decision of modes 0-3."""
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        out = np.zeros((4, n_frames), dtype=np.float32)
        for t in range(n_frames):
            frame = pcm[2 * HOP * t: 2 * HOP * (t + 1)]
            if len(frame) < 2 * HOP:
                break
            for mode, vad in enumerate(self.vads):
                out[mode, t] = vad.is_speech(frame, SAMPLE_RATE)
        return out


class _Ten:
    name = "ten"

    def __init__(self) -> None:
        try:
            from ten_vad import TenVad
        except ImportError:
            raise SoftWidthError("TEN VAD needs its package: pip install ten-vad") from None
        import ctypes

        try:
            ctypes.CDLL("libc++.so.1")
        except OSError:  # its library links libc++, which Debian ships apart: fetch and preload it
            _preload_libcxx()
        try:
            self.vad = TenVad(TEN_HOP, 0.5)
        except OSError as err:
            raise SoftWidthError(f"TEN VAD's native library does not load here: {err}") from None

    def __call__(self, audio: np.ndarray, n_frames: int) -> np.ndarray:
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        probs = []
        for start in range(0, pcm.size - TEN_HOP + 1, TEN_HOP):
            p, _ = self.vad.process(pcm[start:start + TEN_HOP])
            probs.append(p)
        probs = np.asarray(probs, dtype=np.float32)
        idx = np.minimum(_frame_index(n_frames, TEN_HOP), probs.size - 1)
        return probs[idx]


LIBCXX_PACKAGES = ("libunwind-14", "libc++abi1-14", "libc++1-14")


def _preload_libcxx() -> None:
    """Load LLVM's libc++ (from Debian packages unpacked in the softwidth cache) into the process, globally."""
    import ctypes

    from ..data.packages import fetch_package

    for name, lib in zip(LIBCXX_PACKAGES, ("libunwind.so.1", "libc++abi.so.1", "libc++.so.1")):
        try:
            root = fetch_package(name)
        except SoftWidthError as err:
            raise SoftWidthError(f"TEN VAD needs libc++ ({name}): {err}") from None
        path = root / "usr" / "lib" / "llvm-14" / "lib" / lib
        try:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            raise SoftWidthError(f"TEN VAD needs libc++ but {path} does not load: {err}") from None


PEERS: dict[str, Callable[[], object]] = {"silero": _Silero, "webrtc": _WebRTC, "ten": _Ten}


def _audio(corpus, split: str, row: dict) -> np.ndarray:
    from pathlib import Path

    return read_audio(Path(corpus) / split / f"{row['id']}.wav", SAMPLE_RATE)


def silero_flops_per_second(seconds: float = 10.0) -> float:
    """Silero VAD's FLOP/s of audio by ``FlopCounterMode`` (convolutions + matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = _Silero().model
    model.reset_states()
    samples = int(seconds * SAMPLE_RATE)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        probs = model.audio_forward(torch.zeros(samples), SAMPLE_RATE)
    covered = probs.shape[-1] * SILERO_CHUNK / SAMPLE_RATE  # audio_forward pads to whole chunks
    return counter.get_total_flops() / covered


def _peer_scores(corpus, name: str, progress: bool) -> tuple[dict[str, np.ndarray], float]:
    """``({"val": scores, "test": scores}, seconds spent on the test split)`` of one peer."""
    torch.set_num_threads(1)
    peer = PEERS[name]()
    scores, seconds = {}, 0.0
    for s in ("val", "test"):
        split = load_split(corpus, s)
        n_frames = split.labels.shape[1]
        audio = [_audio(corpus, s, r) for r in split.rows]
        out = []
        start = time.perf_counter()
        for wav in tqdm(audio, desc=f"{name} {s}", unit="canvas", disable=not progress):
            out.append(peer(wav, n_frames))
        if s == "test":
            seconds = time.perf_counter() - start
        scores[s] = np.stack(out)
    return scores, seconds


# peers whose native code must not share a process with torch (TEN VAD's preloaded libc++ crashed the process at
# exit after the study), so they run in a fresh spawned process
ISOLATED = ("ten",)


def score_peers(corpus, *, peers: tuple[str, ...] = ("silero", "webrtc", "ten"), progress: bool = True) -> dict:
    """Score each peer on the val (threshold) and test splits; returns ``{name: result}``.

    A result holds the :func:`~softwidth_studies.vad.evaluate.evaluate_scores` dict, ``rtf`` (processing seconds per
    second of test audio, one thread, audio already in memory) and, where counted, ``flops_per_s``; a peer that
    cannot run here gets ``{"skipped": reason}``. Peers in ``ISOLATED`` run in a separate process.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    splits = {s: load_split(corpus, s) for s in ("val", "test")}
    test_seconds = splits["test"].labels.size * HOP / SAMPLE_RATE
    results: dict[str, dict] = {}
    for name in peers:
        try:
            if name in ISOLATED:
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    scores, seconds = pool.submit(_peer_scores, str(corpus), name, progress).result()
            else:
                scores, seconds = _peer_scores(corpus, name, progress)
        except SoftWidthError as err:
            results[name] = {"skipped": str(err)}
            continue
        if name == "webrtc":
            for mode in range(4):
                results[f"webrtc-{mode}"] = {
                    **evaluate_scores(scores["val"][:, mode], splits["val"], scores["test"][:, mode], splits["test"]),
                    "rtf": seconds / test_seconds / 4, "flops_per_s": None}
            combined = {s: scores[s].sum(axis=1) for s in scores}
            results["webrtc-combined"] = {**evaluate_scores(combined["val"], splits["val"], combined["test"],
                                                            splits["test"]),
                                          "rtf": seconds / test_seconds, "flops_per_s": None}
        else:
            results[name] = {**evaluate_scores(scores["val"], splits["val"], scores["test"], splits["test"]),
                             "rtf": seconds / test_seconds,
                             "flops_per_s": silero_flops_per_second() if name == "silero" else None}
    return results
