"""Upsampling (nodes.md §9) and scale-node (nodes.md §10) oracles, float64 NHWC."""

import numpy as np


def _apply_axes(x, my, mx):
    """Apply per-axis resampling matrices my (Dh, H) and mx (Dw, W) to NHWC x."""
    x = np.asarray(x, np.float64)
    return np.einsum('yh,nhwc,xw->nyxc', my, x, mx, optimize=True)


def _linear_matrix(u, S):
    """Bilinear weight matrix (len(u), S) for index positions u with edge clamp (nodes.md §9.2/§10.3)."""
    u = np.asarray(u, np.float64)
    k0 = np.floor(u)
    lam = u - k0
    k0 = k0.astype(np.int64)
    i0 = np.clip(k0, 0, S - 1)
    i1 = np.clip(k0 + 1, 0, S - 1)
    m = np.zeros((u.size, S), np.float64)
    rows = np.arange(u.size)
    np.add.at(m, (rows, i0), 1.0 - lam)
    np.add.at(m, (rows, i1), lam)
    return m


def upsample_nearest(x, fx, fy):
    """Nearest upsampling Y[i,j] = X[⌊i/fy⌋, ⌊j/fx⌋] (nodes.md §9.1)."""
    x = np.asarray(x, np.float64)
    return np.repeat(np.repeat(x, int(fy), axis=1), int(fx), axis=2)


def _upsample_positions(S, f, align_corners):
    """Source index positions u for bilinear upsampling of one axis (nodes.md §9.2)."""
    D = S * int(f)
    o = np.arange(D, dtype=np.float64)
    if align_corners:
        return o * (S - 1) / (D - 1) if D > 1 else np.zeros(D)
    return np.maximum(0.0, (o + 0.5) / f - 0.5)


def upsample_bilinear(x, fx, fy, align_corners=False):
    """Bilinear upsampling, aligned or half-pixel with clamp (nodes.md §9.2)."""
    x = np.asarray(x, np.float64)
    N, H, W, C = x.shape
    my = _linear_matrix(_upsample_positions(H, int(fy), align_corners), H)
    mx = _linear_matrix(_upsample_positions(W, int(fx), align_corners), W)
    return _apply_axes(x, my, mx)


def _transform(x_shape, out_w, out_h, transform):
    """Scale transform (sx, sy, tx, ty); default maps the whole source onto the result (nodes.md §10.2)."""
    H, W = x_shape[1], x_shape[2]
    if transform is None:
        return out_w / W, out_h / H, 0.0, 0.0
    sx, sy, tx, ty = (float(v) for v in transform)
    return sx, sy, tx, ty


def _centres(D, s, t):
    """Pixel-edge sample coordinates ξ = (o + 0.5 − t)/s (nodes.md §10.2)."""
    return (np.arange(D, dtype=np.float64) + 0.5 - t) / s


def bilinear_scale(x, out_w, out_h, transform=None):
    """Bilinear scale node: half-pixel bilinear, edge clamp, no prefilter (nodes.md §10.3)."""
    x = np.asarray(x, np.float64)
    N, H, W, C = x.shape
    sx, sy, tx, ty = _transform(x.shape, int(out_w), int(out_h), transform)
    my = _linear_matrix(_centres(int(out_h), sy, ty) - 0.5, H)
    mx = _linear_matrix(_centres(int(out_w), sx, tx) - 0.5, W)
    return _apply_axes(x, my, mx)


def _lanczos3(t):
    """Lz(t) = sinc(t)·sinc(t/3) for |t| < 3, else 0 (nodes.md §10.4)."""
    return np.where(np.abs(t) < 3.0, np.sinc(t) * np.sinc(t / 3.0), 0.0)


def _lanczos_matrix(D, S, s, t):
    """Normalized Lanczos-3 weight matrix (D, S), support widened by the downscale (nodes.md §10.4)."""
    F = max(1.0, 1.0 / s)
    rho = 3.0 * F
    m = np.zeros((D, S), np.float64)
    for o, xi in enumerate(_centres(D, s, t)):
        k_lo = max(int(np.floor(xi - rho + 0.5)), 0)
        k_hi = min(int(np.floor(xi + rho + 0.5)), S)
        if k_hi <= k_lo:
            continue
        k = np.arange(k_lo, k_hi)
        w = _lanczos3((k + 0.5 - xi) / F)
        tot = w.sum()
        if tot != 0.0:
            m[o, k_lo:k_hi] = w / tot
    return m


def lanczos_scale(x, out_w, out_h, transform=None):
    """Lanczos scale node: separable Lanczos-3, Pillow LANCZOS algorithm (nodes.md §10.4)."""
    x = np.asarray(x, np.float64)
    N, H, W, C = x.shape
    sx, sy, tx, ty = _transform(x.shape, int(out_w), int(out_h), transform)
    my = _lanczos_matrix(int(out_h), H, sy, ty)
    mx = _lanczos_matrix(int(out_w), W, sx, tx)
    return _apply_axes(x, my, mx)
