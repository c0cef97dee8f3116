"""Soak test: many runs of the same graphs, with resident memory and live host allocations
reported at checkpoints. Memory must stay flat once warmed up.

Two modes, each ``--calls`` iterations long:

- ``run``: ``graph.run`` on NumPy inputs of two sizes (two cached plans), alternating, with an
  exported intermediate delivered into ``intermediate_images``.
- ``encode``: encode/commit cycles on a command queue, at most two command buffers in flight (as
  Apple's MNIST training sample does). Each cycle encodes three graphs into one command buffer:
  the first writes a temporary result (``MPSTemporaryImage``, read count 1) and exports a
  persistent intermediate; the second reads that temporary image (its read count drops to 0); the
  third is a two-result graph whose second result is not needed (``results_are_needed``). Every
  buffer gets a completion handler, and every handler call is counted.

At each checkpoint (every ``--every`` iterations) the script records resident memory (RSS, from
/proc/self/statm, else ``resource``) and ``mpsnn._core._host_live_allocation_count()`` (host
blocks not yet released). The first checkpoint (after ``--warmup`` iterations) is the baseline;
the script exits with status 1 when a later checkpoint's RSS exceeds the baseline by more than
``--rss-tolerance`` (1 %), when the live allocation count differs from the baseline's, when a
result differs from the first one, or when a completion handler was lost. malloc's bytes in use
and Python's allocated blocks are reported too, for diagnosis. glibc's mmap threshold is fixed
first (``fix_mmap_threshold``; ``--dynamic-mmap-threshold`` keeps the default), so that RSS follows
live memory instead of stepping once when glibc moves a large block from mmap into the heap.

    python benchmarks/soak.py                       # 10^5 + 10^5 iterations
    python benchmarks/soak.py --calls 2000 --every 500 --warmup 500 --modes run
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import json
import os
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

import mpsnn


def rss_bytes() -> int:
    """Resident set size of this process now (not the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best resource offers
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def live_allocations() -> int:
    return mpsnn._core._host_live_allocation_count()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        return libc
    except (OSError, AttributeError):  # not glibc, or glibc < 2.33
        return None


_LIBC = _libc()


def malloc_in_use() -> int:
    """Bytes malloc has handed out and not got back (glibc's mallinfo2: heap plus mmapped), or -1."""
    if _LIBC is None:
        return -1
    m = _LIBC.mallinfo2()
    return m.uordblks + m.hblkhd


def fix_mmap_threshold(nbytes: int = 128 * 1024) -> bool:
    """Fixes glibc's mmap threshold (M_MMAP_THRESHOLD) at its initial value.

    glibc raises the threshold each time it frees an mmapped block, so a large block that was
    mmapped is later carved from the heap: a one-off RSS step of about that block's size (seen
    here: 0.9 MiB, 1.6 % of the process, after 40 000 calls) that is no leak. With the threshold
    fixed, RSS follows live memory. Returns False where that is not possible (not glibc)."""
    return _LIBC is not None and bool(_LIBC.mallopt(-3, nbytes))  # -3: M_MMAP_THRESHOLD


@dataclass
class Checkpoint:
    calls: int
    seconds: float
    rss: int
    live_allocations: int  # host blocks of mpsnn's allocator not yet released
    malloc_in_use: int     # for information: malloc's bytes in use (-1: unknown)
    python_blocks: int     # for information: sys.getallocatedblocks()
    cyclic_garbage: int    # for information: objects only the cycle collector freed since the last one


@dataclass
class Report:
    mode: str
    calls: int
    warmup: int
    checkpoints: list[Checkpoint] = field(default_factory=list)
    mismatches: int = 0
    handlers_expected: int = 0
    handlers_called: int = 0

    @property
    def baseline(self) -> Checkpoint:
        return self.checkpoints[0]

    def rss_growth(self) -> float:
        """Largest RSS after warm-up relative to the baseline, as a fraction (0.004 = 0.4 %)."""
        base = self.baseline.rss
        return max(c.rss for c in self.checkpoints) / base - 1.0

    def problems(self, rss_tolerance: float = 0.01) -> list[str]:
        out = []
        if self.rss_growth() > rss_tolerance:
            out.append(f"{self.mode}: RSS grew by {100 * self.rss_growth():.2f} % after warm-up "
                       f"(limit {100 * rss_tolerance:g} %)")
        grown = [c for c in self.checkpoints if c.live_allocations != self.baseline.live_allocations]
        if grown:
            out.append(f"{self.mode}: live host allocations changed after warm-up: "
                       f"{self.baseline.live_allocations} -> {[c.live_allocations for c in grown]}")
        if self.mismatches:
            out.append(f"{self.mode}: {self.mismatches} result(s) differ from the first run's")
        if self.handlers_called != self.handlers_expected:
            out.append(f"{self.mode}: {self.handlers_called} completion handler call(s), "
                       f"expected {self.handlers_expected}")
        return out


def _conv_source(rng, cin, cout, k):
    d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=k, kernel_height=k, input_feature_channels=cin,
                                          output_feature_channels=cout)
    w = rng.standard_normal((cout, k, k, cin)).astype(np.float32) * 0.3
    b = rng.standard_normal(cout).astype(np.float32)
    return mpsnn.ArrayConvolutionDataSource(d, w, b)


