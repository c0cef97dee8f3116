"""Self-tests of the float64 gradient oracles of arithmetic, concatenation, softmax, the LRN-style
normalizations, upsampling and dropout (reference/gradients_misc.py): central finite differences of the
forward oracles along random directions, the Philox-4x32-10 known-answer vectors, and PyTorch autograd
cross-checks where PyTorch has the operation."""

import numpy as np
import pytest

from . import gradients_misc as GM
from .arithmetic import binary_arithmetic
from .misc import concatenate
from .normalization import cross_channel_norm, local_contrast_norm, spatial_norm
from .resample import upsample_bilinear, upsample_nearest
from .softmax import log_softmax, softmax
from .test_references import _torch, from_t, to_t

H = 1e-6


def _check(f, grad, x, rng, n_dirs=3, tol=1e-7):
    """<g, J v> by central differences equals <grad(x, g), v> for random g, v."""
    y = f(x)
    for _ in range(n_dirs):
        g = rng.standard_normal(y.shape)
        v = rng.standard_normal(x.shape)
        fd = np.sum(g * (f(x + H * v) - f(x - H * v))) / (2 * H)
        an = np.sum(grad(x, g) * v)
        assert abs(fd - an) <= tol * np.sqrt(g.size * v.size) * max(1.0, abs(an)), (fd, an)


# --------------------------------------------------------------------------------------------
# arithmetic

STRIDES = [((1, 1, 1), (1, 1, 1)), ((1, 1, 1), (1, 0, 1)), ((0, 1, 0), (1, 1, 1)), ((1, 0, 0), (0, 1, 1)),
           ((0, 0, 0), (1, 1, 1))]


def _operand(shape, strides, rng):
    n, h, w, c = shape
    tc, ty, tx = strides
    # stride-0 axes get a different extent than the result's: only index 0 is read
    return rng.standard_normal((n, h if ty else 3, w if tx else 2, c if tc else 5))


@pytest.mark.parametrize("op", ['add', 'subtract', 'multiply'])
@pytest.mark.parametrize("ps,ss", STRIDES, ids=str)
def test_arithmetic_gradient_vs_finite_differences(op, ps, ss):
    rng = np.random.default_rng(1)
    shape = (2, 4, 5, 3)
    a, b = _operand(shape, ps, rng), _operand(shape, ss, rng)
    kw = dict(primary_scale=1.5, secondary_scale=-0.75, bias=0.25, primary_strides=ps, secondary_strides=ss)
    out_shape = binary_arithmetic(op, a, b, **kw).shape
    g = rng.standard_normal(out_shape)
    for secondary in (False, True):
        def f(v):
            return binary_arithmetic(op, a if secondary else v, v if secondary else b, **kw)
        _check(f, lambda v, gg: GM.arithmetic_gradient(op, a if secondary else v, v if secondary else b, gg,
                                                       secondary, **kw), b if secondary else a, rng)
        d = GM.arithmetic_gradient(op, a, b, g, secondary, **kw)
        t = ss if secondary else ps
        assert d.shape == (b if secondary else a).shape
        # indices a stride-0 axis never reads get 0
        if not t[1]:
            assert np.all(d[:, 1:] == 0)
        if not t[2]:
            assert np.all(d[:, :, 1:] == 0)
        if not t[0]:
            assert np.all(d[..., 1:] == 0)


@pytest.mark.parametrize("op", ['add', 'subtract', 'multiply'])
def test_arithmetic_gradient_clamp_mask(op):
    """Clipped elements (strictly outside (lo, hi)) get 0; the rest the unclamped derivative."""
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((1, 5, 6, 4)), rng.standard_normal((1, 5, 6, 4))
    g = rng.standard_normal(a.shape)
    r = binary_arithmetic(op, a, b)
    lo, hi = np.quantile(r, 0.3), np.quantile(r, 0.7)
    lo, hi = lo + 1e-3, hi - 1e-3                        # no element on a bound
    for secondary in (False, True):
        d = GM.arithmetic_gradient(op, a, b, g, secondary, minimum_value=lo, maximum_value=hi)
        free = GM.arithmetic_gradient(op, a, b, g, secondary)
        inside = (r > lo) & (r < hi)
        assert np.all(d[~inside] == 0) and np.allclose(d[inside], free[inside])
        _check(lambda v: binary_arithmetic(op, a if secondary else v, v if secondary else b, minimum_value=lo,
                                           maximum_value=hi),
               lambda v, gg: GM.arithmetic_gradient(op, a if secondary else v, v if secondary else b, gg, secondary,
                                                    minimum_value=lo, maximum_value=hi), b if secondary else a, rng)
    with pytest.raises(ValueError):
        GM.arithmetic_gradient('divide', a, b, g)


