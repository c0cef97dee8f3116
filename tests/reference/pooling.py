"""Pooling oracles: max, average, L2-norm, dilated max (nodes.md §5) and their gradients (§5.6),
float64 NHWC."""

import numpy as np

from .geometry import (SIZE_SAME, extent, extract_patches, resolve_geometry, scatter_patches,
                       tap_indices)

_MODES = ('max', 'average', 'l2')


def _count_inside(S, K, stride, dilation, P, D, lo, hi):
    """Per output index, number of taps with lo <= index < hi, shape (D,) (helper for §5.2 divisors)."""
    idx = tap_indices(S, K, stride, dilation, P, D)
    return ((idx >= lo) & (idx < hi)).sum(axis=1)


def _window(x_shape, mode, kernel_hw, stride_hw, pad, out_hw, dilation_hw, edge_mode):
    """Validated window geometry shared by the forward and the gradient: dict with kernel, stride,
    dilation, pad, out_hw (missing pad / out_hw resolved from sizeSame, §1.3)."""
    if mode not in _MODES:
        raise ValueError("mode must be 'max', 'average' or 'l2'")
    if edge_mode not in ('clamp', 'zero'):
        raise ValueError("edge_mode must be 'clamp' or 'zero'")
    N, H, W, C = x_shape
    KH, KW = (int(k) for k in kernel_hw)
    stride_hw = (KH, KW) if stride_hw is None else tuple(int(s) for s in stride_hw)
    dilation_hw = tuple(int(d) for d in dilation_hw)
    pad, out_hw = resolve_geometry((H, W), (KH, KW), stride_hw, dilation_hw, pad, out_hw, SIZE_SAME)
    if out_hw[0] <= 0 or out_hw[1] <= 0:
        raise ValueError("result size must be positive")
    return dict(kernel_hw=(KH, KW), stride_hw=stride_hw, dilation_hw=dilation_hw, pad=pad, out_hw=out_hw)


def _max_candidates(patches, mask, edge_mode):
    """The values that compete for the maximum of each window (§5.3, §5.5), from the clamped patches:
    zero edge: every tap (out-of-image taps read 0); clamp: the in-image taps T_in (others -inf), or,
    for a window without any in-image tap, the edge-replicated (clamped) taps (§1.4)."""
    m = mask[None, :, :, :, :, None]
    if edge_mode == 'zero':
        return np.where(m, patches, 0.0)
    any_inside = mask.any(axis=(2, 3))[None, :, :, None, None, None]
    return np.where(any_inside, np.where(m, patches, -np.inf), patches)


def _average_divisor(shape_hw, win, edge_mode, zero_pad_hw, exclude_edges, pad_after):
    """Forward divisor N(i, j) of average pooling (§5.2), shape (Dh, Dw)."""
    H, W = shape_hw
    KH, KW = win['kernel_hw']
    (sy, sx), (dy, dx), (Py, Px), (Dh, Dw) = win['stride_hw'], win['dilation_hw'], win['pad'], win['out_hw']
    if exclude_edges:
        if pad_after is None:
            pad_after = ((Dh - 1) * sy + extent(KH, dy) - H - Py, (Dw - 1) * sx + extent(KW, dx) - W - Px)
        ny = _count_inside(H, KH, sy, dy, Py, Dh, -Py, H + pad_after[0])
        nx = _count_inside(W, KW, sx, dx, Px, Dw, -Px, W + pad_after[1])
    elif edge_mode == 'zero':
        return np.full((Dh, Dw), float(KH * KW))
    else:
        zy, zx = (int(z) for z in zero_pad_hw)
        ny = _count_inside(H, KH, sy, dy, Py, Dh, -zy, H + zy)
        nx = _count_inside(W, KW, sx, dx, Px, Dw, -zx, W + zx)
    return (ny[:, None] * nx[None, :]).astype(np.float64)


def _safe_divide(num, den):
    """num/den where den != 0, else 0 (N = 0 average windows, Y = 0 L2 windows); broadcasts."""
    ok = den != 0
    return np.where(ok, num / np.where(ok, den, 1.0), 0.0)


def pool2d(x, mode, kernel_hw, stride_hw=None, pad=None, out_hw=None, dilation_hw=(1, 1),
           edge_mode='clamp', zero_pad_hw=(0, 0), exclude_edges=False, pad_after=None):
    """Pooling forward for mode 'max' (§5.3/§5.5), 'average' (§5.2), 'l2' (§5.4); defaults sizeSame, clamp."""
    x = np.asarray(x, np.float64)
    win = _window(x.shape, mode, kernel_hw, stride_hw, pad, out_hw, dilation_hw, edge_mode)
    geo = (win['kernel_hw'], win['stride_hw'], win['dilation_hw'], win['pad'], win['out_hw'])

    if mode == 'max':
        patches, mask = extract_patches(x, *geo, edge='clamp')
        return _max_candidates(patches, mask, edge_mode).max(axis=(3, 4))

    patches, mask = extract_patches(x, *geo, edge='zero')
    if mode == 'l2':
        return np.sqrt((patches * patches).sum(axis=(3, 4)))
    total = patches.sum(axis=(3, 4))                                   # sum over T_in
    div = _average_divisor(x.shape[1:3], win, edge_mode, zero_pad_hw, exclude_edges, pad_after)
    return _safe_divide(total, div[None, :, :, None])


