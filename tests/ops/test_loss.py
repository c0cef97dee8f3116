"""Loss nodes (nodes.md §13): MPSCNNLossNode for every loss type and reduction against the float64 oracles
of reference/loss.py (loss image and gradient image), with scalar and per-element weights, label
smoothing, labels padded to a multiple of 4 channels, odd sizes and batches (one MPSCNNLossLabels for all
images, or an MPSStateBatch of one per image through encode_batch); MPSCNNYOLOLossNode; PyTorch cross-checks;
and the errors of a missing labels state, labels of the wrong size and a loss that does not fit its source."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import mpsnn
from conftest import assert_close
from reference import loss as RL
from reference.test_loss_references import YOLO_SUB, yolo_inputs

HWC = mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels
CHW = mpsnn.MPSDataLayout.featureChannelsxHeightxWidth
TYPE = {
    RL.MAE: mpsnn.MPSCNNLossType.mean_absolute_error, RL.MSE: mpsnn.MPSCNNLossType.mean_squared_error,
    RL.SOFTMAX_CE: mpsnn.MPSCNNLossType.soft_max_cross_entropy,
    RL.SIGMOID_CE: mpsnn.MPSCNNLossType.sigmoid_cross_entropy,
    RL.CATEGORICAL_CE: mpsnn.MPSCNNLossType.categorical_cross_entropy, RL.HINGE: mpsnn.MPSCNNLossType.hinge,
    RL.HUBER: mpsnn.MPSCNNLossType.huber, RL.COSINE: mpsnn.MPSCNNLossType.cosine_distance,
    RL.LOG: mpsnn.MPSCNNLossType.log, RL.KL: mpsnn.MPSCNNLossType.kullback_leibler_divergence,
}
REDUCTION = {RL.NONE: mpsnn.MPSCNNReductionType.none, RL.SUM: mpsnn.MPSCNNReductionType.sum,
             RL.MEAN: mpsnn.MPSCNNReductionType.mean, RL.SUM_NZ: mpsnn.MPSCNNReductionType.sum_by_non_zero_weights}
CASES = [(lt, r) for lt, r in itertools.product(sorted(TYPE), sorted(REDUCTION)) if lt != RL.COSINE or r == RL.SUM]
IDS = [f'{RL.NAMES[a]}-{RL.REDUCTION_NAMES[b]}' for a, b in CASES]
SHAPE = (3, 3, 5, 7)  # batch 3, odd sizes, 7 channels (labels may carry 8)


def f32(a):
    return np.ascontiguousarray(a, np.float32)


def descriptor(lt, r, **kw):
    d = mpsnn.MPSCNNLossDescriptor.cnn_loss_descriptor(TYPE[lt], REDUCTION[r])
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def labels(device, t, r, weights=None, layout=HWC):
    """One MPSCNNLossLabels for all images of t (N, H, W, Cl); loss image per element for reduction none."""
    n, h, w, c = t.shape
    data = f32(t) if layout == HWC else f32(np.transpose(t, (0, 3, 1, 2)))
    ld = mpsnn.MPSCNNLossDataDescriptor(data, layout, mpsnn.MTLSize(w, h, c))
    wd = None if weights is None else mpsnn.MPSCNNLossDataDescriptor(f32(weights), HWC, (w, h, c))
    size = (w, h, c) if r == RL.NONE else None
    return mpsnn.MPSCNNLossLabels(device, ld, loss_image_size=size, weights_descriptor=wd)


def loss_graph(device, desc):
    x = mpsnn.MPSNNImageNode()
    node = mpsnn.MPSCNNLossNode(source=x, loss_descriptor=desc)
    g = mpsnn.MPSNNGraph(device, node.result_image)
    g.poison_temporaries = True
    return g, node


def params(lt, weight=None):
    kw = {}
    if weight is not None:
        kw['weight'] = weight
    if lt in (RL.SOFTMAX_CE, RL.SIGMOID_CE):
        kw.update(label_smoothing=0.1, number_of_classes=SHAPE[-1])
    if lt == RL.HUBER:
        kw['delta'] = 0.8
    if lt == RL.LOG:
        kw['epsilon'] = 1e-3
    return kw


@pytest.mark.parametrize('weighted', [False, True], ids=['scalar', 'weights'])
@pytest.mark.parametrize('lt,r', CASES, ids=IDS)
def test_loss_matches_reference(device, lt, r, weighted):
    rng = np.random.default_rng(100 + 10 * lt + r)
    y, t = RL.sample_inputs(lt, SHAPE, rng, label_channels=8)  # 7 channels, labels padded to 8
    y = y.astype(np.float32).astype(np.float64)
    w = None
    if weighted:
        w = rng.random(SHAPE[:3] + (8,)) + 0.1
        w[0, 1, 2, :] = 0.0
        w[2, :, :, 3] = 0.0
    kw = params(lt, None if weighted else 0.3)
    g, node = loss_graph(device, descriptor(lt, r, **kw))
    lab = labels(device, t, r, weights=w)
    grad = g.run([f32(y)], source_states=[lab]).numpy()
    ref_loss, ref_grad = RL.loss(y, t, lt, r, weights=w, **kw)
    k = SHAPE[1] * SHAPE[2] * SHAPE[3]
    assert_close(grad, ref_grad, 'reduction', k=SHAPE[3])
    got = lab.loss_image().numpy()
    if r == RL.NONE:
        assert got.shape == SHAPE[:3] + (8,)
        assert not got[..., 7:].any()  # the labels' padding channel
        got = got[..., :7]
    assert got.shape == ref_loss.shape
    assert_close(got, ref_loss, 'reduction', k=k)


def test_channels_equal_to_labels_and_chw_layout(device, rng):
    y, t = RL.sample_inputs(RL.SOFTMAX_CE, (2, 1, 1, 10), rng)
    g, _ = loss_graph(device, descriptor(RL.SOFTMAX_CE, RL.SUM, weight=1 / 40))
    lab = labels(device, t, RL.SUM, layout=CHW)
    grad = g.run([f32(y)], source_states=[lab]).numpy()
    ref_loss, ref_grad = RL.loss(y, t, RL.SOFTMAX_CE, RL.SUM, weight=1 / 40)
    assert_close(grad, ref_grad, 'reduction', k=10)
    assert_close(lab.loss_image().numpy(), ref_loss, 'reduction', k=10)
    assert lab.labels_image().numpy().shape == (2, 1, 1, 10) and lab.weights_image() is None


def test_mnist_sample_labels(device, rng):
    # graph.md §8.2: 10 logits, one-hot labels of length 12, a batch of 40 MPSCNNLossLabels through
    # encode_batch, softmax cross entropy summed with weight 1/40.
    n = 40
    logits = rng.standard_normal((n, 1, 1, 10)).astype(np.float32)
    classes = rng.integers(0, 10, n)
    batch = []
    for i in range(n):
        one_hot = np.zeros(12, np.float32)
        one_hot[classes[i]] = 1
        batch.append(mpsnn.MPSCNNLossLabels(device, mpsnn.MPSCNNLossDataDescriptor(one_hot, HWC, (1, 1, 12))))
    g, node = loss_graph(device, descriptor(RL.SOFTMAX_CE, RL.SUM, weight=1 / n))
    assert g.source_state_handles == [None]
    node.input_labels.handle = None
    queue = device.make_command_queue()
    cb = mpsnn.MPSCommandBuffer(command_queue=queue)
    images = [mpsnn.MPSImage.from_numpy(np.ascontiguousarray(logits[i:i + 1])) for i in range(n)]
    out = g.encode_batch(cb, [images], source_states=[batch])
    cb.commit()
    cb.wait_until_completed()
    t = np.eye(12)[classes][:, None, None, :]
    ref_loss, ref_grad = RL.loss(logits, t, RL.SOFTMAX_CE, RL.SUM, weight=1 / n)
    assert_close(np.concatenate([o.numpy() for o in out]), ref_grad, 'reduction', k=10)
    assert_close(np.concatenate([b.loss_image().numpy() for b in batch]), ref_loss, 'reduction', k=10)


def test_batch_of_labels_equals_one_labels_object(device, rng):
    y, t = RL.sample_inputs(RL.HUBER, (3, 2, 3, 5), rng)
    g, _ = loss_graph(device, descriptor(RL.HUBER, RL.MEAN))
    whole = labels(device, t, RL.MEAN)
    expected = g.run([f32(y)], source_states=[whole]).numpy()
    items = [labels(device, t[i:i + 1], RL.MEAN) for i in range(3)]
    cb = mpsnn.MPSCommandBuffer(command_queue=device.make_command_queue())
    imgs = [mpsnn.MPSImage.from_numpy(f32(y[i:i + 1])) for i in range(3)]
    out = g.encode_batch(cb, [imgs], source_states=[items])
    cb.commit()
    cb.wait_until_completed()
    np.testing.assert_array_equal(np.concatenate([o.numpy() for o in out]), expected)
    np.testing.assert_array_equal(np.concatenate([i.loss_image().numpy() for i in items]), whole.loss_image().numpy())


def test_result_not_needed_still_writes_the_loss(device, rng):
    y, t = RL.sample_inputs(RL.MSE, (2, 3, 3, 3), rng)
    x = mpsnn.MPSNNImageNode()
    node = mpsnn.MPSCNNLossNode(source=x, loss_descriptor=descriptor(RL.MSE, RL.SUM))
    g = mpsnn.MPSNNGraph(device, node.result_image, result_image_is_needed=False)
    lab = labels(device, t, RL.SUM)
    assert g.run([f32(y)], source_states=[lab]) is None
    assert_close(lab.loss_image().numpy(), RL.loss(y, t, RL.MSE, RL.SUM)[0], 'reduction', k=27)


def test_descriptor_defaults_and_enums():
    d = mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.huber, mpsnn.MPSCNNReductionType.mean)
    assert (d.weight, d.label_smoothing, d.number_of_classes, d.delta) == (1.0, 0.0, 1, 1.0)
    assert abs(d.epsilon - 1e-7) < 1e-12
    assert int(mpsnn.MPSCNNLossType.kullback_leibler_divergence) == 9
    assert int(mpsnn.MPSCNNReductionType.sum_by_non_zero_weights) == 3
    assert mpsnn.MPSCNNLossTypeSoftMaxCrossEntropy == mpsnn.MPSCNNLossType.soft_max_cross_entropy
    assert isinstance(mpsnn.MPSCNNLossLabels, type) and issubclass(mpsnn.MPSCNNLossLabels, mpsnn.MPSState)


# ---- errors ----------------------------------------------------------------------------------

def test_missing_labels_names_the_node(device):
    x = mpsnn.MPSNNImageNode()
    named = mpsnn.MPSCNNLossNode(source=x, loss_descriptor=descriptor(RL.MSE, RL.SUM))
    named.label = 'the loss'
    g = mpsnn.MPSNNGraph(device, named.result_image)
    with pytest.raises(mpsnn.MPSGraphError, match=r"\[loss 'the loss'\] needs its labels"):
        g.run([np.zeros((1, 2, 2, 3), np.float32)])
    with pytest.raises(mpsnn.MPSGraphError, match=r"\[loss 'the loss'\] input_labels .* not an MPSCNNLossLabels"):
        g.run([np.zeros((1, 2, 2, 3), np.float32)], source_states=[mpsnn.MPSState(device, buffer_size=4)])


@pytest.mark.parametrize('what', ['channels', 'size', 'batch', 'loss_image'])
def test_labels_of_the_wrong_size(device, what):
    x = mpsnn.MPSNNImageNode()
    node = mpsnn.MPSCNNLossNode(source=x, loss_descriptor=descriptor(RL.MSE, RL.SUM))
    node.label = 'mse'
    g = mpsnn.MPSNNGraph(device, node.result_image)
    y = np.zeros((2, 3, 4, 5), np.float32)
    shape = {'channels': (2, 3, 4, 6), 'size': (2, 4, 3, 5), 'batch': (1, 3, 4, 5), 'loss_image': (2, 3, 4, 5)}[what]
    r = RL.NONE if what == 'loss_image' else RL.SUM  # a per-element loss image for a summed loss
    lab = labels(device, np.zeros(shape), r)
    match = "loss image is" if what == 'loss_image' else "labels are"
    with pytest.raises(mpsnn.ShapeError, match=rf"\[loss 'mse'\] .*{match}"):
        g.run([y], source_states=[lab])
    # the graph still works with fitting labels
    assert g.run([y], source_states=[labels(device, np.zeros(y.shape), RL.SUM)]) is not None


def test_batch_of_the_wrong_length(device):
    g, _ = loss_graph(device, descriptor(RL.MSE, RL.SUM))
    items = [labels(device, np.zeros((1, 2, 2, 3)), RL.SUM) for _ in range(2)]
    cb = mpsnn.MPSCommandBuffer(command_queue=device.make_command_queue())
    imgs = [mpsnn.MPSImage.from_numpy(np.zeros((1, 2, 2, 3), np.float32)) for _ in range(3)]
    with pytest.raises(mpsnn.ShapeError, match=r"\[loss\] got a batch of 2 MPSCNNLossLabels for 3 source images"):
        g.encode_batch(cb, [imgs], source_states=[items])


def test_loss_types_that_do_not_fit(device):
    x = mpsnn.MPSNNImageNode()
    with pytest.raises(mpsnn.ShapeError, match=r"\[loss\] cosine distance supports only reduction 'sum'"):
        mpsnn.MPSCNNLossNode(source=x, loss_descriptor=descriptor(RL.COSINE, RL.MEAN))
    node = mpsnn.MPSCNNLossNode(source=x, loss_descriptor=descriptor(RL.SOFTMAX_CE, RL.SUM))
    node.label = 'ce'
    g = mpsnn.MPSNNGraph(device, node.result_image)
    with pytest.raises(mpsnn.ShapeError, match=r"\[loss 'ce'\] softmax cross entropy .* source has 1 channel"):
        g.run([np.zeros((1, 2, 2, 1), np.float32)], source_states=[labels(device, np.zeros((1, 2, 2, 1)), RL.SUM)])
    with pytest.raises(mpsnn.ShapeError, match="label_smoothing"):
        mpsnn.MPSCNNLossNode(source=x, loss_descriptor=descriptor(RL.SIGMOID_CE, RL.SUM, label_smoothing=1.5))
    with pytest.raises(NotImplementedError, match=r"\[loss 'ce'\] is its own gradient"):
        node.gradient_filter(with_source=x)


def test_data_descriptor_errors(device):
    with pytest.raises(mpsnn.ShapeError, match="whole images"):
        mpsnn.MPSCNNLossDataDescriptor(np.zeros(7, np.float32), HWC, (1, 1, 2))
    with pytest.raises(mpsnn.DTypeError, match="float64 array; expected float32"):
        mpsnn.MPSCNNLossDataDescriptor(np.zeros(4), HWC, (1, 1, 4))
    d = mpsnn.MPSCNNLossDataDescriptor(np.zeros(4, np.float32), HWC, (1, 1, 4))
    with pytest.raises(mpsnn.ShapeError, match="weights are"):
        wide = mpsnn.MPSCNNLossDataDescriptor(np.zeros(8, np.float32), HWC, (1, 1, 8))
        mpsnn.MPSCNNLossLabels(device, d, weights_descriptor=wide)
    assert d.bytes_per_row == 16 and d.bytes_per_image == 16 and d.size == mpsnn.MTLSize(1, 1, 4)


# ---- YOLO ------------------------------------------------------------------------------------

def _yolo_descriptor(anchors, reduction):
    T = mpsnn.MPSCNNLossType
    d = mpsnn.MPSCNNYOLOLossDescriptor.cnn_loss_descriptor(
        xy_loss_type=T.mean_squared_error, wh_loss_type=T.huber, confidence_loss_type=T.sigmoid_cross_entropy,
        classes_loss_type=T.soft_max_cross_entropy, reduction_type=REDUCTION[reduction],
        anchor_boxes=np.asarray(anchors, np.float32).ravel(), number_of_anchor_boxes=len(anchors))
    wh = d.wh_loss_descriptor  # a copy: set the sub-descriptor as a whole
    wh.weight, wh.delta = 0.5, 0.7
    d.wh_loss_descriptor = wh
    cl = d.classes_loss_descriptor
    cl.label_smoothing, cl.number_of_classes = 0.1, 3
    d.classes_loss_descriptor = cl
    return d


@pytest.mark.parametrize('rescore', [True, False])
@pytest.mark.parametrize('reduction', [RL.NONE, RL.SUM, RL.MEAN], ids=['none', 'sum', 'mean'])
def test_yolo_loss_matches_reference(device, reduction, rescore):
    rng = np.random.default_rng(5)
    y, t, anchors = yolo_inputs(rng)
    d = _yolo_descriptor(anchors, reduction)
    d.rescore = rescore
    d.min_iou_for_object_presence, d.max_iou_for_object_absence = 0.6, 0.05
    x = mpsnn.MPSNNImageNode()
    node = mpsnn.MPSCNNYOLOLossNode(source=x, loss_descriptor=d)
    g = mpsnn.MPSNNGraph(device, node.result_image)
    g.poison_temporaries = True
    y = y.astype(np.float32).astype(np.float64)
    lab = labels(device, t, reduction)
    grad = g.run([f32(y)], source_states=[lab]).numpy()
    ref_loss, ref_grad = RL.yolo_loss(y, t, anchors, **YOLO_SUB, reduction=reduction, rescore=rescore,
                                      min_iou=0.6, max_iou=0.05)
    assert_close(grad, ref_grad, 'reduction', k=16)
    assert_close(lab.loss_image().numpy(), ref_loss, 'reduction', k=y[0].size)


def test_yolo_source_must_fit_the_anchors(device):
    x = mpsnn.MPSNNImageNode()
    node = mpsnn.MPSCNNYOLOLossNode(source=x, loss_descriptor=_yolo_descriptor([(1, 1), (2, 2)], RL.SUM))
    g = mpsnn.MPSNNGraph(device, node.result_image)
    with pytest.raises(mpsnn.ShapeError, match=r"\[yolo loss\] the source has 15 feature channels; expected 2 anchor"):
        g.run([np.zeros((1, 2, 2, 15), np.float32)], source_states=[labels(device, np.zeros((1, 2, 2, 15)), RL.SUM)])
    bad = _yolo_descriptor([(1, 1), (2, 2)], RL.SUM)
    bad.number_of_anchor_boxes = 3
    with pytest.raises(mpsnn.ShapeError, match="anchor_boxes holds 4 values"):
        mpsnn.MPSCNNYOLOLossNode(source=x, loss_descriptor=bad)


# ---- PyTorch cross-checks ----------------------------------------------------------------------

def _torch_case(device, lt, r, y, t, torch_loss, **kw):
    """Runs the loss node and compares the loss image and gradient with autograd of `torch_loss`, a
    function of the NCHW prediction and labels tensors giving the image's reported loss."""
    torch = pytest.importorskip('torch')
    g, _ = loss_graph(device, descriptor(lt, r, **kw))
    lab = labels(device, t, r)
    grad = g.run([f32(y)], source_states=[lab]).numpy()
    for i in range(y.shape[0]):
        yt = torch.tensor(y[i:i + 1], dtype=torch.float64).permute(0, 3, 1, 2).requires_grad_()
        tt = torch.tensor(t[i:i + 1], dtype=torch.float64).permute(0, 3, 1, 2)
        value = torch_loss(yt, tt)
        value.backward()
        assert_close(lab.loss_image().numpy()[i].ravel(), [value.item()], 'reduction', k=y[i].size)
        assert_close(grad[i], yt.grad.permute(0, 2, 3, 1)[0].numpy(), 'reduction', k=y.shape[-1])


