"""Width-aware log-mel filter-bank front end: the number of mel bands is a trainable width.

This is the paper's VAD knob (Gómez & Bäckström, arXiv 2601.13704): the network sees ``K`` log-mel bands and
``K`` is trained. Changing the band count changes the filter bank itself (a 40-band bank is not the first
40 filters of an 80-band bank), so the bank is a continuous function of the real ``K`` and is rebuilt in
torch from ``K`` on every forward (it is only ``(n_freq, n_mels)``); see :func:`mel_filters`.

The STFT is framing plus one matmul with a fixed real DFT basis (window folded in), which
``torch.utils.flop_counter.FlopCounterMode`` counts. The triangular mel bank is sparse (each FFT bin feeds at most
two bands: 380 nonzeros of 201 x 27 at 27 bands, 400-point FFT, 16 kHz), so the consolidated module applies only
its nonzero weights (:func:`sparse_mel`: a gather, one multiply and one add per nonzero) and the cost counts
exactly that. The same code scripts with TorchScript and exports to ONNX.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import SoftWidthError, is_number
from ..layout import Layout
from ..width import Width
from ._base import Cost, DynamicLayer

__all__ = ["LogMel", "mel_filters"]


MAX_FFT, MAX_BANDS = 8192, 4096  # the DFT basis is n_fft x (n_fft + 2) floats (268 MB at the cap)


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)  # HTK mel scale


def check_stft(sample_rate, n_fft, hop_length, win_length, f_min, f_max, *, where: str) -> tuple[int, float]:
    """Validate framing (samples) and band edges (Hz); return ``(win_length, f_max)`` with defaults filled."""
    if not is_number(sample_rate) or sample_rate <= 0:
        raise SoftWidthError(f"{where}: sample_rate must be a number of Hz > 0, got {sample_rate!r}")
    if not is_int(n_fft) or not 2 <= n_fft <= MAX_FFT:
        raise SoftWidthError(f"{where}: n_fft must be an int >= 2 and <= {MAX_FFT} (samples), got {n_fft!r}")
    win_length = n_fft if win_length is None else win_length
    if not is_int(win_length) or not 1 <= win_length <= n_fft:
        raise SoftWidthError(
            f"{where}: win_length must be an int in [1, n_fft={n_fft}] (samples), got {win_length!r}")
    if not is_int(hop_length) or not 1 <= hop_length <= n_fft:
        raise SoftWidthError(
            f"{where}: hop_length must be an int in [1, n_fft={n_fft}] (samples), got {hop_length!r}; "
            "a hop longer than the frame skips samples")
    nyquist = sample_rate / 2
    f_max = nyquist if f_max is None else f_max
    if not is_number(f_min) or not is_number(f_max) or not 0 <= f_min < f_max <= nyquist:
        raise SoftWidthError(
            f"{where}: need 0 <= f_min < f_max <= sample_rate / 2 = {nyquist:g} Hz, got f_min={f_min!r}, "
            f"f_max={f_max!r}")
    return win_length, float(f_max)


def check_waveform(x, need: int, *, where: str, detail: str) -> None:
    """Raise :class:`SoftWidthError` unless ``x`` is a finite float waveform ``(samples,)`` or
    ``(batch, samples)`` with at least ``need`` samples (``detail`` says why that many)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise SoftWidthError(f"{where}: expects a floating-point waveform tensor, got {kind}")
    if x.dim() not in (1, 2):
        raise SoftWidthError(
            f"{where}: expects a waveform (batch, samples) or (samples,), got shape {tuple(x.shape)}")
    if x.shape[-1] < need:
        raise SoftWidthError(
            f"{where}: waveform has {x.shape[-1]} samples, needs at least {need} ({detail}); "
            "pad or lengthen the input")
    if not bool(torch.isfinite(x).all()):
        raise SoftWidthError(f"{where}: waveform contains NaN or inf")


