"""Serialization of graphs and nodes (graph.md §2.9, issue 13): MPSNNGraph.to_bytes / from_bytes,
pickle and deepcopy of graphs and node chains, the loader's typed errors and its fuzzing
(tests/README.md), and graph pictures (to_dot, save_picture)."""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import re
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpsnn
from fuzz.graphs import build, make_graph, run
from fuzz.strategies import KIND_NAMES, graph_specs
from fuzz.training import KIND_NAMES as TRAIN_KIND_NAMES
from fuzz.training import build_training, training_specs
from ops._common import Handle, train_step

# Loader fuzz examples: a brief run by default, more with MPSNN_SERIAL_FUZZ_EXAMPLES=N.
FUZZ_EXAMPLES = int(os.environ.get("MPSNN_SERIAL_FUZZ_EXAMPLES", "0") or 0) or 250
_SETTINGS = dict(deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

INTERNAL = {k["name"] for k in mpsnn._core._op_kinds() if k["internal"]}
ALL_KINDS = {k["name"] for k in mpsnn._core._op_kinds()} - INTERNAL


def op_kind(node) -> str:
    """The op_list.def name of a filter node (its repr is "<[kind 'label']>")."""
    m = re.match(r"<\[([a-z ]+?)( '.*')?\]>$", repr(node), re.S)
    assert m, repr(node)
    return m.group(1)


def upstream(images):
    """Filter nodes upstream of `images` (through source images), each once, in a fixed order."""
    out, seen, stack = [], set(), list(images)
    while stack:
        f = stack.pop().parent
        if f is None or id(f) in seen:
            continue
        seen.add(id(f))
        out.append(f)
        stack.extend(reversed(f.source_images))
    return out


def classes_and_labels(images):
    return [(type(f).__name__, f.label) for f in upstream(images)]


def has_code(spec) -> bool:
    """Whether a fuzz spec holds Python code that cannot be stored: custom padding policies and
    transform providers, on the nodes upstream of the results."""
    ops = {spec.op_of(v) for v in spec.graph_values()} - {None}
    for op in (spec.ops[i] for i in ops):
        pad = op.params.get("pad")
        if pad is not None and pad.get("type") == "custom":
            return True
        if op.kind == "scale" and op.params.get("provider"):
            return True
    return False


SEEN_KINDS: set[str] = set()
RAN: set[str] = set()  # round-trip tests completed in this process (the coverage test needs them all)


def check_forward_round_trip(spec, device, fuse):
    arrays = [i.array() for i in spec.inputs]
    _, nodes, filters = build(spec)
    g = make_graph(spec, device, nodes, fuse)
    if has_code(spec):
        with pytest.raises(mpsnn.UnsupportedError, match=r"cannot be serialized"):
            g.to_bytes()
        return
    out, _ = run(spec, g, arrays, device)
    data = g.to_bytes()
    loaded = [mpsnn.MPSNNGraph.from_bytes(data, device), pickle.loads(pickle.dumps(g)), copy.deepcopy(g)]
    for g2 in loaded:
        assert g2.fusion_enabled == g.fusion_enabled and g2.format == g.format
        assert [h.label() for h in g2.source_image_handles] == [h.label() for h in g.source_image_handles]
        assert [h.label() for h in g2.intermediate_image_handles] == [h.label() for h in g.intermediate_image_handles]
        got, _ = run(spec, g2, arrays, device)
        assert set(got) == set(out)
        for v in out:
            np.testing.assert_array_equal(got[v], out[v], err_msg=f"v{v} differs after the round trip")
    assert g.to_bytes() == data, "serializing does not change the graph"
    assert loaded[0].to_bytes() == data, "a loaded graph serializes to the same bytes"
    # node chains: each result node with everything upstream of it
    # (each node pickles its own copy of what is upstream of it)
    for v in spec.results:
        assert classes_and_labels([pickle.loads(pickle.dumps(nodes[v]))]) == classes_and_labels([nodes[v]])
    for f in filters.values():
        SEEN_KINDS.add(op_kind(f))


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_forward_graphs_round_trip(kind, device):
    """Random graphs of each forward node kind (tests/fuzz generators) run bit for bit the same
    after to_bytes/from_bytes, pickle and deepcopy; node pickles keep classes and labels."""

    @settings(max_examples=12, **_SETTINGS)
    @given(spec=graph_specs(kinds=[kind]), fuse=st.booleans())
    def check(spec, fuse):
        check_forward_round_trip(spec, device, fuse)

    check()
    RAN.add("forward " + kind)


def training_outputs(ts, g, device, arrays):
    inter, states = [], []
    feed = [arrays[int(h.label()[1:])] for h in g.source_image_handles]
    out = g.run(feed, source_states=[ts.loss.make_labels(device)], intermediate_images=inter,
                destination_states=states)
    out = out if isinstance(out, list) else [out]
    images = [np.array(i.numpy()) for i in out + inter if i is not None]
    return images, states


@pytest.mark.parametrize("kind", [k for k in TRAIN_KIND_NAMES if k != "no gradient"])
def test_training_graphs_round_trip(kind, device):
    """Training graphs (training_graph() of a loss on random graphs with each kind that has
    gradient nodes; gradients and exported gradient states) give the same gradient images and
    parameter gradients after a round trip."""

    @settings(max_examples=5, **_SETTINGS)
    @given(ts=training_specs(kinds=[kind]), fuse=st.booleans())
    def check(ts, fuse):
        check_training_round_trip(ts, fuse, device)

    check()
    RAN.add("training " + kind)


def check_training_round_trip(ts, fuse, device):
    if has_code(ts.spec):
        return
    arrays = [i.array() for i in ts.spec.inputs]
    filters, loss, terminals = build_training(ts, export_gradients=True)
    g = mpsnn.MPSNNGraph(device, result_images=[t.result_image for t in terminals])
    g.fusion_enabled = fuse
    images, states = training_outputs(ts, g, device, arrays)
    g2 = pickle.loads(pickle.dumps(g))
    assert [h.label() for h in g2.result_state_handles] == [h.label() for h in g.result_state_handles]
    images2, states2 = training_outputs(ts, g2, device, arrays)
    assert len(images2) == len(images)
    for a, b in zip(images, images2):
        np.testing.assert_array_equal(a, b)
    assert [type(s) for s in states2] == [type(s) for s in states]
    for s, s2 in zip(states, states2):
        for name in ("gradient_for_weights", "gradient_for_biases", "gradient_for_gamma", "gradient_for_beta"):
            if hasattr(s, name):
                a, b = getattr(s, name), getattr(s2, name)
                a, b = (a() if callable(a) else a), (b() if callable(b) else b)
                np.testing.assert_array_equal(b.numpy(), a.numpy())
    for f in upstream([t.result_image for t in terminals]):
        SEEN_KINDS.add(op_kind(f))


def _yolo_graph(device):
    x = mpsnn.MPSNNImageNode(handle=Handle("x"))
    d = mpsnn.MPSCNNYOLOLossDescriptor.cnn_loss_descriptor(
        mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNLossType.mean_squared_error,
        mpsnn.MPSCNNLossType.sigmoid_cross_entropy, mpsnn.MPSCNNLossType.categorical_cross_entropy,
        mpsnn.MPSCNNReductionType.sum, np.array([1.0, 1.5, 2.0, 0.5], np.float32), 2)
    d.scale_xy = 3.0
    yolo = mpsnn.MPSCNNYOLOLossNode(source=x, loss_descriptor=d)
    yolo.label = "yolo"
    yolo.input_labels.handle = Handle("labels")
    return mpsnn.MPSNNGraph(device, yolo.result_image), yolo


def test_yolo_loss_round_trips(device):
    g, yolo = _yolo_graph(device)
    g2 = mpsnn.MPSNNGraph.from_bytes(g.to_bytes(), device)
    assert [h.label() for h in g2.source_state_handles] == ["labels"]
    y = pickle.loads(pickle.dumps(yolo))
    assert type(y) is mpsnn.MPSCNNYOLOLossNode and y.label == "yolo"
    assert y.input_labels.handle.label() == "labels"
    SEEN_KINDS.add(op_kind(yolo))
    RAN.add("yolo")


def test_every_op_kind_was_round_tripped():
    """The tests above covered every node kind of op_list.def (checked when they all ran before it
    in this process, as in a plain run in file order)."""
    wanted = {"forward " + k for k in KIND_NAMES} | {"training " + k for k in TRAIN_KIND_NAMES if k != "no gradient"}
    if not wanted | {"yolo"} <= RAN:
        pytest.skip("needs every round-trip test above to have run first in this process")
    assert ALL_KINDS - SEEN_KINDS == set()


# ---- an explicit network: MNIST training (examples/mnist_training.py) ----

def mnist_example():
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "mnist_training.py")
    spec = importlib.util.spec_from_file_location("mnist_training_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def small_network(device):
    rng = np.random.default_rng(1)
    x = mpsnn.MPSNNImageNode(handle=Handle("image"))
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=3,
                                          output_feature_channels=8)
    d.fused_neuron_descriptor = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(mpsnn.MPSCNNNeuronType.relu, a=0.1)
    conv = mpsnn.MPSCNNConvolutionNode(source=x, weights=mpsnn.ArrayConvolutionDataSource(
        d, rng.standard_normal((8, 3, 3, 3)).astype(np.float32), rng.standard_normal(8).astype(np.float32), "conv"))
    conv.label = "conv node"
    bn = mpsnn.MPSCNNBatchNormalizationNode(source=conv.result_image, data_source=mpsnn.ArrayBatchNormalizationDataSource(
        gamma=rng.random(8) + 0.5, beta=rng.random(8), mean=rng.random(8), variance=rng.random(8) + 0.5, epsilon=1e-3))
    pool = mpsnn.MPSCNNPoolingAverageNode(source=bn.result_image, filter_size=2, stride=2)
    pool.padding_policy = mpsnn.MPSNNDefaultPadding.padding_for_tensorflow_average_pooling()
    pool.result_image.handle = Handle("pooled")
    pool.result_image.export_from_graph = True
    fcd = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=4, kernel_height=4, input_feature_channels=8,
                                            output_feature_channels=5)
    fc = mpsnn.MPSCNNFullyConnectedNode(source=pool.result_image, weights=mpsnn.ArrayConvolutionDataSource(
        fcd, rng.standard_normal((5, 4, 4, 8)).astype(np.float32), None, "fc"))
    sm = mpsnn.MPSCNNSoftMaxNode(source=fc.result_image)
    g = mpsnn.MPSNNGraph(device, sm.result_image)
    g.label = "small"
    return g, sm