@pytest.mark.parametrize('ls', [0.0, 0.2])
def test_torch_cross_entropy(device, ls):
    torch = pytest.importorskip('torch')
    F = torch.nn.functional
    rng = np.random.default_rng(21)
    y, t = RL.sample_inputs(RL.SOFTMAX_CE, (2, 3, 2, 5), rng)
    # mean over pixels (H*W, documented), probability targets
    _torch_case(device, RL.SOFTMAX_CE, RL.MEAN, y, t, lambda a, b: F.cross_entropy(a, b, label_smoothing=ls),
                label_smoothing=ls, number_of_classes=5)


def test_torch_binary_cross_entropy_with_logits(device):
    F = pytest.importorskip('torch').nn.functional
    y, t = RL.sample_inputs(RL.SIGMOID_CE, (2, 2, 3, 3), np.random.default_rng(22))
    _torch_case(device, RL.SIGMOID_CE, RL.MEAN, y, t, lambda a, b: F.binary_cross_entropy_with_logits(a, b))


@pytest.mark.parametrize('lt,fn', [(RL.MSE, 'mse_loss'), (RL.MAE, 'l1_loss'), (RL.HUBER, 'huber_loss')])
@pytest.mark.parametrize('r', [RL.SUM, RL.MEAN], ids=['sum', 'mean'])
def test_torch_regression_losses(device, lt, fn, r):
    F = pytest.importorskip('torch').nn.functional
    y, t = RL.sample_inputs(lt, (2, 3, 3, 4), np.random.default_rng(23 + lt))
    red = 'sum' if r == RL.SUM else 'mean'
    extra = dict(delta=0.8) if lt == RL.HUBER else {}
    _torch_case(device, lt, r, y, t, lambda a, b: getattr(F, fn)(a, b, reduction=red, **extra), **extra)


