"""Faults (issue 9, part 5): user objects that raise (data sources, padding policies, transform
providers, allocators, completion handlers), host allocation failures injected at the k-th
allocation, inputs freed or resized by NumPy while a command buffer using them is in flight, and
interpreter exit with work in flight. Each fault gives a typed error or the behaviour README.md
documents, never a crash; the graph works on the next run, and the live host allocations return
to where they were (no leak)."""

from __future__ import annotations

import gc
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import mpsnn
from conftest import conv_source
from mpsnn import MPSImage, MPSNNGraph, MPSNNImageNode

live = mpsnn._core._host_live_allocation_count


@pytest.fixture(scope="module")
def device():
    """The CPU device only: the faults concern host memory (the injected failures and the live
    counts are the host allocator's, inputs are wrapped without copies) and the CPU's queues."""
    return mpsnn.MTLDevice("cpu")


@pytest.fixture(scope="module", autouse=True)
def frozen_heap():
    """What earlier tests left is moved out of the collector's sight, so that the collections
    below cost what this module allocates, not the whole session's heap."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(autouse=True)
def no_leak(frozen_heap):
    """Every test here leaves the live host allocations as it found them, and no armed failure."""
    gc.collect()
    before = live()
    yield
    mpsnn._core._fail_host_allocation_after(-1)
    # A queue thread releases what a command buffer held right after calling its handlers, which
    # may be after an execute_async handler let the test go on.
    deadline = time.monotonic() + 10
    while gc.collect() >= 0 and live() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live() == before


class Boom(Exception):
    """What the user objects below raise."""


class FlakySource:
    """An MPSCNNConvolutionDataSource over `inner` whose `method` raises while `armed`; counts
    load() and purge() calls, which must balance."""

    def __init__(self, inner, method=None):
        self.inner, self.method, self.armed = inner, method, method is not None
        self.loads = self.purges = 0

    def _maybe_raise(self, name):
        if self.armed and self.method == name:
            raise Boom(f"{name} failed")

    def data_type(self):
        self._maybe_raise("data_type")
        return self.inner.data_type()

    def descriptor(self):
        self._maybe_raise("descriptor")
        return self.inner.descriptor()

    def weights(self):
        self._maybe_raise("weights")
        return self.inner.weights()

    def bias_terms(self):
        self._maybe_raise("bias_terms")
        return self.inner.bias_terms()

    def load(self):
        self.loads += 1
        self._maybe_raise("load")
        return True

    def purge(self):
        self.purges += 1

    def label(self):
        self._maybe_raise("label")
        return "flaky"


def conv_relu(device, ds):
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    return MPSNNGraph(device, mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image).result_image)


def conv_graph(device, rng):
    """x (1, 6, 6, 3) -> conv 3x3 (3 -> 4) -> relu; returns (graph, input, expected, data source)."""
    ds, _, _ = conv_source(3, 4, 3, 3, rng)
    g = conv_relu(device, ds)
    x = rng.standard_normal((1, 6, 6, 3)).astype(np.float32)
    return g, x, g.run([x]).numpy().copy(), ds


# ---- data sources ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["load", "descriptor", "data_type", "weights", "bias_terms", "label"])
def test_data_source_that_raises_while_the_graph_is_built(device, rng, method):
    ds, _, _ = conv_source(3, 4, 3, 3, rng)
    flaky = FlakySource(ds, method)
    if method == "label":  # the node asks for it too (its context in messages)
        with pytest.raises(Boom, match="label failed"):
            mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=flaky)
    flaky.armed = False
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=flaky)
    flaky.armed = True
    flaky.loads = flaky.purges = 0
    refs = sys.getrefcount(flaky)
    for _ in range(2):
        with pytest.raises(Boom, match=f"{method} failed"):  # the data source's own exception, unchanged
            MPSNNGraph(device, conv.result_image)
    gc.collect()
    assert sys.getrefcount(flaky) == refs  # nothing kept it
    assert flaky.loads == 2 and flaky.purges == (0 if method == "load" else 2)  # each load() that worked was purged
    flaky.armed = False
    x = rng.standard_normal((1, 5, 5, 3)).astype(np.float32)
    plain = MPSNNGraph(device, mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds).result_image)
    np.testing.assert_array_equal(MPSNNGraph(device, conv.result_image).run([x]).numpy(), plain.run([x]).numpy())


@pytest.mark.parametrize("method", ["load", "number_of_feature_channels", "gamma", "mean", "epsilon"])
def test_normalization_data_source_that_raises(device, rng, method):
    base = mpsnn.ArrayBatchNormalizationDataSource

    def raising(name):
        def call(self):
            if self.armed and name == method:
                raise Boom(f"{name} failed")
            return getattr(base, name)(self)
        return call

    class Flaky(base):
        armed, loads, purges = True, 0, 0
        number_of_feature_channels = raising("number_of_feature_channels")
        gamma, mean, epsilon = raising("gamma"), raising("mean"), raising("epsilon")

        def load(self):
            self.loads += 1
            return raising("load")(self)

        def purge(self):
            self.purges += 1

    ds = Flaky(gamma=rng.uniform(0.5, 2, 4).astype(np.float32), mean=rng.standard_normal(4).astype(np.float32),
               epsilon=1e-3)
    bn = mpsnn.MPSCNNBatchNormalizationNode(source=MPSNNImageNode(), data_source=ds)
    with pytest.raises(Boom, match=f"{method} failed"):
        MPSNNGraph(device, bn.result_image)
    assert ds.loads == 1 and ds.purges == (0 if method == "load" else 1)
    ds.armed = False
    x = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    y = MPSNNGraph(device, bn.result_image).run([x]).numpy()
    np.testing.assert_allclose(y, (x - ds.mean()) * ds.gamma() / np.sqrt(1 + 1e-3), rtol=1e-5, atol=1e-6)


class SecondReadFails:
    """Wraps several data sources; during one reload the second of them that is read raises."""

    def __init__(self):
        self.reads, self.armed = 0, False

    def wrap(self, ds):
        counter = self

        class Source(FlakySource):
            def weights(self):
                if counter.armed:
                    counter.reads += 1
                    if counter.reads == 2:
                        raise Boom("second source failed")
                return self.inner.weights()

        return Source(ds)


def test_failed_reload_keeps_all_previous_parameters(device, rng):
    """reload_from_data_sources is all or nothing: a source that raises changes no parameter,
    whichever order the sources are read in (regression: the sources read before the failing one
    were updated, so the graph ran a mix of old and new weights)."""
    fail = SecondReadFails()
    x = MPSNNImageNode()
    sources, weights = [], []
    node = x
    for cin, cout in ((3, 4), (4, 4)):
        ds, w, _ = conv_source(cin, cout, 3, 3, rng, bias=False)
        sources.append(fail.wrap(ds))
        weights.append(w)
        node = mpsnn.MPSCNNConvolutionNode(source=node, weights=sources[-1]).result_image
    g = MPSNNGraph(device, node)
    xv = rng.standard_normal((1, 6, 6, 3)).astype(np.float32)
    before = g.run([xv]).numpy().copy()
    for w in weights:
        w *= 2.0  # the data sources' arrays, changed in place
    fail.armed = True
    with pytest.raises(Boom, match="second source failed"):
        g.reload_from_data_sources()
    np.testing.assert_array_equal(g.run([xv]).numpy(), before)
    assert all(s.loads == s.purges for s in sources)
    fail.armed = False
    g.reload_from_data_sources()  # and the next reload takes both
    np.testing.assert_allclose(g.run([xv]).numpy(), 4.0 * before, rtol=1e-5, atol=1e-5)


# ---- padding policies and transform providers -----------------------------------------------------

class FlakyPadding:
    def __init__(self, method):
        self.method, self.armed = method, True

    def padding_method(self):
        if self.armed and self.method == "padding_method":
            raise Boom("padding_method failed")
        return int(mpsnn.MPSNNPaddingMethod.size_same | mpsnn.MPSNNPaddingMethod.custom)

    def destination_image_descriptor(self, source_images, source_states, kernel, suggested):
        if self.armed and self.method == "destination_image_descriptor":
            raise Boom("destination_image_descriptor failed")
        return suggested


@pytest.mark.parametrize("method", ["padding_method", "destination_image_descriptor"])
def test_padding_policy_that_raises(device, rng, method):
    policy = FlakyPadding(method)
    x = rng.standard_normal((1, 6, 6, 3)).astype(np.float32)
    ds, _, _ = conv_source(3, 4, 3, 3, rng)
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds)
    conv.padding_policy = policy
    g = MPSNNGraph(device, conv.result_image)
    with pytest.raises(Boom, match=f"{method} failed"):
        g.run([x])
    cb = device.make_command_queue().make_command_buffer()
    with pytest.raises(Boom, match=f"{method} failed"):
        g.encode(cb, [x])
    assert g._num_compiled_plans == 0  # no half-made plan was kept
    policy.armed = False
    expected = MPSNNGraph(device, mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=ds).result_image)
    y = g.encode(cb, [x])  # the same command buffer is still usable
    cb.commit()
    cb.wait_until_completed()
    np.testing.assert_array_equal(y.numpy(), expected.run([x]).numpy())
    np.testing.assert_array_equal(g.run([x]).numpy(), y.numpy())


def test_transform_provider_that_raises(device, rng):
    class Provider:
        armed = True

        def transform(self, for_source_image, handle):
            if self.armed:
                raise Boom("transform failed")
            return mpsnn.MPSScaleTransform(2.0, 2.0, 0.0, 0.0)

    provider = Provider()
    scale = mpsnn.MPSNNBilinearScaleNode(source=MPSNNImageNode(), transform_provider=provider,
                                         output_size=mpsnn.MTLSize(8, 8, 1))
    g = MPSNNGraph(device, scale.result_image)
    x = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    with pytest.raises(Boom, match="transform failed"):
        g.run([x])
    provider.armed = False
    assert g.run([x]).numpy().shape == (1, 8, 8, 2)


# ---- allocators ---------------------------------------------------------------------------------

class FlakyAllocator:
    """An MPSImageAllocator that raises while armed and counts the images it made."""

    def __init__(self):
        self.armed, self.made = True, 0

    def image(self, command_buffer, image_descriptor, kernel):
        if self.armed:
            raise Boom("allocator failed")
        self.made += 1
        return MPSImage(command_buffer.device, image_descriptor)


@pytest.mark.parametrize("where", ["destination", "intermediate"])
def test_image_allocator_that_raises(device, rng, where):
    x = MPSNNImageNode()
    relu = mpsnn.MPSCNNNeuronReLUNode(source=x)
    relu.result_image.export_from_graph = True
    out = mpsnn.MPSCNNNeuronSigmoidNode(source=relu.result_image)
    alloc = FlakyAllocator()
    # the intermediate is allocated after the result
    relu.result_image.image_allocator = alloc if where == "intermediate" else MPSImage.default_allocator()
    g = MPSNNGraph(device, out.result_image)
    if where == "destination":
        g.destination_image_allocator = alloc
    xv = rng.standard_normal((2, 3, 3, 4)).astype(np.float32)
    queue = device.make_command_queue()
    cb = queue.make_command_buffer()
    with pytest.raises(Boom, match="allocator failed"):
        g.encode(cb, [xv])
    with pytest.raises(Boom, match="allocator failed"):
        g.run([xv])
    cb.commit()  # nothing was encoded
    cb.wait_until_completed()
    g.reload_from_data_sources()  # raises while runs are pending: none is counted
    alloc.armed = False
    inter = []
    cb = queue.make_command_buffer()
    y = g.encode(cb, [xv], intermediate_images=inter)
    cb.commit()
    cb.wait_until_completed()
    np.testing.assert_allclose(y.numpy(), 1 / (1 + np.exp(-np.maximum(xv, 0))), rtol=1e-6)
    np.testing.assert_array_equal(inter[0].numpy(), np.maximum(xv, 0))
    assert alloc.made == 1


def test_failed_encode_leaves_its_temporary_source_alone(device, rng):
    """An encode that fails (here: its allocator raises) consumes no read of a temporary source;
    the retry on the same command buffer reads it."""
    head = MPSNNGraph(device, mpsnn.MPSCNNNeuronReLUNode(source=MPSNNImageNode()).result_image)
    head.destination_image_allocator = mpsnn.MPSTemporaryImage.default_allocator()
    tail = MPSNNGraph(device, mpsnn.MPSCNNNeuronSigmoidNode(source=MPSNNImageNode()).result_image)
    alloc = FlakyAllocator()
    tail.destination_image_allocator = alloc
    xv = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)
    cb = device.make_command_queue().make_command_buffer()
    t = head.encode(cb, [xv])
    with pytest.raises(Boom, match="allocator failed"):
        tail.encode(cb, [t])
    assert t.read_count == 1
    alloc.armed = False
    y = tail.encode(cb, [t])
    assert t.read_count == 0
    cb.commit()
    cb.wait_until_completed()
    np.testing.assert_allclose(y.numpy(), 1 / (1 + np.exp(-np.maximum(xv, 0))), rtol=1e-6)


# ---- completion handlers --------------------------------------------------------------------------

def test_completion_handler_that_raises(device, rng):
    """README: the handler's exception makes the buffer's status error; wait_until_completed raises
    it (mpsnn.BackendError naming it), once; the other handlers still run, and the buffer's work,
    which had completed, is readable. The queue and the graph keep working."""
    g, x, expected, _ = conv_graph(device, rng)
    queue = device.make_command_queue()
    cb = queue.make_command_buffer()
    y = g.encode(cb, [x])
    calls = []

    def boom(c):
        calls.append("boom")
        raise Boom("handler failed")

    cb.add_completed_handler(lambda c: calls.append("first"))
    cb.add_completed_handler(boom)
    cb.add_completed_handler(lambda c: calls.append("last"))
    cb.commit()
    with pytest.raises(mpsnn.BackendError, match="completion handler raised: Boom: handler failed"):
        cb.wait_until_completed()
    cb.wait_until_completed()  # reported once
    assert calls == ["first", "boom", "last"]
    assert cb.status == mpsnn.MTLCommandBufferStatus.error and "handler failed" in cb.error
    np.testing.assert_array_equal(y.numpy(), expected)
    cb = queue.make_command_buffer()
    y = g.encode(cb, [x])
    cb.commit()
    cb.wait_until_completed()
    np.testing.assert_array_equal(y.numpy(), expected)


def test_execute_async_handler_that_raises(device, rng, monkeypatch):
    """execute_async's handler has no caller to report to: its exception goes to
    sys.unraisablehook, and the next execute_async works."""
    g, x, expected, _ = conv_graph(device, rng)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(u.exc_value))
    done = threading.Event()

    def boom(result, error):
        done.set()
        raise Boom("async handler failed")

    g.execute_async([x], boom)
    assert done.wait(30)
    got = {}
    second = threading.Event()

    def ok(result, error):
        got["result"], got["error"] = result, error
        second.set()

    g.execute_async([x], ok)
    assert second.wait(30)  # the private queue runs in order: the first handler has returned
    assert [str(e) for e in unraisable] == ["async handler failed"]
    assert got["error"] is None
    np.testing.assert_array_equal(got["result"].numpy(), expected)


# ---- injected host allocation failures ------------------------------------------------------------

def fail_at_each_allocation(attempt):
    """Runs attempt() with the k-th host allocation failing, k = 0, 1, ... until it succeeds; returns
    the number of failures seen. attempt() must raise MemoryError when an allocation fails."""
    failures = 0
    for k in range(64):
        mpsnn._core._fail_host_allocation_after(k)
        try:
            attempt()
        except MemoryError:
            failures += 1
            continue
        finally:
            mpsnn._core._fail_host_allocation_after(-1)
        return failures
    raise AssertionError("attempt() kept failing")


def test_allocation_failure_in_run(device, rng):
    """A host allocation failure raises MemoryError from run (compiling or not) and leaves the
    graph usable."""
    g, x, expected, ds = conv_graph(device, rng)
    small = x[:, :4, :5].copy()  # a new size: a new plan, arena and result
    base = live()
    assert fail_at_each_allocation(lambda: g.run([small])) >= 2
    assert live() == base + 1  # the arena of the new plan, pooled
    np.testing.assert_array_equal(g.run([x]).numpy(), expected)
    fresh = conv_relu(device, ds)  # its first run compiles
    assert fail_at_each_allocation(lambda: np.testing.assert_array_equal(fresh.run([x]).numpy(), expected)) >= 2


def test_allocation_failure_in_encoded_work(device, rng):
    """Failures while encoding raise MemoryError from encode; failures while the buffer runs (the
    plan's arena is allocated then) come back from wait_until_completed as MemoryError, with status
    error, and reading a result of that buffer raises MPSGraphError. Temporary images, exported
    intermediates and several graphs in one buffer included."""
    x = MPSNNImageNode()
    ds, _, _ = conv_source(3, 4, 3, 3, rng)
    relu = mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSCNNConvolutionNode(source=x, weights=ds).result_image)
    relu.result_image.export_from_graph = True
    relu.result_image.image_allocator = MPSImage.default_allocator()
    head = MPSNNGraph(device, mpsnn.MPSCNNNeuronSigmoidNode(source=relu.result_image).result_image)
    head.destination_image_allocator = mpsnn.MPSTemporaryImage.default_allocator()
    tail = MPSNNGraph(device, mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), filter_size=2).result_image)
    queue = device.make_command_queue()
    xv = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    inter = []
    t = head.copy().run([xv], intermediate_images=inter)  # copies: the plans below start cold
    expected_y, expected_h = tail.copy().run([t]).numpy().copy(), inter[0].numpy().copy()
    where = {"encode": 0, "run": 0}
    handled = []

    def cycle():
        cb = queue.make_command_buffer()
        cb.add_completed_handler(lambda c: handled.append(c.status))
        inter = []
        try:
            t = head.encode(cb, [xv], intermediate_images=inter)
            y = tail.encode(cb, [t])
        except MemoryError:
            where["encode"] += 1
            cb.commit()  # what was encoded still runs
            cb.wait_until_completed()
            raise
        cb.commit()
        try:
            cb.wait_until_completed()
        except MemoryError:
            where["run"] += 1
            assert cb.status == mpsnn.MTLCommandBufferStatus.error
            with pytest.raises(mpsnn.MPSGraphError, match="failed"):
                y.numpy()
            raise
        return y.numpy().copy(), inter[0].numpy().copy()

    assert fail_at_each_allocation(cycle) == where["encode"] + where["run"]
    assert where["encode"] >= 2 and where["run"] >= 1
    assert len(handled) == where["encode"] + where["run"] + 1  # every buffer completed, handler called
    y, h = cycle()
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_array_equal(h, expected_h)


def test_allocation_failure_in_encode_batch(device, rng):
    g, _, _, _ = conv_graph(device, rng)
    queue = device.make_command_queue()
    batch = [MPSImage.from_numpy(rng.standard_normal((1, 6, 6, 3)).astype(np.float32)) for _ in range(3)]
    expected = [g.run([b]).numpy().copy() for b in batch]

    def attempt():
        cb = queue.make_command_buffer()
        out = g.encode_batch(cb, [batch])
        cb.commit()
        cb.wait_until_completed()
        for o, e in zip(out, expected):
            np.testing.assert_array_equal(o.numpy(), e)

    assert fail_at_each_allocation(attempt) >= 2  # the gathered batch, the result


def test_allocation_failure_in_execute_async(device, rng):
    g, x, expected, _ = conv_graph(device, rng)
    g.execute_async([x], lambda r, e: None)  # the private queue exists
    outcomes = []

    def attempt():
        done = threading.Event()
        got = {}

        def handler(result, error):
            got["result"], got["error"] = result, error
            done.set()

        g.execute_async([x], handler)  # never raises: errors go to the handler
        assert done.wait(30)
        outcomes.append(got["error"])
        if got["error"] is not None:
            raise MemoryError(got["error"])
        np.testing.assert_array_equal(got["result"].numpy(), expected)

    assert fail_at_each_allocation(attempt) >= 1
    assert outcomes[-1] is None and all(isinstance(e, str) for e in outcomes[:-1])


def test_allocation_failure_in_images_and_states(device):
    d = mpsnn.MPSImageDescriptor(mpsnn.MPSImageFeatureChannelFormat.float32, 4, 4, 4)
    img = MPSImage(device, d)
    mpsnn._core._fail_host_allocation_after(0)
    with pytest.raises(MemoryError):
        img.numpy()
    assert img.numpy().shape == (1, 4, 4, 4)  # the next use allocates
    mpsnn._core._fail_host_allocation_after(0)
    with pytest.raises(MemoryError):
        device.make_buffer(64).contents()
    del img


# ---- inputs freed or resized while in flight ------------------------------------------------------

class SlowDown:
    """Keeps a queue's worker busy until released, so that encoded work stays in flight."""

    def __init__(self, queue):
        self.release = threading.Event()
        cb = queue.make_command_buffer()
        cb.add_completed_handler(lambda c: self.release.wait(30))
        cb.commit()


def test_input_freed_while_in_flight(device, rng):
    """The command buffer keeps the NumPy memory of its inputs alive (an array passed directly, or
    wrapped in an MPSImage that is dropped), and lets it go once it completes."""
    g, _, _, _ = conv_graph(device, rng)
    queue = device.make_command_queue()
    slow = SlowDown(queue)
    xs = [rng.standard_normal((1, 6, 6, 3)).astype(np.float32) for _ in range(2)]
    expected = [g.run([x.copy()]).numpy().copy() for x in xs]
    cb = queue.make_command_buffer()
    ys = [g.encode(cb, [xs[0]]), g.encode(cb, [MPSImage.from_numpy(xs[1])])]
    cb.commit()
    del xs
    gc.collect()
    garbage = [np.full((1, 6, 6, 3), np.nan, np.float32) for _ in range(64)]  # would reuse freed memory
    slow.release.set()
    cb.wait_until_completed()
    for y, e in zip(ys, expected):
        np.testing.assert_array_equal(y.numpy(), e)
    del garbage


def test_input_resized_while_in_flight(device, rng):
    """ndarray.resize refuses while a command buffer holds the array (ValueError: it is referenced),
    and works again once the buffer completed: mpsnn holds a reference, not a copy, and releases it."""
    g, _, _, _ = conv_graph(device, rng)
    queue = device.make_command_queue()
    slow = SlowDown(queue)
    x = rng.standard_normal((1, 6, 6, 3)).astype(np.float32)
    expected = g.run([x.copy()]).numpy().copy()
    refs = sys.getrefcount(x)
    cb = queue.make_command_buffer()
    y = g.encode(cb, [x])
    cb.commit()
    with pytest.raises(ValueError, match="referenced"):
        x.resize((2, 6, 6, 3))
    slow.release.set()
    cb.wait_until_completed()
    np.testing.assert_array_equal(y.numpy(), expected)
    assert sys.getrefcount(x) == refs  # the command buffer let go of it
    x.resize((2, 6, 6, 3))
    assert x.shape == (2, 6, 6, 3)


# ---- interpreter exit with work in flight ---------------------------------------------------------

EXIT_SCRIPTS = {
    # Committed work and execute_async runs finish, and their handlers run, before the exit.
    "committed": """
        for i in range(4):
            cb = queue.make_command_buffer()
            g.encode(cb, [x])
            cb.add_completed_handler(lambda c: sys.stdout.write(f"handled {c.status.name}\\n"))
            cb.commit()
        g.execute_async([x], lambda r, e: sys.stdout.write(f"async {e} {r.numpy().shape}\\n"))
        """,
    # A daemon thread that keeps committing: the exit waits for what was committed when it began,
    # then stops the queues (regression: it waited forever, then aborted in the daemon thread).
    "daemon": """
        def loop():
            while True:
                cb = queue.make_command_buffer()
                g.encode(cb, [x])
                cb.add_completed_handler(lambda c: None)
                cb.commit()
                if len(pending) < 8:
                    pending.append(cb)
                    continue
                try:
                    pending.pop(0).wait_until_completed()
                except mpsnn.BackendError as e:  # buffers committed after the exit began do not run
                    assert "process is exiting" in str(e)
                    return
        def loop_async():
            slots = threading.Semaphore(4)  # at most 4 in flight, as Apple's samples do
            while True:
                slots.acquire()
                g.execute_async([x], lambda r, e: slots.release())
        pending = []
        threading.Thread(target=loop, daemon=True).start()
        threading.Thread(target=loop_async, daemon=True).start()
        time.sleep(0.3)
        print("handled")
        """,
    # A daemon thread blocked in wait_until_completed on work that is still running at the exit.
    "blocked": """
        release = threading.Event()
        cb = queue.make_command_buffer()
        cb.add_completed_handler(lambda c: release.wait(0.5))
        cb.commit()
        threading.Thread(target=cb.wait_until_completed, daemon=True).start()
        time.sleep(0.1)
        print("handled")
        """,
}

EXIT_PRELUDE = """
    import sys, threading, time
    import numpy as np
    import mpsnn
    device = mpsnn.MTLCreateSystemDefaultDevice()
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=4,
                                          output_feature_channels=4)
    w = np.ones((4, 3, 3, 4), np.float32) / 36
    g = mpsnn.MPSNNGraph(device, mpsnn.MPSCNNConvolutionNode(source=mpsnn.MPSNNImageNode(),
                         weights=mpsnn.ArrayConvolutionDataSource(d, w)).result_image)
    x = np.ones((1, 16, 16, 4), np.float32)
    queue = device.make_command_queue()
    """


@pytest.mark.parametrize("scenario", sorted(EXIT_SCRIPTS))
def test_interpreter_exit_with_work_in_flight(scenario):
    code = textwrap.dedent(EXIT_PRELUDE) + textwrap.dedent(EXIT_SCRIPTS[scenario])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(pathlib.Path(mpsnn.__file__).parents[1]), env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    if scenario == "committed":
        assert p.stdout.count("handled completed") == 4 and "async None (1, 16, 16, 4)" in p.stdout
    else:
        assert "handled" in p.stdout


def test_bindings_give_up_and_take_the_gil_only_through_gil_h():
    """A raw pybind11 GIL guard in the bindings would bring back the abort at exit (bindings/gil.h)."""
    bindings = pathlib.Path(__file__).resolve().parents[1] / "cpp" / "bindings"
    if not bindings.is_dir():
        pytest.skip("no sources next to the tests")
    raw = [f"{p.name}:{i}" for p in sorted(bindings.glob("*.[ch]*")) if p.stem != "gil"
           for i, line in enumerate(p.read_text().splitlines(), 1) if "gil_scoped_" in line]
    assert raw == [], "use ReleaseGil / PythonCall / AcquireGil (bindings/gil.h)"
