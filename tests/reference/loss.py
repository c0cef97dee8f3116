"""Float64 oracles of the loss nodes (nodes.md §13.2, §13.3). Images are (N, H, W, C) arrays; each image
is reduced separately. `loss` returns the loss image (N, 1, 1, 1) for the reductions sum / mean /
sumByNonZeroWeights, or the weighted per-element losses (N, H, W, C) for none, and the gradient image
dL/dy (N, H, W, C): the exact derivative of the reported loss (for none: of the sum of its elements)."""

from __future__ import annotations

import numpy as np

# MPSCNNLossType / MPSCNNReductionType raw values
MAE, MSE, SOFTMAX_CE, SIGMOID_CE, CATEGORICAL_CE, HINGE, HUBER, COSINE, LOG, KL = range(10)
NONE, SUM, MEAN, SUM_NZ = range(4)
NAMES = {MAE: 'mae', MSE: 'mse', SOFTMAX_CE: 'softmax_ce', SIGMOID_CE: 'sigmoid_ce', CATEGORICAL_CE: 'categorical_ce',
         HINGE: 'hinge', HUBER: 'huber', COSINE: 'cosine', LOG: 'log', KL: 'kl'}
REDUCTION_NAMES = {NONE: 'none', SUM: 'sum', MEAN: 'mean', SUM_NZ: 'sum_nz'}


def elementwise(loss_type, y, t, epsilon=1e-7, delta=1.0):
    """ℓ and ℓ' = dℓ/dy per element (nodes.md §13.2 table); t already label-smoothed."""
    y = np.asarray(y, np.float64)
    t = np.asarray(t, np.float64)
    if loss_type == MAE:
        return np.abs(y - t), np.sign(y - t)
    if loss_type == MSE:
        return (y - t) ** 2, 2 * (y - t)
    if loss_type == SIGMOID_CE:
        sig = np.where(y >= 0, 1 / (1 + np.exp(-np.abs(y))), np.exp(-np.abs(y)) / (1 + np.exp(-np.abs(y))))
        return np.maximum(y, 0) - y * t + np.log1p(np.exp(-np.abs(y))), sig - t
    if loss_type == CATEGORICAL_CE:
        with np.errstate(divide='ignore', invalid='ignore'):
            return np.where(t == 0, 0.0, -t * np.log(y)), np.where(t == 0, 0.0, -t / y)
    if loss_type == HINGE:
        s = 2 * t - 1
        m = 1 - s * y
        return np.maximum(m, 0), np.where(m > 0, -s, 0.0)
    if loss_type == HUBER:
        d = y - t
        quad = np.abs(d) <= delta
        return np.where(quad, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta)), np.where(quad, d, delta * np.sign(d))
    if loss_type == LOG:
        e = epsilon
        return (-t * np.log(y + e) - (1 - t) * np.log(1 - y + e), -t / (y + e) + (1 - t) / (1 - y + e))
    if loss_type == KL:
        with np.errstate(divide='ignore', invalid='ignore'):
            return np.where(t == 0, 0.0, t * (np.log(t) - y)), -t
    raise ValueError(f'not an elementwise loss type: {loss_type}')