def test_torch_kl_div(device):
    F = pytest.importorskip('torch').nn.functional
    y, t = RL.sample_inputs(RL.KL, (2, 2, 2, 6), np.random.default_rng(24))
    _torch_case(device, RL.KL, RL.SUM, y, t, lambda a, b: F.kl_div(a, b, reduction='sum'))


def test_torch_cosine_distance(device):
    torch = pytest.importorskip('torch')
    y, t = RL.sample_inputs(RL.COSINE, (2, 3, 2, 4), np.random.default_rng(25))
    _torch_case(device, RL.COSINE, RL.SUM, y, t, lambda a, b: (1 - (a * b).sum(1)).sum())
    # with unit vectors this is torch's cosine similarity over channels
    a = torch.tensor(y)
    np.testing.assert_allclose((1 - torch.nn.functional.cosine_similarity(a, torch.tensor(t), dim=-1)).numpy(),
                               1 - (y * t).sum(-1), rtol=1e-10)


def test_torch_hinge(device):
    torch = pytest.importorskip('torch')
    y, t = RL.sample_inputs(RL.HINGE, (2, 3, 3, 3), np.random.default_rng(26))
    _torch_case(device, RL.HINGE, RL.SUM, y, t, lambda a, b: torch.clamp(1 - (2 * b - 1) * a, min=0).sum())