def test_properties_handles_and_exports_round_trip(device):
    g, _ = small_network(device)
    g.output_state_is_temporary = True
    g.destination_image_allocator = mpsnn.MPSTemporaryImage.default_allocator()
    g.destination_image_allocator = mpsnn.MPSImage.default_allocator()
    x = np.random.default_rng(2).standard_normal((2, 8, 8, 3)).astype(np.float32)
    inter = []
    y = g.run([x], intermediate_images=inter).numpy().copy()
    g2 = mpsnn.MPSNNGraph.from_bytes(bytearray(g.to_bytes()))
    assert g2.label == "small" and g2.output_state_is_temporary
    assert g2.source_image_handles == [mpsnn.LabelHandle("image")]
    assert [h.label() for h in g2.intermediate_image_handles] == ["pooled"]
    inter2 = []
    np.testing.assert_array_equal(g2.run([x], intermediate_images=inter2).numpy(), y)
    np.testing.assert_array_equal(inter2[0].numpy(), inter[0].numpy())
    assert isinstance(g2.source_image_handles[0], mpsnn.LabelHandle)
    assert pickle.loads(pickle.dumps(mpsnn.LabelHandle("a"))) == mpsnn.LabelHandle("a")


def test_loaded_data_sources_are_array_sources(device):
    _, sm = small_network(device)
    sm2 = pickle.loads(pickle.dumps(sm))
    assert [type(f).__name__ for f in upstream([sm2.result_image])] == [
        "MPSCNNSoftMaxNode", "MPSCNNFullyConnectedNode", "MPSCNNPoolingAverageNode", "MPSCNNBatchNormalizationNode",
        "MPSCNNConvolutionNode"]
    pool = sm2.source_images[0].parent.source_images[0].parent
    assert pool.padding_policy.label() == "TensorFlow average pooling (same)"
    conv = upstream([sm2.result_image])[-1]
    assert conv.label == "conv node"
    # the loaded graph reads the stored weights: the same values as the original
    x = np.random.default_rng(3).standard_normal((1, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(mpsnn.MPSNNGraph(device, sm2.result_image).run([x]).numpy(),
                                  mpsnn.MPSNNGraph(device, sm.result_image).run([x]).numpy())


def test_python_code_is_refused_naming_the_node(device):
    class Policy:
        def padding_method(self):
            return int(mpsnn.MPSNNPaddingMethod.size_same)

        def label(self):
            return "mine"

    relu = mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode())
    relu.label = "r"
    relu.padding_policy = Policy()
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[neuron 'r'\] has a custom padding policy 'mine'"):
        pickle.dumps(relu)

    class Allocator:
        def image(self, command_buffer, image_descriptor, kernel):
            return mpsnn.MPSImage(device, image_descriptor)

    class Provider:
        def transform(self, for_source_image, handle):
            return None

    scale = mpsnn.MPSNNBilinearScaleNode(source=mpsnn.MPSNNImageNode(), transform_provider=Provider(),
                                         output_size=mpsnn.MTLSize(4, 4, 1))
    scale.label = "s"
    with pytest.raises(mpsnn.UnsupportedError, match=r"\[scale 's'\] has a transform provider"):
        mpsnn.MPSNNGraph(device, scale.result_image).to_bytes()
    relu2 = mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode())
    relu2.result_image.image_allocator = Allocator()
    with pytest.raises(mpsnn.UnsupportedError, match=r"custom image allocator"):
        pickle.dumps(relu2.result_image)


