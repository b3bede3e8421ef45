import pytest
import torch

from softwidth.errors import SoftWidthError
from softwidth.noise_mix import noise_mix


def _plain(x, signal, scale, eps, dim, lo):
    """The same arithmetic with plain ops (autograd differentiates it)."""
    shape = [1] * x.dim()
    shape[dim] = -1
    n = eps.shape[dim]
    extra = torch.zeros_like(x).narrow(dim, 0, lo)
    after = torch.zeros_like(x).narrow(dim, 0, x.shape[dim] - lo - n)
    return signal.view(shape) * x + torch.cat([extra, scale * eps, after], dim)


CASES = [  # shape, feature axis, first noisy feature, noisy features
    ((4, 7, 5), -1, 2, 3),
    ((4, 7, 5), 1, 0, 7),
    ((3, 6, 4, 5), 1, 1, 4),
    ((2, 3, 4, 6), -1, 5, 1),
    ((9, 5), 0, 3, 6),
]


@pytest.mark.parametrize("shape, dim, lo, n", CASES)
def test_values_and_gradients_equal_the_plain_ops(shape, dim, lo, n):
    g = torch.Generator().manual_seed(len(shape) * 10 + lo)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    d = dim % len(shape)
    signal = torch.rand(shape[d], generator=g, dtype=torch.float64)
    scale_shape = [1] * len(shape)
    scale_shape[d] = n
    scale = torch.rand(scale_shape, generator=g, dtype=torch.float64)
    eps = torch.randn(x.narrow(d, lo, n).shape, generator=g, dtype=torch.float64)
    upstream = torch.randn(shape, generator=g, dtype=torch.float64)

    grads = []
    for fn in (noise_mix, _plain):
        leaves = [t.clone().requires_grad_() for t in (x, signal, scale)]
        out = fn(leaves[0], leaves[1], leaves[2], eps, dim, lo) if fn is noise_mix else fn(*leaves, eps, d, lo)
        (out * upstream).sum().backward()
        grads.append((out.detach(), *[t.grad for t in leaves]))
    for ours, plain in zip(*grads):
        torch.testing.assert_close(ours, plain, rtol=1e-12, atol=1e-12)


def test_gradcheck_on_a_vector():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    signal = torch.rand(6, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(4, generator=g, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b, c: noise_mix(a, b, c, eps, 0, 1), (x, signal, scale))


def test_gradcheck_on_a_conv_feature_map():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    signal = torch.rand(5, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(1, 3, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(2, 3, 3, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b, c: noise_mix(a, b, c, eps, 1, 2), (x, signal, scale))
    assert torch.autograd.gradgradcheck(lambda a, b, c: noise_mix(a, b, c, eps, 1, 2), (x, signal, scale))


def test_input_is_not_modified_and_a_non_contiguous_input_works():
    x = torch.randn(5, 8, 3).transpose(0, 2)  # (3, 8, 5), strided
    before = x.clone()
    signal, scale, eps = torch.ones(8), torch.ones(1, 2, 1), torch.ones(3, 2, 5)
    out = noise_mix(x, signal, scale, eps, 1, 6)
    assert torch.equal(x, before)
    torch.testing.assert_close(out, _plain(x, signal, scale, eps, 1, 6))


def test_a_scale_with_more_than_the_feature_axis_is_refused():
    x = torch.randn(3, 8, 5)
    with pytest.raises(SoftWidthError, match="one weight per noisy feature"):
        noise_mix(x, torch.ones(8), torch.ones(3, 2, 1), torch.ones(3, 2, 5), 1, 6)
