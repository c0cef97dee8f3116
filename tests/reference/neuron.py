"""Neuron (activation) oracles (nodes.md §6), float64, NHWC (channel = last axis)."""

import numpy as np

# per-type defaults (a, b, c) of nodes.md §6.2 (documented or chosen); unused parameters are 0
NEURON_DEFAULTS = {
    'none': (0.0, 0.0, 0.0),
    'relu': (0.0, 0.0, 0.0),
    'linear': (1.0, 0.0, 0.0),
    'sigmoid': (0.0, 0.0, 0.0),
    'hard_sigmoid': (0.2, 0.5, 0.0),
    'tanh': (1.0, 1.0, 0.0),
    'absolute': (0.0, 0.0, 0.0),
    'soft_plus': (1.0, 1.0, 0.0),
    'soft_sign': (0.0, 0.0, 0.0),
    'elu': (1.0, 0.0, 0.0),
    'prelu': (0.0, 0.0, 0.0),
    'relu_n': (1.0, 6.0, 0.0),
    'power': (1.0, 0.0, 1.0),
    'exponential': (1.0, 0.0, -1.0),
    'logarithm': (1.0, 0.0, -1.0),
}

# MPSCNNNeuronType raw values (nodes.md §6.1)
NEURON_TYPE_CODES = {
    'none': 0, 'relu': 1, 'linear': 2, 'sigmoid': 3, 'hard_sigmoid': 4, 'tanh': 5, 'absolute': 6,
    'soft_plus': 7, 'soft_sign': 8, 'elu': 9, 'prelu': 10, 'relu_n': 11, 'power': 12,
    'exponential': 13, 'logarithm': 14,
}
_CODE_TO_NAME = {v: k for k, v in NEURON_TYPE_CODES.items()}


def _sigmoid(t):
    """Numerically stable logistic σ(t) (nodes.md §6.2 SoftPlus note)."""
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def prelu_slopes(data, C):
    """Per-channel PReLU slopes: length 1 broadcast, length >= C uses the first C (nodes.md §6.2)."""
    a = np.asarray(data, np.float64).reshape(-1)
    if a.size == 1:
        return np.full(C, a[0])
    if a.size < C:
        raise ValueError("PReLU data needs at least C values (or exactly 1)")
    return a[:C]


def _resolve(type, a, b, c):
    """(name, a, b, c): type as a name or an MPSCNNNeuronType raw value; None params take NEURON_DEFAULTS."""
    name = _CODE_TO_NAME.get(type, type) if not isinstance(type, str) else type
    if name not in NEURON_DEFAULTS:
        raise ValueError("unknown neuron type %r" % (type,))
    da, db, dc = NEURON_DEFAULTS[name]
    return (name, da if a is None else float(a), db if b is None else float(b),
            dc if c is None else float(c))


def neuron(x, type, a=None, b=None, c=None, data=None):
    """Neuron forward f(u) for every MPSCNNNeuronType (nodes.md §6.2); None params take NEURON_DEFAULTS."""
    x = np.asarray(x, np.float64)
    name, a, b, c = _resolve(type, a, b, c)
    u = x
    with np.errstate(all='ignore'):
        if name == 'none':
            return u.copy()
        if name == 'relu':
            return np.where(u >= 0, u, a * u)
        if name == 'linear':
            return a * u + b
        if name == 'sigmoid':
            return _sigmoid(u)
        if name == 'hard_sigmoid':
            return np.clip(a * u + b, 0.0, 1.0)
        if name == 'tanh':
            return a * np.tanh(b * u)
        if name == 'absolute':
            return np.abs(u)
        if name == 'soft_plus':
            t = b * u
            return a * (np.maximum(t, 0.0) + np.log1p(np.exp(-np.abs(t))))
        if name == 'soft_sign':
            return u / (1.0 + np.abs(u))
        if name == 'elu':
            return np.where(u >= 0, u, a * np.expm1(u))
        if name == 'prelu':
            if data is None:
                raise ValueError("PReLU needs per-channel data")
            slopes = prelu_slopes(data, u.shape[-1])
            return np.where(u >= 0, u, slopes * u)
        if name == 'relu_n':
            r = np.where(u >= 0, u, a * u)
            return np.minimum(r, b)
        if name == 'power':
            return np.power(a * u + b, c)
        if name == 'exponential':
            t = a * u + b
            if c == -1.0:
                return np.exp(t)
            if c == 0.0:
                return np.power(0.0, t)
            return np.exp(t * np.log(c))        # negative base -> NaN (nodes.md §6.2 notes)
        if name == 'logarithm':
            t = a * u + b
            if c == -1.0:
                return np.log(t)
            return np.log(t) / np.log(c)
    raise AssertionError(name)


