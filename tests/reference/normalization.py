"""Normalization oracles (nodes.md §8), float64 NHWC."""

import numpy as np

from .geometry import extract_patches


def _vec(v, C, default):
    """Per-channel parameter vector; None -> default (nodes.md §8.5/§8.6 chosen defaults)."""
    if v is None:
        return np.full(C, float(default))
    v = np.asarray(v, np.float64).reshape(-1)
    return np.broadcast_to(v, (C,)) if v.size == 1 else v[:C]


def _neg_pow(t, beta):
    """T^{-β} evaluated as exp(-β·ln T) (nodes.md §8.1)."""
    with np.errstate(all='ignore'):
        return np.exp(-float(beta) * np.log(t))


def batch_norm_inference(x, mean, var, gamma, beta, eps):
    """Batch normalization, inference mode: γ(X−μ)/√(v+ε)+β (nodes.md §8.5)."""
    x = np.asarray(x, np.float64)
    C = x.shape[-1]
    mean, var = _vec(mean, C, 0.0), _vec(var, C, 1.0)
    gamma, beta = _vec(gamma, C, 1.0), _vec(beta, C, 0.0)
    return gamma * (x - mean) / np.sqrt(var + float(eps)) + beta


def batch_norm_statistics(x):
    """Batch statistics μ, biased v per channel over N·H·W (nodes.md §8.5 statistics mode)."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=(0, 1, 2))
    var = ((x - mean) ** 2).mean(axis=(0, 1, 2))
    return mean, var


def batch_norm_training(x, gamma, beta, eps):
    """Batch normalization in statistics mode (biased batch variance) (nodes.md §8.5)."""
    mean, var = batch_norm_statistics(x)
    return batch_norm_inference(x, mean, var, gamma, beta, eps)


def instance_norm(x, gamma, beta, eps):
    """Instance normalization per image and channel over H·W, biased variance (nodes.md §8.6)."""
    x = np.asarray(x, np.float64)
    C = x.shape[-1]
    gamma, beta = _vec(gamma, C, 1.0), _vec(beta, C, 0.0)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    return gamma * (x - mean) / np.sqrt(var + float(eps)) + beta


def cross_channel_norm(x, kernel_size=5, alpha=1.0, beta=5.0, delta=1.0):
    """Cross-channel (LRN) Y = X·(δ + α/N Σ_{Q(k)} X²)^{−β} (nodes.md §8.2)."""
    x = np.asarray(x, np.float64)
    C = x.shape[-1]
    n = int(kernel_size)
    sq = x * x
    acc = np.zeros_like(x)
    for off in range(-(n // 2), (n - 1) // 2 + 1):
        lo, hi = max(0, -off), min(C, C - off)       # channels k with 0 <= k + off < C
        if lo < hi:
            acc[..., lo:hi] += sq[..., lo + off:hi + off]
    L = float(delta) + float(alpha) / n * acc
    return x * _neg_pow(L, beta)


def _window_patches(x, kw, kh):
    """Stride-1 centred KH×KW windows, zero outside (nodes.md §8.1), patches (N,H,W,KH,KW,C)."""
    N, H, W, C = x.shape
    patches, _ = extract_patches(x, (kh, kw), (1, 1), (1, 1), (kh // 2, kw // 2), (H, W), edge='zero')
    return patches


def spatial_norm(x, kw=5, kh=5, alpha=1.0, beta=5.0, delta=1.0):
    """Spatial normalization Y = X·(δ + α/(KW·KH) Σ_Ω X²)^{−β}, zero edge (nodes.md §8.3)."""
    x = np.asarray(x, np.float64)
    kw, kh = int(kw), int(kh)
    s = _window_patches(x * x, kw, kh).sum(axis=(3, 4))
    T = float(delta) + float(alpha) / (kw * kh) * s
    return x * _neg_pow(T, beta)


def local_contrast_norm(x, kw=5, kh=5, alpha=1.0, beta=0.5, delta=1.0 / 1024, pm=0.0, ps=1.0, p0=1.0):
    """Local contrast normalization, two-pass window mean/variance (nodes.md §8.4)."""
    x = np.asarray(x, np.float64)
    kw, kh = int(kw), int(kh)
    nw = float(kw * kh)
    patches = _window_patches(x, kw, kh)                       # zero taps count in Nw
    M = patches.sum(axis=(3, 4)) / nw
    d = patches - M[:, :, :, None, None, :]
    V = np.maximum((d * d).sum(axis=(3, 4)) / nw, 0.0)
    T = float(delta) + float(alpha) * V
    return float(pm) + float(ps) * (x - float(p0) * M) * _neg_pow(T, beta)


# --------------------------------------------------------------------------------------------
# gradients (nodes.md §8.5, §8.6)

def batch_norm_gradient(x, g, gamma, eps, mean=None, var=None):
    """(dX, dγ, dβ) of batch normalization (nodes.md §8.5). Statistics mode (mean and var None: the
    batch's, biased): dX = γ/σ·(G − dβ/M − x̂·dγ/M); inference mode (the given mean and var):
    dX = γ·G/σ. dγ = Σ G·x̂, dβ = Σ G over N·H·W."""
    x = np.asarray(x, np.float64)
    g = np.asarray(g, np.float64)
    C = x.shape[-1]
    gamma = _vec(gamma, C, 1.0)
    statistics = mean is None
    if statistics:
        mean, var = batch_norm_statistics(x)
    mean, var = _vec(mean, C, 0.0), _vec(var, C, 1.0)
    inv = 1.0 / np.sqrt(var + float(eps))
    xh = (x - mean) * inv
    dbeta = g.sum(axis=(0, 1, 2))
    dgamma = (g * xh).sum(axis=(0, 1, 2))
    m = x.shape[0] * x.shape[1] * x.shape[2]
    if statistics:
        dx = gamma * inv * (g - dbeta / m - xh * dgamma / m)
    else:
        dx = gamma * inv * g
    return dx, dgamma, dbeta


def instance_norm_gradient(x, g, gamma, eps):
    """(dX, dγ, dβ) of instance normalization (nodes.md §8.6): per image and channel
    dX = γ/σ·(G − mean(G) − x̂·mean(G·x̂)); dγ = Σ G·x̂, dβ = Σ G summed over the batch."""
    x = np.asarray(x, np.float64)
    g = np.asarray(g, np.float64)
    gamma = _vec(gamma, x.shape[-1], 1.0)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    inv = 1.0 / np.sqrt(var + float(eps))
    xh = (x - mean) * inv
    dx = gamma * inv * (g - g.mean(axis=(1, 2), keepdims=True) - xh * (g * xh).mean(axis=(1, 2), keepdims=True))
    return dx, (g * xh).sum(axis=(0, 1, 2)), g.sum(axis=(0, 1, 2))
