"""Self-tests of the float64 oracles: geometry examples, PyTorch and Pillow cross-checks (nodes.md recipes)."""

import itertools
import math

import numpy as np
import pytest

from . import geometry as G
from .arithmetic import FLT_MAX, binary_arithmetic, clamp_mask
from .conv import (binary_conv2d, binary_fully_connected, conv2d, conv_transpose2d, fold_batch_norm,
                   fully_connected, subpixel_shuffle)
from .misc import concatenate, dropout_inference, dropout_with_mask
from .neuron import NEURON_DEFAULTS, neuron
from .normalization import (batch_norm_inference, batch_norm_training, cross_channel_norm,
                            instance_norm, local_contrast_norm, spatial_norm)
from .pooling import pool2d
from .resample import bilinear_scale, lanczos_scale, upsample_bilinear, upsample_nearest
from .softmax import log_softmax, softmax

RTOL, ATOL = 1e-9, 1e-11


def _torch():
    """Import torch or skip the test."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    return torch, F


def _rng(seed=0):
    """Deterministic generator per test."""
    return np.random.default_rng(seed)


def to_t(x):
    """NHWC numpy -> NCHW float64 torch tensor."""
    torch, _ = _torch()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float64))).permute(0, 3, 1, 2)


def from_t(t):
    """NCHW torch tensor -> NHWC numpy."""
    return t.detach().permute(0, 2, 3, 1).contiguous().numpy()


def tpad(t, py, py_after, px, px_after, mode='constant', value=0.0):
    """F.pad with negative amounts cropping first (nodes.md §1.2 recipe), any pad mode."""
    _, F = _torch()
    h, w = t.shape[2], t.shape[3]
    t = t[:, :, max(0, -py):h - max(0, -py_after), max(0, -px):w - max(0, -px_after)]
    pads = (max(0, px), max(0, px_after), max(0, py), max(0, py_after))
    if any(pads):
        if mode == 'constant':
            t = F.pad(t, pads, mode='constant', value=value)
        else:
            t = F.pad(t, pads, mode=mode)
    return t


def close(a, b, rtol=RTOL, atol=ATOL):
    """assert_allclose with float64 tolerances."""
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def _geoms(shape_hw, kernel_hw, stride_hw, dilation_hw, reverse=False):
    """(method, geometry) for every non-custom padding method giving a positive size."""
    out = []
    for m in G.ALL_METHODS:
        try:
            out.append((m, G.window_geometry(shape_hw, kernel_hw, stride_hw, dilation_hw, m, reverse)))
        except ValueError:
            pass
    return out


# --------------------------------------------------------------------------------------------
# geometry (nodes.md §1.2, graph.md §4.3 worked examples)

def test_geometry_worked_examples():
    def ax(S, K, s, d, m, axis='x', rev=False):
        return G.window_axis(S, K, s, d, m, axis, rev)

    assert ax(28, 5, 1, 1, G.SIZE_SAME) == (28, 2, 2)
    assert ax(7, 2, 2, 1, G.SIZE_SAME) == (4, 1, 0)
    assert ax(7, 2, 2, 1, G.SIZE_SAME | G.ADD_REMAINDER_TO_BOTTOM_RIGHT) == (4, 0, 1)
    assert ax(28, 2, 2, 1, G.SIZE_SAME) == (14, 0, 0)
    assert ax(28, 5, 2, 1, G.SIZE_VALID_ONLY) == (12, 0, -1)
    assert ax(28, 5, 2, 1, G.SIZE_VALID_ONLY | G.ADD_REMAINDER_TO_BOTTOM_RIGHT) == (12, 0, -1)
    assert ax(7, 2, 2, 1, G.SIZE_VALID_ONLY) == (3, 0, -1)
    assert ax(5, 3, 1, 1, G.SIZE_FULL) == (7, 2, 2)
    assert ax(10, 3, 1, 2, G.SIZE_SAME) == (10, 2, 2)
    assert ax(7, 7, 1, 1, G.SIZE_VALID_ONLY) == (1, 0, 0)
    assert ax(14, 4, 2, 1, G.SIZE_SAME, rev=True)[0] == 27
    assert ax(14, 4, 2, 1, G.SIZE_VALID_ONLY, rev=True)[0] == 24
    assert ax(14, 4, 2, 1, G.SIZE_FULL, rev=True)[0] == 30
    g = G.window_geometry((28, 7), (5, 2), (1, 2), (1, 1), G.SIZE_SAME)
    assert g['offset'] == (0, 0) and g['pads'] == (2, 2, 1, 0)
    g = G.window_geometry((7, 7), (7, 7), (1, 1), (1, 1), G.SIZE_VALID_ONLY)
    assert g['out_hw'] == (1, 1) and g['offset'] == (3, 3)
    g = G.window_geometry((5, 5), (3, 3), (1, 1), (1, 1), G.SIZE_FULL)
    assert g['offset'] == (-1, -1)


def test_geometry_alignment_and_remainder_axes():
    # E = 1 (K=2, s=1, same): remainder placement per axis
    for rem, (ry, rx) in ((G.ADD_REMAINDER_TO_TOP_LEFT, (1, 1)), (G.ADD_REMAINDER_TO_TOP_RIGHT, (1, 0)),
                          (G.ADD_REMAINDER_TO_BOTTOM_LEFT, (0, 1)),
                          (G.ADD_REMAINDER_TO_BOTTOM_RIGHT, (0, 0))):
        g = G.window_geometry((6, 6), (2, 2), (1, 1), (1, 1), G.SIZE_SAME | rem)
        assert (g['Py'], g['Px']) == (ry, rx)
        assert (g['Py_after'], g['Px_after']) == (1 - ry, 1 - rx)
    # alignment: all missing pixels before / after
    assert G.window_axis(5, 3, 1, 1, G.SIZE_FULL | G.ALIGN_TOP_LEFT, 'y') == (7, 4, 0)
    assert G.window_axis(5, 3, 1, 1, G.SIZE_FULL | G.ALIGN_BOTTOM_RIGHT, 'y') == (7, 0, 4)
    assert G.window_axis(7, 2, 2, 1, G.ALIGN_TOP_LEFT, 'x') == (3, -1, 0)
    # reverse: Pz = trunc((Ke-1+r)/2), full Pz = Ke-1, valid Pz = 0
    assert G.window_axis(5, 4, 2, 1, G.SIZE_SAME, 'x', True) == (9, 2, 1)
    assert G.window_axis(5, 4, 2, 1, G.SIZE_SAME | G.ADD_REMAINDER_TO_BOTTOM_RIGHT, 'x', True) == (9, 1, 2)
    assert G.window_axis(5, 3, 2, 2, G.SIZE_FULL, 'y', True) == (13, 4, 4)
    assert G.window_axis(5, 3, 2, 1, G.SIZE_VALID_ONLY, 'y', True) == (7, 0, 0)
    # custom / exclude-edges / fusion bits do not change the geometry
    base = G.window_axis(9, 3, 2, 1, G.SIZE_SAME, 'x')
    assert G.window_axis(9, 3, 2, 1, G.SIZE_SAME | G.CUSTOM | G.EXCLUDE_EDGES
                         | G.CUSTOM_WHITELIST_FOR_NODE_FUSION, 'x') == base


def test_geometry_errors_and_consistency():
    with pytest.raises(ValueError):
        G.window_axis(3, 5, 1, 1, G.SIZE_VALID_ONLY, 'x')
    with pytest.raises(ValueError):
        G.window_axis(3, 2, 1, 1, G.SIZE_SAME | 3, 'x')
    with pytest.raises(ValueError):
        G.window_axis(3, 2, 1, 1, 48, 'x')
    with pytest.raises(ValueError):
        G.window_axis(2, 3, 1, 2, G.SIZE_VALID_ONLY, 'x', reverse=True)
    for S, K, s, d in itertools.product((1, 4, 7, 10), (1, 2, 3, 4), (1, 2, 3), (1, 2)):
        for m in G.ALL_METHODS:
            for rev in (False, True):
                try:
                    D, P, Pa = G.window_axis(S, K, s, d, m, 'y', rev)
                except ValueError:
                    continue
                assert Pa == G.pad_after(S, K, s, d, P, D, rev)
                if (m & G.SIZE_MASK) == G.SIZE_SAME and not rev:
                    assert D == -(-S // s)
                if (m & G.SIZE_MASK) == G.SIZE_SAME and rev:
                    assert D == (S - 1) * s + 1


# --------------------------------------------------------------------------------------------
# convolution family (nodes.md §4)

CONV_CFGS = [
    ((7, 9), (3, 2), (2, 1), (1, 1)),
    ((6, 5), (2, 4), (2, 3), (1, 1)),
    ((10, 11), (3, 3), (1, 2), (2, 3)),
    ((5, 5), (1, 5), (3, 2), (1, 1)),
]


def _torch_conv(x, w, b, stride, dilation, groups, pads):
    """nodes.md §4.2 PyTorch recipe: F.conv2d(F.pad(x, ...), OIHW weights)."""
    torch, F = _torch()
    xt = tpad(to_t(x), *pads)
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2)))
    bt = torch.from_numpy(b)
    return from_t(F.conv2d(xt, wt, bt, stride=tuple(stride), dilation=tuple(dilation), groups=groups))


@pytest.mark.parametrize("cfg", range(len(CONV_CFGS)))
def test_conv2d_all_padding_methods(cfg):
    shape, k, s, d = CONV_CFGS[cfg]
    rng = _rng(cfg)
    x = rng.standard_normal((2,) + shape + (5,))
    w = rng.standard_normal((7,) + k + (5,))
    b = rng.standard_normal(7)
    geoms = _geoms(shape, k, s, d)
    assert len(geoms) >= 24
    for m, g in geoms:
        y = conv2d(x, w, b, stride=s, dilation=d, pad=g['pad'], out_hw=g['out_hw'])
        assert y.shape == (2, g['D_h'], g['D_w'], 7)
        close(y, _torch_conv(x, w, b, s, d, 1, g['pads']))


def test_conv2d_groups_and_default_geometry():
    rng = _rng(1)
    x = rng.standard_normal((3, 9, 7, 6))
    w = rng.standard_normal((9, 3, 4, 2))
    b = rng.standard_normal(9)
    for m, g in _geoms((9, 7), (3, 4), (2, 2), (1, 2)):
        y = conv2d(x, w, b, stride=(2, 2), dilation=(1, 2), groups=3, pad=g['pad'], out_hw=g['out_hw'])
        close(y, _torch_conv(x, w, b, (2, 2), (1, 2), 3, g['pads']))
    # default = sizeSame centred, remainder top-left
    g = G.window_geometry((9, 7), (3, 4), (2, 2), (1, 2), G.SIZE_SAME)
    close(conv2d(x, w, b, stride=(2, 2), dilation=(1, 2), groups=3),
          _torch_conv(x, w, b, (2, 2), (1, 2), 3, g['pads']))
    # no bias
    close(conv2d(x, w, None, groups=3), conv2d(x, w, np.zeros(9), groups=3))


def test_depthwise_conv2d():
    torch, F = _torch()
    rng = _rng(2)
    x = rng.standard_normal((2, 8, 7, 5))
    w = rng.standard_normal((5, 3, 2))
    b = rng.standard_normal(5)
    for m, g in _geoms((8, 7), (3, 2), (1, 2), (2, 1)):
        y = conv2d(x, w, b, stride=(1, 2), dilation=(2, 1), pad=g['pad'], out_hw=g['out_hw'],
                   depthwise=True)
        xt = tpad(to_t(x), *g['pads'])
        ref = F.conv2d(xt, torch.from_numpy(w[:, None]), torch.from_numpy(b), stride=(1, 2),
                       dilation=(2, 1), groups=5)
        close(y, from_t(ref))


def test_fully_connected():
    torch, F = _torch()
    rng = _rng(3)
    x = rng.standard_normal((3, 5, 4, 7))
    w = rng.standard_normal((6, 5, 4, 7))
    b = rng.standard_normal(6)
    y = fully_connected(x, w, b)
    assert y.shape == (3, 1, 1, 6)
    xt = to_t(x).permute(0, 2, 3, 1).reshape(3, -1)
    ref = xt @ torch.from_numpy(w.reshape(6, -1)).T + torch.from_numpy(b)
    close(y.reshape(3, 6), ref.numpy())
    # equals a valid-only convolution with kernel = source size
    close(y, conv2d(x, w, b, pad=(0, 0), out_hw=(1, 1)))
    close(y, conv2d(x, w, b, pad=G.window_geometry((5, 4), (5, 4), (1, 1), (1, 1), 0)['pad'], out_hw=(1, 1)))
    # 1×1 source: plain linear
    x1 = rng.standard_normal((2, 1, 1, 5))
    w1 = rng.standard_normal((3, 1, 1, 5))
    close(fully_connected(x1, w1, None).reshape(2, 3),
          F.linear(torch.from_numpy(x1.reshape(2, 5)), torch.from_numpy(w1.reshape(3, 5))).numpy())


def _torch_conv_transpose(x, w, b, stride, dilation, groups, pz, out_hw, direct):
    """nodes.md §4.3 PyTorch recipe with flipped/transposed weights (direct or padding=0 + crop)."""
    torch, F = _torch()
    cout, kh, kw, cg = w.shape
    og = cout // groups
    wt = w.reshape(groups, og, kh, kw, cg)[:, :, ::-1, ::-1, :].transpose(0, 4, 1, 2, 3)
    wt = torch.from_numpy(np.ascontiguousarray(wt.reshape(groups * cg, og, kh, kw)))
    xt = to_t(x)
    S = (x.shape[1], x.shape[2])
    ke = [(kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1]
    pt = [ke[a] - 1 - pz[a] for a in range(2)]
    op = [out_hw[a] - ((S[a] - 1) * stride[a] - 2 * pt[a] + ke[a]) for a in range(2)]
    ok = all(0 <= op[a] < max(stride[a], dilation[a]) and pt[a] >= 0 for a in range(2))
    if direct:
        if not ok:
            return None
        y = F.conv_transpose2d(xt, wt, torch.from_numpy(b), stride=tuple(stride), padding=tuple(pt),
                               output_padding=tuple(op), groups=groups, dilation=tuple(dilation))
        return from_t(y)
    full = F.conv_transpose2d(xt, wt, None, stride=tuple(stride), padding=0, groups=groups,
                              dilation=tuple(dilation))
    full_hw = full.shape[2:]
    out = torch.zeros((x.shape[0], cout) + tuple(out_hw), dtype=torch.float64)
    lo = [max(0, pt[a]) for a in range(2)]
    hi = [min(full_hw[a], pt[a] + out_hw[a]) for a in range(2)]
    if hi[0] > lo[0] and hi[1] > lo[1]:
        out[:, :, lo[0] - pt[0]:hi[0] - pt[0], lo[1] - pt[1]:hi[1] - pt[1]] = \
            full[:, :, lo[0]:hi[0], lo[1]:hi[1]]
    return from_t(out) + b


TCONV_CFGS = [
    ((4, 5), (3, 4), (2, 1), (1, 1), 1),
    ((5, 3), (2, 3), (3, 2), (2, 1), 1),
    ((3, 4), (4, 2), (2, 2), (1, 3), 2),
]


@pytest.mark.parametrize("cfg", range(len(TCONV_CFGS)))
def test_conv_transpose2d_reverse_methods(cfg):
    shape, k, s, d, groups = TCONV_CFGS[cfg]
    rng = _rng(10 + cfg)
    cin, cout = 3 * groups, 5 * groups
    x = rng.standard_normal((2,) + shape + (cin,))
    w = rng.standard_normal((cout,) + k + (cin // groups,))
    b = rng.standard_normal(cout)
    n_direct = 0
    geoms = _geoms(shape, k, s, d, reverse=True)
    assert len(geoms) >= 24
    for m, g in geoms:
        y = conv_transpose2d(x, w, b, s, d, groups, pad_z=g['pad'], out_hw=g['out_hw'])
        assert y.shape == (2, g['D_h'], g['D_w'], cout)
        close(y, _torch_conv_transpose(x, w, b, s, d, groups, g['pad'], g['out_hw'], direct=False))
        ref = _torch_conv_transpose(x, w, b, s, d, groups, g['pad'], g['out_hw'], direct=True)
        if ref is not None:
            n_direct += 1
            close(y, ref)
    assert n_direct > 0
    # default geometry: reverse sizeSame
    g = G.window_geometry(shape, k, s, d, G.SIZE_SAME, reverse=True)
    close(conv_transpose2d(x, w, b, s, d, groups),
          conv_transpose2d(x, w, b, s, d, groups, pad_z=g['pad'], out_hw=g['out_hw']))


def test_conv_transpose2d_paired_with_convolution():
    torch, F = _torch()
    rng = _rng(20)
    S0, k, s, d = (11, 8), (3, 4), (2, 3), (1, 1)
    for m, g in _geoms(S0, k, s, d):
        pz = (G.transpose_pad_from_conv(g['Py'], k[0], d[0]), G.transpose_pad_from_conv(g['Px'], k[1], d[1]))
        x = rng.standard_normal((2, g['D_h'], g['D_w'], 4))
        w = rng.standard_normal((3,) + k + (4,))
        b = rng.standard_normal(3)
        y = conv_transpose2d(x, w, b, s, d, 1, pad_z=pz, out_hw=S0)
        close(y, _torch_conv_transpose(x, w, b, s, d, 1, pz, S0, direct=False))
        # adjoint of the paired convolution with channel-transposed, 180°-rotated weights
        wc = np.ascontiguousarray(w[:, ::-1, ::-1, :].transpose(3, 1, 2, 0))    # (4, KH, KW, 3)
        u = rng.standard_normal((2,) + S0 + (3,))
        fwd = conv2d(u, wc, None, stride=s, dilation=d, pad=g['pad'], out_hw=g['out_hw'])
        lhs = np.sum(fwd * x)
        rhs = np.sum(u * conv_transpose2d(x, w, None, s, d, 1, pad_z=pz, out_hw=S0))
        assert abs(lhs - rhs) <= 1e-9 * max(1.0, abs(lhs))


def test_fold_batch_norm():
    torch, F = _torch()
    rng = _rng(4)
    x = rng.standard_normal((2, 6, 7, 3))
    w = rng.standard_normal((5, 3, 3, 3))
    b = rng.standard_normal(5)
    mean, var = rng.standard_normal(5), rng.uniform(0.5, 2, 5)
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    w2, b2 = fold_batch_norm(w, b, mean, var, gamma, beta, 1e-3)
    y = conv2d(x, w2, b2)
    ref = F.batch_norm(to_t(conv2d(x, w, b)), torch.from_numpy(mean), torch.from_numpy(var),
                       torch.from_numpy(gamma), torch.from_numpy(beta), training=False, eps=1e-3)
    close(y, from_t(ref))
    close(y, batch_norm_inference(conv2d(x, w, b), mean, var, gamma, beta, 1e-3))
    # no bias ⇒ b = 0; depthwise weights fold per output channel
    w3, b3 = fold_batch_norm(w, None, mean, var, gamma, beta, 1e-3)
    close(w3, w2)
    close(b3, b2 - gamma / np.sqrt(var + 1e-3) * b)
    wd, _ = fold_batch_norm(w[:, :, :, 0], None, mean, var, gamma, beta, 1e-3)
    close(wd, w2[:, :, :, 0])


def test_subpixel_shuffle():
    torch, F = _torch()
    rng = _rng(5)
    for r, cn in ((2, 3), (3, 2), (1, 5)):
        io = rng.standard_normal((2, 4, 5, cn * r * r))
        y = subpixel_shuffle(io, r)
        assert y.shape == (2, 4 * r, 5 * r, cn)
        # MPS channel (N/r²)(r a + b) + c  ->  PyTorch channel c r² + (r a + b)
        perm = np.array([kk * cn + c for c in range(cn) for kk in range(r * r)])
        ref = F.pixel_shuffle(to_t(io[..., perm]), r)
        close(y, from_t(ref))
        # direct index formula
        i, j, c = 3, 4, cn - 1
        assert y[1, i, j, c] == io[1, i // r, j // r, cn * (r * (i % r) + (j % r)) + c]
    assert subpixel_shuffle(io, 1, out_hw=(3, 4)).shape == (2, 3, 4, 5)


# --------------------------------------------------------------------------------------------
# binary convolution (nodes.md §4.5): no framework op; F.conv2d for binaryWeights, naive loops otherwise

def _pack_bits(bits):
    """Pack 0/1 array (Cout, KH, KW, Cin) into uint32 words [..][ceil(Cin/32)], LSB first, junk above Cin."""
    cout, kh, kw, cin = bits.shape
    nw = (cin + 31) // 32
    words = np.zeros((cout, kh, kw, nw), np.uint64)
    for c in range(cin):
        words[..., c // 32] |= bits[..., c].astype(np.uint64) << np.uint64(c % 32)
    # set ignored bits above Cin to 1 to prove they are ignored
    for c in range(cin, nw * 32):
        words[..., c // 32] |= np.uint64(1) << np.uint64(c % 32)
    return words.astype(np.uint32)


def _binary_naive(x, bits, typ, flags, out_scale, out_bias, in_scale, in_bias, stride, pad, out_hw):
    """Direct loop implementation of nodes.md §4.5."""
    n_, h, w_, cin = x.shape
    cout, kh, kw, _ = bits.shape
    xs = (x + in_bias) * in_scale
    y = np.zeros((n_, out_hw[0], out_hw[1], cout))
    A = np.abs(xs).mean(axis=3)
    for n in range(n_):
        for i in range(out_hw[0]):
            for j in range(out_hw[1]):
                acc = np.zeros(cout)
                bsum = 0.0
                for p in range(kh):
                    for q in range(kw):
                        yy, xx = stride[0] * i - pad[0] + p, stride[1] * j - pad[1] + q
                        if not (0 <= yy < h and 0 <= xx < w_):
                            continue
                        bsum += A[n, yy, xx]
                        for o in range(cout):
                            for c in range(cin):
                                v, bit = xs[n, yy, xx, c], bits[o, p, q, c]
                                if typ == 0:
                                    acc[o] += v * (1 if bit else -1)
                                elif typ == 1:
                                    acc[o] += (-1 if v < 0 else 1) * (1 if bit else -1)
                                else:
                                    acc[o] += (1 if v >= 0 else 0) * bit
                beta = bsum / (kh * kw) if flags & 1 else 1.0
                y[n, i, j] = acc * out_scale * beta + out_bias
    return y


@pytest.mark.parametrize("typ", [0, 1, 2])
@pytest.mark.parametrize("flags", [0, 1])
def test_binary_conv2d_naive(typ, flags):
    rng = _rng(30 + typ)
    cin, cout = 37, 3
    x = rng.standard_normal((2, 5, 6, cin))
    bits = rng.integers(0, 2, (cout, 3, 2, cin))
    wb = _pack_bits(bits)
    assert wb.shape == (cout, 3, 2, 2) and wb.dtype == np.uint32
    osc, obi = rng.standard_normal(cout), rng.standard_normal(cout)
    isc, ibi = rng.uniform(0.5, 1.5, cin), 0.1 * rng.standard_normal(cin)
    for m in (G.SIZE_VALID_ONLY, G.SIZE_SAME, G.SIZE_FULL | G.ADD_REMAINDER_TO_BOTTOM_RIGHT):
        g = G.window_geometry((5, 6), (3, 2), (2, 1), (1, 1), m)
        y = binary_conv2d(x, wb, cin, typ, flags, osc, obi, isc, ibi, (2, 1), g['pad'], g['out_hw'])
        close(y, _binary_naive(x, bits, typ, flags, osc, obi, isc, ibi, (2, 1), g['pad'], g['out_hw']))
    # default geometry is validOnly
    g = G.window_geometry((5, 6), (3, 2), (1, 1), (1, 1), G.SIZE_VALID_ONLY)
    close(binary_conv2d(x, wb, cin, typ, flags), _binary_naive(
        x, bits, typ, flags, np.ones(cout), np.zeros(cout), np.ones(cin), np.zeros(cin), (1, 1),
        g['pad'], g['out_hw']))


def test_binary_weights_equals_conv2d():
    torch, F = _torch()
    rng = _rng(33)
    cin, cout = 5, 4
    x = rng.standard_normal((2, 7, 6, cin))
    bits = rng.integers(0, 2, (cout, 3, 3, cin))
    wb = _pack_bits(bits)
    scale, obias = 0.37, rng.standard_normal(cout)
    isc, ibi = rng.uniform(0.5, 1.5, cin), rng.standard_normal(cin)
    for m, g in _geoms((7, 6), (3, 3), (1, 2), (1, 1)):
        y = binary_conv2d(x, wb, cin, 'binaryWeights', 0, scale, obias, isc, ibi, (1, 2), g['pad'],
                          g['out_hw'])
        wpm = (2.0 * bits - 1.0) * scale
        close(y, _torch_conv((x + ibi) * isc, wpm, obias, (1, 2), (1, 1), 1, g['pads']))
    # binary fully connected = kernel of the source size, 1×1
    bits = rng.integers(0, 2, (3, 7, 6, cin))
    y = binary_fully_connected(x, _pack_bits(bits), cin, 1, 1)
    assert y.shape == (2, 1, 1, 3)
    close(y, _binary_naive(x, bits, 1, 1, np.ones(3), np.zeros(3), np.ones(cin), np.zeros(cin), (1, 1),
                           (0, 0), (1, 1)))


# --------------------------------------------------------------------------------------------
# pooling (nodes.md §5)

POOL_CFGS = [
    ((7, 9), (2, 3), (2, 2), (1, 1)),
    ((6, 5), (3, 2), (1, 3), (1, 1)),
    ((9, 8), (2, 2), (2, 1), (3, 2)),      # dilated (max pooling, §5.5)
]


def _indicator_2d(lo_hw, hi_hw, g, shape_hw):
    """Torch image over the padded read range [-P, S+P_after) holding 1 inside [lo, hi) per axis, else 0."""
    torch, _ = _torch()
    vecs = []
    for a, (pb, pa) in enumerate(((g['Py'], g['Py_after']), (g['Px'], g['Px_after']))):
        start, stop = -pb, shape_hw[a] + pa
        idx = torch.arange(start, stop, dtype=torch.float64)
        vecs.append(((idx >= lo_hw[a]) & (idx < hi_hw[a])).to(torch.float64))
    return (vecs[0][:, None] * vecs[1][None, :])[None, None]


@pytest.mark.parametrize("cfg", range(len(POOL_CFGS)))
def test_pooling_all_methods(cfg):
    torch, F = _torch()
    shape, k, s, d = POOL_CFGS[cfg]
    rng = _rng(40 + cfg)
    x = rng.standard_normal((2,) + shape + (5,))
    xt = to_t(x)
    KK = k[0] * k[1]
    geoms = _geoms(shape, k, s, d)
    assert len(geoms) >= 24
    for m, g in geoms:
        kw = dict(pad=g['pad'], out_hw=g['out_hw'], dilation_hw=d)
        pads = g['pads']
        # max, clamp (edge replication) and zero edge
        # clamp = max over in-image taps (-inf padding); windows with no in-image tap: edge replication
        y = pool2d(x, 'max', k, s, edge_mode='clamp', **kw)
        ref = F.max_pool2d(tpad(xt, *pads, value=-math.inf), k, s, dilation=d)
        ref_rep = F.max_pool2d(tpad(xt, *pads, mode='replicate'), k, s, dilation=d)
        close(y, from_t(torch.where(torch.isinf(ref), ref_rep, ref)))
        if d == (1, 1):
            close(y, from_t(ref_rep))
        y = pool2d(x, 'max', k, s, edge_mode='zero', **kw)
        close(y, from_t(F.max_pool2d(tpad(xt, *pads), k, s, dilation=d)))
        if d != (1, 1):
            continue
        # average, zero edge: divisor KH·KW
        y = pool2d(x, 'average', k, s, edge_mode='zero', **kw)
        close(y, from_t(F.avg_pool2d(tpad(xt, *pads), k, s)))
        # average, clamp with zero-pad sizes z: divisor counts taps in [-z, S+z)
        total = F.avg_pool2d(tpad(xt, *pads), k, s) * KK
        for z in ((0, 0), (1, 0), (1, 2)):
            ind = _indicator_2d((-z[0], -z[1]), (shape[0] + z[0], shape[1] + z[1]), g, shape)
            cnt = F.avg_pool2d(ind, k, s) * KK
            ref = torch.where(cnt > 0, total / torch.where(cnt > 0, cnt, torch.ones_like(cnt)),
                              torch.zeros_like(total))
            y = pool2d(x, 'average', k, s, edge_mode='clamp', zero_pad_hw=z, **kw)
            close(y, from_t(ref))
        # average, excludeEdges: divisor counts taps inside [-P, S + P_after)
        for pa in (None, (0, 0), (1, max(g['Px_after'] - 1, 0))):
            pa_eff = (g['Py_after'], g['Px_after']) if pa is None else pa
            ind = _indicator_2d((-g['Py'], -g['Px']), (shape[0] + pa_eff[0], shape[1] + pa_eff[1]), g, shape)
            cnt = F.avg_pool2d(ind, k, s) * KK
            ref = torch.where(cnt > 0, total / torch.where(cnt > 0, cnt, torch.ones_like(cnt)),
                              torch.zeros_like(total))
            for edge in ('clamp', 'zero'):
                y = pool2d(x, 'average', k, s, edge_mode=edge, exclude_edges=True, pad_after=pa, **kw)
                close(y, from_t(ref))
        # L2 norm (both edge modes shrink to the image)
        ref = torch.sqrt(F.avg_pool2d(tpad(xt * xt, *pads), k, s) * KK)
        for edge in ('clamp', 'zero'):
            close(pool2d(x, 'l2', k, s, edge_mode=edge, **kw), from_t(ref))


def test_pooling_framework_recipes():
    torch, F = _torch()
    rng = _rng(50)
    x = rng.standard_normal((3, 9, 11, 7))
    xt = to_t(x)
    # symmetric P: sizeSame, stride 1, odd kernel
    g = G.window_geometry((9, 11), (3, 5), (1, 1), (1, 1), G.SIZE_SAME)
    assert g['pads'] == (1, 1, 2, 2)
    kw = dict(pad=g['pad'], out_hw=g['out_hw'])
    close(pool2d(x, 'max', (3, 5), (1, 1), **kw), from_t(F.max_pool2d(xt, (3, 5), 1, padding=(1, 2))))
    close(pool2d(x, 'average', (3, 5), (1, 1), edge_mode='zero', **kw),
          from_t(F.avg_pool2d(xt, (3, 5), 1, padding=(1, 2), count_include_pad=True)))
    close(pool2d(x, 'average', (3, 5), (1, 1), edge_mode='clamp', **kw),
          from_t(F.avg_pool2d(xt, (3, 5), 1, padding=(1, 2), count_include_pad=False)))
    close(pool2d(x, 'average', (3, 5), (1, 1), edge_mode='clamp', zero_pad_hw=(1, 2), **kw),
          from_t(F.avg_pool2d(xt, (3, 5), 1, padding=(1, 2), count_include_pad=True)))
    # dilated max with symmetric P
    g = G.window_geometry((9, 11), (3, 2), (3, 3), (2, 3), G.SIZE_SAME)
    assert g['Py'] == g['Py_after'] == 1 and g['Px'] == g['Px_after'] == 1
    close(pool2d(x, 'max', (3, 2), (3, 3), pad=g['pad'], out_hw=g['out_hw'], dilation_hw=(2, 3)),
          from_t(F.max_pool2d(xt, (3, 2), (3, 3), padding=1, dilation=(2, 3))))
    # L2 valid-only = lp_pool2d
    g = G.window_geometry((9, 11), (2, 3), (2, 3), (1, 1), G.SIZE_VALID_ONLY)
    close(pool2d(x, 'l2', (2, 3), (2, 3), pad=g['pad'], out_hw=g['out_hw']),
          from_t(F.lp_pool2d(xt, 2, (2, 3), (2, 3))))
    # defaults: filter-size stride, sizeSame, clamp
    g = G.window_geometry((9, 11), (2, 2), (2, 2), (1, 1), G.SIZE_SAME)
    close(pool2d(x, 'average', (2, 2)),
          pool2d(x, 'average', (2, 2), (2, 2), pad=g['pad'], out_hw=g['out_hw'], edge_mode='clamp'))
    # window entirely outside the image (full, align top-left): clamp average gives 0, clamp max the edge
    g = G.window_geometry((9, 11), (3, 3), (1, 1), (1, 1), G.SIZE_FULL | G.ALIGN_TOP_LEFT)
    y = pool2d(x, 'average', (3, 3), (1, 1), pad=g['pad'], out_hw=g['out_hw'])
    assert np.all(y[:, 0, 0] == 0)
    y = pool2d(x, 'max', (3, 3), (1, 1), pad=g['pad'], out_hw=g['out_hw'])
    close(y[:, 0, 0], x[:, 0, 0])


# --------------------------------------------------------------------------------------------
# neurons (nodes.md §6)

def test_neuron_defaults_and_types():
    assert NEURON_DEFAULTS['relu_n'] == (1.0, 6.0, 0.0)
    assert NEURON_DEFAULTS['hard_sigmoid'] == (0.2, 0.5, 0.0)
    assert NEURON_DEFAULTS['power'] == (1.0, 0.0, 1.0)
    assert NEURON_DEFAULTS['exponential'] == (1.0, 0.0, -1.0)
    assert NEURON_DEFAULTS['logarithm'] == (1.0, 0.0, -1.0)
    x = _rng(60).standard_normal((2, 3, 5, 7))
    close(neuron(x, 'power'), x)
    close(neuron(x, 'exponential'), np.exp(x))
    close(neuron(np.abs(x) + 0.1, 'logarithm'), np.log(np.abs(x) + 0.1))
    close(neuron(x, 'relu_n'), np.minimum(x, 6))
    close(neuron(x, 1), neuron(x, 'relu'))
    close(neuron(x, 12, 2.0, 3.0, 2.0), (2 * x + 3) ** 2)
    with pytest.raises(ValueError):
        neuron(x, 'gelu_unknown')


def test_neuron_vs_torch():
    torch, F = _torch()
    rng = _rng(61)
    x = rng.standard_normal((2, 5, 3, 7)) * 3
    x[np.abs(x) < 1e-3] = 0.5                    # avoid exact kinks
    t = torch.from_numpy(x)
    pos = np.abs(x) + 0.2
    tp = torch.from_numpy(pos)
    a, b, c = 0.7, 1.3, 2.5
    cases = [
        (neuron(x, 'none'), t),
        (neuron(x, 'relu'), F.relu(t)),
        (neuron(x, 'relu', a), F.leaky_relu(t, a)),
        (neuron(x, 'linear', a, b), a * t + b),
        (neuron(x, 'linear'), t),
        (neuron(x, 'sigmoid'), torch.sigmoid(t)),
        (neuron(x, 'hard_sigmoid', 1 / 6, 0.5), F.hardsigmoid(t)),
        (neuron(x, 'hard_sigmoid'), torch.clamp(0.2 * t + 0.5, 0, 1)),
        (neuron(x, 'tanh'), torch.tanh(t)),
        (neuron(x, 'tanh', a, b), a * torch.tanh(b * t)),
        (neuron(x, 'absolute'), torch.abs(t)),
        (neuron(x, 'soft_plus'), F.softplus(t, beta=1.0, threshold=1e30)),
        (neuron(x, 'soft_plus', a, b), a * b * F.softplus(t, beta=b, threshold=1e30)),
        (neuron(x, 'soft_sign'), F.softsign(t)),
        (neuron(x, 'elu'), F.elu(t)),
        (neuron(x, 'elu', a), F.elu(t, alpha=a)),
        (neuron(x, 'relu_n', 0.0, 6.0), F.relu6(t)),
        (neuron(x, 'relu_n', a, 2.0), torch.clamp(torch.where(t >= 0, t, a * t), max=2.0)),
        (neuron(pos, 'power', a, b, c), torch.pow(a * tp + b, c)),
        (neuron(x, 'power', 1.0, 0.0, 3.0), torch.pow(t, 3.0)),
        (neuron(x, 'exponential', a, b), torch.exp(a * t + b)),
        (neuron(x, 'exponential', a, b, c), torch.pow(torch.tensor(c, dtype=torch.float64), a * t + b)),
        (neuron(pos, 'logarithm', a, b), torch.log(a * tp + b)),
        (neuron(pos, 'logarithm', a, b, c), torch.log(a * tp + b) / math.log(c)),
    ]
    for got, ref in cases:
        close(got, ref.numpy())
    # large inputs: stable softplus, saturating sigmoid/tanh
    big = np.array([-800.0, -30.0, 30.0, 800.0]).reshape(1, 1, 1, 4)
    close(neuron(big, 'soft_plus'), np.array([0.0, np.log1p(np.exp(-30.0)), 30.0 + np.log1p(np.exp(-30.0)),
                                              800.0]).reshape(big.shape), atol=1e-300)
    assert np.all(np.isfinite(neuron(big, 'sigmoid'))) and np.all(np.isfinite(neuron(big, 'tanh')))
    # PReLU: per channel, length 1 broadcast, longer arrays truncated
    slopes = rng.uniform(0.1, 0.9, 9)
    close(neuron(x, 'prelu', data=slopes), F.prelu(t.permute(0, 3, 1, 2),
                                                     torch.from_numpy(slopes[:7])).permute(0, 2, 3, 1).numpy())
    close(neuron(x, 'prelu', data=[0.3]), F.leaky_relu(t, 0.3).numpy())
    with pytest.raises(ValueError):
        neuron(x, 'prelu', data=slopes[:3])


def test_neuron_ieee_edge_cases():
    with np.errstate(all='ignore'):
        v = np.array([-1.0, 0.0, 2.0]).reshape(1, 1, 1, 3)
        y = neuron(v, 'power', 1.0, 0.0, 0.5)
        assert np.isnan(y[..., 0]) and y[..., 1] == 0 and y[..., 2] == np.sqrt(2)
        assert neuron(v, 'power', 1.0, 0.0, -1.0)[..., 1] == np.inf
        y = neuron(v, 'logarithm')
        assert np.isnan(y[..., 0]) and y[..., 1] == -np.inf
        assert np.all(np.isnan(neuron(v, 'exponential', 1.0, 0.0, -2.0)))
        close(neuron(v, 'exponential', 1.0, 0.0, 1.0), np.ones_like(v))


# --------------------------------------------------------------------------------------------
# softmax (nodes.md §7)

@pytest.mark.parametrize("C", [1, 3, 5, 7])
def test_softmax_vs_torch(C):
    torch, F = _torch()
    x = _rng(70 + C).standard_normal((3, 4, 5, C)) * 10
    close(softmax(x), from_t(F.softmax(to_t(x), dim=1)))
    close(log_softmax(x), from_t(F.log_softmax(to_t(x), dim=1)))
    x2 = x + 1000.0
    close(softmax(x2), softmax(x))
    close(log_softmax(x2), log_softmax(x), atol=1e-9)


def test_softmax_infinities():
    x = np.array([[[[0.0, -np.inf, 1.0], [np.inf, 0.0, 1.0]]]])
    y = softmax(x)
    assert y[0, 0, 0, 1] == 0 and np.isclose(y[0, 0, 0].sum(), 1.0)
    assert np.all(np.isnan(y[0, 0, 1]) | (y[0, 0, 1] == 0))
    assert np.isnan(y[0, 0, 1, 0])
    assert log_softmax(x)[0, 0, 0, 1] == -np.inf


# --------------------------------------------------------------------------------------------
# arithmetic (nodes.md §3.1)

def test_arithmetic_strides_vs_torch():
    torch, F = _torch()
    rng = _rng(80)
    full = (2, 5, 3, 7)                     # N, H, W, C
    ops = {'add': lambda p, q: p + q, 'subtract': lambda p, q: p - q,
           'multiply': lambda p, q: p * q, 'divide': lambda p, q: p / q}
    for sa, sb in itertools.product(itertools.product((0, 1), repeat=3), repeat=2):
        def shape_for(st):
            tc, ty, tx = st
            return (full[0], full[1] if ty else 2, full[2] if tx else 2, full[3] if tc else 3)
        A = rng.standard_normal(shape_for(sa))
        B = rng.uniform(0.5, 2.0, shape_for(sb)) * rng.choice([-1, 1], shape_for(sb))
        out = (full[0], full[1] if (sa[1] or sb[1]) else 1, full[2] if (sa[2] or sb[2]) else 1,
               full[3] if (sa[0] or sb[0]) else 1)

        def addressed(v, st):
            t = torch.from_numpy(v)
            if not st[1]:
                t = t[:, 0:1]
            if not st[2]:
                t = t[:, :, 0:1]
            if not st[0]:
                t = t[:, :, :, 0:1]
            return t
        ta, tb = addressed(A, sa), addressed(B, sb)
        for op, fn in ops.items():
            y = binary_arithmetic(op, A, B, 1.5, -0.75, 0.25, sa, sb, -1.0, 2.0)
            assert y.shape == out
            ref = torch.clamp(fn(1.5 * ta, -0.75 * tb) + 0.25, -1.0, 2.0).expand(out)
            close(y, ref.numpy())
            m = clamp_mask(op, A, B, 1.5, -0.75, 0.25, sa, sb, -1.0, 2.0)
            r = (fn(1.5 * ta, -0.75 * tb) + 0.25).expand(out).numpy()
            close(m, ((r > -1.0) & (r < 2.0)).astype(float))


def test_arithmetic_errors_and_ieee():
    a = np.ones((1, 2, 3, 4))
    with pytest.raises(ValueError):
        binary_arithmetic('add', a, np.ones((1, 2, 4, 4)))
    with pytest.raises(ValueError):
        binary_arithmetic('add', a, np.ones((2, 2, 3, 4)))
    with pytest.raises(ValueError):
        binary_arithmetic('add', a, a, primary_strides=(2, 1, 1))
    with pytest.raises(ValueError):
        binary_arithmetic('power', a, a)
    # extents may differ where one operand broadcasts
    assert binary_arithmetic('add', a, np.ones((1, 7, 3, 9)), secondary_strides=(0, 0, 1)).shape == (1, 2, 3, 4)
    num = np.array([1.0, -1.0, 0.0, np.nan, 3e38]).reshape(1, 1, 1, 5)
    den = np.array([0.0, 0.0, 0.0, 1.0, 1.0]).reshape(1, 1, 1, 5)
    y = binary_arithmetic('divide', num, den)
    assert y[0, 0, 0, 0] == FLT_MAX and y[0, 0, 0, 1] == -FLT_MAX
    assert np.isnan(y[0, 0, 0, 2]) and np.isnan(y[0, 0, 0, 3])
    y = binary_arithmetic('add', num[..., 4:], num[..., 4:])
    assert y[0, 0, 0, 0] == FLT_MAX
    y = binary_arithmetic('multiply', num, num, minimum_value=0.5, maximum_value=0.75)
    assert np.isnan(y[0, 0, 0, 3]) and y[0, 0, 0, 0] == 0.75 and y[0, 0, 0, 2] == 0.5


# --------------------------------------------------------------------------------------------
# normalization (nodes.md §8)

def test_batch_and_instance_norm_vs_torch():
    torch, F = _torch()
    rng = _rng(90)
    x = rng.standard_normal((3, 5, 4, 7)) * 2 + 1
    mean, var = rng.standard_normal(7), rng.uniform(0.5, 2, 7)
    gamma, beta = rng.standard_normal(7), rng.standard_normal(7)
    T = lambda v: torch.from_numpy(v)
    ref = F.batch_norm(to_t(x), T(mean), T(var), T(gamma), T(beta), training=False, eps=1e-5)
    close(batch_norm_inference(x, mean, var, gamma, beta, 1e-5), from_t(ref))
    ref = F.batch_norm(to_t(x), None, None, T(gamma), T(beta), training=True, eps=1e-5)
    close(batch_norm_training(x, gamma, beta, 1e-5), from_t(ref))
    close(batch_norm_inference(x, None, None, None, None, 0.0), x)
    ref = F.instance_norm(to_t(x), weight=T(gamma), bias=T(beta), eps=1e-5)
    close(instance_norm(x, gamma, beta, 1e-5), from_t(ref))
    close(instance_norm(x, None, None, 1e-5), from_t(F.instance_norm(to_t(x), eps=1e-5)))
    assert np.all(instance_norm(x[:, :1, :1], gamma, beta, 1e-5) == beta)


@pytest.mark.parametrize("N", [1, 2, 3, 4, 5, 6])
def test_cross_channel_norm_vs_torch(N):
    torch, F = _torch()
    for C in (3, 7):
        x = _rng(100 + N + C).standard_normal((2, 4, 5, C)) * 2
        for alpha, beta, delta in ((1.0, 5.0, 1.0), (0.3, 0.75, 2.0)):
            ref = F.local_response_norm(to_t(x), size=N, alpha=alpha, beta=beta, k=delta)
            close(cross_channel_norm(x, N, alpha, beta, delta), from_t(ref))
    close(cross_channel_norm(x), cross_channel_norm(x, 5, 1.0, 5.0, 1.0))


def _torch_box_mean(t, kw, kh):
    """Zero-padded centred box mean with fixed divisor KW·KH (nodes.md §8.3 recipe)."""
    _, F = _torch()
    p = F.pad(t, (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2))
    return F.avg_pool2d(p, (kh, kw), stride=1)


@pytest.mark.parametrize("kw,kh", [(1, 1), (2, 3), (3, 3), (4, 5), (5, 2)])
def test_spatial_and_local_contrast_norm_vs_torch(kw, kh):
    torch, F = _torch()
    x = _rng(110 + kw * 7 + kh).standard_normal((2, 7, 6, 5)) * 2
    xt = to_t(x)
    for alpha, beta, delta in ((1.0, 5.0, 1.0), (0.4, 0.75, 1.5)):
        T = delta + alpha * _torch_box_mean(xt * xt, kw, kh)
        close(spatial_norm(x, kw, kh, alpha, beta, delta), from_t(xt * T ** (-beta)))
    M = _torch_box_mean(xt, kw, kh)
    V = torch.clamp(_torch_box_mean(xt * xt, kw, kh) - M * M, min=0)
    for alpha, beta, delta, pm, ps, p0 in ((1.0, 0.5, 1 / 1024, 0.0, 1.0, 1.0),
                                           (0.5, 0.75, 0.3, 0.2, 1.7, 0.6)):
        ref = pm + ps * (xt - p0 * M) * (delta + alpha * V) ** (-beta)
        close(local_contrast_norm(x, kw, kh, alpha, beta, delta, pm, ps, p0), from_t(ref), rtol=1e-8)
    close(spatial_norm(x), spatial_norm(x, 5, 5, 1.0, 5.0, 1.0))
    close(local_contrast_norm(x), local_contrast_norm(x, 5, 5, 1.0, 0.5, 1 / 1024, 0.0, 1.0, 1.0))


# --------------------------------------------------------------------------------------------
# upsampling and scale nodes (nodes.md §9, §10)

def test_upsampling_vs_torch():
    torch, F = _torch()
    x = _rng(120).standard_normal((2, 5, 3, 7))
    for fx, fy in ((1, 1), (2, 3), (3, 1), (4, 2)):
        ref = F.interpolate(to_t(x), scale_factor=(fy, fx), mode='nearest')
        close(upsample_nearest(x, fx, fy), from_t(ref))
        for ac in (False, True):
            ref = F.interpolate(to_t(x), scale_factor=(fy, fx), mode='bilinear', align_corners=ac)
            close(upsample_bilinear(x, fx, fy, ac), from_t(ref))
    # one-pixel source, aligned: copies
    x1 = x[:, :1, :1]
    close(upsample_bilinear(x1, 3, 2, True), np.broadcast_to(x1, (2, 2, 3, 7)))


def test_bilinear_scale_vs_torch():
    torch, F = _torch()
    x = _rng(121).standard_normal((2, 9, 13, 5))
    for ow, oh in ((20, 7), (5, 4), (13, 9), (40, 2)):
        ref = F.interpolate(to_t(x), size=(oh, ow), mode='bilinear', align_corners=False, antialias=False)
        close(bilinear_scale(x, ow, oh), from_t(ref))
    # upsampling node (non-aligned) = bilinear scale with integer factors
    close(bilinear_scale(x, 26, 27), upsample_bilinear(x, 2, 3, False))
    # arbitrary transform: grid_sample, border padding
    for (sx, sy, tx, ty), (ow, oh) in (((1.7, 0.6, -2.0, -1.0), (20, 4)), ((0.45, 2.5, 3.0, 2.2), (11, 17)),
                                       ((1.0, 1.0, 0.5, -0.25), (13, 9))):
        xi = (np.arange(ow) + 0.5 - tx) / sx
        yi = (np.arange(oh) + 0.5 - ty) / sy
        gx = 2 * xi / 13 - 1
        gy = 2 * yi / 9 - 1
        grid = np.stack(np.broadcast_arrays(gx[None, :], gy[:, None]), axis=-1)[None].repeat(2, 0)
        ref = F.grid_sample(to_t(x), torch.from_numpy(grid), mode='bilinear', padding_mode='border',
                            align_corners=False)
        close(bilinear_scale(x, ow, oh, (sx, sy, tx, ty)), from_t(ref))


def test_lanczos_scale_vs_pillow():
    Image = pytest.importorskip("PIL.Image")
    rng = _rng(122)
    x = rng.standard_normal((2, 9, 13, 3)).astype(np.float32).astype(np.float64)
    lanczos = getattr(getattr(Image, 'Resampling', Image), 'LANCZOS')
    cases = [((20, 7), None), ((5, 4), None), ((3, 2), None), ((40, 31), None), ((13, 9), None),
             ((20, 4), (1.7, 0.6, -2.0, -1.0)), ((9, 12), (0.8, 1.5, -0.5, -1.5))]
    for (ow, oh), tr in cases:
        y = lanczos_scale(x, ow, oh, tr)
        assert y.shape == (2, oh, ow, 3)
        if tr is None:
            box = (0.0, 0.0, 13.0, 9.0)
        else:
            sx, sy, tx, ty = tr
            box = (-tx / sx, -ty / sy, (ow - tx) / sx, (oh - ty) / sy)
        for n in range(2):
            for c in range(3):
                im = Image.fromarray(np.ascontiguousarray(x[n, :, :, c].astype(np.float32)))
                assert im.mode == 'F'
                ref = np.asarray(im.resize((ow, oh), lanczos, box=box), np.float64)
                close(y[n, :, :, c], ref, rtol=1e-5, atol=1e-5)
    # identity scale reproduces the source (Lz is 1 at 0 and 0 at the other integers)
    close(lanczos_scale(x, 13, 9), x, atol=1e-12)


# --------------------------------------------------------------------------------------------
# concatenation and dropout (nodes.md §11, §12)

def test_concatenate_vs_torch():
    torch, F = _torch()
    rng = _rng(130)
    xs = [rng.standard_normal((2, 3, 5, c)) for c in (5, 8, 3, 2)]
    y = concatenate(xs)
    assert y.shape == (2, 3, 5, 8 + 8 + 4 + 2)
    parts = []
    for k, x in enumerate(xs):
        parts.append(to_t(x))
        gap = 4 * ((x.shape[3] + 3) // 4) - x.shape[3]
        if k < len(xs) - 1 and gap:
            parts.append(torch.zeros((2, gap, 3, 5), dtype=torch.float64))
    close(y, from_t(torch.cat(parts, dim=1)))
    close(concatenate([xs[2]]), xs[2])
    with pytest.raises(ValueError):
        concatenate([xs[0], rng.standard_normal((2, 4, 5, 3))])


def test_dropout_inference_identity():
    x = _rng(131).standard_normal((2, 3, 4, 5))
    y = dropout_inference(x)
    close(y, x)
    assert y is not x
    mask = (_rng(132).random((2, 3, 4, 5)) < 0.7).astype(float)
    close(dropout_with_mask(x, mask, 0.7), x * mask / 0.7)