def test_labels_from_images_and_a_bare_state_for_a_batch(device, rng):
    # MPSCNNLossLabels(device, loss_image_size, labels_image, weights_image) (10.15), and encode_batch
    # given one labels object for the whole batch instead of a list.
    y, t = RL.sample_inputs(RL.MAE, (2, 3, 2, 3), rng)
    w = rng.random(t.shape) + 0.5
    lab = mpsnn.MPSCNNLossLabels(device, loss_image_size=mpsnn.MTLSize(1, 1, 1),
                                 labels_image=mpsnn.MPSImage.from_numpy(f32(t)),
                                 weights_image=mpsnn.MPSImage.from_numpy(f32(w)))
    g, _ = loss_graph(device, descriptor(RL.MAE, RL.SUM_NZ))
    cb = mpsnn.MPSCommandBuffer(command_queue=device.make_command_queue())
    out = g.encode_batch(cb, [[mpsnn.MPSImage.from_numpy(f32(y[i:i + 1])) for i in range(2)]], source_states=[lab])
    cb.commit()
    cb.wait_until_completed()
    ref_loss, ref_grad = RL.loss(y, t, RL.MAE, RL.SUM_NZ, weights=w)
    assert_close(np.concatenate([o.numpy() for o in out]), ref_grad, 'reduction', k=3)
    assert_close(lab.loss_image().numpy(), ref_loss, 'reduction', k=18)
    with pytest.raises(mpsnn.DTypeError, match="expected a persistent dense float32 image"):
        mpsnn.MPSCNNLossLabels(device, labels_image=mpsnn.MPSImage.from_numpy(t.astype(np.float16)))
    with pytest.raises(mpsnn.MPSGraphError, match="exactly one"):
        mpsnn.MPSCNNLossLabels(device)