def test_graph_loaded_on_another_device_runs_there(device):
    """from_bytes(data, device) makes the graph on that device (each device of this build: the CPU,
    and CUDA GPUs where present), None the system default device."""
    g, _ = small_network(device)
    data = g.to_bytes()
    x = np.random.default_rng(4).standard_normal((1, 8, 8, 3)).astype(np.float32)
    y = np.array(g.run([x]).numpy())
    assert mpsnn.MPSNNGraph.from_bytes(data).device is mpsnn.MTLCreateSystemDefaultDevice()
    for other in mpsnn.MTLCopyAllDevices():
        g2 = mpsnn.MPSNNGraph.from_bytes(data, device=other)
        assert g2.device is other
        y2 = g2.run([x]).numpy()
        if other is device:
            np.testing.assert_array_equal(y2, y)
        else:  # another backend's kernels round differently
            np.testing.assert_allclose(y2, y, rtol=1e-3, atol=1e-4)


def _worker(data, x, queue):
    g = pickle.loads(data)
    queue.put(np.array(g.run([x]).numpy()))


def test_pickle_to_a_spawned_process(device):
    """A graph pickled to a worker process (multiprocessing spawn: a fresh interpreter) runs there
    with the same results."""
    g, _ = small_network(device)
    x = np.random.default_rng(5).standard_normal((2, 8, 8, 3)).astype(np.float32)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    env_path = os.environ.get("PYTHONPATH", "")
    here = os.path.dirname(__file__)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, env_path) if p)
    try:
        proc = ctx.Process(target=_worker, args=(pickle.dumps(g), x, queue))
        proc.start()
        y = queue.get(timeout=120)
        proc.join(60)
    finally:
        os.environ["PYTHONPATH"] = env_path
    assert proc.exitcode == 0
    np.testing.assert_array_equal(y, g.run([x]).numpy())


