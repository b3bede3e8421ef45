"""Width-aware ``nn.TransformerEncoderLayer``: the residual stream follows one width, the feed-forward another.

The model width ``d`` (real size ``K`` of a :class:`~softwidth.Width` with ``max_size == d_model``) governs the
residual stream: the layer consumes and produces it. The attention's inner dimension is tied to it: each of the
``nhead`` heads keeps the first ``d / nhead`` of its own ``d_model / nhead`` dims, so the consolidated layer is a
stock ``nn.TransformerEncoderLayer(d, nhead, f)``. The feed-forward width ``f`` governs the hidden features.

Head dims in train mode (our choice; the paper has no attention): head dim ``j`` gets the share
``s_j`` of a width of real size ``K / nhead`` (same mix and temperature as the model width, in head-dim units).
``q`` and ``k`` are multiplied by ``sqrt(s_j)`` (a deterministic soft mask, so the score term ``q_j k_j`` is
weighted by ``s_j``; noise in both factors would add a product of noises to the scores that eval never sees);
``v`` gets the power-preserving noise mix ``sqrt(s_j) v_j + sqrt(1 - s_j) sigma_j eps`` like any produced
feature, so the network cannot undo a partial share by growing ``out_proj``. Scores are scaled by
``1 / sqrt(K / nhead)`` in train mode and ``1 / sqrt(rounded / nhead)`` in eval mode (then the layer equals the
consolidated stock layer).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SoftWidthError
from ..layout import NOISE_CUT, WidthLike, batch_std, check_features
from ..width import Width
from ._base import Cost, DynamicLayer, as_layout, kept
from .elementwise import ELEMENTWISE_FLOPS
from .norm import LayerNorm

__all__ = ["TransformerEncoderLayer"]

_EPS = 1e-12
_ACTIVATIONS = {1: nn.ReLU, 2: nn.GELU}  # stock ``activation_relu_or_gelu`` code -> FLOPs table key


class TransformerEncoderLayer(DynamicLayer):
    """Wraps a stock ``nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward)``; its parameters are reused.

    Args:
        layer: the full-size layer (activation ReLU or GELU, any ``norm_first``, ``batch_first``, ``bias``).
        model_width: :class:`~softwidth.Width` of the residual stream (``max_size == d_model``, consumed and
            produced; ``multiple_of`` must be a multiple of ``nhead``); ``None`` = fixed.
        ff_width: width of the feed-forward hidden features (``max_size == dim_feedforward``); ``None`` = fixed.

    Shapes: ``src`` is ``(N, T, d_model)`` if ``batch_first`` else ``(T, N, d_model)``, or unbatched
    ``(T, d_model)``; the output has the same shape, gated by ``model_width``. ``src_mask`` is ``(T, T)`` or
    ``(N * nhead, T, T)``, ``src_key_padding_mask`` ``(N, T)``; bool (True = masked) or additive float.
    ``is_causal`` is only a hint, as in torch: ``src_mask`` must be given with it.
    Positions: ``T`` per example. Cost (moduleprofiler convention, differentiable in the real ``d`` and ``f``)
    per example: projections as Linear (``2 I O T`` with bias), scores and ``attn @ V`` ``2 T^2 d`` each,
    scaling ``T^2 h``, softmax ``(4T - 1) T h``, two residual adds ``d T``, two LayerNorms ``(7d + 4) T``,
    activation ``ELEMENTWISE_FLOPS * f T``. MACs: matrix products only; params: the consolidated layer's.
    """

    def __init__(
        self, layer: nn.TransformerEncoderLayer, *, model_width: Width | None = None,
        ff_width: WidthLike | None = None,
    ) -> None:
        super().__init__()
        _check_layer(layer)
        attn = layer.self_attn
        self.layer = layer
        self.heads = attn.num_heads
        self.head_dim = attn.head_dim  # at full size
        if model_width is not None and not isinstance(model_width, Width):
            raise SoftWidthError(
                f"{self.where}: model_width must be a softwidth.Width (or None), got {type(model_width).__name__}")
        if model_width is not None and model_width.multiple_of % self.heads:
            raise SoftWidthError(
                f"{self.where}: model_width {model_width.label} rounds to multiples of {model_width.multiple_of}, "
                f"which nhead={self.heads} does not divide, so the heads could not share it; create it as "
                f"Width({attn.embed_dim}, multiple_of={self.heads})")
        self.in_layout = self.out_layout = as_layout(
            model_width, attn.embed_dim, where=self.where, role="model_width")
        self.ff_layout = as_layout(ff_width, layer.linear1.out_features, where=self.where, role="ff_width")
        self.register_widths(model_width=self.out_layout, ff_width=self.ff_layout)
        # The share-weighted LayerNorms are reused as helpers around the stock norms. A tuple keeps them out of
        # the module tree, so the state_dict holds each tensor once (safetensors refuses shared tensors).
        self._norms = (LayerNorm(layer.norm1, model_width), LayerNorm(layer.norm2, model_width))

    # -- forward ------------------------------------------------------------------------------------
    def forward(
        self, src: torch.Tensor, src_mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None, is_causal: bool = False,
    ) -> torch.Tensor:
        check_features(src, self.out_layout.max_size, -1, where=self.where)
        if src.dim() not in (2, 3):
            raise SoftWidthError(f"{self.where}: src must be 2-D (T, d) or 3-D, got shape {tuple(src.shape)}")
        batch_first = self.layer.self_attn.batch_first
        x = src.unsqueeze(0) if src.dim() == 2 else src if batch_first else src.transpose(0, 1)  # (N, T, D)
        mask = self._mask(src_mask, src_key_padding_mask, is_causal, x, unbatched=src.dim() == 2)
        if not self.training:  # consumed features arrive gated; re-mask so an ungated input cannot leak
            x = x * self.out_layout.shares(x)
        norm1, norm2 = self._norms
        if self.layer.norm_first:
            x = x + self._attention(norm1(x), mask)
            x = x + self._feed_forward(norm2(x))
        else:
            x = norm1(x + self._attention(x, mask))
            x = norm2(x + self._feed_forward(x))
        return x.squeeze(0) if src.dim() == 2 else x if batch_first else x.transpose(0, 1)

    def _attention(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Self-attention block on ``x`` (N, T, D) -> (N, T, D), gated by the model width, then dropout1."""
        attn = self.layer.self_attn
        n, t, d = x.shape
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # (N, T, 3D), head h owns dims h*hd_max + j
        q, k, v = qkv.view(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # (N, H, T, hd)
        signal, noise, size = self._head_weights(x)
        # the score scale goes on q (N, H, T, hd), not on the (N, H, T, T) scores: the same product, and the
        # gradient to a trainable size then flows through the smaller tensor
        scale = size.rsqrt() if isinstance(size, torch.Tensor) else 1 / math.sqrt(size)
        q, k, v = q * (signal * scale), k * signal, v * signal
        if self.training and self.out_layout.is_dynamic and bool((noise > NOISE_CUT).any()):  # none once frozen
            sigma = batch_std(v, [0, 2])  # per head and dim, (1, H, 1, hd)
            # v is a permuted view of qkv: a contiguous draw (normal_ on strided memory is ~10x slower on CPU)
            v = v + noise * sigma * torch.randn_like(v, memory_format=torch.contiguous_format)
        dropout = attn.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=1.0)  # (N, H, T, hd)
        out = out.transpose(1, 2).reshape(n, t, d)
        out = F.linear(out, attn.out_proj.weight, attn.out_proj.bias)
        return self.layer.dropout1(self.out_layout.gate(out, -1, where=self.where))

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feed-forward block (N, T, D) -> (N, T, D): hidden gated by the ff width, output by the model width."""
        l1, l2 = self.layer.linear1, self.layer.linear2
        hidden = self.ff_layout.gate(self.layer.activation(F.linear(x, l1.weight, l1.bias)), -1, where=self.where)
        out = F.linear(self.layer.dropout(hidden), l2.weight, l2.bias)
        return self.layer.dropout2(self.out_layout.gate(out, -1, where=self.where))

    def _head_weights(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | float]:
        """Per head dim ``sqrt(s_j)``, ``sqrt(1 - s_j)`` (each ``(head_dim_max,)``) and the effective head dim.

        ``Width.shares`` is evaluated at the width's own size and index, so the shares of the ``K / nhead``
        head width are computed here with the width's mix and temperature (eval: the hard 0/1 cut).
        """
        ones = like.new_ones(self.head_dim)
        if not self.out_layout.is_dynamic:
            return ones, ones * 0, float(self.head_dim)
        width = self.out_layout.widths[0]
        index = width.index[: self.head_dim].to(like.device)
        if not width.training:
            size = width.rounded // self.heads
            return (index < size).to(like.dtype), ones * 0, float(size)
        if width.frozen:
            size = width.rounded // self.heads
            return (index < size).to(like.dtype), ones * 0, float(size)
        size = width.real() / self.heads
        signal, noise = width.mix_weights(size, index)
        return signal, noise, size

    def _mask(self, src_mask, key_padding_mask, is_causal: bool, x: torch.Tensor, *, unbatched: bool):
        """Additive attention mask broadcastable to the scores ``(N, H, T, T)``, or ``None``."""
        n, t, _ = x.shape
        if is_causal and src_mask is None:
            raise SoftWidthError(f"{self.where}: is_causal=True is only a hint; also pass src_mask "
                                 "(e.g. nn.Transformer.generate_square_subsequent_mask(T))")
        total = None
        if src_mask is not None:
            if tuple(src_mask.shape) == (t, t):
                total = _additive(src_mask, x, self.where, "src_mask")
            elif tuple(src_mask.shape) == (n * self.heads, t, t):
                total = _additive(src_mask, x, self.where, "src_mask").view(n, self.heads, t, t)
            else:
                raise SoftWidthError(f"{self.where}: src_mask has shape {tuple(src_mask.shape)}; expected "
                                     f"({t}, {t}) or ({n * self.heads}, {t}, {t})")
        if key_padding_mask is not None:
            expected = (t,) if unbatched else (n, t)
            if tuple(key_padding_mask.shape) != expected:
                raise SoftWidthError(f"{self.where}: src_key_padding_mask has shape "
                                     f"{tuple(key_padding_mask.shape)}; expected {expected} (batch, keys)")
            pad = _additive(key_padding_mask, x, self.where, "src_key_padding_mask").view(n, 1, 1, t)
            total = pad if total is None else total + pad
        return total

    # -- cost and consolidation ---------------------------------------------------------------------
    def count_positions(self, inputs: tuple, output: torch.Tensor, batch: int) -> float:
        src = inputs[0]
        return float(src.shape[1] if src.dim() == 3 and self.layer.self_attn.batch_first else src.shape[0])

    def matmul_flops(self, positions: float) -> torch.Tensor | float:
        """FLOPs of the matrix products only (2 per multiply-accumulate), as ``FlopCounterMode`` counts them."""
        return 2 * self.cost(positions)["macs"]

    def cost(self, positions: float) -> Cost:
        d, f, t, h = self.out_layout.real(), self.ff_layout.real(), positions, self.heads
        l, attn = self.layer, self.layer.self_attn
        linears = ((attn.in_proj_bias, d, 3 * d), (attn.out_proj.bias, d, d), (l.linear1.bias, d, f),
                   (l.linear2.bias, f, d))
        norms = [norm.cost(t) for norm in self._norms]
        flops = sum((2 * i * o if b is not None else o * (2 * i - 1)) * t for b, i, o in linears)
        flops = flops + 4 * t * t * d + t * t * h + (4 * t - 1) * t * h  # scores, attn @ V, scale, softmax
        flops = flops + 2 * d * t + sum(c["flops"] for c in norms)  # residual adds, LayerNorms
        flops = flops + ELEMENTWISE_FLOPS[_ACTIVATIONS[l.activation_relu_or_gelu]] * f * t
        macs = (4 * d * d + 2 * d * f) * t + 2 * t * t * d
        params = sum(i * o + (o if b is not None else 0.0) for b, i, o in linears)
        return {"flops": flops, "macs": macs, "params": params + sum(c["params"] for c in norms)}

    def consolidated(self) -> nn.TransformerEncoderLayer:
        """A stock ``nn.TransformerEncoderLayer(rounded d, nhead, rounded f)`` with the kept weights sliced."""
        l, attn = self.layer, self.layer.self_attn
        keep_d, keep_f = self.out_layout.kept_indices(), self.ff_layout.kept_indices()
        kept_head = len(keep_d) // self.heads  # head dims kept per head
        inner = (torch.arange(self.heads)[:, None] * self.head_dim + torch.arange(kept_head)).reshape(-1)
        rows = torch.cat([part * attn.embed_dim + inner for part in range(3)])  # q, k, v blocks
        activation = copy.deepcopy(l.activation) if isinstance(l.activation, nn.Module) else l.activation
        w = attn.in_proj_weight
        out = nn.TransformerEncoderLayer(
            len(keep_d), self.heads, len(keep_f), dropout=l.dropout.p, activation=activation,
            layer_norm_eps=l.norm1.eps, batch_first=attn.batch_first, norm_first=l.norm_first,
            bias=attn.in_proj_bias is not None, device=w.device, dtype=w.dtype)
        out.self_attn.dropout, out.dropout1.p, out.dropout2.p = attn.dropout, l.dropout1.p, l.dropout2.p
        pairs = [  # (new, old, kept rows, kept columns)
            (out.self_attn.in_proj_weight, w, rows, keep_d),
            (out.self_attn.in_proj_bias, attn.in_proj_bias, rows, None),
            (out.self_attn.out_proj.weight, attn.out_proj.weight, keep_d, inner),
            (out.self_attn.out_proj.bias, attn.out_proj.bias, keep_d, None),
            (out.linear1.weight, l.linear1.weight, keep_f, keep_d), (out.linear1.bias, l.linear1.bias, keep_f, None),
            (out.linear2.weight, l.linear2.weight, keep_d, keep_f), (out.linear2.bias, l.linear2.bias, keep_d, None),
        ]
        for new, old, keep_rows, keep_cols in pairs:
            if old is not None:
                sliced = kept(old, 0, keep_rows)
                new.data.copy_(sliced if keep_cols is None else kept(sliced, 1, keep_cols))
        out.norm1, out.norm2 = (norm.consolidated().to(w.dtype) for norm in self._norms)
        return out.train(self.training)


def _check_layer(layer: nn.Module) -> None:
    if type(layer) is not nn.TransformerEncoderLayer:
        raise SoftWidthError(
            f"softwidth.layers.TransformerEncoderLayer wraps nn.TransformerEncoderLayer, got {type(layer).__name__}")
    attn = layer.self_attn
    if not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn:
        raise SoftWidthError("TransformerEncoderLayer: its self_attn must be a plain nn.MultiheadAttention "
                             "(kdim = vdim = d_model, no add_bias_kv, no add_zero_attn)")
    if layer.activation_relu_or_gelu not in _ACTIVATIONS:
        raise SoftWidthError(f"TransformerEncoderLayer: activation {layer.activation!r} is not supported; use "
                             "activation='relu' or 'gelu'")


def _additive(mask: torch.Tensor, like: torch.Tensor, where: str, name: str) -> torch.Tensor:
    """A bool (True = masked) or float mask as an additive float mask in ``like``'s dtype and device."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(mask.to(like.device),
                                                                                       float("-inf"))
    if not mask.is_floating_point():
        raise SoftWidthError(f"{where}: {name} must be bool (True = masked) or float (added), got {mask.dtype}")
    return mask.to(device=like.device, dtype=like.dtype)
