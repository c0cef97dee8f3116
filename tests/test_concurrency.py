"""Concurrency (issue 9, part 4): eight threads share three graphs and three command queues for a
bounded time, mixing graph.run, encode/commit with completion handlers (temporary images and
exported intermediates included, several graphs in one command buffer) and execute_async, over
several input sizes. Every result must be bit-identical to the serial result computed first,
every completion handler must be called exactly once, and a watchdog turns a deadlock into a
failure with every thread's stack instead of a hang.

MPSNN_CONCURRENCY_SECONDS sets how long the threads run (default 6)."""

from __future__ import annotations

import faulthandler
import os
import random
import sys
import threading
import time

import numpy as np
import pytest

import mpsnn
from conftest import conv_source
from mpsnn import MPSImage, MPSNNGraph, MPSNNImageNode

THREADS = 8
SECONDS = float(os.environ.get("MPSNN_CONCURRENCY_SECONDS", "6"))
WATCHDOG = 120.0  # seconds past the end before a thread counts as stuck


@pytest.fixture(scope="module")
def device():
    """The CPU device (bit-identical results across threads are a promise of the CPU backend)."""
    return mpsnn.MTLDevice("cpu")


def residual_graph(device, rng):
    """x -> conv -> relu (exported, persistent) -> conv ; + x ; relu."""
    x = MPSNNImageNode()
    c1 = mpsnn.MPSCNNConvolutionNode(source=x, weights=conv_source(6, 6, 3, 3, rng)[0])
    r1 = mpsnn.MPSCNNNeuronReLUNode(source=c1.result_image)
    r1.result_image.export_from_graph = True
    r1.result_image.image_allocator = MPSImage.default_allocator()
    c2 = mpsnn.MPSCNNConvolutionNode(source=r1.result_image, weights=conv_source(6, 6, 3, 3, rng)[0])
    add = mpsnn.MPSNNAdditionNode(left_source=c2.result_image, right_source=x)
    return MPSNNGraph(device, mpsnn.MPSCNNNeuronReLUNode(source=add.result_image).result_image)


def head_graph(device, rng):
    """x -> conv 1x1 (6 -> 8) -> tanh; its result is a temporary image when encoded."""
    conv = mpsnn.MPSCNNConvolutionNode(source=MPSNNImageNode(), weights=conv_source(6, 8, 1, 1, rng)[0])
    g = MPSNNGraph(device, mpsnn.MPSCNNNeuronTanHNode(source=conv.result_image).result_image)
    g.destination_image_allocator = mpsnn.MPSTemporaryImage.default_allocator()
    return g


def tail_graph(device, rng):
    """t -> max pool 2 -> softmax."""
    pool = mpsnn.MPSCNNPoolingMaxNode(source=MPSNNImageNode(), filter_size=2)
    return MPSNNGraph(device, mpsnn.MPSCNNSoftMaxNode(source=pool.result_image).result_image)


class Handlers:
    """Counts completion handlers added and called, exactly."""

    def __init__(self):
        self.lock = threading.Lock()
        self.added = self.called = 0
        self.statuses = []

    def add(self, cb):
        with self.lock:
            self.added += 1
        cb.add_completed_handler(self.call)

    def call(self, cb):
        with self.lock:
            self.called += 1
            if cb.status != mpsnn.MTLCommandBufferStatus.completed:
                self.statuses.append((cb.status, cb.error))


