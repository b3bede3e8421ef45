"""The two VAD models of the case study, on log-mel bands of a power spectrum at a 10 ms hop.

Both take the power spectrum ``|STFT|^2`` of 16 kHz audio (400-sample FFT and window, 160-sample hop, so
``(batch, frames, 201)``) and return one speech logit per frame ``(batch, frames)``. The mel bank and log are the
first layer (:class:`~softwidth.layers.LogMel` with ``input="power"``), so the band count ``bands`` is a width as
in the paper; the STFT itself is the fixed front end every model shares (:mod:`softwidth_studies.vad.frontend`).

- :class:`CRNNVAD` (causal, streamable): log-mel -> BatchNorm -> 2 x (causal Conv1d k=3 -> BatchNorm -> ReLU)
  -> GRU -> Linear. Widths ``bands``, ``conv1``, ``conv2``, ``hidden``.
- :class:`TransformerVAD`: log-mel -> BatchNorm -> causal depthwise Conv1d k=3 (local context and position)
  -> 2 pre-norm Transformer encoder layers over 1 s chunks (model width = band count, as in the paper's cost
  formula) -> Linear. Widths ``bands`` (a multiple of the 4 heads), ``ff1``, ``ff2``.

``dynamic`` names the widths that are trainable (:class:`~softwidth.Width`, ``kappa_min`` of their maximum as
the lower bound); the others are fixed at ``sizes``. ``dynamic=()`` builds the fixed-size model of the same
shape (the from-scratch baseline; consolidating it gives stock modules).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from softwidth.errors import SoftWidthError
from softwidth.layers import (
    GRU,
    BatchNorm,
    Conv1d,
    Elementwise,
    Linear,
    LogMel,
    TransformerEncoderLayer,
)
from softwidth.width import Width

from ..experiments.model_widths import max_size, model_widths

__all__ = [
    "CHUNK_FRAMES",
    "CRNNVAD",
    "HOP",
    "MODELS",
    "N_FFT",
    "N_FREQ",
    "SAMPLE_RATE",
    "TransformerVAD",
    "build_model",
]

SAMPLE_RATE, N_FFT, HOP = 16000, 400, 160
N_FREQ = N_FFT // 2 + 1
CHUNK_FRAMES = 100  # the Transformer attends within 1 s chunks, so its cost per second does not grow with length
HEADS = 4


def _check_power(x: torch.Tensor, where: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != N_FREQ:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise SoftWidthError(f"{where}: expects a power spectrum (batch, frames, {N_FREQ}), got {got}")


def _mel(bands: Width | int) -> LogMel:
    n = bands.max_size if isinstance(bands, Width) else bands
    return LogMel(sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=n,
                  width=bands if isinstance(bands, Width) else None, input="power")


def _width_or_none(w: Width | int) -> Width | None:
    return w if isinstance(w, Width) else None


class CRNNVAD(nn.Module):
    """Causal convolutional-recurrent VAD. ``forward(power (B, T, 201)) -> logits (B, T)``.

    Args:
        sizes: maximum (or, for fixed widths, actual) sizes; defaults ``bands=80, conv1=64, conv2=64, hidden=64``.
        dynamic: names of the trainable widths (e.g. ``("bands",)`` as in the paper, or all four).
        kappa_min: lower bound of each trainable width as a fraction of its maximum.

    Streaming: the convolutions only look back (left padding of 2 frames) and the GRU is unidirectional, so
    frame ``t``'s logit depends on frames ``<= t`` only (see :class:`softwidth_studies.vad.stream.StreamingVAD`).
    """

    kind = "crnn"
    defaults: ClassVar[dict[str, int]] = {"bands": 80, "conv1": 64, "conv2": 64, "hidden": 64}

    def __init__(self, sizes: Mapping[str, int] | None = None, *, dynamic: Collection[str] = (),
                 kappa_min: float = 1 / 16) -> None:
        super().__init__()
        w = model_widths(self.kind, dict(sizes or {}), dynamic, kappa_min, self.defaults, {})
        self.sizes = {k: max_size(v) for k, v in w.items()}
        self.mel = _mel(w["bands"])
        self.norm0 = BatchNorm(nn.BatchNorm1d(max_size(w["bands"])), w["bands"])
        self.conv1 = Conv1d(nn.Conv1d(max_size(w["bands"]), max_size(w["conv1"]), 3), in_width=w["bands"],
                            out_width=w["conv1"])
        self.norm1 = BatchNorm(nn.BatchNorm1d(max_size(w["conv1"])), w["conv1"])
        self.act1 = Elementwise(nn.ReLU(), w["conv1"], dim=1)
        self.conv2 = Conv1d(nn.Conv1d(max_size(w["conv1"]), max_size(w["conv2"]), 3), in_width=w["conv1"],
                            out_width=w["conv2"])
        self.norm2 = BatchNorm(nn.BatchNorm1d(max_size(w["conv2"])), w["conv2"])
        self.act2 = Elementwise(nn.ReLU(), w["conv2"], dim=1)
        self.gru = GRU(nn.GRU(max_size(w["conv2"]), max_size(w["hidden"]), batch_first=True), in_width=w["conv2"],
                       hidden_width=_width_or_none(w["hidden"]))
        self.head = Linear(nn.Linear(max_size(w["hidden"]), 1), in_width=w["hidden"])

    def features(self, power: torch.Tensor) -> torch.Tensor:
        """Log-mel bands, normalised: ``(B, T, 201) -> (B, bands, T)``."""
        return self.norm0(self.mel(power).transpose(1, 2))

    def convs(self, x: torch.Tensor) -> torch.Tensor:
        """The causal conv stack on ``(B, bands, T + 4)`` (4 frames of left context) -> ``(B, conv2, T)``."""
        x = self.act1(self.norm1(self.conv1(x)))
        return self.act2(self.norm2(self.conv2(x)))

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        _check_power(power, "CRNNVAD")
        x = F.pad(self.features(power), (4, 0))  # causal: frame t sees frames t-4..t through both convs
        x = self.convs(x)
        out, _ = self.gru(x.transpose(1, 2))
        return self.head(out).squeeze(-1)


class TransformerVAD(nn.Module):
    """Small Transformer VAD whose model width is the band count. ``forward(power (B, T, 201)) -> (B, T)``.

    Args:
        sizes: defaults ``bands=80`` (= model width; a multiple of the 4 heads), ``ff1=160, ff2=160``
            (feed-forward widths of the two encoder layers).
        dynamic: names of the trainable widths (``("bands",)`` is the paper's setting).
        kappa_min: lower bound of each trainable width as a fraction of its maximum.

    Attention runs within non-overlapping 1 s chunks (100 frames; the last chunk is zero-padded and masked),
    so a frame sees at most 1 s of context and the cost per second of audio is constant.
    """

    kind = "transformer"
    defaults: ClassVar[dict[str, int]] = {"bands": 80, "ff1": 160, "ff2": 160}

    def __init__(self, sizes: Mapping[str, int] | None = None, *, dynamic: Collection[str] = (),
                 kappa_min: float = 1 / 16) -> None:
        super().__init__()
        w = model_widths(self.kind, dict(sizes or {}), dynamic, kappa_min, self.defaults, {"bands": HEADS})
        self.sizes = {k: max_size(v) for k, v in w.items()}
        d = max_size(w["bands"])
        self.mel = _mel(w["bands"])
        self.norm0 = BatchNorm(nn.BatchNorm1d(d), w["bands"])
        self.local = Conv1d(nn.Conv1d(d, d, 3, groups=d), in_width=w["bands"], out_width=w["bands"])
        self.layer1 = TransformerEncoderLayer(self._encoder(d, max_size(w["ff1"])),
                                              model_width=_width_or_none(w["bands"]), ff_width=w["ff1"])
        self.layer2 = TransformerEncoderLayer(self._encoder(d, max_size(w["ff2"])),
                                              model_width=_width_or_none(w["bands"]), ff_width=w["ff2"])
        self.head = Linear(nn.Linear(d, 1), in_width=w["bands"])

    @staticmethod
    def _encoder(d: int, ff: int) -> nn.TransformerEncoderLayer:
        return nn.TransformerEncoderLayer(d, HEADS, ff, dropout=0.0, batch_first=True, norm_first=True)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        _check_power(power, "TransformerVAD")
        b, t, _ = power.shape
        x = self.norm0(self.mel(power).transpose(1, 2))
        x = self.local(F.pad(x, (2, 0))).transpose(1, 2)  # (B, T, d): causal local context
        chunks = -(-t // CHUNK_FRAMES)
        pad = chunks * CHUNK_FRAMES - t
        x = F.pad(x, (0, 0, 0, pad)).reshape(b * chunks, CHUNK_FRAMES, x.shape[-1])
        mask = None
        if pad:
            valid = torch.arange(CHUNK_FRAMES, device=x.device) < CHUNK_FRAMES - pad
            last = torch.zeros(chunks, CHUNK_FRAMES, dtype=torch.bool, device=x.device)
            last[-1] = ~valid
            mask = last.repeat(b, 1)  # (B * chunks, 100): True = padding
        x = self.layer2(self.layer1(x, src_key_padding_mask=mask), src_key_padding_mask=mask)
        x = x.reshape(b, chunks * CHUNK_FRAMES, -1)[:, :t]
        return self.head(x).squeeze(-1)


MODELS: dict[str, type[nn.Module]] = {"crnn": CRNNVAD, "transformer": TransformerVAD}


def build_model(kind: str, sizes: Mapping[str, int] | None = None, *, dynamic: Collection[str] | str = (),
                kappa_min: float = 1 / 16) -> nn.Module:
    """``build_model("crnn", dynamic="all")``: a VAD model by name; ``dynamic="all"`` makes every width trainable."""
    if kind not in MODELS:
        raise SoftWidthError(f"unknown VAD model {kind!r}; choose one of {sorted(MODELS)}")
    cls = MODELS[kind]
    names = tuple(cls.defaults) if dynamic == "all" else (dynamic,) if isinstance(dynamic, str) else tuple(dynamic)
    return cls(sizes, dynamic=names, kappa_min=kappa_min)