def test_mnist_sample_graphs_round_trip(device):
    """The MNIST training sample's graphs (examples/mnist_training.py): the inference graph runs
    bit for bit the same after a round trip; the training graph (every gradient node, dropout,
    the loss and its labels) loads, and its bytes hold the data sources' current weights."""
    mod = mnist_example()
    clf = mod.MNISTClassifierGraph(device, np.random.default_rng(0), batch_size=2)
    x = np.random.default_rng(1).random((2, 28, 28, 1)).astype(np.float32)
    y = np.array(clf.inference_graph.run([x]).numpy())
    g2 = pickle.loads(pickle.dumps(clf.inference_graph))
    assert g2.format == mpsnn.MPSImageFeatureChannelFormat.float16
    np.testing.assert_array_equal(g2.run([x]).numpy(), y)
    # the stored graph is compiled again on load (serialize.h): into the same plan, fused steps,
    # values and arena offsets alike
    assert g2.to_dot(plan=True, source_images=[x]) == clf.inference_graph.to_dot(plan=True, source_images=[x])
    t2 = mpsnn.MPSNNGraph.from_bytes(clf.training_graph.to_bytes())
    labels = mpsnn.MPSCNNLossLabels(device, mpsnn.MPSCNNLossDataDescriptor(
        np.eye(10, dtype=np.float32)[:1].reshape(1, 1, 10), mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels, (1, 1, 10)))
    assert t2.to_dot(plan=True, source_images=[x[:1]], source_states=[labels]) == clf.training_graph.to_dot(
        plan=True, source_images=[x[:1]], source_states=[labels])
    assert t2.source_state_handles == [None]
    assert t2.to_bytes() == clf.training_graph.to_bytes()
    # new weights in the data sources (as after training) are what the next bytes hold
    clf.fc2_weights.weights()[...] *= 0.5
    clf.inference_graph.reload_from_data_sources()
    y_new = np.array(clf.inference_graph.run([x]).numpy())
    assert not np.array_equal(y_new, y)
    np.testing.assert_array_equal(copy.deepcopy(clf.inference_graph).run([x]).numpy(), y_new)


# ---- the loader's errors and its fuzzing ----

def test_truncated_and_corrupted_data_name_section_field_and_offset(device):
    g, sm = small_network(device)
    data = g.to_bytes()
    assert data[:8] == b"MPSNNSER" and struct.unpack("<II", data[8:16]) == (2, 1)
    with pytest.raises(mpsnn.SerializationError, match=r"section 'header'.*magic"):
        mpsnn.MPSNNGraph.from_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(mpsnn.SerializationError, match=r"format version 9; this build reads versions 1 to 2"):
        mpsnn.MPSNNGraph.from_bytes(data[:8] + struct.pack("<I", 9) + data[12:])
    with pytest.raises(mpsnn.SerializationError, match=r"hold nodes"):
        mpsnn.MPSNNGraph.from_bytes(sm.__reduce__()[1][0])
    for cut in (0, 5, 15, 30, len(data) // 2, len(data) - 1):
        with pytest.raises(mpsnn.SerializationError, match=r"byte offset \d+: truncated"):
            mpsnn.MPSNNGraph.from_bytes(data[:cut])
    with pytest.raises(mpsnn.SerializationError, match=r"bytes after the END section"):
        mpsnn.MPSNNGraph.from_bytes(data + b"\0")
    # a field name and an enum value
    at = data.index(b"kernel_width")
    bad = data[:at] + b"kernel_wodth" + data[at + 12:]
    with pytest.raises(mpsnn.SerializationError, match=r"section 'SRCS', convolution source 0 field 'kernel_width'.*"
                                                      r"expected field 'kernel_width', found 'kernel_wodth'"):
        mpsnn.MPSNNGraph.from_bytes(bad)
    at = data.index(b"mode") + 4  # the pooling mode (an int32 enum)
    bad = data[:at] + struct.pack("<i", 7) + data[at + 4:]
    with pytest.raises(mpsnn.SerializationError, match=r"filter 2 \(pooling\) field 'mode'.*enum value 7 out of range"):
        mpsnn.MPSNNGraph.from_bytes(bad)
    assert issubclass(mpsnn.SerializationError, ValueError) and issubclass(mpsnn.SerializationError, mpsnn.MPSError)
    with pytest.raises(mpsnn.SerializationError, match=r"hold an MPSNNGraph"):
        mpsnn._core._nodes_from_bytes(data)  # a graph, not nodes
    with pytest.raises(mpsnn.DTypeError, match=r"data is a str; expected bytes"):
        mpsnn.MPSNNGraph.from_bytes("MPSNNSER")
    # any contiguous buffer of the bytes
    assert mpsnn.MPSNNGraph.from_bytes(np.frombuffer(data, np.uint8)).label == "small"
    assert mpsnn.MPSNNGraph.from_bytes(memoryview(data)).label == "small"


def _fuzz_bases(device):
    if "bases" not in _BASES:
        g, sm = small_network(device)
        yolo_graph, _ = _yolo_graph(device)
        ts_graph = _small_training_graph(device)
        make, kw = _optimizers()["amsgrad"]
        trained, _ = _trainable_graph(device, make, kw, mpsnn.MPSNNTrainingStyle.update_device_gpu)
        _BASES["bases"] = [("graph", g.to_bytes()), ("graph", yolo_graph.to_bytes()), ("graph", ts_graph.to_bytes()),
                           ("nodes", sm.__reduce__()[1][0]), ("graph", trained.to_bytes())]
    return _BASES["bases"]


_BASES: dict = {}


def _small_training_graph(device):
    rng = np.random.default_rng(6)
    x = mpsnn.MPSNNImageNode(handle=Handle("x"))
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=2,
                                          output_feature_channels=4)
    conv = mpsnn.MPSCNNConvolutionNode(source=x, weights=mpsnn.ArrayConvolutionDataSource(
        d, rng.standard_normal((4, 3, 3, 2)).astype(np.float32), np.zeros(4, np.float32)))
    inorm = mpsnn.MPSCNNInstanceNormalizationNode(source=conv.result_image,
                                                  data_source=mpsnn.ArrayInstanceNormalizationDataSource(
                                                      gamma=np.ones(4), beta=np.zeros(4)))
    drop = mpsnn.MPSCNNDropoutNode(source=inorm.result_image, keep_probability=0.75, seed=3)
    loss = mpsnn.MPSCNNLossNode(source=drop.result_image, loss_descriptor=mpsnn.MPSCNNLossDescriptor(
        mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNReductionType.mean))
    terminals = loss.training_graph()
    return mpsnn.MPSNNGraph(device, result_images=[t.result_image for t in terminals])


