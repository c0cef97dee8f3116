"""Self-tests of the float64 gradient oracles (nodes.md §5.2-5.6, §6.2-6.3): central finite differences
of the forward oracles, the chosen conventions (max-pool ties, kinks), a naive-loop max-pool gradient
with ties, and PyTorch autograd cross-checks."""

import math

import numpy as np
import pytest

from . import geometry as G
from .neuron import NEURON_DEFAULTS, neuron, neuron_gradient, neuron_kinks
from .pooling import (average_pool2d_gradient, l2_pool2d_gradient, max_pool2d_gradient, pool2d,
                      pool2d_gradient)
from .test_references import _geoms, _rng, _torch, close, from_t, to_t, tpad

H_FD = 1e-6          # finite-difference step; max-pool inputs keep distinct values >= 1e-3 apart


def _fd_gradient(f, x, g, h=H_FD):
    """Central finite differences of <g, f(x)> w.r.t. every element of x, for an f that treats images and
    channels independently (pooling): perturbing pixel (y, x) of every image and channel at once gives
    all N·C partial derivatives of that pixel from one pair of forward calls."""
    dx = np.zeros_like(x)
    for yy in range(x.shape[1]):
        for xx in range(x.shape[2]):
            xp, xm = x.copy(), x.copy()
            xp[:, yy, xx, :] += h
            xm[:, yy, xx, :] -= h
            dx[:, yy, xx, :] = np.sum(g * (f(xp) - f(xm)), axis=(1, 2)) / (2 * h)
    return dx


def _check_projections(f, grad, x, rng, n_dirs=3, h=H_FD):
    """<g, J v> by central differences along random directions v (no independence assumed) equals
    <J^T g, v> from the gradient oracle."""
    y = f(x)
    for _ in range(n_dirs):
        g = rng.standard_normal(y.shape)
        v = rng.standard_normal(x.shape)
        fd = np.sum(g * (f(x + h * v) - f(x - h * v))) / (2 * h)
        an = np.sum(grad(x, g) * v)
        assert abs(fd - an) <= 1e-7 * np.sqrt(g.size * v.size), (fd, an)


def _distinct(shape, rng, step=1e-3):
    """Tie-free input: a random permutation of distinct values >= step apart, none within step/2 of 0
    (zero-edge padding taps read 0 and compete)."""
    n = int(np.prod(shape))
    v = rng.permutation(n) - n // 2
    v[v >= 0] += 1                                            # skip 0
    return (v * step * rng.uniform(1.0, 1.5)).reshape(shape)


# --------------------------------------------------------------------------------------------
# pooling: geometry table

# (batch, H, W, C, kernel_hw, stride_hw, dilation_hw); strides below, equal to and above the kernel
POOL_CASES = [
    (2, 7, 9, 3, (3, 2), (2, 1), (1, 1)),      # stride < kernel (overlapping windows)
    (1, 6, 6, 1, (2, 2), (2, 2), (1, 1)),      # stride = kernel
    (3, 5, 7, 5, (2, 3), (3, 4), (1, 1)),      # stride > kernel (uncovered pixels)
    (2, 5, 4, 3, (3, 3), (1, 1), (1, 1)),
]
DILATED_CASES = [
    (2, 9, 7, 3, (2, 3), (1, 2), (3, 2)),
    (1, 8, 9, 5, (3, 2), (2, 3), (2, 2)),
]
METHODS = [G.SIZE_VALID_ONLY, G.SIZE_SAME, G.SIZE_SAME | G.ADD_REMAINDER_TO_BOTTOM_RIGHT,
           G.SIZE_FULL | G.ADD_REMAINDER_TO_TOP_RIGHT, G.SIZE_FULL | G.ALIGN_TOP_LEFT,
           G.SIZE_FULL | G.ALIGN_BOTTOM_RIGHT, G.SIZE_SAME | G.ALIGN_BOTTOM_RIGHT]


def _case_id(case):
    n, h, w, c, k, s, d = case
    return f"n{n}-{h}x{w}x{c}-k{k[0]}{k[1]}-s{s[0]}{s[1]}" + (f"-d{d[0]}{d[1]}" if d != (1, 1) else "")


