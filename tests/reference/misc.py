"""Concatenation (nodes.md §12), dropout (nodes.md §11) and batch-norm folding (nodes.md §4.1)."""

import numpy as np

from .conv import fold_batch_norm  # noqa: F401  (re-exported helper, nodes.md §4.1)


def concat_offsets(channel_counts):
    """4-aligned slot offsets off_k and total C_out (last source unpadded) (nodes.md §12.1)."""
    offs = []
    off = 0
    for c in channel_counts:
        offs.append(off)
        off += 4 * ((int(c) + 3) // 4)
    c_out = offs[-1] + int(channel_counts[-1]) if offs else 0
    return offs, c_out


def concatenate(xs):
    """Channel concatenation into 4-aligned slots, zero gap channels (nodes.md §12.1)."""
    xs = [np.asarray(x, np.float64) for x in xs]
    if not xs:
        raise ValueError("need at least one source")
    n, h, w = xs[0].shape[:3]
    for x in xs:
        if x.shape[:3] != (n, h, w):
            raise ValueError("all sources must share N, H and W")
    offs, c_out = concat_offsets([x.shape[3] for x in xs])
    y = np.zeros((n, h, w, c_out), np.float64)
    for off, x in zip(offs, xs):
        y[..., off:off + x.shape[3]] = x
    return y


def dropout_inference(x):
    """Dropout at inference: identity (nodes.md §11)."""
    return np.array(x, np.float64, copy=True)


def dropout_with_mask(x, mask, keep_probability):
    """Dropout forward Y = X·M/p for a given (broadcastable) 0/1 mask (nodes.md §11.1)."""
    x = np.asarray(x, np.float64)
    return x * np.asarray(mask, np.float64) / float(keep_probability)