def build_graphs(device):
    """Three small graphs: (head, tail, pair) as the encode mode uses them; head serves run too.

    head: x -> conv 3x3 -> relu (exported, persistent) -> conv 1x1 -> result
    tail: t -> max pool 2 -> result                    (t: head's temporary result)
    pair: x -> relu -> [avg pool 2 (needed), sigmoid (not needed)]
    """
    rng = np.random.default_rng(7)
    x = mpsnn.MPSNNImageNode()
    conv = mpsnn.MPSCNNConvolutionNode(source=x, weights=_conv_source(rng, 4, 8, 3))
    relu = mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image)
    relu.result_image.export_from_graph = True
    relu.result_image.image_allocator = mpsnn.MPSImage.default_allocator()
    head = mpsnn.MPSNNGraph(device, mpsnn.MPSCNNConvolutionNode(source=relu.result_image,
                                                                weights=_conv_source(rng, 8, 4, 1)).result_image)

    t = mpsnn.MPSNNImageNode()
    tail = mpsnn.MPSNNGraph(device, mpsnn.MPSCNNPoolingMaxNode(source=t, filter_size=2).result_image)

    p = mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode())
    avg = mpsnn.MPSCNNPoolingAverageNode(source=p.result_image, filter_size=2)
    sig = mpsnn.MPSCNNNeuronSigmoidNode(source=p.result_image)
    pair = mpsnn.MPSNNGraph(device, result_images=[avg.result_image, sig.result_image],
                            results_are_needed=[True, False])
    return head, tail, pair


def make_inputs():
    rng = np.random.default_rng(11)
    return [rng.standard_normal(s).astype(np.float32) for s in ((1, 12, 12, 4), (2, 9, 7, 4))]


def _soak(mode: str, calls: int, every: int, warmup: int, step: Callable[[int], None],
          finish: Callable[[], None], log: Optional[Callable[[str], None]]) -> Report:
    report = Report(mode=mode, calls=calls, warmup=warmup)
    marks = set(range(warmup, calls + 1, every)) | {calls}
    # The cycle collector runs at the checkpoints only: it neither takes time in between (a full
    # collection over a large heap, in a test process, is slow) nor moves the figures.
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    try:
        for i in range(1, calls + 1):
            step(i)
            if i in marks:
                finish()
                cyclic = gc.collect()
                c = Checkpoint(i, time.perf_counter() - start, rss_bytes(), live_allocations(), malloc_in_use(),
                               sys.getallocatedblocks(), cyclic)
                report.checkpoints.append(c)
                if log:
                    log(f"{mode:6s} {c.calls:8d} calls {c.seconds:6.1f} s  RSS {c.rss / 2**20:7.2f} MiB  "
                        f"live host blocks {c.live_allocations:3d}  malloc {c.malloc_in_use / 2**20:6.2f} MiB  "
                        f"Python blocks {c.python_blocks}  cyclic garbage {c.cyclic_garbage}")
    finally:
        if gc_was_enabled:
            gc.enable()
    return report


def soak_run(calls: int = 100_000, every: int = 10_000, warmup: Optional[int] = None,
             log: Optional[Callable[[str], None]] = print, device: str = "cpu") -> Report:
    """``graph.run`` ``calls`` times (inputs alternating between two sizes)."""
    device = mpsnn.MTLDevice(device)
    head, _, _ = build_graphs(device)
    inputs = make_inputs()
    expected = []
    for x in inputs:
        inter = []
        y = head.run([x], intermediate_images=inter)
        expected.append((y.numpy().copy(), inter[0].numpy().copy()))
    mismatches = 0

    def step(i):
        nonlocal mismatches
        k = i % 2
        inter = []
        y = head.run([inputs[k]], intermediate_images=inter)
        if i % 97 == 0:  # compare now and then: the comparison costs more than the run
            ok = np.array_equal(y.numpy(), expected[k][0]) and np.array_equal(inter[0].numpy(), expected[k][1])
            mismatches += not ok

    report = _soak("run", calls, every, warmup if warmup is not None else every, step, lambda: None, log)
    report.mismatches = mismatches
    return report


