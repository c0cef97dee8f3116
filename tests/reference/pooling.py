"""Pooling oracles: max, average, L2-norm, dilated max (nodes.md §5), float64 NHWC."""

import numpy as np

from .geometry import SIZE_SAME, extent, extract_patches, resolve_geometry, tap_indices


def _count_inside(S, K, stride, dilation, P, D, lo, hi):
    """Per output index, number of taps with lo <= index < hi, shape (D,) (helper for §5.2 divisors)."""
    idx = tap_indices(S, K, stride, dilation, P, D)
    return ((idx >= lo) & (idx < hi)).sum(axis=1)


def pool2d(x, mode, kernel_hw, stride_hw=None, pad=None, out_hw=None, dilation_hw=(1, 1),
           edge_mode='clamp', zero_pad_hw=(0, 0), exclude_edges=False, pad_after=None):
    """Pooling forward for mode 'max' (§5.3/§5.5), 'average' (§5.2), 'l2' (§5.4); defaults sizeSame, clamp."""
    x = np.asarray(x, np.float64)
    N, H, W, C = x.shape
    KH, KW = (int(k) for k in kernel_hw)
    stride_hw = (KH, KW) if stride_hw is None else tuple(int(s) for s in stride_hw)
    dilation_hw = tuple(int(d) for d in dilation_hw)
    pad, out_hw = resolve_geometry((H, W), (KH, KW), stride_hw, dilation_hw, pad, out_hw, SIZE_SAME)
    if out_hw[0] <= 0 or out_hw[1] <= 0:
        raise ValueError("result size must be positive")
    if edge_mode not in ('clamp', 'zero'):
        raise ValueError("edge_mode must be 'clamp' or 'zero'")

    if mode == 'max':
        patches, mask = extract_patches(x, (KH, KW), stride_hw, dilation_hw, pad, out_hw, edge=edge_mode)
        if edge_mode == 'zero':
            return patches.max(axis=(3, 4))
        # clamp: maximum over the in-image taps T_in (§5.3, also for dilated taps §5.5); a window
        # without any in-image tap falls back to edge replication (§1.4)
        m = mask[None, :, :, :, :, None]
        inside_max = np.where(m, patches, -np.inf).max(axis=(3, 4))
        any_inside = mask.any(axis=(2, 3))[None, :, :, None]
        return np.where(any_inside, inside_max, patches.max(axis=(3, 4)))

    patches, mask = extract_patches(x, (KH, KW), stride_hw, dilation_hw, pad, out_hw, edge='zero')
    if mode == 'l2':
        return np.sqrt((patches * patches).sum(axis=(3, 4)))
    if mode != 'average':
        raise ValueError("mode must be 'max', 'average' or 'l2'")

    total = patches.sum(axis=(3, 4))                                   # sum over T_in
    Dh, Dw = out_hw
    if exclude_edges:
        if pad_after is None:
            pad_after = ((Dh - 1) * stride_hw[0] + extent(KH, dilation_hw[0]) - H - pad[0],
                         (Dw - 1) * stride_hw[1] + extent(KW, dilation_hw[1]) - W - pad[1])
        ny = _count_inside(H, KH, stride_hw[0], dilation_hw[0], pad[0], Dh, -pad[0], H + pad_after[0])
        nx = _count_inside(W, KW, stride_hw[1], dilation_hw[1], pad[1], Dw, -pad[1], W + pad_after[1])
        div = (ny[:, None] * nx[None, :]).astype(np.float64)
    elif edge_mode == 'zero':
        div = np.full((Dh, Dw), float(KH * KW))
    else:
        zy, zx = (int(z) for z in zero_pad_hw)
        ny = _count_inside(H, KH, stride_hw[0], dilation_hw[0], pad[0], Dh, -zy, H + zy)
        nx = _count_inside(W, KW, stride_hw[1], dilation_hw[1], pad[1], Dw, -zx, W + zx)
        div = (ny[:, None] * nx[None, :]).astype(np.float64)
    safe = np.where(div > 0, div, 1.0)
    return np.where(div[None, :, :, None] > 0, total / safe[None, :, :, None], 0.0)


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
