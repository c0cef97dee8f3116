"""Convolution family oracles (nodes.md §4), float64, NHWC images, OHWI weights."""

import numpy as np

from .geometry import (SIZE_SAME, SIZE_VALID_ONLY, extract_patches, resolve_geometry, scatter_patches)


def _bias(bias, cout):
    """Bias vector or zeros (nodes.md §4.1: `bias_terms()` None ⇒ zeros)."""
    if bias is None:
        return np.zeros(cout, np.float64)
    b = np.asarray(bias, np.float64).reshape(-1)
    if b.size == 1:
        return np.full(cout, b[0])
    if b.size != cout:
        raise ValueError("bias must have Cout entries")
    return b


def conv2d(x, w, bias=None, stride=(1, 1), dilation=(1, 1), groups=1, pad=None, out_hw=None,
           depthwise=False, edge_mode='zero', channel_offset=0, channel_count=None):
    """Convolution forward Y = b + Σ W·X̂ (nodes.md §4.2); pad/out_hw default to sizeSame.

    edge_mode: 'zero' (reads outside the source are 0) or 'clamp' (the nearest edge pixel, nodes.md
    §1.4). channel_offset / channel_count: the convolution reads channels [offset, offset + count)
    of the source (a custom padding policy's source_feature_channel_offset); count defaults to the
    rest of the source."""
    x = np.asarray(x, np.float64)
    if channel_count is None:
        channel_count = x.shape[3] - channel_offset
    if channel_offset < 0 or channel_count <= 0 or channel_offset + channel_count > x.shape[3]:
        raise ValueError("channel window outside the source")
    x = x[..., channel_offset:channel_offset + channel_count]
    w = np.asarray(w, np.float64)
    N, H, W, Cin = x.shape
    if depthwise:
        if w.ndim != 3 or w.shape[0] != Cin or groups != 1:
            raise ValueError("depthwise weights must be (C, KH, KW) with Cout = Cin, groups = 1")
        Cout, KH, KW = w.shape
    else:
        if w.ndim != 4:
            raise ValueError("weights must be OHWI (Cout, KH, KW, Cin/groups)")
        Cout, KH, KW, Cg = w.shape
        if Cin % groups or Cout % groups or Cg * groups != Cin:
            raise ValueError("channel counts do not match groups")
    pad, out_hw = resolve_geometry((H, W), (KH, KW), stride, dilation, pad, out_hw, SIZE_SAME)
    if out_hw[0] <= 0 or out_hw[1] <= 0:
        raise ValueError("result size must be positive")
    patches, _ = extract_patches(x, (KH, KW), stride, dilation, pad, out_hw, edge=edge_mode)
    if depthwise:
        y = np.einsum('nyxpqc,cpq->nyxc', patches, w, optimize=True)
    else:
        Dh, Dw = out_hw
        Og = Cout // groups
        pg = patches.reshape(N, Dh, Dw, KH, KW, groups, Cg)
        wg = w.reshape(groups, Og, KH, KW, Cg)
        y = np.einsum('nyxpqgc,gopqc->nyxgo', pg, wg, optimize=True).reshape(N, Dh, Dw, Cout)
    return y + _bias(bias, Cout)


def fully_connected(x, w, bias=None):
    """Fully connected forward, flatten order row, column, channel (nodes.md §4.4); result (N,1,1,Cout)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N = x.shape[0]
    Cout = w.shape[0]
    xf = x.reshape(N, -1)
    wf = w.reshape(Cout, -1)
    if xf.shape[1] != wf.shape[1]:
        raise ValueError("weights must be (Cout, H, W, C) matching the source")
    y = xf @ wf.T + _bias(bias, Cout)
    return y.reshape(N, 1, 1, Cout)


def zero_insert(x, stride):
    """Zero-inserted image Z[sy*i, sx*j] = X[i, j] of size ((H-1)sy+1, (W-1)sx+1) (nodes.md §4.3)."""
    x = np.asarray(x, np.float64)
    N, H, W, C = x.shape
    sy, sx = stride
    z = np.zeros((N, (H - 1) * sy + 1, (W - 1) * sx + 1, C), np.float64)
    z[:, ::sy, ::sx, :] = x
    return z


def conv_transpose2d(x, w, bias=None, stride=(1, 1), dilation=(1, 1), groups=1, pad_z=None,
                     out_hw=None):
    """Convolution transpose: stride-1 correlation of the zero-inserted source (nodes.md §4.3)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, H, W, Cin = x.shape
    Cout, KH, KW, Cg = w.shape
    pad_z, out_hw = resolve_geometry((H, W), (KH, KW), stride, dilation, pad_z, out_hw, SIZE_SAME,
                                     reverse=True)
    z = zero_insert(x, stride)
    return conv2d(z, w, bias, stride=(1, 1), dilation=dilation, groups=groups, pad=pad_z,
                  out_hw=out_hw)


