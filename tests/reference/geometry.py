"""Window geometry and padding policy (nodes.md §1, graph.md §4) for the float64 oracles."""

import numpy as np

# MPSNNPaddingMethod bits (graph.md §4.1, nodes.md §1.2)
ALIGN_CENTERED = 0
ALIGN_TOP_LEFT = 1
ALIGN_BOTTOM_RIGHT = 2
ALIGN_MASK = 3
ADD_REMAINDER_TO_TOP_LEFT = 0
ADD_REMAINDER_TO_TOP_RIGHT = 4
ADD_REMAINDER_TO_BOTTOM_LEFT = 8
ADD_REMAINDER_TO_BOTTOM_RIGHT = 12
REMAINDER_MASK = 12
SIZE_VALID_ONLY = 0
SIZE_SAME = 16
SIZE_FULL = 32
SIZE_MASK = 0x7F0
CUSTOM_WHITELIST_FOR_NODE_FUSION = 0x2000
CUSTOM = 0x4000
EXCLUDE_EDGES = 0x8000

TENSORFLOW_SAME = SIZE_SAME | ALIGN_CENTERED | ADD_REMAINDER_TO_BOTTOM_RIGHT
TENSORFLOW_VALID = SIZE_VALID_ONLY

# every non-custom combination of size style, alignment and remainder (36 methods)
ALL_METHODS = tuple(size | align | rem
                    for size in (SIZE_VALID_ONLY, SIZE_SAME, SIZE_FULL)
                    for align in (ALIGN_CENTERED, ALIGN_TOP_LEFT, ALIGN_BOTTOM_RIGHT)
                    for rem in (ADD_REMAINDER_TO_TOP_LEFT, ADD_REMAINDER_TO_TOP_RIGHT,
                                ADD_REMAINDER_TO_BOTTOM_LEFT, ADD_REMAINDER_TO_BOTTOM_RIGHT))