@st.composite
def mutated(draw, bases):
    kind, data = draw(st.sampled_from(bases))
    b = bytearray(data)
    how = draw(st.sampled_from(["truncate", "flip", "splice", "insert", "delete"]))
    if how == "truncate":
        b = b[:draw(st.integers(0, len(b) - 1))]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= draw(st.integers(1, 255))
    elif how == "splice":  # a little-endian integer overwritten with an extreme value
        i = draw(st.integers(0, len(b) - 4))
        b[i:i + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe])))
    elif how == "insert":
        i = draw(st.integers(0, len(b)))
        b[i:i] = draw(st.binary(min_size=1, max_size=16))
    else:
        i = draw(st.integers(0, len(b) - 1))
        del b[i:i + draw(st.integers(1, 16))]
    return kind, bytes(b)


def test_loader_fuzz(device):
    """Mutated bytes (truncated, flipped, overwritten with extreme integers, bytes inserted or
    deleted) either load or raise SerializationError, nothing else (MPSNN_SERIAL_FUZZ_EXAMPLES=N
    for a longer run)."""
    bases = _fuzz_bases(device)
    outcomes = {"loaded": 0, "refused": 0}

    @settings(max_examples=FUZZ_EXAMPLES, **_SETTINGS)
    @given(case=mutated(bases))
    def check(case):
        kind, data = case
        try:
            if kind == "graph":
                mpsnn.MPSNNGraph.from_bytes(data, device)
            else:
                mpsnn._core._nodes_from_bytes(data)
            outcomes["loaded"] += 1
        except mpsnn.SerializationError as e:
            assert re.search(r"section '[A-Za-z]+'.* at byte offset \d+: ", str(e)), str(e)
            outcomes["refused"] += 1

    check()
    assert outcomes["refused"] > 0


# ---- pictures ----

def parse_dot(text):
    """(nodes {id: label}, edges [(from, to)]) of the DOT text to_dot writes."""
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    nodes, edges = {}, []
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r'^(\w+) -> (\w+)( \[.*\])?;$', line)
        if m:
            edges.append((m.group(1), m.group(2)))
            continue
        m = re.match(r'^(\w+) \[(.*)\];$', line)
        if m and m.group(1) not in ("graph", "node", "edge"):
            lab = re.search(r'label="((?:[^"\\]|\\.)*)"', m.group(2))
            nodes[m.group(1)] = lab.group(1).replace("\\n", "\n").replace('\\"', '"') if lab else ""
    for a, b in edges:
        assert a in nodes and b in nodes, (a, b)
    return nodes, edges


def test_to_dot_node_graph(device):
    g, _ = small_network(device)
    x = np.zeros((2, 8, 8, 3), np.float32)
    nodes, edges = parse_dot(g.to_dot(source_images=[x]))
    by_class = {lab.split("\n")[0]: k for k, lab in nodes.items() if lab.startswith("MPSCNN")}
    assert set(by_class) == {"MPSCNNConvolutionNode", "MPSCNNBatchNormalizationNode", "MPSCNNPoolingAverageNode",
                             "MPSCNNFullyConnectedNode", "MPSCNNSoftMaxNode"}
    conv = nodes[by_class["MPSCNNConvolutionNode"]]
    assert "'conv node'" in conv and "weights: 'conv'" in conv
    assert "TensorFlow average pooling" in nodes[by_class["MPSCNNPoolingAverageNode"]]
    source = next(k for k, lab in nodes.items() if "source 0" in lab)
    assert "handle: image" in nodes[source] and "2x8x8x3" in nodes[source]
    # source -> conv -> image -> bn -> ...: each filter reads the image the previous one made
    order = ["MPSCNNConvolutionNode", "MPSCNNBatchNormalizationNode", "MPSCNNPoolingAverageNode",
             "MPSCNNFullyConnectedNode", "MPSCNNSoftMaxNode"]
    assert (source, by_class[order[0]]) in edges
    for a, b in zip(order, order[1:]):
        made = [t for f, t in edges if f == by_class[a]]
        assert len(made) == 1 and (made[0], by_class[b]) in edges, (a, b)
    pooled = next(t for f, t in edges if f == by_class["MPSCNNPoolingAverageNode"])
    assert "handle: pooled" in nodes[pooled] and "exported" in nodes[pooled] and "2x4x4x8" in nodes[pooled]
    # without sizes
    nodes2, edges2 = parse_dot(g.to_dot())
    assert len(nodes2) == len(nodes) and len(edges2) == len(edges)
    assert not any("2x8x8x3" in lab for lab in nodes2.values())


