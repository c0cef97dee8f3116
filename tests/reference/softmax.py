"""Softmax and log-softmax over the channel axis (nodes.md §7), float64 NHWC."""

import numpy as np


def softmax(x):
    """Softmax across channels with max subtraction (nodes.md §7.1)."""
    x = np.asarray(x, np.float64)
    with np.errstate(invalid='ignore'):
        m = np.max(x, axis=-1, keepdims=True)
        e = np.exp(x - m)
        return e / np.sum(e, axis=-1, keepdims=True)


def log_softmax(x):
    """Log-softmax across channels via log-sum-exp (nodes.md §7.3)."""
    x = np.asarray(x, np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        m = np.max(x, axis=-1, keepdims=True)
        return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))