def fold_batch_norm(w, b, mean, var, gamma, beta, eps):
    """Fold inference batch norm into weights/bias: I=γ/√(v+ε), W'=W·I, b'=I(b−μ)+β (nodes.md §4.1)."""
    w = np.asarray(w, np.float64)
    cout = w.shape[0]
    mean = np.zeros(cout) if mean is None else np.asarray(mean, np.float64).reshape(-1)
    var = np.ones(cout) if var is None else np.asarray(var, np.float64).reshape(-1)
    gamma = np.ones(cout) if gamma is None else np.asarray(gamma, np.float64).reshape(-1)
    beta = np.zeros(cout) if beta is None else np.asarray(beta, np.float64).reshape(-1)
    b = _bias(b, cout)
    inv = gamma / np.sqrt(var + float(eps))
    w2 = w * inv.reshape((cout,) + (1,) * (w.ndim - 1))
    b2 = inv * (b - mean) + beta
    return w2, b2


def unpack_binary_weights(w_bits, Cin):
    """Unpack uint32 words [Cout][KH][KW][⌈Cin/32⌉] to 0/1 bits (Cout, KH, KW, Cin), LSB first (nodes.md §4.5)."""
    w_bits = np.asarray(w_bits, np.uint32)
    c = np.arange(int(Cin))
    words = w_bits[..., c // 32]
    return ((words >> (c % 32).astype(np.uint32)) & np.uint32(1)).astype(np.float64)


_BINARY_TYPES = {'binaryWeights': 0, 'binary_weights': 0, 'xnor': 1, 'and': 2}


def binary_conv2d(x, w_bits_uint32, Cin, type=0, flags=0, out_scale=None, out_bias=None,
                  in_scale=None, in_bias=None, stride=(1, 1), pad=None, out_hw=None,
                  dilation=(1, 1)):
    """Binary convolution (binaryWeights/xnor/and, optional beta scaling) (nodes.md §4.5); default validOnly."""
    x = np.asarray(x, np.float64)
    N, H, W, C = x.shape
    Cin = int(Cin)
    if C != Cin:
        raise ValueError("source channel count must equal Cin")
    t = _BINARY_TYPES.get(type, type)
    if t not in (0, 1, 2):
        raise ValueError("unknown binary convolution type %r" % (type,))
    bits = unpack_binary_weights(w_bits_uint32, Cin)          # (Cout, KH, KW, Cin)
    Cout, KH, KW, _ = bits.shape
    in_scale = np.ones(Cin) if in_scale is None else np.broadcast_to(
        np.asarray(in_scale, np.float64).reshape(-1), (Cin,))
    in_bias = np.zeros(Cin) if in_bias is None else np.broadcast_to(
        np.asarray(in_bias, np.float64).reshape(-1), (Cin,))
    out_scale = np.ones(Cout) if out_scale is None else np.broadcast_to(
        np.asarray(out_scale, np.float64).reshape(-1), (Cout,))
    out_bias = np.zeros(Cout) if out_bias is None else np.broadcast_to(
        np.asarray(out_bias, np.float64).reshape(-1), (Cout,))
    pad, out_hw = resolve_geometry((H, W), (KH, KW), stride, dilation, pad, out_hw, SIZE_VALID_ONLY)
    xs = (x + in_bias) * in_scale
    patches, mask = extract_patches(xs, (KH, KW), stride, dilation, pad, out_hw, edge='zero')
    m = mask[None, :, :, :, :, None].astype(np.float64)
    if t == 0:
        a = patches
        wb = 2.0 * bits - 1.0
    elif t == 1:
        a = np.where(patches < 0, -1.0, 1.0) * m
        wb = 2.0 * bits - 1.0
    else:
        a = (patches >= 0).astype(np.float64) * m
        wb = bits
    s = np.einsum('nyxpqc,opqc->nyxo', a, wb, optimize=True)
    if int(flags) & 1:
        A = np.mean(np.abs(xs), axis=3, keepdims=True)          # (N, H, W, 1)
        pa, _ = extract_patches(A, (KH, KW), stride, dilation, pad, out_hw, edge='zero')
        beta_img = pa.sum(axis=(3, 4)) / float(KH * KW)         # (N, Dh, Dw, 1)
    else:
        beta_img = 1.0
    return s * out_scale * beta_img + out_bias


def binary_fully_connected(x, w_bits_uint32, Cin, type=0, flags=0, out_scale=None, out_bias=None,
                           in_scale=None, in_bias=None):
    """Binary fully connected: binary convolution with kernel = source size, valid, 1×1 result (nodes.md §4.5)."""
    return binary_conv2d(x, w_bits_uint32, Cin, type, flags, out_scale, out_bias, in_scale, in_bias)


def subpixel_shuffle(io, r, out_hw=None):
    """Sub-pixel rearrangement Y[c,i,j] = Io[(N/r²)(r(i mod r)+(j mod r)) + c, ⌊i/r⌋, ⌊j/r⌋] (nodes.md §4.2)."""
    io = np.asarray(io, np.float64)
    r = int(r)
    n, h, w, ch = io.shape
    if ch % (r * r):
        raise ValueError("channel count must be a multiple of r*r")
    cn = ch // (r * r)
    y = io.reshape(n, h, w, r, r, cn).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * r, w * r, cn)
    if out_hw is not None:
        y = y[:, :out_hw[0], :out_hw[1], :]
    return y