def mel_filters(
    bands: torch.Tensor | float, *, n_mels: int, n_fft: int, sample_rate: float, f_min: float, f_max: float
) -> torch.Tensor:
    """HTK triangular mel filters for a real band count ``K = bands``, shape ``(n_fft // 2 + 1, n_mels)``.

    On the mel grid ``m_j = mel_lo + j (mel_hi - mel_lo) / (K + 1)``, ``j = 0 .. n_mels + 1``, band ``i``
    (0-based) is the triangle rising from ``m_i`` to its centre ``m_{i+1}`` and falling to ``m_{i+2}``,
    linear in Hz on the FFT bin frequencies ``b * sample_rate / n_fft`` (no area normalisation), and zero
    above ``f_max``. At an integer ``K = n`` bands ``0..n-1`` are exactly the standard ``n``-band bank
    (``librosa.filters.mel(htk=True, norm=None)``). Bands ``i >= K + 1`` start at or above ``f_max`` and have
    zero response; the one band with ``K <= i < K + 1`` keeps part of its rising slope below ``f_max``
    (at ``K = n``, band ``n`` rises to ``f_max``), which the layer's gate removes (eval) or noise-mixes
    (train). Continuous and piecewise differentiable in ``K`` (a tensor ``K`` keeps its graph); float64;
    frequencies in Hz; ``K >= 0``.
    """
    k = torch.as_tensor(bands, dtype=torch.float64)
    mel_lo, mel_hi = _hz_to_mel(f_min), _hz_to_mel(f_max)
    span = mel_hi - mel_lo
    mel = mel_lo + torch.arange(n_mels + 2, dtype=torch.float64, device=k.device) * (span / (k + 1.0))
    # Points j >= K + 3 only shape bands > K + 1, whose response below f_max is zero anyway; capping them
    # keeps 10 ** (mel / 2595) finite for large n_mels at small K (every point j < K + 3 is below the cap).
    mel = mel.clamp(max=mel_lo + 3.0 * span)
    hz = 700.0 * (torch.pow(10.0, mel / 2595.0) - 1.0)
    lower, centre, upper = hz[:-2], hz[1:-1], hz[2:]
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=k.device)[:, None] * (sample_rate / n_fft)
    # Capped points coincide; the clamp avoids 0/0 there (those bands are clamped to zero below).
    rise = (freqs - lower) / (centre - lower).clamp_min(1e-9)
    fall = (upper - freqs) / (upper - centre).clamp_min(1e-9)
    weights = torch.minimum(rise, fall).clamp_min(0.0)
    return weights * (freqs <= f_max)


def dft_basis(n_fft: int, win_length: int) -> torch.Tensor:
    """Real DFT basis with the periodic Hann window folded in, shape ``(n_fft, 2 * (n_fft // 2 + 1))``.

    Columns ``[0, n_freq)`` give the real parts, ``[n_freq, 2 n_freq)`` the imaginary parts of
    ``torch.stft`` (window of ``win_length`` samples centred in ``n_fft`` samples, as ``torch.stft`` pads it).
    """
    window = torch.zeros(n_fft, dtype=torch.float64)
    left = (n_fft - win_length) // 2
    window[left:left + win_length] = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
    n = torch.arange(n_fft, dtype=torch.float64)[:, None]
    b = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[None, :]
    angle = 2.0 * math.pi * ((n * b) % n_fft) / n_fft  # reduce mod n_fft first: exact phases
    return torch.cat([window[:, None] * torch.cos(angle), -window[:, None] * torch.sin(angle)], dim=1)