def _trunc_div2(v):
    """Integer division by 2 rounding toward zero (nodes.md §1.2 `trunc`)."""
    return int(v / 2) if v >= 0 else -((-v) // 2)


def extent(K, dilation):
    """Dilated kernel extent Ke = (K-1)*d + 1 (nodes.md §1.1)."""
    return (int(K) - 1) * int(dilation) + 1


def size_style(method):
    """Size style ς of a padding method: -1 valid, 0 same, +1 full (nodes.md §1.2)."""
    size = int(method) & SIZE_MASK
    if size == SIZE_VALID_ONLY:
        return -1
    if size == SIZE_SAME:
        return 0
    if size == SIZE_FULL:
        return 1
    raise ValueError("reserved size style in padding method 0x%x" % int(method))


def remainder_before(method, axis):
    """Remainder flag r (1 = odd pixel before) for axis 'y' or 'x' (nodes.md §1.2)."""
    rem = int(method) & REMAINDER_MASK
    if axis in ('y', 0):
        return 1 if rem in (ADD_REMAINDER_TO_TOP_LEFT, ADD_REMAINDER_TO_TOP_RIGHT) else 0
    if axis in ('x', 1):
        return 1 if rem in (ADD_REMAINDER_TO_TOP_LEFT, ADD_REMAINDER_TO_BOTTOM_LEFT) else 0
    raise ValueError("axis must be 'y' or 'x'")


def window_axis(S, K, stride, dilation, method, axis, reverse=False):
    """One axis of nodes.md §1.2: returns (D, pad_before, pad_after) for forward or reverse filters."""
    S, K, s, d = int(S), int(K), int(stride), int(dilation)
    if S < 1 or K < 1 or s < 1 or d < 1:
        raise ValueError("sizes, kernel, stride and dilation must be >= 1")
    Ke = extent(K, d)
    sigma = size_style(method)
    if reverse:
        D = (S - 1) * s + 1 + sigma * (Ke - 1)
        s_read, S_read = 1, (S - 1) * s + 1
    else:
        num = S + sigma * (Ke - 1)
        D = -((-num) // s)                      # ceil(num / s)
        s_read, S_read = s, S
    if D <= 0:
        raise ValueError("padding method 0x%x gives result size %d <= 0" % (int(method), D))
    E = (D - 1) * s_read + Ke - S_read
    align = int(method) & ALIGN_MASK
    if align == ALIGN_CENTERED:
        P = _trunc_div2(E + remainder_before(method, axis))
    elif align == ALIGN_TOP_LEFT:
        P = E
    elif align == ALIGN_BOTTOM_RIGHT:
        P = 0
    else:
        raise ValueError("reserved alignment in padding method 0x%x" % int(method))
    return D, P, E - P


def window_geometry(shape_hw, kernel_hw, stride_hw=(1, 1), dilation_hw=(1, 1), method=SIZE_SAME,
                    reverse=False):
    """Both axes of nodes.md §1.2; dict with D_h, D_w, Py, Py_after, Px, Px_after, pads, offsets."""
    D_h, Py, Py_after = window_axis(shape_hw[0], kernel_hw[0], stride_hw[0], dilation_hw[0], method,
                                    'y', reverse)
    D_w, Px, Px_after = window_axis(shape_hw[1], kernel_hw[1], stride_hw[1], dilation_hw[1], method,
                                    'x', reverse)
    Ke_h = extent(kernel_hw[0], dilation_hw[0])
    Ke_w = extent(kernel_hw[1], dilation_hw[1])
    return {
        'D_h': D_h, 'D_w': D_w,
        'Py': Py, 'Py_after': Py_after, 'Px': Px, 'Px_after': Px_after,
        'pads': (Py, Py_after, Px, Px_after),
        'pad': (Py, Px), 'pad_after': (Py_after, Px_after), 'out_hw': (D_h, D_w),
        'offset': (Ke_h // 2 - Py, Ke_w // 2 - Px),
    }


def pad_after(S, K, stride, dilation, P, D, reverse=False):
    """P_after = (D-1)*s_read + Ke - S_read - P (nodes.md §1.2)."""
    if reverse:
        return (D - 1) + extent(K, dilation) - ((S - 1) * stride + 1) - P
    return (D - 1) * stride + extent(K, dilation) - S - P


def transpose_pad_from_conv(P_conv, K, dilation):
    """Pz = (Ke-1) - P_conv for a transpose paired with a convolution gradient state (nodes.md §4.3)."""
    return extent(K, dilation) - 1 - int(P_conv)


def tap_indices(S, K, stride, dilation, P, D):
    """Source index of tap k of output o: s*o - P + d*k, shape (D, K) (nodes.md §1.1)."""
    o = np.arange(int(D))[:, None]
    k = np.arange(int(K))[None, :]
    return int(stride) * o - int(P) + int(dilation) * k


def resolve_geometry(shape_hw, kernel_hw, stride_hw, dilation_hw, pad, out_hw, method=SIZE_SAME,
                     reverse=False):
    """Fill in a missing pad / out_hw from the given default padding method (nodes.md §1.3)."""
    if pad is not None and out_hw is not None:
        return tuple(int(v) for v in pad), tuple(int(v) for v in out_hw)
    g = window_geometry(shape_hw, kernel_hw, stride_hw, dilation_hw, method, reverse)
    pad = g['pad'] if pad is None else pad
    out_hw = g['out_hw'] if out_hw is None else out_hw
    return tuple(int(v) for v in pad), tuple(int(v) for v in out_hw)


def extract_patches(x, kernel_hw, stride_hw, dilation_hw, pad, out_hw, edge='zero'):
    """Gather windows (nodes.md §1.1/§1.4): patches (N, Dh, Dw, KH, KW, C) and inside-mask (Dh, Dw, KH, KW)."""
    x = np.asarray(x, np.float64)
    N, H, W, C = x.shape
    KH, KW = kernel_hw
    iy = tap_indices(H, KH, stride_hw[0], dilation_hw[0], pad[0], out_hw[0])   # (Dh, KH)
    ix = tap_indices(W, KW, stride_hw[1], dilation_hw[1], pad[1], out_hw[1])   # (Dw, KW)
    in_y = (iy >= 0) & (iy < H)
    in_x = (ix >= 0) & (ix < W)
    mask = in_y[:, None, :, None] & in_x[None, :, None, :]                    # (Dh, Dw, KH, KW)
    cy = np.clip(iy, 0, H - 1)[:, None, :, None]
    cx = np.clip(ix, 0, W - 1)[None, :, None, :]
    patches = x[:, cy, cx, :]                                                 # (N, Dh, Dw, KH, KW, C)
    if edge == 'zero':
        patches = np.where(mask[None, :, :, :, :, None], patches, 0.0)   # 0, also next to ±inf / NaN
    elif edge != 'clamp':
        raise ValueError("edge must be 'zero' or 'clamp'")
    return patches, mask


def scatter_patches(dpatches, x_shape, kernel_hw, stride_hw, dilation_hw, pad, out_hw):
    """Adjoint of extract_patches(edge='clamp'): adds dpatches (N, Dh, Dw, KH, KW, C) into a zero image
    of x_shape at each tap's clamped source pixel. For the adjoint of edge='zero', zero the out-of-image
    taps first (np.where with the inside-mask)."""
    N, H, W, C = (int(v) for v in x_shape)
    KH, KW = kernel_hw
    iy = tap_indices(H, KH, stride_hw[0], dilation_hw[0], pad[0], out_hw[0])   # (Dh, KH)
    ix = tap_indices(W, KW, stride_hw[1], dilation_hw[1], pad[1], out_hw[1])   # (Dw, KW)
    cy = np.broadcast_to(np.clip(iy, 0, H - 1)[:, None, :, None], (out_hw[0], out_hw[1], KH, KW))
    cx = np.broadcast_to(np.clip(ix, 0, W - 1)[None, :, None, :], (out_hw[0], out_hw[1], KH, KW))
    dx = np.zeros((N, H, W, C), np.float64)
    np.add.at(dx, (slice(None), cy, cx), np.asarray(dpatches, np.float64))
    return dx