def neuron_gradient(kind, x, g, a=None, b=None, c=None, data=None):
    """Neuron gradient dX = G·f'(X) (nodes.md §6.2 f' column and notes, §6.3), evaluated at the forward
    input x; kind, a, b, c, data as for neuron() (name or raw type value, None params take
    NEURON_DEFAULTS). Per IEEE-754 where f' is infinite or undefined (no epsilon)."""
    u = np.asarray(x, np.float64)
    g = np.asarray(g, np.float64)
    if g.shape != u.shape:
        raise ValueError("source gradient has shape %s; the source has %s" % (g.shape, u.shape))
    name, a, b, c = _resolve(kind, a, b, c)
    with np.errstate(all='ignore'):
        if name == 'none':
            d = np.ones_like(u)
        elif name == 'relu':
            d = np.where(u >= 0, 1.0, a)
        elif name == 'linear':
            d = np.full_like(u, a)
        elif name == 'sigmoid':
            d = _sigmoid(u) * _sigmoid(-u)                  # σ(1 − σ) without cancellation
        elif name == 'hard_sigmoid':
            t = a * u + b
            d = np.where((t > 0) & (t < 1), a, 0.0)
        elif name == 'tanh':
            d = a * b / np.cosh(b * u) ** 2                 # 1 − tanh² = sech²
        elif name == 'absolute':
            d = np.sign(u)                                  # chosen: 0 at 0
        elif name == 'soft_plus':
            d = a * b * _sigmoid(b * u)
        elif name == 'soft_sign':
            d = 1.0 / (1.0 + np.abs(u)) ** 2
        elif name == 'elu':
            d = np.where(u >= 0, 1.0, a * np.exp(np.minimum(u, 0.0)))
        elif name == 'prelu':
            if data is None:
                raise ValueError("PReLU needs per-channel data")
            d = np.where(u >= 0, 1.0, prelu_slopes(data, u.shape[-1]))
        elif name == 'relu_n':
            r = np.where(u >= 0, u, a * u)
            d = np.where(u >= 0, 1.0, a) * (r < b)
        elif name == 'power':
            d = a * c * np.power(a * u + b, c - 1.0)
        elif name == 'exponential':
            f = neuron(u, name, a, b, c)
            d = a * f if c == -1.0 else a * np.log(c) * f
        elif name == 'logarithm':
            t = a * u + b
            d = a / t if c == -1.0 else a / (np.log(c) * t)
        else:
            raise AssertionError(name)
        return g * d


def neuron_kinks(name, a=None, b=None):
    """Inputs where f' jumps for neuron `name` with parameters a, b (nodes.md §6.2); gradient tests
    keep their inputs away from them."""
    da, db, _ = NEURON_DEFAULTS[name]
    a = da if a is None else a
    b = db if b is None else b
    if name in ('relu', 'absolute', 'elu', 'prelu'):
        return [0.0]
    if name == 'hard_sigmoid':
        return [-b / a, (1 - b) / a]
    if name == 'relu_n':
        return [0.0, b] + ([b / a] if a else [])
    return []