def test_threads_share_graphs_and_queues(device):
    rng = np.random.default_rng(99)
    serial_graphs = {"residual": residual_graph(device, rng), "head": head_graph(device, rng),
                     "tail": tail_graph(device, rng)}
    sizes = [(1, 8, 8, 6), (2, 5, 7, 6), (3, 11, 6, 6)]
    inputs = [rng.standard_normal(s).astype(np.float32) for s in sizes]

    # The serial results, computed first (the head's temporary result is persistent in run).
    expected = []
    for x in inputs:
        inter = []
        res = serial_graphs["residual"].run([x], intermediate_images=inter).numpy().copy()
        hidden = inter[0].numpy().copy()
        chain = serial_graphs["tail"].run([serial_graphs["head"].run([x])]).numpy().copy()
        expected.append({"residual": res, "hidden": hidden, "chain": chain})

    # The threads share fresh copies, so that they also compile the plans concurrently.
    graphs = {k: g.copy() for k, g in serial_graphs.items()}
    queues = [device.make_command_queue() for _ in range(3)]
    handlers = Handlers()
    errors, mismatches = [], []
    counts = [dict.fromkeys(("run", "encode", "chain", "async"), 0) for _ in range(THREADS)]
    deadline = time.monotonic() + SECONDS

    def same(kind, k, got, want):
        if not np.array_equal(got, want):
            mismatches.append((kind, k, float(np.abs(got - want).max())))

    def do_run(k):
        inter = []
        y = graphs["residual"].run([inputs[k]], intermediate_images=inter)
        same("run", k, y.numpy(), expected[k]["residual"])
        same("run hidden", k, inter[0].numpy(), expected[k]["hidden"])

    def do_encode(k, queue):
        cb = queue.make_command_buffer()
        inter = []
        y = graphs["residual"].encode(cb, [MPSImage.from_numpy(inputs[k])], intermediate_images=inter)
        handlers.add(cb)
        cb.commit()
        cb.wait_until_completed()
        same("encode", k, y.numpy(), expected[k]["residual"])
        same("encode hidden", k, inter[0].numpy(), expected[k]["hidden"])

    def do_chain(k, queue):
        """Three graphs in one command buffer: a temporary image between head and tail."""
        cb = queue.make_command_buffer()
        t = graphs["head"].encode(cb, [inputs[k]])
        assert t.is_temporary and t.read_count == 1
        y = graphs["tail"].encode(cb, [t])
        inter = []
        z = graphs["residual"].encode(cb, [inputs[k]], intermediate_images=inter)
        handlers.add(cb)
        cb.commit()
        cb.wait_until_completed()
        same("chain", k, y.numpy(), expected[k]["chain"])
        same("chain residual", k, z.numpy(), expected[k]["residual"])

    def do_async(k):
        done = threading.Event()
        got = {}

        def handler(result, error):
            got["result"], got["error"] = result, error
            with handlers.lock:
                handlers.called += 1
            done.set()

        with handlers.lock:
            handlers.added += 1
        returned = graphs["residual"].execute_async([inputs[k]], handler)
        if not done.wait(WATCHDOG):
            raise AssertionError("execute_async handler not called")
        assert got["error"] is None and got["result"] is returned
        same("async", k, returned.numpy(), expected[k]["residual"])

    def work(i):
        r = random.Random(i)
        try:
            while time.monotonic() < deadline:
                op = r.choice(("run", "encode", "chain", "async"))
                k = r.randrange(len(inputs))
                if op == "run":
                    do_run(k)
                elif op == "encode":
                    do_encode(k, queues[r.randrange(len(queues))])
                elif op == "chain":
                    do_chain(k, queues[r.randrange(len(queues))])
                else:
                    do_async(k)
                counts[i][op] += 1
        except BaseException as e:  # reported below
            errors.append((i, repr(e)))

    # The backstop if joining itself cannot end the test: every stack, then exit.
    # (to the process's own stderr: pytest's sys-level capture has no file descriptor)
    faulthandler.dump_traceback_later(SECONDS + 2 * WATCHDOG, exit=True, file=sys.__stderr__)
    try:
        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline + WATCHDOG - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            pytest.fail(f"deadlock: threads {stuck} still running {WATCHDOG:.0f} s after the end")
        for q in queues:
            q.drain()
    finally:
        faulthandler.cancel_dump_traceback_later()

    assert errors == []
    assert mismatches == []
    assert handlers.statuses == []
    assert handlers.called == handlers.added
    totals = {op: sum(c[op] for c in counts) for op in counts[0]}
    assert all(n > 0 for n in totals.values()), totals  # every kind of work really ran concurrently
    assert all(sum(c.values()) > 0 for c in counts)
    for k, g in graphs.items():
        assert g._num_compiled_plans == len(sizes), k  # one plan per size, however many threads asked


def test_drain_returns_while_another_thread_keeps_committing(device):
    """CommandQueue.drain waits for the buffers committed before it began (regression: it waited
    until the queue was empty, which never happens while another thread keeps committing, and so
    did the exit hook)."""
    relu = mpsnn.MPSCNNNeuronReLUNode(source=MPSNNImageNode())
    g = MPSNNGraph(device, relu.result_image)
    x = np.ones((1, 4, 4, 4), np.float32)
    queue = device.make_command_queue()
    stop = threading.Event()
    committed = [0]

    def keep_committing():
        pending = []
        while not stop.is_set():
            cb = queue.make_command_buffer()
            g.encode(cb, [x])
            cb.add_completed_handler(lambda c: time.sleep(0.002))
            cb.commit()
            committed[0] += 1
            pending.append(cb)
            if len(pending) > 4:  # the queue is never empty, and never far behind
                pending.pop(0).wait_until_completed()
        for cb in pending:
            cb.wait_until_completed()

    producer = threading.Thread(target=keep_committing, daemon=True)
    producer.start()
    while committed[0] < 10:
        time.sleep(0.01)
    drained = threading.Thread(target=queue.drain, daemon=True)
    drained.start()
    drained.join(30)
    finished = not drained.is_alive()
    stop.set()
    producer.join(30)
    assert finished, "drain() did not return while another thread kept committing"


def test_completion_handler_may_wait_for_its_own_buffer(device):
    """A handler may read its buffer's results and call wait_until_completed on it: the work has
    completed when handlers run (regression: the wait also waited for the handlers themselves, a
    deadlock that then hung the interpreter's exit too)."""
    g = MPSNNGraph(device, mpsnn.MPSCNNNeuronReLUNode(source=MPSNNImageNode()).result_image)
    x = np.arange(-8, 8, dtype=np.float32).reshape(1, 2, 2, 4)
    cb = device.make_command_queue().make_command_buffer()
    y = g.encode(cb, [x])
    seen = []

    def handler(c):
        seen.append(float(y.numpy().sum()))
        c.wait_until_completed()
        seen.append(c.status)

    cb.add_completed_handler(handler)
    cb.commit()
    waiter = threading.Thread(target=cb.wait_until_completed, daemon=True)
    waiter.start()
    waiter.join(30)
    assert not waiter.is_alive(), "deadlock: wait_until_completed inside the buffer's own handler"
    assert seen == [float(np.maximum(x, 0).sum()), mpsnn.MTLCommandBufferStatus.completed]