@pytest.mark.parametrize('lt', [RL.SOFTMAX_CE, RL.MSE, RL.SIGMOID_CE])
@pytest.mark.parametrize('r', [RL.SUM, RL.SUM_NZ], ids=['sum', 'sum_nz'])
def test_large_images_use_the_threaded_path_deterministically(device, lt, r):
    # 2 x 67 x 61 x 9 = 73 542 elements: above the threading threshold, 16 reduction blocks per image.
    rng = np.random.default_rng(31)
    shape = (2, 67, 61, 9)
    y, t = RL.sample_inputs(lt, shape, rng)
    w = (rng.random(shape) > 0.3) * rng.random(shape)
    g, _ = loss_graph(device, descriptor(lt, r))
    lab = labels(device, t, r, weights=w)
    first = g.run([f32(y)], source_states=[lab]).numpy().copy()
    first_loss = lab.loss_image().numpy().copy()
    for _ in range(3):
        np.testing.assert_array_equal(g.run([f32(y)], source_states=[lab]).numpy(), first)
        np.testing.assert_array_equal(lab.loss_image().numpy(), first_loss)
    ref_loss, ref_grad = RL.loss(y.astype(np.float32), t, lt, r, weights=w)
    assert_close(first, ref_grad, 'reduction', k=9)
    assert_close(first_loss, ref_loss, 'reduction', k=int(np.prod(shape[1:])))


