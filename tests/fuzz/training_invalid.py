"""Invalid training cases (issue 9, item 2): each must raise a typed mpsnn error naming the node at
fault, after which the process, and where it makes sense the same training graph, still work.

Categories: a node without a gradient on the path of training_graph() (division, bilinear and
Lanczos scale, binary convolution: refused by training_graph; sub-pixel and channel-multiplier
depthwise convolutions, data sources fusing a neuron or folding a batch norm: refused when the
graph runs); labels missing, of the wrong size (height, width, channels, batch, loss image) or of
the wrong type at run / encode time; hand-made gradient nodes wired to another kind's gradient
state; gradient_filter of a loss node (its own gradient).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import mpsnn
from ops._common import Handle

from .graphs import build
from .invalid import Case
from .strategies import Limits
from .training import HWC, build_training, f32, run_training, training_specs
from reference import loss as RL

SMALL = Limits(max_inputs=2, max_n=2, max_hw=6, max_c=6, max_ops=3, max_elements=800)


def pick(draw, options):
    """One of `options`, about uniformly (hypothesis favours the first entries of sampled_from,
    which would starve the later categories of a short derandomized run)."""
    return options[draw(st.integers(0, 2 ** 32 - 1)) % len(options)]


def _device():
    return mpsnn.MTLCreateSystemDefaultDevice()


def _mse():
    return mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNReductionType.sum)


def _labels(device, shape):
    n, h, w, c = shape
    t = np.zeros((n, h, w, c), np.float32)
    return mpsnn.MPSCNNLossLabels(device, mpsnn.MPSCNNLossDataDescriptor(t, HWC, mpsnn.MTLSize(w, h, c)))


def _conv_source(cin, cout, kind):
    if kind == "subpixel":
        d = mpsnn.MPSCNNSubPixelConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=cin,
                                                      output_feature_channels=4 * cout)
        d.sub_pixel_scale_factor = 2
        w = np.full((4 * cout, 1, 1, cin), 0.1, np.float32)
    elif kind == "multiplier":
        d = mpsnn.MPSCNNDepthWiseConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=cin,
                                                       output_feature_channels=2 * cin)
        w = np.full((2 * cin, 3, 3), 0.1, np.float32)
    else:
        d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=cin,
                                              output_feature_channels=cout)
        w = np.full((cout, 3, 3, cin), 0.1, np.float32)
        if kind == "fused":
            d.fused_neuron_descriptor = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(
                mpsnn.MPSCNNNeuronType.reLU)
        elif kind == "folded":
            d.set_batch_normalization_parameters_for_inference([0.1] * cout, [2.0] * cout, [1.5] * cout,
                                                               [0.0] * cout, 1e-3)
    return mpsnn.ArrayConvolutionDataSource(d, w)


AT_TRAINING_GRAPH = ["division", "bilinear", "lanczos", "binary"]
AT_RUN = ["subpixel", "multiplier", "fused", "folded"]


def _no_gradient_node(kind, src, other, channels):
    if kind == "division":
        return mpsnn.MPSNNDivisionNode(left_source=src, right_source=other)
    if kind == "bilinear":
        return mpsnn.MPSNNBilinearScaleNode(source=src, output_size=mpsnn.MTLSize(3, 2, 1))
    if kind == "lanczos":
        return mpsnn.MPSNNLanczosScaleNode(source=src, output_size=mpsnn.MTLSize(2, 3, 1))
    if kind == "binary":
        d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=channels,
                                              output_feature_channels=2)
        ds = mpsnn.ArrayConvolutionDataSource(d, np.zeros((2, 1, 1, -(-channels // 32)), np.uint32))
        return mpsnn.MPSCNNBinaryConvolutionNode(src, ds, 1.0, mpsnn.MPSCNNBinaryConvolutionType.xnor, 0)
    return mpsnn.MPSCNNConvolutionNode(source=src, weights=_conv_source(channels, 2, kind))


@st.composite
def no_gradient_on_path(draw):
    """A random forward graph with a node that has no gradient between its last value and the
    loss (sometimes with a neuron after it)."""
    ts = draw(training_specs(SMALL))
    kind = pick(draw, AT_TRAINING_GRAPH + AT_RUN)
    after = draw(st.booleans())
    device = _device()
    spec = ts.spec
    inputs, nodes, filters = build(spec)
    for v in ts.stopped:
        nodes[v].stop_gradient = True
    src = nodes[ts.source]

    def shape_of(image_node):
        """The image's size, from an inference run of the forward graph."""
        g = mpsnn.MPSNNGraph(device, image_node)
        arrays = [i.array() for i in spec.inputs]
        return g.run([arrays[int(h.label()[1:])] for h in g.source_image_handles]).numpy().shape

    node = _no_gradient_node(kind, src, src, spec._values[ts.source].shape[3])
    node.label = "nograd"
    top = node.result_image
    if after:
        top = mpsnn.MPSCNNNeuronTanHNode(source=top).result_image
    loss = mpsnn.MPSCNNLossNode(source=top, loss_descriptor=_mse())
    loss.label = "loss"
    if kind in AT_TRAINING_GRAPH:
        def trigger():
            return loss.training_graph()

        def recover():
            node.result_image.stop_gradient = True
            terminals = loss.training_graph()
            assert terminals is None or after, terminals
            if terminals:
                g = mpsnn.MPSNNGraph(device, result_images=[t.result_image for t in terminals])
                arrays = [i.array() for i in spec.inputs]
                feed = [arrays[int(h.label()[1:])] for h in g.source_image_handles]
                g.run(feed, source_states=[_labels(device, shape_of(top))])
        return Case("training", f"training_graph through a {kind} node", trigger, (mpsnn.UnsupportedError,),
                    ("'nograd'",), recover, spec)
    y_shape = shape_of(src) if kind == "multiplier" else shape_of(top)

    def trigger():
        terminals = loss.training_graph()
        g = mpsnn.MPSNNGraph(device, result_images=[t.result_image for t in terminals])
        arrays = [i.array() for i in spec.inputs]
        feed = [arrays[int(h.label()[1:])] for h in g.source_image_handles]
        return g.run(feed, source_states=[_labels(device, y_shape)])

    def recover():
        if kind != "multiplier":
            shape_of(top)    # the forward graph still runs
    return Case("training", f"training graph through a {kind} convolution", trigger, (mpsnn.UnsupportedError,),
                ("'nograd'",), recover, spec)