def test_to_dot_training_graph_has_states(device):
    g = _small_training_graph(device)
    nodes, edges = parse_dot(g.to_dot())
    classes = {lab.split("\n")[0] for lab in nodes.values()}
    assert {"MPSCNNConvolutionGradientNode", "MPSCNNInstanceNormalizationGradientNode", "MPSCNNDropoutGradientNode",
            "MPSCNNLossNode", "MPSNNLabelsNode", "MPSCNNConvolutionGradientStateNode"} <= classes
    labels = next(k for k, lab in nodes.items() if lab.startswith("MPSNNLabelsNode"))
    loss = next(k for k, lab in nodes.items() if lab.startswith("MPSCNNLossNode"))
    assert (labels, loss) in edges


def test_to_dot_plan(device):
    g, _ = small_network(device)
    x = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(mpsnn.MPSGraphError, match="plan=True needs source_images"):
        g.to_dot(plan=True)
    text = g.to_dot(plan=True, source_images=[x])
    nodes, edges = parse_dot(text)
    steps = {k: lab for k, lab in nodes.items() if k.startswith("step")}
    values = {k: lab for k, lab in nodes.items() if k.startswith("v")}
    desc = g.plan_description([x])
    assert len(steps) == int(re.search(r"plan: (\d+) steps", desc).group(1))
    assert any("[convolution 'conv node']" in lab for lab in steps.values())
    assert any("input 0" in lab and "2x8x8x3" in lab for lab in values.values())
    assert any("output 0" in lab for lab in values.values())
    for k in steps:
        assert any(a == k for a, _ in edges) and any(b == k for _, b in edges)
    arena = re.findall(r"@(\d+)", text)
    assert arena, "temporary values are placed in the arena"
    for a, b in edges:
        if "reuses memory" in text and nodes[a].count("@") and nodes[b].count("@"):
            assert re.search(r"@(\d+)", nodes[a]).group(1) == re.search(r"@(\d+)", nodes[b]).group(1) or \
                a.startswith("step") or b.startswith("step")


def test_to_dot_plan_shows_memory_reuse(device):
    x = mpsnn.MPSNNImageNode()
    n = x
    for i in range(5):
        nd = mpsnn.MPSCNNNeuronSigmoidNode(source=n)
        nd.label = f"s{i}"
        n = nd.result_image
    g = mpsnn.MPSNNGraph(device, n)
    nodes, edges = parse_dot(g.to_dot(plan=True, source_images=[np.zeros((1, 4, 4, 4), np.float32)]))
    reuse = [(a, b) for a, b in edges if a.startswith("v") and b.startswith("v")]
    assert reuse, "a chain of five steps reuses arena memory"
    for a, b in reuse:
        assert re.search(r"@(\d+)", nodes[a]).group(1) == re.search(r"@(\d+)", nodes[b]).group(1)


def _dot_runs():
    """Graphviz's dot can run here: installed, and not under tools/sanitize.sh, whose preloaded
    AddressSanitizer runtime the dot child inherits (it then fails on dot's own leaks)."""
    import shutil
    return shutil.which("dot") is not None and not os.environ.get("MPSNN_SANITIZED")


@pytest.mark.parametrize("ext", ["svg", "png"])
def test_save_picture(tmp_path, device, ext):
    if not _dot_runs():
        pytest.skip("Graphviz's dot is not installed (or runs under the sanitizer's preload)")
    g, _ = small_network(device)
    path = tmp_path / f"net.{ext}"
    g.save_picture(path)
    data = path.read_bytes()
    if ext == "svg":
        assert data.lstrip().startswith(b"<?xml") and b"MPSCNNConvolutionNode" in data
    else:
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    g.save_picture(str(tmp_path / "plan.svg"), plan=True, source_images=[np.zeros((1, 8, 8, 3), np.float32)])
    assert b"step 0" in (tmp_path / "plan.svg").read_bytes()
    with pytest.raises(mpsnn.UnsupportedError, match=r"expected \.svg or \.png"):
        g.save_picture(tmp_path / "net.gif")


def test_save_picture_without_dot(tmp_path, device, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    g, _ = small_network(device)
    with pytest.raises(mpsnn.UnsupportedError, match=r"Graphviz's `dot` program is not on PATH"):
        g.save_picture(tmp_path / "net.svg")
    assert not (tmp_path / "net.svg").exists()


def test_to_dot_escapes_labels(device):
    relu = mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode(handle=Handle('in "x"\\n')))
    relu.label = 'say "hi" \\ {<b>}'
    g = mpsnn.MPSNNGraph(device, relu.result_image)
    g.label = 'a "quoted" graph'
    nodes, edges = parse_dot(g.to_dot())
    assert any(lab.startswith("MPSCNNNeuronReLUNode\n'say \"hi\" \\\\ {<b>}'") for lab in nodes.values()), nodes
    assert any('handle: in "x"' in lab for lab in nodes.values())
    if _dot_runs():
        import subprocess
        subprocess.run(["dot", "-Tsvg"], input=g.to_dot().encode(), check=True, capture_output=True)


