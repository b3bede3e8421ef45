"""Width-aware ``nn.GRU`` and ``nn.LSTM``: one width governs the hidden units of every layer and direction.

The stock module runs unchanged (fused kernel) through :func:`torch.func.functional_call` on *masked*
parameters. With ``s`` the hidden width's shares (``s_j`` for hidden unit ``j``):

eval mode (``s`` is the 0/1 keep mask)
    the rows of unit ``j`` in every gate block of ``weight_ih``/``weight_hh``/biases, and the columns of
    ``weight_hh`` and of the layer > 0 ``weight_ih`` that read unit ``j``, are multiplied by ``s_j``; the
    initial state is multiplied by ``s`` too. A dropped unit then has zero pre-activations and a zero start,
    so it stays exactly 0 (GRU: ``h' = z h + (1 - z) tanh(0) = h / 2``; LSTM: ``c' = c / 2``, ``h' = o
    tanh(c')``) and no other unit reads it: the output equals the consolidated module's (atol 1e-5).
train mode (``s`` are the soft shares)
    only the *columns* that read unit ``j`` (recurrent, and layer > 0 input) are multiplied by ``s_j``, so a
    fraction ``s_j`` of unit ``j`` reaches the other units: linear in the width, with a finite derivative
    for both mixes (``sqrt(s_j)`` would be singular at ``s_j -> 0`` for the paper mix). Rows are left
    alone so a unit runs the same dynamics as when it is kept; a unit with ``s_j = 0`` is read by no one.
    The initial state passes unchanged (the columns already scale what a unit passes on).

Outputs: the sequence output is gated by :attr:`out_layout` (noise mix in train mode, truncation in eval
mode), ``h_n`` by the hidden width per layer and direction (it is often used as a sequence summary);
``c_n`` is a cell state, not a feature: it is zeroed beyond the kept units in eval mode and passes
unchanged in train mode. The layer-0 input is not masked: it arrives gated by its producer.

``dropout > 0`` is accepted: it acts in train mode only, between layers, and maps zero units to zero.
``proj_size != 0`` (LSTM projections) and ``PackedSequence`` inputs are refused.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence

from ..errors import SoftWidthError
from ..layout import WidthLike, check_features
from ..width import Width
from ._base import Cost, DynamicLayer, as_layout, kept

__all__ = ["GRU", "LSTM"]


class _Recurrent(DynamicLayer):
    """Shared machinery of :class:`GRU` and :class:`LSTM` (``_stock``, ``_gates``, ``_const`` set below)."""

    _stock: type[nn.RNNBase]
    _gates: int  # gate blocks stacked in the weight rows: GRU r,z,n; LSTM i,f,g,o
    _const: tuple[float, float]  # moduleprofiler's per-unit element-wise FLOPs / (2 * gates): bias, no bias

    def __init__(self, rnn: nn.RNNBase, *, in_width: WidthLike | None = None,
                 hidden_width: Width | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        if type(rnn) is not self._stock:
            raise SoftWidthError(
                f"softwidth.layers.{name} wraps nn.{self._stock.__name__}, got {type(rnn).__name__}")
        if getattr(rnn, "proj_size", 0):
            raise SoftWidthError(
                f"{self.where}: LSTM with proj_size={rnn.proj_size} is not supported (the projection would "
                "need its own width); use proj_size=0 and a width-aware Linear after it")
        if hidden_width is not None and not isinstance(hidden_width, Width):
            raise SoftWidthError(
                f"{self.where}: hidden_width must be one Width (it governs every layer and direction) or "
                f"None, got {type(hidden_width).__name__}")
        self.rnn = rnn
        self.directions = 2 if rnn.bidirectional else 1
        self.in_layout = as_layout(in_width, rnn.input_size, where=self.where, role="in_width")
        self.hidden_layout = as_layout(hidden_width, rnn.hidden_size, where=self.where, role="hidden_width")
        self.out_layout = self.hidden_layout.repeat(self.directions)  # forward units, then backward units
        self.register_widths(hidden_width=self.hidden_layout, in_width=self.in_layout)

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, hx=None):
        """``x``: ``(T, N, I)``, ``(N, T, I)`` if ``batch_first``, or unbatched ``(T, I)``; ``hx`` as for the
        stock module at full size (``(L*D, N, H)``, or ``(L*D, H)`` unbatched; a pair for LSTM).

        Returns the stock module's outputs at full size: ``(output, h_n)`` (GRU) or ``(output, (h_n, c_n))``
        (LSTM), ``output`` of shape ``(..., D*H)`` gated by :attr:`out_layout`.
        """
        if isinstance(x, PackedSequence):
            raise SoftWidthError(f"{self.where}: PackedSequence input is not supported; pass a padded tensor")
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise SoftWidthError(f"{self.where}: input must be (T, N, I), (N, T, I) or (T, I), got {shape}")
        check_features(x, self.rnn.input_size, -1, where=self.where)
        self._check_state(hx, x)
        if not self.hidden_layout.is_dynamic:
            return self.rnn(x, hx)
        hard = not any(w.training and not w.frozen for w in self.hidden_layout.widths)
        weight = self.rnn.weight_hh_l0
        s = self.hidden_layout.shares(weight)  # (H,): 0/1 in eval mode, soft in train mode
        if hard and hx is not None:
            hx = tuple(h * s for h in hx) if isinstance(hx, tuple) else hx * s
        output, state = functional_call(self.rnn, self._masked(s, hard), (x, hx))
        output = self.out_layout.gate(output, -1, where=self.where)
        if isinstance(state, tuple):  # LSTM
            h_n, c_n = state
            return output, (self._gate_state(h_n), c_n * s if hard else c_n)
        return output, self._gate_state(state)

    def _masked(self, s: torch.Tensor, hard: bool) -> dict[str, torch.Tensor]:
        """The stock parameters with hidden unit ``j`` scaled by ``s_j`` (see the module docstring)."""
        rows = s.repeat(self._gates)[:, None]  # (G*H, 1): unit j in every gate block
        cols = s[None, :]  # (1, H): reading unit j
        cols_in = s.repeat(self.directions)[None, :]  # layer > 0 input: [forward h, backward h]
        params = {}
        for name, p in self.rnn.named_parameters():
            if name.startswith("weight_hh"):
                p = p * cols
            elif name.startswith("weight_ih") and not name.startswith("weight_ih_l0"):
                p = p * cols_in
            if hard:
                p = p * (rows if p.dim() == 2 else rows[:, 0])
            params[name] = p
        return params

    def _gate_state(self, h_n: torch.Tensor) -> torch.Tensor:
        """Gate each layer/direction slice of ``h_n`` (``(L*D, N, H)`` or ``(L*D, H)``) by the hidden width."""
        return torch.stack([self.hidden_layout.gate(h, -1, where=self.where) for h in h_n])

    def _check_state(self, hx, x: torch.Tensor) -> None:
        if hx is None:
            return
        states = hx if isinstance(hx, tuple) else (hx,)
        expected = 2 if self._stock is nn.LSTM else 1
        if len(states) != expected or not all(isinstance(h, torch.Tensor) for h in states):
            raise SoftWidthError(
                f"{self.where}: the initial state must be {'a pair (h_0, c_0)' if expected == 2 else 'h_0'} "
                "of tensors, like for the stock module")
        batch = () if x.dim() == 2 else (x.shape[0 if self.rnn.batch_first else 1],)
        want = (self.rnn.num_layers * self.directions, *batch, self.rnn.hidden_size)
        for h in states:
            if tuple(h.shape) != want:
                raise SoftWidthError(
                    f"{self.where}: initial state has shape {tuple(h.shape)}, expected {want} (full hidden "
                    "size: the wrapper runs at max size; slice only for the consolidated module)")
            if h.is_floating_point() and not bool(torch.isfinite(h).all()):
                raise SoftWidthError(f"{self.where}: initial state contains NaN or inf")

    # -- positions, cost, consolidation ------------------------------------------------------------
    def count_positions(self, inputs: tuple, output, batch: int) -> float:
        """Time steps ``T`` per sequence (the batch size does not matter: each sequence runs ``T`` steps)."""
        out = output[0]
        if out.dim() == 2:  # unbatched (T, D*H)
            return float(out.shape[0])
        return float(out.shape[1] if self.rnn.batch_first else out.shape[0])

    def cost(self, positions: float) -> Cost:
        """Per sequence of ``positions`` steps, in real widths (differentiable), moduleprofiler convention.

        Per layer and direction: FLOPs ``2 G T H (H_in + H + c)`` (GRU ``G = 3``, ``c = 3.5``, 2.5 without
        bias; LSTM ``G = 4``, ``c = 3.875`` / 2.875); MACs ``G T H (H_in + H)``; params ``G H (H_in + H)``
        plus ``2 G H`` biases. ``H_in`` is the input width for layer 0, ``D H`` above it.
        """
        g, t, d = self._gates, positions, self.directions
        h = self.hidden_layout.real()
        c = self._const[0] if self.rnn.bias else self._const[1]
        flops = macs = params = 0.0
        for layer in range(self.rnn.num_layers):
            h_in = self.in_layout.real() if layer == 0 else d * h
            flops = flops + d * 2 * g * t * h * (h_in + h + c)
            macs = macs + d * g * t * h * (h_in + h)
            params = params + d * (g * h * (h_in + h) + (2 * g * h if self.rnn.bias else 0.0))
        return {"flops": flops, "macs": macs, "params": params}

    def consolidated(self) -> nn.RNNBase:
        r = self.rnn
        keep_in = self.in_layout.kept_indices()
        keep_h = self.hidden_layout.kept_indices()
        keep_above = self.out_layout.kept_indices()  # layer > 0 input: kept forward, then backward units
        h = r.hidden_size
        rows = torch.cat([gate * h + keep_h for gate in range(self._gates)])
        weight = r.weight_hh_l0
        out = self._stock(len(keep_in), len(keep_h), num_layers=r.num_layers, bias=r.bias,
                          batch_first=r.batch_first, dropout=r.dropout, bidirectional=r.bidirectional,
                          device=weight.device, dtype=weight.dtype)
        for name, p in r.named_parameters():
            sliced = kept(p, 0, rows)
            if name.startswith("weight_hh"):
                sliced = kept(sliced, 1, keep_h)
            elif name.startswith("weight_ih"):
                sliced = kept(sliced, 1, keep_in if name.startswith("weight_ih_l0") else keep_above)
            getattr(out, name).data.copy_(sliced)
        return out


class GRU(_Recurrent):
    """Wraps an ``nn.GRU`` (any layers, directions, ``batch_first``, bias) with a dynamic hidden size.

    Args:
        rnn: the full-size GRU; its parameters are used (not copied).
        in_width: width/layout of the ``input_size`` input features (``None`` = fixed).
        hidden_width: the one :class:`~softwidth.Width` (``max_size == hidden_size``) of every layer and
            direction (``None`` = fixed).

    Consumes ``in_width``; produces :attr:`out_layout` = ``hidden_width`` (unidirectional) or
    ``Layout([h, h])`` (bidirectional: forward units, then backward units); a consumer takes
    ``in_width=gru.out_layout``. Forward returns ``(output, h_n)`` like the stock module (see
    :meth:`_Recurrent.forward`). Cost: :meth:`cost`.
    """

    _stock = nn.GRU
    _gates = 3
    _const = (3.5, 2.5)


class LSTM(_Recurrent):
    """Wraps an ``nn.LSTM`` (``proj_size == 0``) with a dynamic hidden size; as :class:`GRU` otherwise.

    Forward returns ``(output, (h_n, c_n))`` like the stock module.
    """

    _stock = nn.LSTM
    _gates = 4
    _const = (3.875, 2.875)
