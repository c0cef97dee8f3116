"""The loss oracles (reference/loss.py) against central finite differences of their own reported loss, for
every loss type and reduction, with and without per-element weights and label smoothing, and the YOLO loss."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reference import loss as RL

SHAPE = (2, 2, 3, 5)
TYPES = sorted(RL.NAMES)
REDUCTIONS = sorted(RL.REDUCTION_NAMES)
CASES = [(lt, r) for lt, r in itertools.product(TYPES, REDUCTIONS) if lt != RL.COSINE or r == RL.SUM]


def _objective(lt, r, t, kw):
    def f(y):
        value, _ = RL.loss(y, t, lt, r, **kw)
        return value.sum()
    return f


def _numeric_gradient(f, y, eps=1e-6):
    g = np.zeros_like(y)
    for idx in np.ndindex(y.shape):
        yp, ym = y.copy(), y.copy()
        yp[idx] += eps
        ym[idx] -= eps
        g[idx] = (f(yp) - f(ym)) / (2 * eps)
    return g


@pytest.mark.parametrize('weighted', [False, True], ids=['scalar', 'weights'])
@pytest.mark.parametrize('lt,r', CASES, ids=[f'{RL.NAMES[a]}-{RL.REDUCTION_NAMES[b]}' for a, b in CASES])
def test_gradient_is_the_derivative_of_the_reported_loss(lt, r, weighted):
    rng = np.random.default_rng(lt * 7 + r)
    y, t = RL.sample_inputs(lt, SHAPE, rng)
    kw = dict(weight=0.7)
    if weighted:
        w = rng.random(SHAPE) + 0.2
        w[0, 0, 0, :] = 0.0  # zero weights count for sumByNonZeroWeights
        w[1, 1, 2, 1] = 0.0
        kw = dict(weights=w)
    if lt in (RL.SOFTMAX_CE, RL.SIGMOID_CE):
        kw.update(label_smoothing=0.1, number_of_classes=SHAPE[-1])
    if lt == RL.HUBER:
        kw.update(delta=0.8)
    _, grad = RL.loss(y, t, lt, r, **kw)
    numeric = _numeric_gradient(_objective(lt, r, t, kw), y)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_reductions_relate_as_specified():
    rng = np.random.default_rng(3)
    y, t = RL.sample_inputs(RL.MSE, SHAPE, rng)
    w = rng.random(SHAPE)
    w[..., 0] = 0
    per, _ = RL.loss(y, t, RL.MSE, RL.NONE, weights=w)
    total, _ = RL.loss(y, t, RL.MSE, RL.SUM, weights=w)
    mean, _ = RL.loss(y, t, RL.MSE, RL.MEAN, weights=w)
    nz, _ = RL.loss(y, t, RL.MSE, RL.SUM_NZ, weights=w)
    np.testing.assert_allclose(total.ravel(), per.sum((1, 2, 3)))
    np.testing.assert_allclose(mean.ravel(), per.sum((1, 2, 3)) / np.prod(SHAPE[1:]))
    np.testing.assert_allclose(nz.ravel(), per.sum((1, 2, 3)) / (w != 0).sum((1, 2, 3)))
    zero, g = RL.loss(y, t, RL.MSE, RL.SUM_NZ, weights=np.zeros(SHAPE))
    assert not zero.any() and not g.any()  # no non-zero weight: L = 0, gradient 0


def test_softmax_ce_uniform_gradient_is_p_minus_t():
    # nodes.md §13.2: with channel-uniform weight and labels summing to 1, w (softmax(y) - t).
    rng = np.random.default_rng(4)
    y, t = RL.sample_inputs(RL.SOFTMAX_CE, SHAPE, rng)
    _, g = RL.loss(y, t, RL.SOFTMAX_CE, RL.SUM, weight=0.25)
    p = np.exp(y) / np.exp(y).sum(-1, keepdims=True)
    np.testing.assert_allclose(g, 0.25 * (p - t), rtol=1e-12, atol=1e-14)


YOLO_SUB = dict(xy=dict(type=RL.MSE, weight=1.0), wh=dict(type=RL.HUBER, weight=0.5, delta=0.7),
                conf=dict(type=RL.SIGMOID_CE), classes=dict(type=RL.SOFTMAX_CE, label_smoothing=0.1,
                                                            number_of_classes=3))


def yolo_inputs(rng, n=2, h=3, w=4, anchors=((1.0, 1.5), (2.0, 0.8)), k=3):
    """YOLO predictions and labels: a few responsible (cell, anchor) slots with lc = 1, offsets in [0, 1],
    log sizes near the predictions (so IOU gates vary), one-hot classes."""
    A = len(anchors)
    B = 5 + k
    y = rng.standard_normal((n, h, w, A * B)) * 0.7
    t = np.zeros_like(y)
    for b in range(n):
        for (i, j, a) in [(0, 1, 0), (2, 3, 1), (1, 1, 1)][: 2 + b]:
            o = a * B
            t[b, i, j, o:o + 4] = [rng.random(), rng.random(), y[b, i, j, o + 2] + 0.2, y[b, i, j, o + 3] - 0.1]
            t[b, i, j, o + 4] = 1.0
            t[b, i, j, o + 5 + rng.integers(k)] = 1.0
    return y, t, [list(a) for a in anchors]


@pytest.mark.parametrize('reduction', [RL.NONE, RL.SUM, RL.MEAN], ids=['none', 'sum', 'mean'])
def test_yolo_gradient_is_the_derivative_with_fixed_targets(reduction):
    rng = np.random.default_rng(11)
    y, t, anchors = yolo_inputs(rng)
    # rescore off: every target and gate is independent of y except through the IOU gates, which
    # finite differences this small do not cross here.
    kw = dict(YOLO_SUB, reduction=reduction, rescore=False, min_iou=0.6, max_iou=0.05)

    def f(v):
        value, _ = RL.yolo_loss(v, t, anchors, **kw)
        return value.sum()

    _, grad = RL.yolo_loss(y, t, anchors, **kw)
    np.testing.assert_allclose(grad, _numeric_gradient(f, y), rtol=1e-5, atol=1e-6)