def _geometries(case):
    """(pad, out_hw, pad_after) per padding method that gives a result, plus hand-written pads: asymmetric,
    negative (crop), and windows entirely in the padding before and after the image."""
    n, h, w, c, k, s, d = case
    out = []
    for m in METHODS:
        try:
            g = G.window_geometry((h, w), k, s, d, m)
        except ValueError:
            continue
        out.append((g['pad'], g['out_hw'], g['pad_after']))
    ke = (G.extent(k[0], d[0]), G.extent(k[1], d[1]))
    for pad in ((ke[0] + 1, -1), (-1, ke[1])):               # first windows wholly before the image
        D = tuple((S + max(p, 0) + ke_ - 1) // st + 1 for S, p, ke_, st in zip((h, w), pad, ke, s))
        out.append((pad, D, tuple(G.pad_after(S, K, st, dd, p, DD)
                                  for S, K, st, dd, p, DD in zip((h, w), k, s, d, pad, D))))
    return out


def _has_outside_window(case, pad, out_hw):
    n, h, w, c, k, s, d = case
    iy = G.tap_indices(h, k[0], s[0], d[0], pad[0], out_hw[0])
    ix = G.tap_indices(w, k[1], s[1], d[1], pad[1], out_hw[1])
    return (~((iy >= 0) & (iy < h)).any(axis=1)).any() or (~((ix >= 0) & (ix < w)).any(axis=1)).any()


def test_pool_geometries_reach_padding_only_windows():
    """The table exercises windows that lie entirely in the padding (and so does every case)."""
    for case in POOL_CASES + DILATED_CASES:
        geoms = _geometries(case)
        assert len(geoms) >= 5
        assert sum(_has_outside_window(case, p, o) for p, o, _ in geoms) >= 2


def _variants(mode, geometry):
    """Keyword sets for every edge / divisor mode of `mode` on one geometry."""
    pad, out_hw, pad_after = geometry
    base = dict(pad=pad, out_hw=out_hw)
    if mode == 'max':
        return [dict(base, edge_mode=e) for e in ('clamp', 'zero')]
    if mode == 'l2':
        return [dict(base, edge_mode=e) for e in ('clamp', 'zero')]
    return ([dict(base, edge_mode='zero'), dict(base, edge_mode='clamp')]
            + [dict(base, edge_mode='clamp', zero_pad_hw=z) for z in ((1, 0), (1, 2))]
            + [dict(base, edge_mode=e, exclude_edges=True, pad_after=pa)
               for e in ('clamp', 'zero') for pa in (None, (0, 1))])


@pytest.mark.parametrize("mode", ['max', 'average', 'l2'])
@pytest.mark.parametrize("case", POOL_CASES, ids=_case_id)
def test_pool_gradient_vs_finite_differences(case, mode):
    n, h, w, c, k, s, d = case
    rng = _rng(POOL_CASES.index(case) * 3 + ['max', 'average', 'l2'].index(mode))
    for geometry in _geometries(case):
        for kw in _variants(mode, geometry):
            x = _distinct((n, h, w, c), rng) if mode == 'max' else rng.standard_normal((n, h, w, c))

            def f(v):
                return pool2d(v, mode, k, s, dilation_hw=d, **kw)

            def grad(v, gg):
                return pool2d_gradient(v, gg, mode, k, s, dilation_hw=d, **kw)

            g = rng.standard_normal(f(x).shape)
            dx = grad(x, g)
            assert dx.shape == x.shape
            close(dx, _fd_gradient(f, x, g), rtol=1e-6, atol=1e-7)
            _check_projections(f, grad, x, rng, n_dirs=1)


@pytest.mark.parametrize("case", DILATED_CASES, ids=_case_id)
def test_dilated_max_pool_gradient_vs_finite_differences(case):
    n, h, w, c, k, s, d = case
    rng = _rng(7)
    for pad, out_hw, _ in _geometries(case):
        for edge in ('clamp', 'zero'):
            x = _distinct((n, h, w, c), rng)
            f = lambda v: pool2d(v, 'max', k, s, pad, out_hw, d, edge)        # noqa: E731
            g = rng.standard_normal(f(x).shape)
            dx = max_pool2d_gradient(x, g, k, s, pad, out_hw, d, edge)
            close(dx, _fd_gradient(f, x, g), rtol=1e-6, atol=1e-7)


def test_pool_gradient_defaults_and_wrappers():
    """Defaults match pool2d's (filter-size stride, sizeSame, clamp); the wrappers pass their arguments."""
    rng = _rng(8)
    x = rng.standard_normal((2, 7, 6, 3))
    for mode in ('max', 'average', 'l2'):
        g = rng.standard_normal(pool2d(x, mode, (2, 3)).shape)
        geo = G.window_geometry((7, 6), (2, 3), (2, 3), (1, 1), G.SIZE_SAME)
        close(pool2d_gradient(x, g, mode, (2, 3)),
              pool2d_gradient(x, g, mode, (2, 3), (2, 3), geo['pad'], geo['out_hw'], edge_mode='clamp'))
    geo = G.window_geometry((7, 6), (3, 3), (1, 2), (1, 1), G.SIZE_FULL)
    kw = dict(pad=geo['pad'], out_hw=geo['out_hw'])
    g = rng.standard_normal((2,) + geo['out_hw'] + (3,))
    close(max_pool2d_gradient(x, g, (3, 3), (1, 2), edge_mode='zero', **kw),
          pool2d_gradient(x, g, 'max', (3, 3), (1, 2), edge_mode='zero', **kw))
    close(average_pool2d_gradient(x, g, (3, 3), (1, 2), edge_mode='clamp', zero_pad_hw=(1, 1), **kw),
          pool2d_gradient(x, g, 'average', (3, 3), (1, 2), edge_mode='clamp', zero_pad_hw=(1, 1), **kw))
    close(average_pool2d_gradient(x, g, (3, 3), (1, 2), exclude_edges=True, pad_after=(1, 0), **kw),
          pool2d_gradient(x, g, 'average', (3, 3), (1, 2), exclude_edges=True, pad_after=(1, 0), **kw))
    close(l2_pool2d_gradient(x, g, (3, 3), (1, 2), **kw), pool2d_gradient(x, g, 'l2', (3, 3), (1, 2), **kw))
    # the divisor modes differ (so the wrappers' keywords are not silently dropped)
    a = average_pool2d_gradient(x, g, (3, 3), (1, 2), edge_mode='zero', **kw)
    b = average_pool2d_gradient(x, g, (3, 3), (1, 2), edge_mode='clamp', **kw)
    assert np.abs(a - b).max() > 1e-3
    with pytest.raises(ValueError):
        pool2d_gradient(x, g[:, :-1], 'max', (3, 3), (1, 2), **kw)
    with pytest.raises(ValueError):
        pool2d_gradient(x, g, 'min', (3, 3), (1, 2), **kw)


def test_pool_gradient_uncovered_pixels_and_empty_windows():
    """Pixels no window reads get 0; average windows with N = 0 and L2 windows with Y = 0 give nothing."""
    rng = _rng(9)
    x = rng.standard_normal((2, 7, 8, 3))
    g = rng.standard_normal((2, 2, 2, 3))
    covered = np.zeros((7, 8), bool)
    covered[np.ix_([0, 1, 4, 5], [0, 1, 5, 6])] = True                 # 2x2 windows, stride (4, 5)
    for mode in ('max', 'average', 'l2'):
        dx = pool2d_gradient(x, g, mode, (2, 2), (4, 5), pad=(0, 0), out_hw=(2, 2))
        assert np.all(dx[:, ~covered] == 0)
        if mode == 'max':                                              # one tap per window and channel
            assert np.all(np.count_nonzero(dx, axis=(1, 2)) == 4)
        else:
            assert np.all(dx[:, covered] != 0)
    # full / top-left alignment: the first window lies entirely before the image
    geo = G.window_geometry((7, 8), (3, 3), (1, 1), (1, 1), G.SIZE_FULL | G.ALIGN_TOP_LEFT)
    kw = dict(pad=geo['pad'], out_hw=geo['out_hw'])
    g = np.zeros((2,) + geo['out_hw'] + (3,))
    g[:, 0, 0] = 1.0
    assert np.all(pool2d_gradient(x, g, 'average', (3, 3), (1, 1), **kw) == 0)        # N = 0
    assert np.all(pool2d_gradient(x, g, 'l2', (3, 3), (1, 1), **kw) == 0)            # Y = 0
    assert np.all(pool2d_gradient(x, g, 'max', (3, 3), (1, 1), edge_mode='zero', **kw) == 0)
    dx = pool2d_gradient(x, g, 'max', (3, 3), (1, 1), edge_mode='clamp', **kw)          # edge replication
    expect = np.zeros_like(x)
    expect[:, 0, 0] = 1.0
    close(dx, expect)
    # an all-zero in-image L2 window contributes 0, not NaN
    z = x.copy()
    z[:, :2, :2] = 0.0
    dx = pool2d_gradient(z, np.ones((2, 4, 4, 3)), 'l2', (2, 2), (2, 2), pad=(0, 0), out_hw=(4, 4))
    assert np.all(np.isfinite(dx)) and np.all(dx[:, :2, :2] == 0)


# --------------------------------------------------------------------------------------------
# max pooling: ties (nodes.md §5.3 chosen definition)

def _naive_max_gradient(x, g, k, s, d, pad, out_hw, edge):
    """Loop implementation of §5.3/§5.5 with the row-major first-maximum rule, independent of the oracle."""
    N, H, W, C = x.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for i in range(out_hw[0]):
            for j in range(out_hw[1]):
                taps = [(s[0] * i - pad[0] + d[0] * p, s[1] * j - pad[1] + d[1] * q)
                        for p in range(k[0]) for q in range(k[1])]
                inside = [t for t in taps if 0 <= t[0] < H and 0 <= t[1] < W]
                if edge == 'zero':
                    cands = [(t if t in inside else None) for t in taps]
                elif inside:
                    cands = inside
                else:
                    cands = [(min(max(t[0], 0), H - 1), min(max(t[1], 0), W - 1)) for t in taps]
                for c in range(C):
                    best = src = None
                    for t in cands:
                        v = 0.0 if t is None else x[n, t[0], t[1], c]
                        if best is None or v > best:       # strict: the first maximum stays
                            best, src = v, t
                    if src is not None:
                        dx[n, src[0], src[1], c] += g[n, i, j, c]
    return dx


@pytest.mark.parametrize("case", POOL_CASES[:3] + DILATED_CASES, ids=_case_id)
def test_max_pool_gradient_ties_vs_naive_loops(case):
    n, h, w, c, k, s, d = case
    rng = _rng(11)
    for pad, out_hw, _ in _geometries(case):
        for edge in ('clamp', 'zero'):
            x = rng.integers(-1, 2, (n, h, w, c)).astype(np.float64)      # many ties, also with padding 0
            x[rng.random(x.shape) < 0.2] = -math.inf                      # all-(-inf) windows stay in the image
            g = rng.standard_normal((n,) + tuple(out_hw) + (c,))
            close(max_pool2d_gradient(x, g, k, s, pad, out_hw, d, edge),
                  _naive_max_gradient(x, g, k, s, d, pad, out_hw, edge))


def test_max_pool_gradient_constant_input_goes_to_first_tap():
    """A constant input ties every tap: each window's gradient goes to its first (in-image) tap."""
    rng = _rng(12)
    x = np.full((2, 6, 7, 3), 0.75)
    # valid, stride = kernel: the first tap of window (i, j) is pixel (2i, 3j)
    g = rng.standard_normal((2, 3, 2, 3))
    dx = max_pool2d_gradient(x, g, (2, 3), (2, 3), pad=(0, 0), out_hw=(3, 2))
    expect = np.zeros_like(x)
    expect[:, 0:6:2, 0:6:3] = g
    close(dx, expect, rtol=0, atol=0)
    # overlapping windows, stride 1: window (i, j) starts at pixel (i, j), so dX[i, j] = G[i, j]
    g = rng.standard_normal((2, 5, 5, 3))
    dx = max_pool2d_gradient(x, g, (2, 3), (1, 1), pad=(0, 0), out_hw=(5, 5))
    expect = np.zeros_like(x)
    expect[:, :5, :5] = g
    close(dx, expect, rtol=0, atol=0)
    # padded windows (sizeSame, P = (1, 1)): the first in-image tap is (max(i-1, 0), max(j-1, 0)) in clamp
    # mode and for positive values in zero mode (padding reads 0 < 0.75)
    g = rng.standard_normal((2, 6, 7, 3))
    expect = np.zeros_like(x)
    for i in range(6):
        for j in range(7):
            expect[:, max(i - 1, 0), max(j - 1, 0)] += g[:, i, j]
    for edge in ('clamp', 'zero'):
        close(max_pool2d_gradient(x, g, (3, 3), (1, 1), pad=(1, 1), out_hw=(6, 7), edge_mode=edge), expect)
    # zero mode with a constant 0: the padding tap comes first and wins in the border windows
    dx = max_pool2d_gradient(np.zeros_like(x), g, (3, 3), (1, 1), pad=(1, 1), out_hw=(6, 7), edge_mode='zero')
    expect = np.zeros_like(x)
    expect[:, :5, :6] = g[:, 1:, 1:]
    close(dx, expect)
    # zero mode with a negative constant: every border window's maximum is a padding tap
    dx = max_pool2d_gradient(-x, g, (3, 3), (1, 1), pad=(1, 1), out_hw=(6, 7), edge_mode='zero')
    expect = np.zeros_like(x)
    expect[:, :4, :5] = g[:, 1:5, 1:6]
    close(dx, expect)


# --------------------------------------------------------------------------------------------
# pooling: PyTorch autograd

def _torch_grad(fn, x, g):
    """dX of <g, fn(x)> by PyTorch autograd, fn on an NCHW float64 tensor; NHWC in and out."""
    torch, _ = _torch()
    xt = to_t(x).clone().requires_grad_(True)
    y = fn(xt)
    y.backward(to_t(g))
    return from_t(xt.grad)


def test_max_pool_gradient_vs_torch():
    torch, F = _torch()
    rng = _rng(20)
    n_checked = 0
    for (shape, k, s, d) in (((7, 9), (2, 3), (2, 2), (1, 1)), ((6, 5), (3, 2), (1, 3), (1, 1)),
                             ((9, 8), (2, 2), (2, 1), (3, 2))):
        for m, geo in _geoms(shape, k, s, d):
            x = rng.standard_normal((2,) + shape + (3,))
            g = rng.standard_normal((2,) + geo['out_hw'] + (3,))
            kw = dict(pad=geo['pad'], out_hw=geo['out_hw'], dilation_hw=d)
            pads = geo['pads']
            # zero edge: zero padding competes; a padding winner's gradient lands in the cropped padding
            ref = _torch_grad(lambda t: F.max_pool2d(tpad(t, *pads), k, s, dilation=d), x, g)
            close(pool2d_gradient(x, g, 'max', k, s, edge_mode='zero', **kw), ref)
            # clamp: edge replication (d = 1: a replicated tap ties with its in-window source pixel, same
            # destination); dilated: -inf padding where every window has an in-image tap
            if d == (1, 1):
                ref = _torch_grad(lambda t: F.max_pool2d(tpad(t, *pads, mode='replicate'), k, s), x, g)
            elif not np.isinf(from_t(F.max_pool2d(tpad(to_t(x), *pads, value=-math.inf), k, s,
                                                  dilation=d))).any():
                ref = _torch_grad(lambda t: F.max_pool2d(tpad(t, *pads, value=-math.inf), k, s, dilation=d), x, g)
            else:
                continue
            close(pool2d_gradient(x, g, 'max', k, s, edge_mode='clamp', **kw), ref)
            n_checked += 1
    assert n_checked >= 60


def test_average_pool_gradient_vs_torch():
    torch, F = _torch()
    rng = _rng(21)
    n_sym = 0
    for shape, k, s in (((9, 11), (3, 5), (1, 1)), ((9, 7), (3, 3), (2, 2)), ((7, 8), (2, 3), (2, 1))):
        for m, geo in _geoms(shape, k, s, (1, 1)):
            x = rng.standard_normal((2,) + shape + (3,))
            g = rng.standard_normal((2,) + geo['out_hw'] + (3,))
            kw = dict(pad=geo['pad'], out_hw=geo['out_hw'])
            # zero edge, any P: explicit zero padding, divisor KH·KW
            ref = _torch_grad(lambda t: F.avg_pool2d(tpad(t, *geo['pads']), k, s), x, g)
            close(average_pool2d_gradient(x, g, k, s, edge_mode='zero', **kw), ref)
            py, pya, px, pxa = geo['pads']
            if not (py == pya and px == pxa and 0 <= py <= k[0] // 2 and 0 <= px <= k[1] // 2):
                continue
            if tuple((S + 2 * p - K) // st + 1 for S, p, K, st in zip(shape, (py, px), k, s)) != geo['out_hw']:
                continue
            n_sym += 1
            incl = _torch_grad(lambda t: F.avg_pool2d(t, k, s, padding=(py, px), count_include_pad=True), x, g)
            excl = _torch_grad(lambda t: F.avg_pool2d(t, k, s, padding=(py, px), count_include_pad=False), x, g)
            close(average_pool2d_gradient(x, g, k, s, edge_mode='clamp', **kw), excl)
            close(average_pool2d_gradient(x, g, k, s, edge_mode='clamp', zero_pad_hw=(py, px), **kw), incl)
            for edge in ('clamp', 'zero'):
                close(average_pool2d_gradient(x, g, k, s, edge_mode=edge, exclude_edges=True, **kw), incl)
            if py or px:
                assert np.abs(incl - excl).max() > 1e-3
    assert n_sym >= 4


def test_l2_pool_gradient_vs_torch():
    torch, F = _torch()
    rng = _rng(22)
    for shape, k, s in (((9, 11), (2, 3), (2, 3)), ((7, 6), (3, 2), (1, 1)), ((8, 9), (2, 2), (3, 2))):
        geo = G.window_geometry(shape, k, s, (1, 1), G.SIZE_VALID_ONLY)
        x = rng.standard_normal((2,) + shape + (5,))
        g = rng.standard_normal((2,) + geo['out_hw'] + (5,))
        ref = _torch_grad(lambda t: F.lp_pool2d(t, 2, k, s), x, g)
        close(l2_pool2d_gradient(x, g, k, s, geo['pad'], geo['out_hw']), ref, rtol=1e-8)
        # padded geometry: sqrt(avg_pool(x², zero padding)·KH·KW), away from zero windows
        for m, geo in _geoms(shape, k, s, (1, 1)):
            kk = k[0] * k[1]
            out = F.avg_pool2d(tpad(to_t(x) ** 2, *geo['pads']), k, s)
            if (out == 0).any():
                continue
            g = rng.standard_normal((2,) + geo['out_hw'] + (5,))
            ref = _torch_grad(lambda t: torch.sqrt(F.avg_pool2d(tpad(t * t, *geo['pads']), k, s) * kk), x, g)
            close(l2_pool2d_gradient(x, g, k, s, geo['pad'], geo['out_hw']), ref, rtol=1e-8)


# --------------------------------------------------------------------------------------------
# neurons (nodes.md §6.2)

# (name, a, b, c, domain, data): 'any' standard normal * 3, 'pos' strictly positive
NEURON_CASES = [
    ('none', None, None, None, 'any', None),
    ('relu', None, None, None, 'any', None),
    ('relu', 0.1, None, None, 'any', None),
    ('linear', None, None, None, 'any', None),
    ('linear', -1.5, 0.25, None, 'any', None),
    ('sigmoid', None, None, None, 'any', None),
    ('hard_sigmoid', None, None, None, 'any', None),
    ('hard_sigmoid', 1 / 6, 0.4, None, 'any', None),
    ('tanh', None, None, None, 'any', None),
    ('tanh', 1.7, 0.6, None, 'any', None),
    ('absolute', None, None, None, 'any', None),
    ('soft_plus', None, None, None, 'any', None),
    ('soft_plus', 0.5, 2.0, None, 'any', None),
    ('soft_sign', None, None, None, 'any', None),
    ('elu', None, None, None, 'any', None),
    ('elu', 0.3, None, None, 'any', None),
    ('prelu', None, None, None, 'any', 'per-channel'),
    ('prelu', None, None, None, 'any', 'one'),
    ('relu_n', None, None, None, 'any', None),
    ('relu_n', 0.0, 2.0, None, 'any', None),
    ('relu_n', 0.2, 1.5, None, 'any', None),
    ('power', None, None, None, 'any', None),
    ('power', 0.5, 1.0, 2.0, 'any', None),
    ('power', 2.0, 0.5, 0.5, 'pos', None),
    ('power', None, None, 3.0, 'any', None),
    ('power', 1.0, 1.0, -1.5, 'pos', None),
    ('exponential', None, None, None, 'any', None),
    ('exponential', 0.5, -1.0, 2.0, 'any', None),
    ('exponential', -0.7, 0.2, 0.3, 'any', None),
    ('logarithm', None, None, None, 'pos', None),
    ('logarithm', 2.0, 0.1, 10.0, 'pos', None),
    ('logarithm', 0.5, 0.2, 0.5, 'pos', None),
]


def _kinks(name, a, b):
    return neuron_kinks(name, a, b)


def _neuron_input(rng, shape, name, a, b, domain):
    x = rng.standard_normal(shape) * 3
    for k in _kinks(name, a, b):
        x[np.abs(x - k) < 1e-2] = k + 0.37
    if domain == 'pos':
        x = np.abs(x) + 0.1
    return x


def _neuron_id(case):
    name, a, b, c, domain, data = case
    params = "".join(f"-{p}{v:g}" for p, v in zip("abc", (a, b, c)) if v is not None)
    return name + params + (f"-{data}" if data else "")


def _slopes(kind, C, rng):
    if kind is None:
        return None
    return rng.uniform(0.05, 0.9, C + 2) if kind == 'per-channel' else [0.3]


@pytest.mark.parametrize("case", NEURON_CASES, ids=_neuron_id)
def test_neuron_gradient_vs_finite_differences(case):
    name, a, b, c, domain, data = case
    rng = _rng(30)
    x = _neuron_input(rng, (2, 3, 4, 5), name, a, b, domain)
    slopes = _slopes(data, 5, rng)
    g = rng.standard_normal(x.shape)
    dx = neuron_gradient(name, x, g, a, b, c, slopes)
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    fd = (neuron(x + h, name, a, b, c, slopes) - neuron(x - h, name, a, b, c, slopes)) / (2 * h)
    close(dx, g * fd, rtol=1e-6, atol=1e-8)
    assert np.all(np.isfinite(dx))
    # the derivative is not trivially G (except for none and the default linear / power)
    if (name, a, b, c) not in (('none', None, None, None), ('linear', None, None, None),
                               ('power', None, None, None)):
        assert np.abs(dx - g).max() > 1e-3


def test_neuron_gradient_type_codes_defaults_and_errors():
    rng = _rng(31)
    x = rng.standard_normal((2, 3, 4, 5))
    g = rng.standard_normal(x.shape)
    close(neuron_gradient(5, x, g), neuron_gradient('tanh', x, g, 1.0, 1.0))
    close(neuron_gradient(11, x, g), neuron_gradient('relu_n', x, g, 1.0, 6.0))
    close(neuron_gradient('hard_sigmoid', x, g), neuron_gradient('hard_sigmoid', x, g, 0.2, 0.5))
    close(neuron_gradient('none', x, g), g)
    close(neuron_gradient('linear', x, g, 2.5), 2.5 * g)
    close(neuron_gradient('power', x, g), g)                            # identity power
    close(neuron_gradient('exponential', x, g), g * np.exp(x))
    close(neuron_gradient('logarithm', np.abs(x) + 0.1, g), g / (np.abs(x) + 0.1))
    with pytest.raises(ValueError):
        neuron_gradient('gelu_unknown', x, g)
    with pytest.raises(ValueError):
        neuron_gradient('relu', x, g[:, :2])
    with pytest.raises(ValueError):
        neuron_gradient('prelu', x, g)                                  # no slopes
    with pytest.raises(ValueError):
        neuron_gradient('prelu', x, g, data=[0.1, 0.2])                # fewer than C


def test_neuron_gradient_chosen_conventions_at_kinks():
    """nodes.md §6.2 chosen values at the non-differentiable points."""
    def d(name, u, a=None, b=None, c=None, data=None):
        v = np.asarray(u, np.float64).reshape(1, 1, 1, -1)
        return neuron_gradient(name, v, np.ones_like(v), a, b, c, data).ravel()

    np.testing.assert_array_equal(d('absolute', [-2.0, 0.0, 3.0]), [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(d('relu', [-1.0, 0.0]), [0.0, 1.0])                  # u >= 0 branch
    np.testing.assert_array_equal(d('relu', [-1.0, 0.0], 0.1), [0.1, 1.0])
    np.testing.assert_array_equal(d('prelu', [-1.0, 0.0, -2.0], data=[0.2, 0.3, 0.4]), [0.2, 1.0, 0.4])
    np.testing.assert_array_equal(d('elu', [0.0], 0.5), [1.0])
    # hard sigmoid: a·[0 < a·u + b < 1], strict at both kinks (u = -2.5 and u = 2.5 for a = 0.2, b = 0.5)
    np.testing.assert_allclose(d('hard_sigmoid', [-2.5, -2.4, 2.4, 2.5, 3.0]), [0, 0.2, 0.2, 0, 0])
    # reluN: (1 if u >= 0 else a)·[r < b]
    np.testing.assert_array_equal(d('relu_n', [-3.0, 0.0, 5.9, 6.0, 7.0]), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(d('relu_n', [-3.0, 1.0, 2.0], 0.25, 2.0), [0.25, 1, 0])
    np.testing.assert_array_equal(d('relu_n', [-3.0], 1.0, -2.5), [1.0])             # r = -3 < b
    np.testing.assert_array_equal(d('relu_n', [-2.0], 1.0, -2.5), [0.0])             # r = -2 >= b
    # power with c = 1 is a·1 even at a zero base; c < 1 at a zero base: inf per IEEE-754
    np.testing.assert_array_equal(d('power', [0.0, 2.0], 3.0, 0.0, 1.0), [3.0, 3.0])
    assert d('power', [0.0], 1.0, 0.0, 0.5)[0] == np.inf
    # exponential with c = 1 is constant: derivative 0; logarithm base 1: division by ln 1 = 0
    np.testing.assert_array_equal(d('exponential', [-1.0, 2.0], 1.0, 0.0, 1.0), [0.0, 0.0])
    assert np.all(np.isinf(d('logarithm', [2.0], 1.0, 0.0, 1.0)))
    assert d('logarithm', [0.0])[0] == np.inf
    assert np.isnan(d('power', [-1.0], 1.0, 0.0, 0.5)[0])


def test_neuron_gradient_stable_tails():
    """σ' and tanh' keep their relative accuracy in the tails (no 1 − σ cancellation); no NaN."""
    u = np.array([-800.0, -40.0, 40.0, 800.0]).reshape(1, 1, 1, 4)
    g = np.ones_like(u)
    s = neuron_gradient('sigmoid', u, g).ravel()
    close(s[1:3], [math.exp(-40) / (1 + math.exp(-40)) ** 2] * 2, rtol=1e-12, atol=0)
    assert s[0] == 0 and s[3] == 0
    t = neuron_gradient('tanh', u / 10, g, 1.0, 1.0).ravel()
    close(t[1:3], [4 * math.exp(-8) / (1 + math.exp(-8)) ** 2] * 2, rtol=1e-12, atol=0)
    assert np.all(np.isfinite(neuron_gradient('tanh', u, g))) and np.all(neuron_gradient('tanh', u, g) >= 0)
    sp = neuron_gradient('soft_plus', u, g, 0.5, 2.0).ravel()
    close(sp, [0.0, 2 * math.exp(-80) / (1 + math.exp(-80)) * 0.5, 1.0 / (1 + math.exp(-80)), 1.0], rtol=1e-12, atol=0)
    assert np.all(np.isfinite(neuron_gradient('elu', u, g)))


def test_neuron_gradient_vs_torch():
    torch, F = _torch()
    rng = _rng(32)
    x = rng.standard_normal((2, 5, 3, 7)) * 3
    x[np.abs(x) < 1e-2] = 0.5
    for k in (2.0, 6.0, -3.0, 3.0):                       # relu6 / hardtanh(0, 2) / hard sigmoid kinks
        x[np.abs(x - k) < 1e-2] = k + 0.37
    pos = np.abs(x) + 0.2
    g = rng.standard_normal(x.shape)
    slopes = rng.uniform(0.1, 0.9, 7)
    a, b, c = 0.7, 1.3, 2.5

    def tgrad(fn, v):
        t = torch.from_numpy(v).clone().requires_grad_(True)
        fn(t).backward(torch.from_numpy(g))
        return t.grad.numpy()

    def nchw(fn):            # F.prelu wants the channel axis at 1
        return lambda t: fn(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    cases = [
        (neuron_gradient('relu', x, g), tgrad(F.relu, x)),
        (neuron_gradient('relu', x, g, 0.2), tgrad(lambda t: F.leaky_relu(t, 0.2), x)),
        (neuron_gradient('elu', x, g), tgrad(F.elu, x)),
        (neuron_gradient('elu', x, g, a), tgrad(lambda t: F.elu(t, alpha=a), x)),
        (neuron_gradient('sigmoid', x, g), tgrad(torch.sigmoid, x)),
        (neuron_gradient('tanh', x, g), tgrad(torch.tanh, x)),
        (neuron_gradient('tanh', x, g, a, b), tgrad(lambda t: a * torch.tanh(b * t), x)),
        (neuron_gradient('soft_plus', x, g), tgrad(lambda t: F.softplus(t, beta=1.0, threshold=math.inf), x)),
        (neuron_gradient('soft_plus', x, g, 1 / b, b), tgrad(lambda t: F.softplus(t, beta=b, threshold=math.inf), x)),
        (neuron_gradient('soft_sign', x, g), tgrad(F.softsign, x)),
        (neuron_gradient('relu_n', x, g, 0.0, 6.0), tgrad(F.relu6, x)),
        (neuron_gradient('relu_n', x, g, 0.0, 2.0), tgrad(lambda t: F.hardtanh(t, 0.0, 2.0), x)),
        (neuron_gradient('absolute', x, g), tgrad(torch.abs, x)),
        (neuron_gradient('prelu', x, g, data=slopes), tgrad(nchw(lambda t: F.prelu(t, torch.from_numpy(slopes))), x)),
        (neuron_gradient('prelu', x, g, data=[0.3]), tgrad(lambda t: F.leaky_relu(t, 0.3), x)),
        (neuron_gradient('linear', x, g, a, b), tgrad(lambda t: a * t + b, x)),
        (neuron_gradient('exponential', x, g), tgrad(torch.exp, x)),
        (neuron_gradient('exponential', x, g, a, b, c),
         tgrad(lambda t: torch.pow(torch.tensor(c, dtype=torch.float64), a * t + b), x)),
        (neuron_gradient('logarithm', pos, g), tgrad(torch.log, pos)),
        (neuron_gradient('logarithm', pos, g, a, b, 10.0), tgrad(lambda t: torch.log10(a * t + b), pos)),
        (neuron_gradient('power', pos, g, a, b, c), tgrad(lambda t: torch.pow(a * t + b, c), pos)),
        (neuron_gradient('power', x, g, 1.0, 0.0, 3.0), tgrad(lambda t: torch.pow(t, 3.0), x)),
    ]
    for got, ref in cases:
        close(got, ref)
    # PyTorch's hardsigmoid backward multiplies by the float32 constant 1.0f/6.0f
    close(neuron_gradient('hard_sigmoid', x, g, 1 / 6, 0.5), tgrad(F.hardsigmoid, x), rtol=1e-7)