def pool2d_gradient(x, g, mode, kernel_hw, stride_hw=None, pad=None, out_hw=None, dilation_hw=(1, 1),
                    edge_mode='clamp', zero_pad_hw=(0, 0), exclude_edges=False, pad_after=None):
    """dX (shape of x) of pool2d for the source gradient g (pool2d's result shape), nodes.md §5.2-5.6.

    max: each window's G goes to its arg-max tap among the taps pool2d's maximum ranges over; ties go to
    the first maximal tap in row-major tap order; a winning out-of-image tap (zero edge) gives nothing;
    a clamp window without in-image taps sends G to the clamped (edge-replicated) source pixel.
    average: G/N to every in-image tap (N the forward divisor; N = 0 windows give nothing).
    l2: G·X/Y to every in-image tap, Y recomputed (Y = 0 windows give nothing)."""
    x = np.asarray(x, np.float64)
    g = np.asarray(g, np.float64)
    win = _window(x.shape, mode, kernel_hw, stride_hw, pad, out_hw, dilation_hw, edge_mode)
    geo = (win['kernel_hw'], win['stride_hw'], win['dilation_hw'], win['pad'], win['out_hw'])
    N, H, W, C = x.shape
    KH, KW = win['kernel_hw']
    expect = (N,) + tuple(win['out_hw']) + (C,)
    if g.shape != expect:
        raise ValueError("source gradient has shape %s; pool2d gives %s" % (g.shape, expect))
    G = g[:, :, :, None, None, :]

    if mode == 'max':
        patches, mask = extract_patches(x, *geo, edge='clamp')
        cand = np.moveaxis(_max_candidates(patches, mask, edge_mode), 5, 3)    # (N, Dh, Dw, C, KH, KW)
        flat = cand.reshape(cand.shape[:4] + (KH * KW,))
        winner = np.argmax(flat, axis=-1)                                       # first maximal tap
        taps_in = mask.reshape(mask.shape[:2] + (KH * KW,))[None, :, :, None, :]
        if edge_mode == 'clamp':
            # a window with in-image taps keeps its winner in the image even when all its in-image
            # values are -inf (then: the first in-image tap)
            won_in = np.take_along_axis(np.broadcast_to(taps_in, flat.shape), winner[..., None], -1)[..., 0]
            winner = np.where(taps_in.any(axis=-1) & ~won_in, np.argmax(taps_in, axis=-1), winner)
        onehot = np.arange(KH * KW) == winner[..., None]
        onehot = np.moveaxis(onehot.reshape(cand.shape), 3, 5)                 # (N, Dh, Dw, KH, KW, C)
        if edge_mode == 'zero':
            onehot = onehot & mask[None, :, :, :, :, None]                     # a padding tap won: dropped
        # clamp: windows without in-image taps route G to the clamped source pixel of the winner
        return scatter_patches(np.where(onehot, G, 0.0), x.shape, *geo)

    patches, mask = extract_patches(x, *geo, edge='zero')
    if mode == 'average':
        div = _average_divisor((H, W), win, edge_mode, zero_pad_hw, exclude_edges, pad_after)
        dpatches = _safe_divide(G, div[None, :, :, None, None, None])
    else:
        y = np.sqrt((patches * patches).sum(axis=(3, 4)))
        dpatches = _safe_divide(G, y[:, :, :, None, None, :]) * patches
    return scatter_patches(np.where(mask[None, :, :, :, :, None], dpatches, 0.0), x.shape, *geo)


def max_pool2d(x, kernel_hw, stride_hw=None, pad=None, out_hw=None, dilation_hw=(1, 1), edge_mode='clamp'):
    """Max / dilated max pooling (nodes.md §5.3, §5.5)."""
    return pool2d(x, 'max', kernel_hw, stride_hw, pad, out_hw, dilation_hw, edge_mode)


def average_pool2d(x, kernel_hw, stride_hw=None, pad=None, out_hw=None, edge_mode='clamp',
                   zero_pad_hw=(0, 0), exclude_edges=False, pad_after=None):
    """Average pooling (nodes.md §5.2)."""
    return pool2d(x, 'average', kernel_hw, stride_hw, pad, out_hw, (1, 1), edge_mode, zero_pad_hw,
                  exclude_edges, pad_after)


def l2_pool2d(x, kernel_hw, stride_hw=None, pad=None, out_hw=None):
    """L2-norm pooling sqrt(Σ_{T_in} X²) (nodes.md §5.4)."""
    return pool2d(x, 'l2', kernel_hw, stride_hw, pad, out_hw)


def max_pool2d_gradient(x, g, kernel_hw, stride_hw=None, pad=None, out_hw=None, dilation_hw=(1, 1),
                        edge_mode='clamp'):
    """Gradient of max / dilated max pooling (nodes.md §5.3, §5.5): G to the first arg-max tap."""
    return pool2d_gradient(x, g, 'max', kernel_hw, stride_hw, pad, out_hw, dilation_hw, edge_mode)


def average_pool2d_gradient(x, g, kernel_hw, stride_hw=None, pad=None, out_hw=None, edge_mode='clamp',
                            zero_pad_hw=(0, 0), exclude_edges=False, pad_after=None):
    """Gradient of average pooling (nodes.md §5.2): G/N to the in-image taps (x only gives the size)."""
    return pool2d_gradient(x, g, 'average', kernel_hw, stride_hw, pad, out_hw, (1, 1), edge_mode,
                           zero_pad_hw, exclude_edges, pad_after)


def l2_pool2d_gradient(x, g, kernel_hw, stride_hw=None, pad=None, out_hw=None):
    """Gradient of L2-norm pooling (nodes.md §5.4): G·X/Y, zero-norm windows give 0."""
    return pool2d_gradient(x, g, 'l2', kernel_hw, stride_hw, pad, out_hw)