# ---- training state: optimizers, time steps and moments travel with the graph ----


def _optimizers():
    def desc(**kw):
        return mpsnn.MPSNNOptimizerDescriptor(learning_rate=kw.pop("learning_rate", 0.01), **kw)
    clip = dict(apply_gradient_clipping=True, gradient_clip_max=0.05, gradient_clip_min=-0.04, gradient_rescale=0.5)
    return {
        "sgd": (lambda d: mpsnn.MPSNNOptimizerStochasticGradientDescent(d, learning_rate=0.02), {}),
        "nesterov_l2": (lambda d: mpsnn.MPSNNOptimizerStochasticGradientDescent(
            d, momentum_scale=0.9, use_nestrov_momentum=True, optimizer_descriptor=desc(
                regularization_type=mpsnn.MPSNNRegularizationType.l2, regularization_scale=0.01)), {}),
        "rmsprop_clip": (lambda d: mpsnn.MPSNNOptimizerRMSProp(d, decay=0.8, epsilon=1e-4,
                                                              optimizer_descriptor=desc(learning_rate=1e-3, **clip)), {}),
        "adam_l1": (lambda d: mpsnn.MPSNNOptimizerAdam(d, beta1=0.8, beta2=0.99, epsilon=1e-5, time_step=0,
                                                      optimizer_descriptor=desc(
                                                          learning_rate=1e-3, regularization_scale=1e-3,
                                                          regularization_type=mpsnn.MPSNNRegularizationType.l1)), {}),
        "amsgrad": (lambda d: mpsnn.MPSNNOptimizerAdam(d, learning_rate=1e-3), {"amsgrad": True}),
    }


def _trainable_graph(device, make_optimizer, kw, style):
    """conv -> batch norm (running statistics) -> ReLU -> instance norm -> conv, every source trained."""
    rng = np.random.default_rng(11)

    def conv_source(cin, cout):
        d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=cin,
                                              output_feature_channels=cout)
        return mpsnn.ArrayConvolutionDataSource(d, rng.standard_normal((cout, 3, 3, cin)).astype(np.float32) * 0.3,
                                                rng.standard_normal(cout).astype(np.float32) * 0.1,
                                                optimizer=make_optimizer(device), **kw)
    x = mpsnn.MPSNNImageNode(handle=Handle("x"))
    c1 = mpsnn.MPSCNNConvolutionNode(source=x, weights=conv_source(3, 6))
    bn = mpsnn.MPSCNNBatchNormalizationNode(source=c1.result_image, data_source=mpsnn.ArrayBatchNormalizationDataSource(
        rng.uniform(0.5, 1.5, 6), rng.uniform(-0.5, 0.5, 6), np.zeros(6), np.ones(6), epsilon=1e-5,
        optimizer=make_optimizer(device), statistics_momentum=0.3, **kw))
    relu = mpsnn.MPSCNNNeuronReLUNode(source=bn.result_image)
    inorm = mpsnn.MPSCNNInstanceNormalizationNode(source=relu.result_image,
                                                  data_source=mpsnn.ArrayInstanceNormalizationDataSource(
                                                      rng.uniform(0.5, 1.5, 6), rng.uniform(-0.5, 0.5, 6),
                                                      epsilon=1e-5, optimizer=make_optimizer(device), **kw))
    c2 = mpsnn.MPSCNNConvolutionNode(source=inorm.result_image, weights=conv_source(6, 5))
    for n in (c1, bn, inorm, c2):
        n.training_style = style
    loss = mpsnn.MPSCNNLossNode(source=c2.result_image, loss_descriptor=mpsnn.MPSCNNLossDescriptor(
        mpsnn.MPSCNNLossType.mean_squared_error, mpsnn.MPSCNNReductionType.mean))
    (terminal,) = loss.training_graph()
    return mpsnn.MPSNNGraph(device, result_image=terminal.result_image, result_image_is_needed=False), loss


def _train(graph, device, steps, seed):
    """`steps` training steps on batches of `seed`; the losses."""
    rng = np.random.default_rng(seed)
    queue = device.make_command_queue()
    losses = []
    for _ in range(steps):
        x = rng.standard_normal((3, 6, 5, 3)).astype(np.float32)
        t = rng.standard_normal((3, 6, 5, 5)).astype(np.float32)
        losses.append(train_step(graph, queue, device, x, t))
    return losses