def power_spectrum(x: torch.Tensor, basis: torch.Tensor, n_fft: int, hop: int, center: bool) -> torch.Tensor:
    """Power spectrum ``(..., frames, n_freq)`` of waveforms ``(..., samples)``; torch ops only (traceable)."""
    n_freq = n_fft // 2 + 1
    if center:  # reflect-pad like torch.stft; pad wants a channel axis, for (S,) as for (B, S)
        x = F.pad(x.unsqueeze(-2), (n_fft // 2, n_fft // 2), mode="reflect").select(-2, 0)
    frames = x.unfold(-1, n_fft, hop)  # (..., frames, n_fft)
    spectrum = torch.matmul(frames, basis)  # (..., frames, 2 n_freq): the DFT as one matmul
    real, imag = spectrum.narrow(-1, 0, n_freq), spectrum.narrow(-1, n_freq, n_freq)
    return real * real + imag * imag


def sparse_bank(bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The nonzero entries of a mel bank ``(n_freq, n)`` in COO form, ordered by band, then by bin.

    Returns ``bins`` and ``bands`` (both ``(nnz,)`` int64) and ``weights`` ``(nnz,)`` in the bank's dtype, so
    ``bank[bins, bands] == weights`` and every other entry of ``bank`` is zero. Each band's entries are one
    contiguous run (``bands`` is nondecreasing).
    """
    if not isinstance(bank, torch.Tensor) or bank.dim() != 2:
        got = tuple(bank.shape) if isinstance(bank, torch.Tensor) else type(bank).__name__
        raise SoftWidthError(f"sparse_bank: expects a mel bank (n_freq, bands), got {got}")
    bands, bins = torch.nonzero(bank.detach().t(), as_tuple=True)  # row-major over (band, bin)
    return bins.contiguous(), bands.contiguous(), bank.detach()[bins, bands].contiguous()


def sparse_mel(power: torch.Tensor, bins: torch.Tensor, bands: torch.Tensor, weights: torch.Tensor,
               n: int) -> torch.Tensor:
    """``power @ bank`` for the ``n``-band bank given in COO form (:func:`sparse_bank`), ``(..., n)``.

    One multiply per nonzero weight (the gathered bins times their weights) and one add per nonzero weight
    (accumulated into zeros per band); stock torch ops only, so it traces with fx, scripts and exports to ONNX.
    """
    gathered = power.index_select(-1, bins) * weights  # (..., nnz)
    mel = torch.zeros(power.shape[:-1] + (n,), dtype=power.dtype, device=power.device)
    # scatter_add, not index_add: index_add exports to ONNX ScatterND(add), which onnxruntime's CPU kernel sums
    # with a race when indices repeat (results differed run to run); scatter_add exports to ScatterElements(add)
    return mel.scatter_add(-1, bands.expand(gathered.shape), gathered)


_SPARSE = ("bins", "bands", "weights")


def _register_sparse(module: nn.Module, bank: torch.Tensor) -> None:
    """(Re)register the non-persistent COO buffers ``bins``, ``bands``, ``weights`` of ``bank`` on ``module``."""
    for name, value in zip(_SPARSE, sparse_bank(bank)):
        module.register_buffer(name, value, persistent=False)


def _unlisted(module: nn.Module) -> None:
    """Mark the COO buffers non-persistent again (``GraphModule``'s deepcopy re-registers them as persistent)."""
    for name in _SPARSE:
        module.register_buffer(name, getattr(module, name), persistent=False)


def _drop_sparse(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    """State-dict hook: the state dict describes the bank by its dense ``bank`` only."""
    _unlisted(module)
    for name in _SPARSE:
        state_dict.pop(prefix + name, None)


def _before_load(module: nn.Module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
    """Load-state-dict pre hook: the COO buffers are not expected in the loaded state dict."""
    _unlisted(module)


def _refresh_sparse(module: nn.Module, incompatible_keys) -> None:
    """Load-state-dict post hook: the COO buffers follow the loaded dense ``bank`` (e.g. a pruned bank)."""
    _register_sparse(module, module.bank)


class _Frontend(nn.Module):
    """The consolidated front end before tracing: fixed DFT basis and fixed ``n``-band mel bank in COO form."""

    def __init__(self, basis: torch.Tensor, bank: torch.Tensor, *, n_fft: int, hop: int, center: bool,
                 log_eps: float) -> None:
        super().__init__()
        self.register_buffer("basis", basis)
        _register_sparse(self, bank)
        self.n_fft, self.hop, self.center, self.log_eps, self.n = n_fft, hop, center, log_eps, bank.shape[1]

    def forward(self, waveform):  # unannotated: fx would emit a type name TorchScript cannot resolve
        power = power_spectrum(waveform, self.basis, self.n_fft, self.hop, self.center)
        return torch.log(sparse_mel(power, self.bins, self.bands, self.weights, self.n) + self.log_eps)


class _MelBank(nn.Module):
    """The consolidated front end of a power-spectrum input: fixed ``n``-band mel bank in COO form and log."""

    def __init__(self, bank: torch.Tensor, *, log_eps: float) -> None:
        super().__init__()
        _register_sparse(self, bank)
        self.log_eps, self.n = log_eps, bank.shape[1]

    def forward(self, power):  # unannotated, as above
        return torch.log(sparse_mel(power, self.bins, self.bands, self.weights, self.n) + self.log_eps)


def _graph_module(root: nn.Module, bank: torch.Tensor) -> fx.GraphModule:
    """``root`` traced into a stock GraphModule (class name ``LogMel``) that keeps the dense ``bank`` as its
    persistent buffer (the state dict's description of the bank) and the COO buffers the graph runs as
    non-persistent ones, re-derived from ``bank`` whenever a state dict is loaded (also after a deepcopy)."""
    plain = fx.GraphModule(root, fx.Tracer().trace(root), class_name="LogMel")
    _unlisted(plain)  # GraphModule copies buffers as persistent ones
    plain.register_buffer("bank", bank)
    # hooks of the instance (a GraphModule's deepcopy keeps its state-dict hooks, not its non-persistent set)
    getattr(plain, "register_state_dict_post_hook", plain._register_state_dict_hook)(_drop_sparse)
    plain.register_load_state_dict_pre_hook(_before_load)
    plain.register_load_state_dict_post_hook(_refresh_sparse)
    return plain


class LogMel(DynamicLayer):
    """Log-mel features of waveforms, with the number of mel bands governed by a :class:`Width`.

    Args (keyword-only):
        sample_rate: sampling rate of the waveform in Hz (> 0).
        n_fft: FFT size in samples (>= 2); ``n_freq = n_fft // 2 + 1`` frequency bins.
        win_length: periodic Hann window length in samples, ``1 <= win_length <= n_fft`` (default
            ``n_fft``); centred in the ``n_fft`` frame like ``torch.stft``.
        hop_length: frame hop in samples, ``1 <= hop_length <= n_fft``.
        n_mels: maximum number of mel bands (the full-size feature count).
        f_min, f_max: band edges of the filter bank in Hz, ``0 <= f_min < f_max <= sample_rate / 2``
            (default ``f_max = sample_rate / 2``).
        width: a :class:`Width` with ``max_size == n_mels`` governing the number of bands ``K``; ``None``
            keeps ``n_mels`` bands.
        log_eps: added to the mel energies before the natural log (> 0).
        center: reflect-pad ``n_fft // 2`` samples at both ends like ``torch.stft(center=True)``.
        input: ``"waveform"`` (default) or ``"power"``: the layer then takes a precomputed power spectrum
            ``|STFT|^2`` of shape ``(batch, frames, n_freq)`` (e.g. :meth:`power` cached once per file, or
            computed by a streaming front end) and applies only the mel bank and the log, so the DFT is neither
            run nor counted.
        shape_grad: whether the gradient with respect to ``K`` also flows through the filter shapes (default
            ``True``). ``False``: the bank still follows the real ``K``, but ``K`` learns only through the gate's
            noise mix, like every other width. A network adapted to the current band positions resists any move
            of ``K`` through the shape path; in the VAD study (every width trainable, CRNN at half the FLOP/s) that
            kept 62 to 79 of 80 bands, and ``False`` kept 42 to 52 and scored 0.7 EER points better on the
            validation split (docs/method.md). Also an attribute, settable after construction.

    Shapes: input waveform ``(batch, samples)`` or ``(samples,)``; output ``(batch, frames, n_mels)`` or
    ``(frames, n_mels)``, features **last** so a ``Linear`` or Transformer can consume them directly (use
    ``.transpose(-1, -2)`` for a conv stack). ``frames = 1 + samples // hop_length`` with ``center``, else
    ``1 + (samples - n_fft) // hop_length``.

    Widths: consumes none (``in_layout`` is ``None``), produces ``width`` (``out_layout``). The mel bank is
    :func:`mel_filters` at the real ``K`` in train mode (gradient reaches ``K`` through the filter shapes, unless
    ``shape_grad=False``, and the noise-mix gate) and at ``K = width.rounded`` in eval mode (then the gate
    truncates to the first ``rounded`` bands, which equals :meth:`consolidated`).

    Cost per frame, in FLOPs (FlopCounterMode convention: a matmul is 2 FLOPs per multiply-accumulate): DFT
    matmul ``2 * n_fft * 2 * n_freq``, power ``3 * n_freq``, sparse mel bank ``2 * nnz(K)`` (a multiply and an add
    per nonzero weight, what :meth:`consolidated` runs), log and eps ``2 * K``; MACs ``n_fft * 2 * n_freq +
    nnz(K)``; params 0 (the basis and bank are buffers). ``nnz(n)`` (:meth:`nonzeros`) is the exact nonzero
    count of the ``n``-band bank (``(n_freq, n)``), linear between integers, so the cost is continuous and
    differentiable in ``K``. With ``input="power"`` the DFT and power terms are absent. Positions are frames per
    example.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        n_fft: int = 400,
        win_length: int | None = None,
        hop_length: int = 160,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
        width: Width | None = None,
        log_eps: float = 1e-6,
        center: bool = True,
        input: str = "waveform",
        shape_grad: bool = True,
    ) -> None:
        super().__init__()
        where = self.where
        if input not in ("waveform", "power"):
            raise SoftWidthError(f"{where}: input must be 'waveform' or 'power', got {input!r}")
        win_length, f_max = check_stft(sample_rate, n_fft, hop_length, win_length, f_min, f_max, where=where)
        if not is_int(n_mels) or not 1 <= n_mels <= MAX_BANDS:
            raise SoftWidthError(f"{where}: n_mels must be an int >= 1 and <= {MAX_BANDS}, got {n_mels!r}")
        if not is_number(log_eps) or log_eps <= 0:
            raise SoftWidthError(f"{where}: log_eps must be a number > 0, got {log_eps!r}")
        if width is not None and not isinstance(width, Width):
            raise SoftWidthError(f"{where}: width must be a softwidth.Width or None, got {type(width).__name__}")
        if width is not None and width.max_size != n_mels:
            raise SoftWidthError(
                f"{where}: width {width.label} has max_size {width.max_size} but n_mels={n_mels}; make the "
                f"width's max_size equal n_mels")
        self.sample_rate, self.n_fft, self.win_length, self.hop_length = sample_rate, n_fft, win_length, hop_length
        self.n_mels, self.f_min, self.f_max = n_mels, float(f_min), float(f_max)
        self.log_eps, self.center, self.input = float(log_eps), bool(center), input
        if not isinstance(shape_grad, bool):
            raise SoftWidthError(f"{where}: shape_grad must be True or False, got {shape_grad!r}")
        self.shape_grad = shape_grad
        self.width = width  # registers it as a submodule: its parameter is in .parameters()
        self.in_layout = None
        self.out_layout = Layout.of(width if width is not None else n_mels)
        self.register_buffer("basis", dft_basis(n_fft, win_length).float())

    # -- computation -----------------------------------------------------------------------------
    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def bands(self) -> torch.Tensor | float:
        """The band count the bank is built for: real ``K`` (train), ``width.rounded`` (eval) or ``n_mels``."""
        if self.width is None:
            return float(self.n_mels)
        return self.width.real() if self.width.training and not self.width.frozen else float(self.width.rounded)

    def filters(self) -> torch.Tensor:
        """The current mel bank, ``(n_freq, n_mels)`` in the basis dtype (differentiable in ``K``)."""
        k = self.bands()
        if not self.shape_grad and isinstance(k, torch.Tensor):
            k = k.detach()
        bank = mel_filters(k, n_mels=self.n_mels, n_fft=self.n_fft, sample_rate=self.sample_rate,
                           f_min=self.f_min, f_max=self.f_max)
        return bank.to(device=self.basis.device, dtype=self.basis.dtype)

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Power spectrum ``|STFT|^2``, shape ``(batch, frames, n_freq)`` or ``(frames, n_freq)``."""
        check_waveform(waveform, self.n_fft // 2 + 1 if self.center else self.n_fft,
                       where=self.where, detail=f"n_fft={self.n_fft}, center={self.center}")
        return power_spectrum(waveform, self.basis, self.n_fft, self.hop_length, self.center)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        power = self.power(x) if self.input == "waveform" else self._check_power(x)
        mel = torch.matmul(power, self.filters())  # (..., frames, n_mels)
        return self.out_layout.gate(torch.log(mel + self.log_eps), -1, where=self.where)

    def _check_power(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim not in (2, 3) or x.shape[-1] != self.n_freq:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise SoftWidthError(
                f"{self.where}: input='power' expects a power spectrum (batch, frames, {self.n_freq}) or "
                f"(frames, {self.n_freq}) for n_fft={self.n_fft}, got {got}")
        if not x.is_floating_point():
            raise SoftWidthError(f"{self.where}: the power spectrum must be floating point, got {x.dtype}")
        return x.to(self.basis.dtype)

    # -- DynamicLayer ------------------------------------------------------------------------------
    def nonzeros(self, bands) -> torch.Tensor:
        """Nonzero weights of the ``bands``-band bank (the first ``n`` columns of :func:`mel_filters` at
        ``K = n``): exact at integers, linear in between (continuous and differentiable in a real ``K``, whose
        graph the result keeps); float64 scalar tensor, ``0 <= bands <= n_mels``."""
        k = bands if isinstance(bands, torch.Tensor) else torch.tensor(float(bands), dtype=torch.float64)
        low = int(k.detach().floor().clamp(0, self.n_mels - 1))
        below, above = self._band_nonzeros(low), self._band_nonzeros(low + 1)
        return below + (k.to(torch.float64) - low) * (above - below)

    def _band_nonzeros(self, n: int) -> float:
        """Exact nonzero count of the ``n``-band bank, cached per ``n`` (``n = 0``: none)."""
        cache = self.__dict__.setdefault("_nonzeros", {})
        if n not in cache:  # the first n columns of the n-band bank do not depend on n_mels: build only those
            bank = mel_filters(float(n), n_mels=n, n_fft=self.n_fft, sample_rate=self.sample_rate,
                               f_min=self.f_min, f_max=self.f_max) if n else torch.zeros(0)
            cache[n] = float(torch.count_nonzero(bank))
        return cache[n]

    def cost(self, positions: float) -> Cost:
        k, f, p = self.out_layout.real(), self.n_freq, positions
        dft = (2 * self.n_fft * 2 * f + 3 * f, self.n_fft * 2 * f) if self.input == "waveform" else (0, 0)
        nnz = self.nonzeros(k)  # the bank is sparse: a multiply and an add per nonzero weight
        nnz = nnz.to(k.dtype) if isinstance(k, torch.Tensor) and k.is_floating_point() else float(nnz)
        flops = (dft[0] + 2 * nnz + 2 * k) * p
        return {"flops": flops, "macs": (dft[1] + nnz) * p, "params": 0.0}

    def count_positions(self, inputs: tuple, output: torch.Tensor, batch: int) -> float:
        out = output[0] if isinstance(output, tuple) else output
        return float(out.shape[-2])  # frames per example, for (B, T, K) and (T, K) alike

    def consolidated(self) -> fx.GraphModule:
        """A stock ``torch.fx.GraphModule`` (class name ``LogMel``) with the fixed ``rounded``-band bank.

        Runs without softwidth, scripts with TorchScript and exports to ONNX; output ``(..., frames, rounded)``.
        State-dict buffers ``basis`` ``(n_fft, 2 n_freq)`` (waveform input only) and the dense ``bank``
        ``(n_freq, rounded)``; the graph runs the bank's nonzeros (:func:`sparse_mel`), held in the
        non-persistent buffers ``bins``, ``bands`` (``(nnz,)`` int64) and ``weights`` ``(nnz,)``, which a
        ``load_state_dict`` re-derives from the loaded ``bank`` (a post hook; after writing ``bank`` in place,
        call ``load_state_dict(state_dict())`` to refresh them).
        """
        n = self.out_layout.rounded
        bank = mel_filters(float(n), n_mels=self.n_mels, n_fft=self.n_fft, sample_rate=self.sample_rate,
                           f_min=self.f_min, f_max=self.f_max)[:, :n]
        bank = bank.to(self.basis).contiguous()
        if self.input == "power":
            root = _MelBank(bank, log_eps=self.log_eps)
        else:
            root = _Frontend(self.basis.detach().clone(), bank, n_fft=self.n_fft, hop=self.hop_length,
                             center=self.center, log_eps=self.log_eps)
        return _graph_module(root, bank)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, win_length={self.win_length}, "
                f"hop_length={self.hop_length}, n_mels={self.n_mels}, f_min={self.f_min:g}, "
                f"f_max={self.f_max:g}, log_eps={self.log_eps:g}, center={self.center}, input={self.input!r}"
                + ("" if self.shape_grad else ", shape_grad=False"))


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