# --------------------------------------------------------------------------------------------
# gradients (nodes.md §4.3, §4.4, §4.6): float64, NHWC images, OHWI weights

def conv2d_gradient(x, w, g, stride=(1, 1), dilation=(1, 1), groups=1, pad=None, out_hw=None,
                    depthwise=False, edge_mode='zero', channel_offset=0, channel_count=None):
    """(dX, dW, dB) of <G, conv2d(x, w, b, ...)> with the geometry of conv2d (nodes.md §4.6).

    dW has w's shape (OHWI, or (C, KH, KW) depthwise) and dB Cout entries, both summed over the batch.
    With edge_mode='clamp' the taps read the nearest edge pixel, whose gradient collects them; with a
    channel window the channels outside it get zero."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    g = np.asarray(g, np.float64)
    if channel_count is None:
        channel_count = x.shape[3] - channel_offset
    xs = x[..., channel_offset:channel_offset + channel_count]
    N, H, W, Cin = xs.shape
    if depthwise:
        Cout, KH, KW = w.shape
    else:
        Cout, KH, KW, Cg = w.shape
    pad, out_hw = resolve_geometry((H, W), (KH, KW), stride, dilation, pad, out_hw, SIZE_SAME)
    if g.shape != (N, out_hw[0], out_hw[1], Cout):
        raise ValueError("g must have the forward result's shape")
    patches, mask = extract_patches(xs, (KH, KW), stride, dilation, pad, out_hw, edge=edge_mode)
    Dh, Dw = out_hw
    if depthwise:
        dw = np.einsum('nyxpqc,nyxc->cpq', patches, g, optimize=True)
        dpatches = np.einsum('nyxc,cpq->nyxpqc', g, w, optimize=True)
    else:
        Og = Cout // groups
        pg = patches.reshape(N, Dh, Dw, KH, KW, groups, Cg)
        gg = g.reshape(N, Dh, Dw, groups, Og)
        wg = w.reshape(groups, Og, KH, KW, Cg)
        dw = np.einsum('nyxpqgc,nyxgo->gopqc', pg, gg, optimize=True).reshape(Cout, KH, KW, Cg)
        dpatches = np.einsum('nyxgo,gopqc->nyxpqgc', gg, wg, optimize=True).reshape(N, Dh, Dw, KH, KW, Cin)
    if edge_mode == 'zero':
        dpatches = np.where(mask[None, :, :, :, :, None], dpatches, 0.0)
    dxs = scatter_patches(dpatches, xs.shape, (KH, KW), stride, dilation, pad, out_hw)
    dx = np.zeros_like(x)
    dx[..., channel_offset:channel_offset + channel_count] = dxs
    return dx, dw, g.sum(axis=(0, 1, 2))


def fully_connected_gradient(x, w, g):
    """(dX, dW, dB) of the fully connected layer (nodes.md §4.4): dX[c,p,q] = Σ_o W[o,p,q,c]·G[o],
    dW[o,p,q,c] = Σ_n G[n,o]·X[n,c,p,q], dB = Σ_n G."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N = x.shape[0]
    Cout = w.shape[0]
    gf = np.asarray(g, np.float64).reshape(N, Cout)
    dx = (gf @ w.reshape(Cout, -1)).reshape(x.shape)
    dw = (gf.T @ x.reshape(N, -1)).reshape(w.shape)
    return dx, dw, gf.sum(axis=0)


def conv_transpose2d_gradient(x, w, g, stride=(1, 1), dilation=(1, 1), groups=1, pad_z=None, out_hw=None):
    """(dX, dW, dB) of conv_transpose2d (nodes.md §4.3): the convolution gradient on the zero-inserted
    source, sampled back at the source pixels."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, H, W, Cin = x.shape
    Cout, KH, KW, Cg = w.shape
    pad_z, out_hw = resolve_geometry((H, W), (KH, KW), stride, dilation, pad_z, out_hw, SIZE_SAME,
                                     reverse=True)
    dz, dw, db = conv2d_gradient(zero_insert(x, stride), w, g, (1, 1), dilation, groups, pad_z, out_hw)
    return dz[:, ::stride[0], ::stride[1], :], dw, db
