"""Binary arithmetic oracles with strides, scales, bias and clamp (nodes.md §3.1), float64 NHWC."""

import numpy as np

FLT_MAX = 3.4028234663852886e38
FLT_MIN = 1.1754943508222875e-38

_OPS = ('add', 'subtract', 'multiply', 'divide')


def _check_strides(strides):
    """Validate a (channel, y, x) stride triple of 0/1 values (nodes.md §3.1)."""
    t = tuple(int(v) for v in strides)
    if len(t) != 3 or any(v not in (0, 1) for v in t):
        raise ValueError("strides must be three values, each 0 or 1")
    return t


def result_shape(a_shape, b_shape, primary_strides=(1, 1, 1), secondary_strides=(1, 1, 1)):
    """Broadcast result shape (N, H, W, C) per the chosen definition of nodes.md §3.1."""
    sa = _check_strides(primary_strides)
    sb = _check_strides(secondary_strides)
    if a_shape[0] != b_shape[0]:
        raise ValueError("operands must have the same batch size")
    out = [a_shape[0]]
    # NHWC axis 1 = y (stride index 1), axis 2 = x (index 2), axis 3 = channel (index 0)
    for axis, k in ((1, 1), (2, 2), (3, 0)):
        ta, tb = sa[k], sb[k]
        if ta and tb:
            if a_shape[axis] != b_shape[axis]:
                raise ValueError("operand extents differ on an axis where both have stride 1")
            out.append(a_shape[axis])
        elif ta:
            out.append(a_shape[axis])
        elif tb:
            out.append(b_shape[axis])
        else:
            out.append(1)
    return tuple(out)


def address_operand(v, strides, shape):
    """Read operand v[c·t_c, i·t_y, j·t_x] for every result element, broadcast to `shape` (nodes.md §3.1)."""
    tc, ty, tx = _check_strides(strides)
    if not ty:
        v = v[:, 0:1]
    if not tx:
        v = v[:, :, 0:1]
    if not tc:
        v = v[:, :, :, 0:1]
    return np.broadcast_to(v, shape)


def binary_arithmetic(op, a, b, primary_scale=1.0, secondary_scale=1.0, bias=0.0,
                      primary_strides=(1, 1, 1), secondary_strides=(1, 1, 1),
                      minimum_value=-FLT_MAX, maximum_value=FLT_MAX):
    """Y = clamp(α·A op β·B + bias, lo, hi), NaN-propagating clamp always applied (nodes.md §3.1)."""
    if op not in _OPS:
        raise ValueError("op must be one of %s" % (_OPS,))
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    shape = result_shape(a.shape, b.shape, primary_strides, secondary_strides)
    A = float(primary_scale) * address_operand(a, primary_strides, shape)
    B = float(secondary_scale) * address_operand(b, secondary_strides, shape)
    with np.errstate(all='ignore'):
        if op == 'add':
            r = A + B + bias
        elif op == 'subtract':
            r = A - B + bias
        elif op == 'multiply':
            r = A * B + bias
        else:
            r = A / B + bias
    return np.minimum(np.maximum(r, float(minimum_value)), float(maximum_value))


def clamp_mask(op, a, b, primary_scale=1.0, secondary_scale=1.0, bias=0.0,
               primary_strides=(1, 1, 1), secondary_strides=(1, 1, 1),
               minimum_value=-FLT_MAX, maximum_value=FLT_MAX):
    """Clamp mask m = [lo < r < hi] of the pre-clamp value r (nodes.md §3.1)."""
    r = binary_arithmetic(op, a, b, primary_scale, secondary_scale, bias, primary_strides,
                          secondary_strides, -np.inf, np.inf)
    return ((r > float(minimum_value)) & (r < float(maximum_value))).astype(np.float64)