BAD_LABELS = ["missing", "extra", "height", "width", "channels", "batch", "plain state", "none", "loss image size",
              "list"]


def _run_graph(g, feed, states, entry, device):
    if entry == "encode":
        cb = device.make_command_queue().make_command_buffer()
        out = g.encode(cb, [mpsnn.MPSImage.from_numpy(a) for a in feed], source_states=states)
        cb.commit()
        cb.wait_until_completed()
        return out
    return g.run(feed, source_states=states)


@st.composite
def bad_labels(draw):
    """A valid training graph run with labels that do not fit (then with good ones)."""
    ts = draw(training_specs(SMALL))
    device = _device()
    what = pick(draw, BAD_LABELS)
    entry = draw(st.sampled_from(["run", "encode"]))
    fuse = draw(st.booleans())
    loss = ts.loss
    t = loss.labels
    n, h, w, cl = t.shape
    c = ts.spec._values[ts.source].shape[3]
    if what == "loss image size" and w * h * cl == 1:
        what = "missing"    # a 1x1x1 source: the per-element and the per-image loss image agree
    errors, where = (mpsnn.ShapeError,), ("'loss'",)
    if what == "missing":
        states, errors = (lambda: []), (mpsnn.MPSGraphError,)
    elif what == "extra":
        states, errors, where = (lambda: [loss.make_labels(device)] * 2), (mpsnn.MPSGraphError,), ("source state",)
    elif what == "plain state":
        states, errors = (lambda: [mpsnn.MPSState(device, buffer_size=64)]), (mpsnn.MPSGraphError,)
    elif what == "none":
        states, errors, where = (lambda: [None]), (mpsnn.DTypeError, mpsnn.MPSGraphError), ("source state",)
    elif what == "list":
        states, errors, where = (lambda: [[loss.make_labels(device)]]), (mpsnn.DTypeError,), ("source state",)
    elif what == "loss image size":
        size = (1, 1, 1) if loss.reduction == RL.NONE else (w, h, cl)
        states = lambda: [loss.make_labels(device, size=size)]  # noqa: E731
    else:
        if what == "height":
            shape = (n, h + draw(st.sampled_from([1, -1] if h > 1 else [1, 2])), w, cl)
        elif what == "width":
            shape = (n, h, w + draw(st.sampled_from([1, -1] if w > 1 else [1, 2])), cl)
        elif what == "channels":
            bad = [k for k in (c - 1, c + 1, 4 * (-(-c // 4)) + 1, c + 4) if k >= 1 and k not in (c, 4 * (-(-c // 4)))]
            shape = (n, h, w, draw(st.sampled_from(bad)))
        else:
            shape = (n + draw(st.sampled_from([1, -1] if n > 1 else [1, 2])), h, w, cl)
        rng = np.random.default_rng(0)
        bad_t = f32(rng.random(shape))
        bad_w = None if loss.weights is None else f32(np.ones(shape))
        size = shape[1:3][::-1] + (shape[3],) if loss.reduction == RL.NONE else None
        states = lambda: [loss.make_labels(device, labels=bad_t, weights=bad_w, size=size)]  # noqa: E731
    arrays = [i.array() for i in ts.spec.inputs]
    _, _, terminals = build_training(ts)
    g = mpsnn.MPSNNGraph(device, result_images=[tt.result_image for tt in terminals])
    g.fusion_enabled = fuse
    feed = [arrays[int(hd.label()[1:])] for hd in g.source_image_handles]

    def trigger():
        return _run_graph(g, feed, states(), entry, device)

    def recover():
        out = g.run(feed, source_states=[loss.make_labels(device)])
        out = out if isinstance(out, list) else [out]
        fresh = run_training(ts, device, fuse, arrays)
        got = {}
        for tt, img in zip(terminals, out):
            i = int(tt.result_image.handle.label()[1:])
            a = np.asarray(img.numpy(), np.float64)
            got[i] = got[i] + a if i in got else a
        for i, a in fresh.dx.items():
            np.testing.assert_allclose(got[i], a, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(a).max())),
                                       err_msg=f"dL/dv{i} of the graph after the error")
    return Case("labels", f"{what} labels through {entry}", trigger, errors, where, recover, ts.spec,
                dict(loss=repr(loss)))


# hand-made gradient nodes given another kind's gradient state
def _forward_nodes(x):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=4,
                                          output_feature_channels=4)
    f = {
        "pool": mpsnn.MPSCNNPoolingMaxNode(source=x, filter_size=2),
        "conv": mpsnn.MPSCNNConvolutionNode(source=x, weights=mpsnn.ArrayConvolutionDataSource(
            d, np.full((4, 3, 3, 4), 0.1, np.float32))),
        "bn": mpsnn.MPSCNNBatchNormalizationNode(source=x, data_source=mpsnn.ArrayBatchNormalizationDataSource(
            None, None, None, None, number_of_feature_channels=4)),
        "inorm": mpsnn.MPSCNNInstanceNormalizationNode(source=x, data_source=mpsnn.ArrayInstanceNormalizationDataSource(
            None, None, number_of_feature_channels=4)),
        "dropout": mpsnn.MPSCNNDropoutNode(source=x, keep_probability=0.5),
        "softmax": mpsnn.MPSCNNSoftMaxNode(source=x),
        "upsample": mpsnn.MPSCNNUpsamplingNearestNode(source=x, integer_scale_factor_x=2, integer_scale_factor_y=2),
        "lrn": mpsnn.MPSCNNCrossChannelNormalizationNode(source=x, kernel_size=3),
    }
    for k, n in f.items():
        n.label = f"fwd-{k}"
    return f


def _state(f, kind):
    return f[kind].convolution_gradient_state if kind == "conv" else f[kind].result_state


def _gradient_node(kind, g, x, state):
    if kind == "pool":
        return mpsnn.MPSCNNPoolingMaxGradientNode(g, x, state, 2, 2, 2, 2)
    if kind == "conv":
        return mpsnn.MPSCNNConvolutionGradientNode(g, x, state, None)
    if kind == "bn":
        return mpsnn.MPSCNNBatchNormalizationGradientNode(g, x, state)
    if kind == "inorm":
        return mpsnn.MPSCNNInstanceNormalizationGradientNode(g, x, state)
    if kind == "dropout":
        return mpsnn.MPSCNNDropoutGradientNode(g, x, state, 0.5, 0, [1, 1, 1])
    if kind == "softmax":
        return mpsnn.MPSCNNSoftMaxGradientNode(source_gradient=g, source_image=x, gradient_state=state)
    if kind == "upsample":
        return mpsnn.MPSCNNUpsamplingNearestGradientNode(g, x, state, 2, 2)
    return mpsnn.MPSCNNCrossChannelNormalizationGradientNode(g, x, state, 3)


GRADIENT_KINDS = ["pool", "conv", "bn", "inorm", "dropout", "softmax", "upsample", "lrn"]
GRADIENT_NAMES = {"pool": "pooling", "conv": "convolution", "bn": "batch normalization",
                  "inorm": "instance normalization", "dropout": "dropout", "softmax": "softmax",
                  "upsample": "upsampling", "lrn": "normalization"}


@st.composite
def wrong_gradient_states(draw):
    kind = pick(draw, GRADIENT_KINDS)
    other = pick(draw, [k for k in GRADIENT_KINDS if k != kind])
    n = draw(st.integers(1, 2))
    x = np.random.default_rng(draw(st.integers(0, 99))).standard_normal((n, 6, 6, 4)).astype(np.float32)
    device = _device()
    xn, gn = mpsnn.MPSNNImageNode(handle=Handle("x")), mpsnn.MPSNNImageNode(handle=Handle("g"))
    f = _forward_nodes(xn)
    made = {}

    def make():
        made["node"] = node = _gradient_node(kind, gn, xn, _state(f, other))
        node.label = "hand"
        return node

    def trigger():
        g = mpsnn.MPSNNGraph(device, make().result_image)
        return g.run([x for _ in g.source_image_handles])

    def recover():
        # the same gradient kind with its own forward node's state runs
        right = _gradient_node(kind, gn, xn, _state(f, kind))
        g = mpsnn.MPSNNGraph(device, right.result_image)
        shapes = {"x": x, "g": x}
        if kind == "pool":
            shapes["g"] = x[:, ::2, ::2]
        elif kind == "upsample":
            shapes["g"] = np.repeat(np.repeat(x, 2, 1), 2, 2)
        g.run([np.ascontiguousarray(shapes[h.label()]) for h in g.source_image_handles])
    # Some constructors check the state's type at once (before the label is set): they name the kind.
    return Case("gradient state", f"{kind} gradient with the gradient state of {other}", trigger,
                (mpsnn.MPSGraphError, mpsnn.ShapeError, mpsnn.UnsupportedError, mpsnn.DTypeError),
                ("'hand'", f"[{GRADIENT_NAMES[kind]} gradient]"), recover)


@st.composite
def loss_gradient_filter(draw):
    loss = mpsnn.MPSCNNLossNode(source=mpsnn.MPSNNImageNode(), loss_descriptor=_mse())
    loss.label = "self-gradient"
    form = draw(st.sampled_from(["gradient_filter", "gradient_filters"]))
    g = mpsnn.MPSNNImageNode()
    fn = (lambda: loss.gradient_filter(with_source=g)) if form == "gradient_filter" else \
        (lambda: loss.gradient_filters(with_source=g))
    return Case("training", f"{form} of a loss node", fn, (mpsnn.UnsupportedError, NotImplementedError),
                ("'self-gradient'",))


@st.composite
def loss_misfits(draw):
    """Loss descriptors that do not fit: softmax cross entropy over one channel, cosine distance
    with a reduction other than sum."""
    device = _device()
    what = pick(draw, ["softmax one channel", "cosine reduction"])
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = np.random.default_rng(draw(st.integers(0, 99))).standard_normal((n, h, w, 1)).astype(np.float32)
    if what == "softmax one channel":
        d = mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.soft_max_cross_entropy,
                                       REDUCTION_OF[draw(st.sampled_from(sorted(REDUCTION_OF)))])
        tanh = mpsnn.MPSCNNNeuronTanHNode(source=mpsnn.MPSNNImageNode())
        loss = mpsnn.MPSCNNLossNode(source=tanh.result_image, loss_descriptor=d)
        loss.label = "one-channel"
        size = (w, h, 1) if d.reduction_type == mpsnn.MPSCNNReductionType.none else None

        def trigger():
            (t,) = loss.training_graph()
            g = mpsnn.MPSNNGraph(device, t.result_image)
            lab = mpsnn.MPSCNNLossLabels(device, mpsnn.MPSCNNLossDataDescriptor(
                np.ones((n, h, w, 1), np.float32), HWC, mpsnn.MTLSize(w, h, 1)), loss_image_size=size)
            return g.run([x], source_states=[lab])
        return Case("loss", what, trigger, (mpsnn.ShapeError,), ("'one-channel'",))
    red = draw(st.sampled_from([RL.NONE, RL.MEAN, RL.SUM_NZ]))

    def trigger():
        d = mpsnn.MPSCNNLossDescriptor(mpsnn.MPSCNNLossType.cosine_distance, REDUCTION_OF[red])
        loss = mpsnn.MPSCNNLossNode(source=mpsnn.MPSNNImageNode(), loss_descriptor=d)
        loss.label = "cosine"
        return mpsnn.MPSNNGraph(device, loss.result_image).run([x], source_states=[_labels(device, x.shape)])
    return Case("loss", f"{what} {RL.REDUCTION_NAMES[red]}", trigger, (mpsnn.ShapeError,), ("[loss", "'cosine'"))


REDUCTION_OF = {RL.NONE: mpsnn.MPSCNNReductionType.none, RL.SUM: mpsnn.MPSCNNReductionType.sum,
                RL.MEAN: mpsnn.MPSCNNReductionType.mean,
                RL.SUM_NZ: mpsnn.MPSCNNReductionType.sum_by_non_zero_weights}

CATEGORIES = {"no gradient": no_gradient_on_path, "labels": bad_labels, "gradient state": wrong_gradient_states,
              "loss gradient": loss_gradient_filter, "loss misfit": loss_misfits}


@st.composite
def invalid_training_cases(draw):
    name = pick(draw, ["no gradient", "no gradient", "labels", "labels", "labels", "gradient state", "loss gradient",
                       "loss misfit"])
    return draw(CATEGORIES[name]())


__all__ = ["invalid_training_cases"]
