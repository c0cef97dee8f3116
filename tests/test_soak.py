"""The short version of benchmarks/soak.py (the full one, 10^5 calls per mode, is run by hand; its
figures are in benchmarks/README.md): after warm-up, resident memory stays within 1 % and the
live host allocations do not change, results stay bit-identical and no completion handler is lost."""

from __future__ import annotations

import gc
import importlib.util
import pathlib
import sys

import pytest

import mpsnn

SOAK = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    module.fix_mmap_threshold()
    # The soak collects at every checkpoint: keep the session's heap out of those collections.
    gc.collect()
    gc.freeze()
    yield module
    gc.unfreeze()


@pytest.mark.parametrize("mode", ["run", "encode"])
def test_short_soak_is_flat(soak, mode):
    report = soak.MODES[mode](calls=2000, every=500, warmup=500, log=None)
    assert [c.calls for c in report.checkpoints] == [500, 1000, 1500, 2000]
    assert report.problems(rss_tolerance=0.01) == []
    if mode == "encode":
        assert report.handlers_called == report.handlers_expected == 2000


def test_live_allocation_count_follows_images():
    device = mpsnn.MTLDevice("cpu")  # host memory
    before = mpsnn._core._host_live_allocation_count()
    img = mpsnn.MPSImage(device, mpsnn.MPSImageDescriptor(mpsnn.MPSImageFeatureChannelFormat.float32, 3, 2, 4))
    assert mpsnn._core._host_live_allocation_count() == before  # allocated on first use
    img.numpy()
    assert mpsnn._core._host_live_allocation_count() == before + 1
    del img
    assert mpsnn._core._host_live_allocation_count() == before


def test_soak_report_flags_growth(soak):
    def point(calls, rss, live):
        return soak.Checkpoint(calls, 0.0, rss, live, -1, 0, 0)

    report = soak.Report("run", 3, 1, [point(1, 1000, 4), point(2, 1005, 4), point(3, 1011, 5)])
    problems = report.problems(rss_tolerance=0.01)
    assert len(problems) == 2 and "RSS grew by 1.10 %" in problems[0] and "4 -> [5]" in problems[1]
    assert soak.Report("run", 2, 1, [point(1, 1000, 4), point(2, 1009, 4)]).problems() == []