@pytest.mark.parametrize('r', [RL.NONE, RL.SUM, RL.MEAN], ids=['none', 'sum', 'mean'])
@pytest.mark.parametrize('weighted', [False, True], ids=['scalar', 'weights'])
def test_softmax_cross_entropy_classifier_head(device, r, weighted):
    # N x 1 x 1 x 1001 logits (vector loops and a remainder, one pixel per image): a wide spread so
    # that most exponentials underflow, an image of equal logits, one of -1e30 logits but one, one-hot
    # and smoothed probability labels.
    rng = np.random.default_rng(41)
    shape = (6, 1, 1, 1001)
    y = rng.standard_normal(shape) * 40.0
    y[1] = 3.0
    y[2] = -1e30
    y[2, ..., 17] = 5.0
    y = y.astype(np.float32).astype(np.float64)
    t = np.zeros(shape)
    t[np.arange(6), 0, 0, rng.integers(0, 1001, 6)] = 1.0
    t[3] = rng.random(1001)
    t[3] /= t[3].sum()
    w = rng.random(shape[:3] + (1004,)) + 0.1 if weighted else None
    kw = dict(label_smoothing=0.05, number_of_classes=1001)
    if not weighted:
        kw['weight'] = 0.7
    g, _ = loss_graph(device, descriptor(RL.SOFTMAX_CE, r, **kw))
    lab = labels(device, np.concatenate([t, np.zeros(shape[:3] + (3,))], -1), r, weights=w)
    grad = g.run([f32(y)], source_states=[lab]).numpy()
    ref_loss, ref_grad = RL.loss(y, t, RL.SOFTMAX_CE, r, weights=None if w is None else w[..., :1001], **kw)
    assert np.isfinite(grad).all()
    assert_close(grad, ref_grad, 'reduction', k=1001)
    got = lab.loss_image().numpy()
    if r == RL.NONE:
        got = got[..., :1001]
    assert_close(got, ref_loss, 'reduction', k=1001)