def loss(y, t, loss_type, reduction, weights=None, weight=1.0, label_smoothing=0.0, number_of_classes=1,
         epsilon=1e-7, delta=1.0):
    """(loss image, gradient) of MPSCNNLossNode. Labels / weights may carry the channels rounded up to a
    multiple of 4; the padding channels are ignored."""
    y = np.asarray(y, np.float64)
    n, h, w_, c = y.shape
    t = np.asarray(t, np.float64)[..., :c]
    w = np.broadcast_to(np.float64(weight), y.shape) if weights is None else np.asarray(weights, np.float64)[..., :c]
    if loss_type == COSINE:
        assert reduction == SUM, 'cosine distance: sum only (chosen)'
        wp = w[..., :1]                                   # the weights' channel 0 per pixel (chosen)
        value = (wp[..., 0] * (1 - (y * t).sum(-1))).sum((1, 2)).reshape(n, 1, 1, 1)
        return value, -wp * t
    if loss_type == SOFTMAX_CE:
        ts = t * (1 - label_smoothing) + label_smoothing / number_of_classes if label_smoothing > 0 else t
        m = y.max(-1, keepdims=True)
        lse = m + np.log(np.exp(y - m).sum(-1, keepdims=True))
        per = -ts * (y - lse)
        p = np.exp(y - lse)
        grad = p * (w * ts).sum(-1, keepdims=True) - w * ts
        count = h * w_
        nz = (w != 0).any(-1).sum((1, 2))
    else:
        ts = t * (1 - label_smoothing) + label_smoothing / 2 if (label_smoothing > 0 and loss_type == SIGMOID_CE) else t
        per, dper = elementwise(loss_type, y, ts, epsilon, delta)
        grad = w * dper
        count = h * w_ * c
        nz = (w != 0).sum((1, 2, 3))
    weighted = w * per
    if reduction == NONE:
        return weighted, grad
    total = weighted.sum((1, 2, 3))
    if reduction == SUM:
        div = np.ones(n)
    elif reduction == MEAN:
        div = np.full(n, float(count))
    else:
        div = nz.astype(np.float64)
    value = np.where(div > 0, total / np.where(div > 0, div, 1), 0.0)   # no non-zero weight: L = 0 (chosen)
    scale = np.where(div > 0, 1 / np.where(div > 0, div, 1), 0.0).reshape(n, 1, 1, 1)
    return value.reshape(n, 1, 1, 1), grad * scale


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _iou(a, b):
    ax0, ax1, ay0, ay1 = a[0] - a[2] / 2, a[0] + a[2] / 2, a[1] - a[3] / 2, a[1] + a[3] / 2
    bx0, bx1, by0, by1 = b[0] - b[2] / 2, b[0] + b[2] / 2, b[1] - b[3] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _sub(desc, v, target):
    """ℓ, ℓ' of a YOLO sub-term (with the sigmoid cross entropy's label smoothing)."""
    tt = target
    if desc['type'] == SIGMOID_CE and desc.get('label_smoothing', 0) > 0:
        tt = target * (1 - desc['label_smoothing']) + desc['label_smoothing'] / 2
    l, d = elementwise(desc['type'], v, tt, desc.get('epsilon', 1e-7), desc.get('delta', 1.0))
    return float(l), float(d)


