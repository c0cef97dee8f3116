"""Float64 gradient oracles of binary arithmetic (nodes.md §3.3), concatenation (§12.2), softmax and
log-softmax (§7.2, §7.4), the cross-channel / spatial / local-contrast normalizations (§8.2-8.4),
nearest and bilinear upsampling (§9) and dropout (§11), with the project's dropout mask generator
(Philox-4x32-10, nodes.md §11.1) in pure NumPy. NHWC arrays throughout."""

import numpy as np

from .arithmetic import FLT_MAX, _check_strides, address_operand, binary_arithmetic, result_shape
from .misc import concat_offsets
from .resample import _linear_matrix, _upsample_positions

# --------------------------------------------------------------------------------------------
# arithmetic


def arithmetic_gradient(op, a, b, g, secondary=False, primary_scale=1.0, secondary_scale=1.0, bias=0.0,
                        primary_strides=(1, 1, 1), secondary_strides=(1, 1, 1),
                        minimum_value=-FLT_MAX, maximum_value=FLT_MAX):
    """dA (secondary False) or dB of <g, Y> for Y = clamp(op(α·A, β·B) + bias, lo, hi): the per-element
    derivative times the strict clamp mask [lo < r < hi], summed over the axes the operand is broadcast
    along (stride 0) into index 0 of that axis; other indices of such an axis get 0 (nodes.md §3.3)."""
    if op not in ('add', 'subtract', 'multiply'):
        raise ValueError("only add, subtract and multiply have gradient nodes")
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    g = np.asarray(g, np.float64)
    shape = result_shape(a.shape, b.shape, primary_strides, secondary_strides)
    if g.shape != shape:
        raise ValueError("g must have the result's shape")
    al, be = float(primary_scale), float(secondary_scale)
    r = binary_arithmetic(op, a, b, al, be, bias, primary_strides, secondary_strides, -np.inf, np.inf)
    m = (r > float(minimum_value)) & (r < float(maximum_value))
    if op == 'add':
        d = np.full(shape, be if secondary else al)
    elif op == 'subtract':
        d = np.full(shape, -be if secondary else al)
    else:
        other = address_operand(a if secondary else b, primary_strides if secondary else secondary_strides, shape)
        d = al * be * other
    per = np.where(m, d * g, 0.0)
    operand = b if secondary else a
    tc, ty, tx = _check_strides(secondary_strides if secondary else primary_strides)
    out = np.zeros(operand.shape, np.float64)
    red = per
    if not ty:
        red = red.sum(axis=1, keepdims=True)
    if not tx:
        red = red.sum(axis=2, keepdims=True)
    if not tc:
        red = red.sum(axis=3, keepdims=True)
    out[:, :red.shape[1], :red.shape[2], :red.shape[3]] = red
    return out


# --------------------------------------------------------------------------------------------
# concatenation


def concatenation_gradient(g, channel_counts, k):
    """dX_k = G[..., off_k : off_k + C_k] with 4-aligned slots (nodes.md §12.2)."""
    offs, _ = concat_offsets(channel_counts)
    g = np.asarray(g, np.float64)
    return g[..., offs[k]:offs[k] + int(channel_counts[k])].copy()


# --------------------------------------------------------------------------------------------
# softmax


def softmax_gradient(y, g):
    """dX = Y·(G − Σ_k G·Y) from the forward result Y (nodes.md §7.2)."""
    y = np.asarray(y, np.float64)
    g = np.asarray(g, np.float64)
    return y * (g - np.sum(g * y, axis=-1, keepdims=True))