def test_arithmetic_gradient_vs_torch():
    torch, F = _torch()
    rng = np.random.default_rng(3)
    shape = (2, 4, 5, 3)
    for op in ('add', 'subtract', 'multiply'):
        for ps, ss in STRIDES:
            a, b = _operand(shape, ps, rng), _operand(shape, ss, rng)
            kw = dict(primary_scale=1.25, secondary_scale=0.5, bias=-0.5, primary_strides=ps, secondary_strides=ss)
            out = binary_arithmetic(op, a, b, **kw)
            g = rng.standard_normal(out.shape)
            ta = torch.tensor(a, requires_grad=True)
            tb = torch.tensor(b, requires_grad=True)

            def addr(t, s):
                tc, ty, tx = s
                t = t[:, :1] if not ty else t
                t = t[:, :, :1] if not tx else t
                t = t[..., :1] if not tc else t
                return t.expand(out.shape)
            A, B = 1.25 * addr(ta, ps), 0.5 * addr(tb, ss)
            y = {'add': A + B, 'subtract': A - B, 'multiply': A * B}[op] - 0.5
            y.backward(torch.tensor(g))
            np.testing.assert_allclose(GM.arithmetic_gradient(op, a, b, g, False, **kw), ta.grad.numpy(), 1e-12, 1e-12)
            np.testing.assert_allclose(GM.arithmetic_gradient(op, a, b, g, True, **kw), tb.grad.numpy(), 1e-12, 1e-12)


# --------------------------------------------------------------------------------------------
# concatenation, softmax


def test_concatenation_gradient_vs_finite_differences():
    rng = np.random.default_rng(4)
    counts = [3, 5, 4, 2]
    xs = [rng.standard_normal((2, 3, 4, c)) for c in counts]
    for k in range(len(counts)):
        def f(v, k=k):
            return concatenate(xs[:k] + [v] + xs[k + 1:])
        _check(f, lambda v, g, k=k: GM.concatenation_gradient(g, counts, k), xs[k], rng)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_gradient_vs_finite_differences_and_torch(log):
    rng = np.random.default_rng(5)
    fwd, grad = (log_softmax, GM.log_softmax_gradient) if log else (softmax, GM.softmax_gradient)
    for C in (1, 3, 7):
        x = 2 * rng.standard_normal((2, 3, 4, C))
        _check(fwd, lambda v, g: grad(fwd(v), g), x, rng)
    torch, F = _torch()
    x = rng.standard_normal((2, 3, 4, 6))
    g = rng.standard_normal(x.shape)
    t = to_t(x).clone().requires_grad_(True)
    (F.log_softmax if log else F.softmax)(t, dim=1).backward(to_t(g))
    np.testing.assert_allclose(grad(fwd(x), g), from_t(t.grad), 1e-12, 1e-12)


# --------------------------------------------------------------------------------------------
# normalizations

@pytest.mark.parametrize("n,C", [(1, 3), (2, 5), (3, 4), (4, 7), (5, 3), (6, 9)], ids=str)
def test_cross_channel_gradient_vs_finite_differences(n, C):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 2, C))
    kw = dict(kernel_size=n, alpha=0.7, beta=0.75, delta=1.5)
    _check(lambda v: cross_channel_norm(v, **kw), lambda v, g: GM.cross_channel_norm_gradient(v, g, **kw), x, rng)


def test_cross_channel_gradient_vs_torch():
    torch, F = _torch()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 5, 7))
    g = rng.standard_normal(x.shape)
    for n in (1, 2, 3, 4, 5):
        t = to_t(x).clone().requires_grad_(True)
        F.local_response_norm(t, size=n, alpha=0.9, beta=0.75, k=1.25).backward(to_t(g))
        np.testing.assert_allclose(GM.cross_channel_norm_gradient(x, g, n, 0.9, 0.75, 1.25), from_t(t.grad),
                                   1e-10, 1e-12)


@pytest.mark.parametrize("kw,kh", [(1, 1), (3, 3), (2, 3), (4, 2), (5, 5)], ids=str)
def test_spatial_gradient_vs_finite_differences(kw, kh):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 5, 6, 2))
    p = dict(kw=kw, kh=kh, alpha=0.8, beta=0.75, delta=1.25)
    _check(lambda v: spatial_norm(v, **p), lambda v, g: GM.spatial_norm_gradient(v, g, **p), x, rng)


@pytest.mark.parametrize("kw,kh", [(1, 1), (3, 3), (2, 3), (4, 2), (5, 5)], ids=str)
def test_local_contrast_gradient_vs_finite_differences(kw, kh):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 5, 6, 2))
    p = dict(kw=kw, kh=kh, alpha=0.9, beta=0.6, delta=0.5, pm=0.2, ps=1.3, p0=0.8)
    _check(lambda v: local_contrast_norm(v, **p), lambda v, g: GM.local_contrast_norm_gradient(v, g, **p), x, rng)


def _torch_box_mean(t, kw, kh):
    """Zero-padded KH×KW window mean with MPS's placement (nodes.md §8.3 PyTorch recipe)."""
    import torch.nn.functional as F
    return F.avg_pool2d(F.pad(t, (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2)), (kh, kw), stride=1)