@pytest.mark.parametrize("style", ["gpu", "cpu"])
@pytest.mark.parametrize("name", list(_optimizers()))
def test_a_loaded_training_graph_trains_on_where_the_stored_one_was(device, name, style):
    """A training graph stored after some steps (optimizer settings, Adam's time step, momentum /
    velocity / sum-of-squares vectors, running statistics momentum) and loaded -- by bytes, pickle and
    deepcopy -- takes the next steps exactly as the original does: the same losses bit for bit, and
    the same bytes (weights, moments, time steps) afterwards."""
    make, kw = _optimizers()[name]
    ts = {"gpu": mpsnn.MPSNNTrainingStyle.update_device_gpu, "cpu": mpsnn.MPSNNTrainingStyle.update_device_cpu}[style]
    g, _ = _trainable_graph(device, make, kw, ts)
    _train(g, device, 3, seed=1)
    data = g.to_bytes()
    copies = [mpsnn.MPSNNGraph.from_bytes(data, device), pickle.loads(pickle.dumps(g)), copy.deepcopy(g)]
    assert all(c.to_bytes() == data for c in copies)
    ours = _train(g, device, 3, seed=2)
    for c in copies:
        assert _train(c, device, 3, seed=2) == ours
        assert c.to_bytes() == g.to_bytes()
    assert g.to_bytes() != data  # the steps changed what is stored


def test_loaded_sources_are_trainable_with_the_stored_optimizer(device):
    """What a loaded graph's nodes hold (MPSNNFilterNode.data_source): Array data sources whose
    optimizer has the stored class, settings and time step, and moments equal to the original's."""
    make, kw = _optimizers()["amsgrad"]
    g, loss = _trainable_graph(device, make, kw, mpsnn.MPSNNTrainingStyle.update_device_gpu)
    _train(g, device, 2, seed=1)

    def sources(node):  # of the forward nodes upstream of the loss
        return [f.data_source for f in upstream(node.source_images) if f.data_source is not None]
    before, after = sources(loss), sources(pickle.loads(pickle.dumps(loss)))
    assert [type(s).__name__ for s in after] == ["ArrayConvolutionDataSource", "ArrayInstanceNormalizationDataSource",
                                                 "ArrayBatchNormalizationDataSource", "ArrayConvolutionDataSource"]
    assert all(a is not b for a, b in zip(before, after))
    for a, b in zip(before, after):
        assert type(b.optimizer) is mpsnn.MPSNNOptimizerAdam and b.optimizer is not a.optimizer
        assert b.optimizer.time_step == a.optimizer.time_step == 2
        assert (b.optimizer.learning_rate, b.optimizer.beta2) == (a.optimizer.learning_rate, a.optimizer.beta2)
        assert b._trainer.amsgrad
        for (ka, va), (kb, vb) in zip(a._trainer.moment_values(), b._trainer.moment_values()):
            assert ka == kb
            for x, y in zip(va, vb):
                np.testing.assert_array_equal(x, y)
            assert any(np.any(x != 0) for x in va)  # trained moments, not zeros
    assert after[2]._statistics_momentum == np.float32(0.3)
    np.testing.assert_array_equal(after[0].weights(), before[0].weights())


def test_trainer_records_are_checked(device):
    make, kw = _optimizers()["adam_l1"]
    g, _ = _trainable_graph(device, make, kw, mpsnn.MPSNNTrainingStyle.update_device_gpu)
    data = g.to_bytes()
    at = data.index(b"input_velocity_vectors")
    bad = data[:at] + b"input_velocity_vectorz" + data[at + 22:]
    with pytest.raises(mpsnn.SerializationError, match=r"convolution source 0 trainer at byte offset \d+: moment list 1 is "
                                                      r"'input_velocity_vectorz'; expected 'input_velocity_vectors'"):
        mpsnn.MPSNNGraph.from_bytes(bad)
    at = data.index(b"time_step") + len(b"time_step")
    bad = data[:at] + struct.pack("<q", -4) + data[at + 8:]
    with pytest.raises(mpsnn.SerializationError, match=r"trainer.*time_step is -4; expected >= 0"):
        mpsnn.MPSNNGraph.from_bytes(bad)
    at = data.index(b"rule") + len(b"rule")
    bad = data[:at] + struct.pack("<i", 5) + data[at + 4:]
    with pytest.raises(mpsnn.SerializationError, match=r"trainer field 'rule'.*enum value 5 out of range 0\.\.2"):
        mpsnn.MPSNNGraph.from_bytes(bad)


def test_version_1_data_loads(device):
    """Data written by format version 1 (before trainer records) loads: one convolution source, whose
    record is the v2 one without its trainer flag."""
    x = mpsnn.MPSNNImageNode(handle=None)
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=2,
                                          output_feature_channels=3)
    conv = mpsnn.MPSCNNConvolutionNode(source=x, weights=mpsnn.ArrayConvolutionDataSource(
        d, np.arange(6, dtype=np.float32).reshape(3, 1, 1, 2), np.ones(3, np.float32)))
    g = mpsnn.MPSNNGraph(device, conv.result_image)
    v2 = g.to_bytes()
    assert struct.unpack("<I", v2[8:12]) == (2,)
    at = v2.index(b"SRCS") + 4
    (n,) = struct.unpack("<Q", v2[at:at + 8])
    payload = v2[at + 8:at + 8 + n]
    assert payload[-5:] == b"\0\0\0\0\0"  # trainer flag 0, then 0 normalization sources
    v1 = (v2[:8] + struct.pack("<I", 1) + v2[12:at] + struct.pack("<Q", n - 1) + payload[:-5] + payload[-4:]
          + v2[at + 8 + n:])
    xa = np.random.default_rng(0).standard_normal((1, 2, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(mpsnn.MPSNNGraph.from_bytes(v1, device).run([xa]).numpy(), g.run([xa]).numpy())