def log_softmax_gradient(y, g):
    """dX = G − e^Y·Σ_k G from the forward log-softmax result Y (nodes.md §7.4)."""
    y = np.asarray(y, np.float64)
    g = np.asarray(g, np.float64)
    return g - np.exp(y) * np.sum(g, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# normalizations


def _neg_pow(t, e):
    with np.errstate(all='ignore'):
        return np.exp(-float(e) * np.log(t))


def _box(v, up, down, left, right):
    """out[y, x] = Σ v over rows [y − up, y + down] and columns [x − left, x + right], zero outside."""
    N, H, W, C = v.shape
    p = np.pad(v, ((0, 0), (up, down), (left, right), (0, 0)))
    out = np.zeros_like(v)
    for dy in range(up + down + 1):
        for dx in range(left + right + 1):
            out += p[:, dy:dy + H, dx:dx + W, :]
    return out


def cross_channel_norm_gradient(x, g, kernel_size=5, alpha=1.0, beta=5.0, delta=1.0):
    """Exact derivative of the cross-channel normalization (nodes.md §8.2):
    dX[k] = G[k]·L[k]^−β − (2αβ/N)·X[k]·Σ_{r∈R(k)} G[r]·X[r]·L[r]^(−β−1)."""
    x = np.asarray(x, np.float64)
    g = np.asarray(g, np.float64)
    C = x.shape[-1]
    n = int(kernel_size)
    L = np.full(x.shape, float(delta))
    for k in range(C):
        lo, hi = max(0, k - n // 2), min(C - 1, k + (n - 1) // 2)
        L[..., k] += float(alpha) / n * np.sum(x[..., lo:hi + 1] ** 2, axis=-1)
    t = g * x * _neg_pow(L, beta + 1.0)
    dx = g * _neg_pow(L, beta)
    for k in range(C):
        lo, hi = max(0, k - (n - 1) // 2), min(C - 1, k + n // 2)
        dx[..., k] -= 2.0 * alpha * beta / n * x[..., k] * np.sum(t[..., lo:hi + 1], axis=-1)
    return dx


def spatial_norm_gradient(x, g, kw=5, kh=5, alpha=1.0, beta=5.0, delta=1.0):
    """Exact derivative of the spatial normalization (nodes.md §8.3), zero edges, divisor KW·KH:
    dX[p] = G[p]·T[p]^−β − (2αβ/(KW·KH))·X[p]·Σ_{q∈Ω*(p)} G[q]·X[q]·T[q]^(−β−1)."""
    x = np.asarray(x, np.float64)
    g = np.asarray(g, np.float64)
    kw, kh = int(kw), int(kh)
    nw = float(kw * kh)
    T = float(delta) + float(alpha) / nw * _box(x * x, kh // 2, (kh - 1) // 2, kw // 2, (kw - 1) // 2)
    w = g * x * _neg_pow(T, beta + 1.0)
    s = _box(w, (kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2)       # the transposed window Ω*
    return g * _neg_pow(T, beta) - 2.0 * alpha * beta / nw * x * s


def local_contrast_norm_gradient(x, g, kw=5, kh=5, alpha=1.0, beta=0.5, delta=1.0 / 1024, pm=0.0, ps=1.0, p0=1.0):
    """Exact derivative of the chosen local contrast normalization (nodes.md §8.4; the max(·, 0) guard of
    the variance ignored), written as the spec's sums over the outputs q whose window holds p."""
    x = np.asarray(x, np.float64)
    g = np.asarray(g, np.float64)
    kw, kh = int(kw), int(kh)
    nw = float(kw * kh)
    fwd = (kh // 2, (kh - 1) // 2, kw // 2, (kw - 1) // 2)
    M = _box(x, *fwd) / nw
    # V two-pass: the mean of (X[q'] − M[q])² over the window of q; out-of-image taps read 0 and count
    N, H, W, C = x.shape
    pad = np.pad(x, ((0, 0), (fwd[0], fwd[1]), (fwd[2], fwd[3]), (0, 0)))
    V = np.zeros_like(x)
    for dy in range(kh):
        for dx_ in range(kw):
            V += (pad[:, dy:dy + H, dx_:dx_ + W, :] - M) ** 2
    V = np.maximum(V / nw, 0.0)
    T = float(delta) + float(alpha) * V
    tb = _neg_pow(T, beta)
    A = g * (x - float(p0) * M) * _neg_pow(T, beta + 1.0)
    tr = ((kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2)
    s1 = _box(g * tb, *tr)
    s2 = _box(A, *tr)
    s3 = _box(A * M, *tr)
    d = g * tb - float(p0) / nw * s1 - 2.0 * alpha * beta / nw * (x * s2 - s3)
    return float(ps) * d


# --------------------------------------------------------------------------------------------
# upsampling


def upsample_nearest_gradient(g, fx, fy):
    """Block sum dX[i, j] = Σ_{a<fy, b<fx} G[fy·i + a, fx·j + b] (nodes.md §9.1)."""
    g = np.asarray(g, np.float64)
    N, Hd, Wd, C = g.shape
    fx, fy = int(fx), int(fy)
    return g.reshape(N, Hd // fy, fy, Wd // fx, fx, C).sum(axis=(2, 4))


def upsample_bilinear_gradient(g, fx, fy, align_corners=False):
    """The adjoint of bilinear upsampling (nodes.md §9.2): the transposed interpolation matrices."""
    g = np.asarray(g, np.float64)
    N, Hd, Wd, C = g.shape
    fx, fy = int(fx), int(fy)
    H, W = Hd // fy, Wd // fx
    my = _linear_matrix(_upsample_positions(H, fy, align_corners), H)
    mx = _linear_matrix(_upsample_positions(W, fx, align_corners), W)
    return np.einsum('yh,nyxc,xw->nhwc', my, g, mx, optimize=True)


# --------------------------------------------------------------------------------------------
# dropout

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_LO = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 (Salmon et al., SC 2011) on uint32 arrays: the four output words."""
    c = [np.asarray(v, np.uint64) & _LO for v in (c0, c1, c2, c3)]
    k0 = np.asarray(k0, np.uint64) & _LO
    k1 = np.asarray(k1, np.uint64) & _LO
    for r in range(10):
        if r:
            k0 = (k0 + _W0) & _LO
            k1 = (k1 + _W1) & _LO
        p0 = _M0 * c[0]
        p1 = _M1 * c[2]
        c = [((p1 >> np.uint64(32)) ^ c[1] ^ k0) & _LO, p1 & _LO, ((p0 >> np.uint64(32)) ^ c[3] ^ k1) & _LO, p0 & _LO]
    return [v.astype(np.uint32) for v in c]


def dropout_mask_shape(shape, mask_stride=(1, 1, 1)):
    """The mask's shape: the image's with 1 on each axis of stride 0; stride = (x, y, channel)."""
    n, h, w, c = shape
    sx, sy, sz = mask_stride
    return (n, h if sy else 1, w if sx else 1, c if sz else 1)


def dropout_mask(shape, keep_probability, seed=0, mask_stride=(1, 1, 1), draw=0):
    """The project's keep mask (nodes.md §11.1 chosen generator): element i (flat NHWC index within its
    image n of the mask) takes word i mod 4 of Philox-4x32-10 with counter (i div 4 as two 32-bit
    halves, n, draw) and key = seed; it is kept iff (word >> 8)·2^−24 < keep_probability. `draw` (an
    mpsnn choice) counts the masks the dropout step drew before: 0 for a compiled graph's first
    encode, then 1, 2, ... — draw 0 is nodes.md's counter (i div 4, n) exactly. uint8, mask shape."""
    ms = dropout_mask_shape(shape, mask_stride)
    per = int(np.prod(ms[1:]))
    n = np.arange(ms[0], dtype=np.uint64)[:, None]
    i = np.arange(per, dtype=np.uint64)[None, :]
    blk = i // np.uint64(4)
    seed = np.uint64(seed)
    words = philox4x32_10(blk & _LO, blk >> np.uint64(32), n & _LO, np.uint64(draw) + n * np.uint64(0),
                          seed & _LO, seed >> np.uint64(32))
    sel = (i % np.uint64(4)).astype(np.int64)
    w = np.choose(np.broadcast_to(sel, (ms[0], per)), [np.broadcast_to(v, (ms[0], per)) for v in words])
    u = (w >> np.uint32(8)).astype(np.float64) * 2.0 ** -24
    return (u < float(keep_probability)).astype(np.uint8).reshape(ms)


def dropout_forward(x, mask, keep_probability):
    """Y = X·M/p with the (broadcast) mask; dropped elements are 0 (nodes.md §11.1)."""
    x = np.asarray(x, np.float64)
    return np.where(np.broadcast_to(mask, x.shape) != 0, x / float(keep_probability), 0.0)


def dropout_gradient(g, mask, keep_probability):
    """dX = G·M/p with the forward mask (nodes.md §11.2)."""
    return dropout_forward(g, mask, keep_probability)
