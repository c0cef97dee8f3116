"""Float64 references of the optimizer updates (graph.md §7.2-7.5), element by element as the spec
writes them. Each returns the new values and the new state vectors; the inputs are not modified."""

from __future__ import annotations

import numpy as np


def preprocess(g, w, *, apply_gradient_clipping=False, gradient_clip_max=np.inf, gradient_clip_min=-np.inf,
               gradient_rescale=1.0, regularization_type="none", regularization_scale=0.0):
    """§7.2: clip (before rescaling), rescale, then L1 (scale * sign(w), sign(0) = 0) or L2 (scale * w)."""
    g = np.asarray(g, np.float64)
    w = np.asarray(w, np.float64)
    if apply_gradient_clipping:
        g = np.where(np.isnan(g), g, np.clip(g, gradient_clip_min, gradient_clip_max))
    g = gradient_rescale * g
    if regularization_type == "L1":
        g = g + regularization_scale * np.sign(w)
    elif regularization_type == "L2":
        g = g + regularization_scale * w
    return g


def sgd(w, g, m=None, *, lr, momentum_scale=0.0, nesterov=False, **desc):
    g = preprocess(g, w, **desc)
    w = np.asarray(w, np.float64)
    if m is None:
        return w - lr * g, None
    m = np.asarray(m, np.float64)
    if nesterov:
        m = momentum_scale * m + g
        return w - lr * (g + momentum_scale * m), m
    m = momentum_scale * m + lr * g
    return w - m, m


def rmsprop(w, g, s, *, lr, decay=0.9, epsilon=1e-8, **desc):
    g = preprocess(g, w, **desc)
    s = decay * np.asarray(s, np.float64) + (1 - decay) * g * g
    return np.asarray(w, np.float64) - lr * g / (np.sqrt(s) + epsilon), s


def adam(w, g, m, v, u=None, *, lr, t, beta1=0.9, beta2=0.999, epsilon=1e-8, **desc):
    """One update at time step t (already advanced: the first update has t = 1)."""
    g = preprocess(g, w, **desc)
    lr_t = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    m = beta1 * np.asarray(m, np.float64) + (1 - beta1) * g
    v = beta2 * np.asarray(v, np.float64) + (1 - beta2) * g * g
    denom = v
    if u is not None:
        u = np.maximum(np.asarray(u, np.float64), v)
        denom = u
    return np.asarray(w, np.float64) - lr_t * m / (np.sqrt(denom) + epsilon), m, v, u