def test_spatial_and_local_contrast_gradients_vs_torch():
    torch, F = _torch()
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 6, 5, 3))
    g = rng.standard_normal(x.shape)
    for kw, kh in ((3, 3), (2, 4), (5, 3)):
        t = to_t(x).clone().requires_grad_(True)
        (t * (1.25 + 0.8 * _torch_box_mean(t * t, kw, kh)) ** -0.75).backward(to_t(g))
        np.testing.assert_allclose(GM.spatial_norm_gradient(x, g, kw, kh, 0.8, 0.75, 1.25), from_t(t.grad),
                                   1e-10, 1e-12)
        t = to_t(x).clone().requires_grad_(True)
        m = _torch_box_mean(t, kw, kh)
        v = torch.clamp(_torch_box_mean(t * t, kw, kh) - m * m, min=0)
        (0.2 + 1.3 * (t - 0.8 * m) * (0.5 + 0.9 * v) ** -0.6).backward(to_t(g))
        np.testing.assert_allclose(GM.local_contrast_norm_gradient(x, g, kw, kh, 0.9, 0.6, 0.5, 0.2, 1.3, 0.8),
                                   from_t(t.grad), 1e-9, 1e-11)


# --------------------------------------------------------------------------------------------
# upsampling

@pytest.mark.parametrize("fx,fy", [(1, 1), (2, 3), (3, 2), (4, 4)], ids=str)
def test_upsampling_gradients_vs_finite_differences(fx, fy):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 5, 2))
    _check(lambda v: upsample_nearest(v, fx, fy), lambda v, g: GM.upsample_nearest_gradient(g, fx, fy), x, rng)
    for align in (False, True):
        _check(lambda v: upsample_bilinear(v, fx, fy, align),
               lambda v, g: GM.upsample_bilinear_gradient(g, fx, fy, align), x, rng)


def test_upsampling_gradients_vs_torch():
    torch, F = _torch()
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 4, 5, 3))
    for fx, fy in ((2, 2), (3, 2), (2, 4)):
        g = rng.standard_normal((2, 4 * fy, 5 * fx, 3))
        t = to_t(x).clone().requires_grad_(True)
        F.interpolate(t, scale_factor=(fy, fx), mode='nearest').backward(to_t(g))
        np.testing.assert_allclose(GM.upsample_nearest_gradient(g, fx, fy), from_t(t.grad), 1e-12, 1e-12)
        for align in (False, True):
            t = to_t(x).clone().requires_grad_(True)
            F.interpolate(t, scale_factor=(fy, fx), mode='bilinear', align_corners=align).backward(to_t(g))
            np.testing.assert_allclose(GM.upsample_bilinear_gradient(g, fx, fy, align), from_t(t.grad), 1e-10, 1e-12)


# --------------------------------------------------------------------------------------------
# dropout

def test_philox_known_answers():
    """The Random123 known-answer vectors of Philox-4x32-10."""
    f = 0xFFFFFFFF
    cases = [((0, 0, 0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((f, f, f, f, f, f), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for args, want in cases:
        assert [int(v) for v in GM.philox4x32_10(*args)] == list(want)


def test_dropout_mask_properties():
    shape = (3, 20, 30, 7)
    for p in (0.1, 0.5, 0.8):
        m = GM.dropout_mask(shape, p, seed=11)
        n = m.size
        assert m.shape == shape and set(np.unique(m)) <= {0, 1}
        assert abs(m.mean() - p) <= 5 * np.sqrt(p * (1 - p) / n)     # binomial 5-sigma bound
    assert np.array_equal(GM.dropout_mask(shape, 0.5, 7), GM.dropout_mask(shape, 0.5, 7))
    assert not np.array_equal(GM.dropout_mask(shape, 0.5, 7), GM.dropout_mask(shape, 0.5, 8))
    assert GM.dropout_mask(shape, 1.0, 3).all()
    assert GM.dropout_mask(shape, 0.5, 3, (0, 0, 1)).shape == (3, 1, 1, 7)
    assert GM.dropout_mask(shape, 0.5, 3, (1, 0, 0)).shape == (3, 1, 30, 1)
    # each image draws its own mask
    m = GM.dropout_mask((2, 8, 8, 4), 0.5, 5)
    assert not np.array_equal(m[0], m[1])


def test_dropout_gradient_vs_torch():
    torch, F = _torch()
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 4, 5, 3))
    g = rng.standard_normal(x.shape)
    mask = GM.dropout_mask(x.shape, 0.6, 2, (1, 1, 0))
    t = torch.tensor(x, requires_grad=True)
    (t * torch.tensor(np.broadcast_to(mask, x.shape).astype(np.float64)) / 0.6).backward(torch.tensor(g))
    np.testing.assert_allclose(GM.dropout_gradient(g, mask, 0.6), t.grad.numpy(), 1e-15, 0)
    np.testing.assert_allclose(GM.dropout_forward(x, mask, 0.6),
                               (t * torch.tensor(np.broadcast_to(mask, x.shape) * 1.0) / 0.6).detach().numpy(), 1e-15, 0)