def yolo_loss(y, t, anchors, xy, wh, conf, classes, reduction=SUM, rescore=True, scale_xy=10.0, scale_wh=10.0,
              scale_no_object=5.0, scale_object=100.0, scale_class=2.0, min_iou=0.7, max_iou=0.3):
    """(loss image, gradient) of MPSCNNYOLOLossNode under nodes.md §13.3's chosen definition. Sub-loss
    descriptors are dicts {'type', 'weight', 'delta', 'epsilon', 'label_smoothing', 'number_of_classes'}."""
    y = np.asarray(y, np.float64)
    n, h, w, c = y.shape
    t = np.asarray(t, np.float64)[..., :c]
    A = len(anchors)
    B = c // A
    K = B - 5
    grad = np.zeros_like(y)
    per = np.zeros_like(y)
    for b in range(n):
        truth = []
        for i in range(h):
            for j in range(w):
                for a in range(A):
                    q = t[b, i, j, a * B:(a + 1) * B]
                    if q[4] == 1:
                        aw, ah = anchors[a]
                        truth.append((j + q[0], i + q[1], aw * np.exp(q[2]), ah * np.exp(q[3])))
        for i in range(h):
            for j in range(w):
                for a in range(A):
                    o = a * B
                    p = y[b, i, j, o:o + B]
                    q = t[b, i, j, o:o + B]
                    aw, ah = anchors[a]
                    sx, sy = _sigmoid(p[0]), _sigmoid(p[1])
                    pred = (j + sx, i + sy, aw * np.exp(p[2]), ah * np.exp(p[3]))

                    def term(desc, scale, ch, v, target, chain):
                        lv, dl = _sub(desc, v, target)
                        sw = scale * desc.get('weight', 1.0)
                        grad[b, i, j, o + ch] += sw * dl * chain
                        per[b, i, j, o + ch] += sw * lv

                    if q[4] == 1:
                        term(xy, scale_xy, 0, sx, q[0], sx * (1 - sx))
                        term(xy, scale_xy, 1, sy, q[1], sy * (1 - sy))
                        term(wh, scale_wh, 2, p[2], q[2], 1.0)
                        term(wh, scale_wh, 3, p[3], q[3], 1.0)
                        own = (j + q[0], i + q[1], aw * np.exp(q[2]), ah * np.exp(q[3]))
                        term(conf, scale_object, 4, p[4], _iou(pred, own) if rescore else 1.0, 1.0)
                        z, qc = p[5:], q[5:]
                        sw = scale_class * classes.get('weight', 1.0)
                        if classes['type'] == SOFTMAX_CE:
                            ls = classes.get('label_smoothing', 0.0)
                            qs = qc * (1 - ls) + ls / classes.get('number_of_classes', 1) if ls > 0 else qc
                            lse = z.max() + np.log(np.exp(z - z.max()).sum())
                            per[b, i, j, o + 5:o + B] += sw * (-qs * (z - lse))
                            grad[b, i, j, o + 5:o + B] += sw * (np.exp(z - lse) * qs.sum() - qs)
                        else:
                            for k in range(K):
                                term(classes, scale_class, 5 + k, z[k], qc[k], 1.0)
                    else:
                        best = max([_iou(pred, tb) for tb in truth], default=0.0)
                        if best < max_iou:
                            term(conf, scale_no_object, 4, p[4], 0.0, 1.0)
                        elif best > min_iou:
                            term(conf, scale_object, 4, p[4], best if rescore else 1.0, 1.0)
    if reduction == NONE:
        return per, grad
    div = h * w * A if reduction == MEAN else 1.0
    return (per.sum((1, 2, 3)) / div).reshape(n, 1, 1, 1), grad / div


def sample_inputs(loss_type, shape, rng, label_channels=None):
    """Predictions y and labels t of `shape` in each type's domain, away from its kinks (MAE at y = t,
    hinge at t̃·y = 1, Huber at |y - t| = δ): probabilities for categorical CE and log loss, log-probabilities
    for KL, probability vectors over channels as softmax / categorical / KL targets, 0/1 hinge labels.
    `label_channels` pads the labels with zero channels (MPS's slices of four)."""
    n, h, w, c = shape
    y = rng.standard_normal(shape)
    if loss_type in (SOFTMAX_CE, CATEGORICAL_CE, KL):
        t = rng.random(shape) + 0.05
        t /= t.sum(-1, keepdims=True)
        if loss_type == CATEGORICAL_CE:
            y = rng.random(shape) * 0.8 + 0.1
        if loss_type == KL:
            p = rng.random(shape) + 0.1
            y = np.log(p / p.sum(-1, keepdims=True))
    elif loss_type in (SIGMOID_CE, LOG):
        t = rng.random(shape)
        if loss_type == LOG:
            y = rng.random(shape) * 0.8 + 0.1
    elif loss_type == HINGE:
        t = (rng.random(shape) > 0.5).astype(np.float64)
        s = 2 * t - 1
        y = np.where(np.abs(1 - s * y) < 0.05, y + 0.2, y)
    elif loss_type == COSINE:
        t = rng.standard_normal(shape)
        t /= np.linalg.norm(t, axis=-1, keepdims=True)
        y /= np.linalg.norm(y, axis=-1, keepdims=True)
    else:
        t = rng.standard_normal(shape)
        d = y - t
        if loss_type == MAE:
            y = np.where(np.abs(d) < 0.05, y + 0.1, y)
        if loss_type == HUBER:
            y = np.where(np.abs(np.abs(d) - 1.0) < 0.05, y + 0.2, y)
    if label_channels is not None and label_channels > c:
        t = np.concatenate([t, np.zeros((n, h, w, label_channels - c))], -1)
    return y, t