def soak_encode(calls: int = 100_000, every: int = 10_000, warmup: Optional[int] = None,
                log: Optional[Callable[[str], None]] = print, device: str = "cpu") -> Report:
    """``calls`` encode/commit cycles of three graphs into one command buffer each."""
    device = mpsnn.MTLDevice(device)
    head, tail, pair = build_graphs(device)
    head.destination_image_allocator = mpsnn.MPSTemporaryImage.default_allocator()
    queue = device.make_command_queue()
    inputs = make_inputs()
    lock = threading.Lock()
    handled = [0]

    def handler(cb):
        assert cb.status == mpsnn.MTLCommandBufferStatus.completed, cb.error
        with lock:
            handled[0] += 1

    def encode(k):
        cb = queue.make_command_buffer()
        inter = []
        t = head.encode(cb, [mpsnn.MPSImage.from_numpy(inputs[k])], intermediate_images=inter)
        assert t.is_temporary and t.read_count == 1
        y = tail.encode(cb, [t])
        assert t.read_count == 0
        z = pair.encode(cb, [inputs[k]])
        cb.add_completed_handler(handler)
        cb.commit()
        return cb, y, inter[0], z

    expected = []
    for k in range(2):
        cb, y, h, z = encode(k)
        cb.wait_until_completed()
        expected.append((y.numpy().copy(), h.numpy().copy(), z.numpy().copy()))
    with lock:
        handled[0] = 0
    in_flight = collections.deque()
    mismatches = 0

    def retire():
        nonlocal mismatches
        i, k, (cb, y, h, z) = in_flight.popleft()
        cb.wait_until_completed()
        if i % 97 == 0:
            ok = all(np.array_equal(a.numpy(), e) for a, e in zip((y, h, z), expected[k]))
            mismatches += not ok

    def step(i):
        if len(in_flight) == 2:
            retire()
        in_flight.append((i, i % 2, encode(i % 2)))

    def finish():
        while in_flight:
            retire()

    report = _soak("encode", calls, every, warmup if warmup is not None else every, step, finish, log)
    report.mismatches = mismatches
    report.handlers_expected = calls
    with lock:
        report.handlers_called = handled[0]
    return report


MODES = {"run": soak_run, "encode": soak_encode}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100_000, help="iterations per mode (default 100000)")
    ap.add_argument("--every", type=int, default=10_000, help="iterations between checkpoints (default 10000)")
    ap.add_argument("--warmup", type=int, default=None, help="iterations before the baseline (default --every)")
    ap.add_argument("--modes", default="run,encode", help="comma-separated: run, encode (default both)")
    ap.add_argument("--rss-tolerance", type=float, default=0.01, help="allowed RSS growth (default 0.01 = 1 %%)")
    ap.add_argument("--device", default="cpu", help="MTLDevice name (default cpu; live host blocks then "
                    "count the images too)")
    ap.add_argument("--json", help="write the checkpoints to this file")
    ap.add_argument("--dynamic-mmap-threshold", action="store_true",
                    help="keep glibc's dynamic mmap threshold (default: fixed, see fix_mmap_threshold)")
    args = ap.parse_args(argv)
    if not args.dynamic_mmap_threshold:
        fix_mmap_threshold()
    warmup = args.warmup if args.warmup is not None else args.every
    if not 0 < warmup <= args.calls or args.every <= 0:
        ap.error("need 0 < --warmup <= --calls and --every > 0")
    problems, reports = [], []
    for mode in args.modes.split(","):
        report = MODES[mode](args.calls, args.every, warmup, device=args.device)
        reports.append(report)
        problems += report.problems(args.rss_tolerance)
        print(f"{mode}: RSS growth after warm-up {100 * report.rss_growth():+.3f} %, live host allocations "
              f"{report.baseline.live_allocations} -> {report.checkpoints[-1].live_allocations}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in reports], f, indent=1)
    for p in problems:
        print("FAIL", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
