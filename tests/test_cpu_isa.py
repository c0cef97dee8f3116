"""The instruction-set copies of our own CPU kernels (cpp/backends/cpu/isa.h): a portable build has
avx512, avx2 and baseline, a native build one (native); the CPU backend picks one per process, or the
one MPSNN_CPU_ISA names. Each copy this CPU can run computes the same as a float64 NumPy reference,
and a bad MPSNN_CPU_ISA makes `import mpsnn` raise an UnsupportedError naming the variable and what
is compiled in. The
choice is made once per process, so each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import mpsnn

PACKAGE_PARENT = str(pathlib.Path(mpsnn.__file__).resolve().parents[1])

# A graph of two per-ISA kernels (soft sign, reached through the shared neuron code, and the
# arithmetic kernel) against float64 NumPy, in the child process.
CHILD = r"""
import json, sys
import numpy as np
out = {"name": None, "error": None}
try:
    import mpsnn  # the backends are set up at import: a bad MPSNN_CPU_ISA fails here
    device = mpsnn.MTLDevice("cpu")
    out["name"] = device.name
except Exception as e:
    out["error"] = [type(e).__module__ + "." + type(e).__name__, str(e)]
    print(json.dumps(out)); sys.exit(0)
rng = np.random.default_rng(7)
x = rng.standard_normal((2, 9, 11, 37)).astype(np.float32)   # odd sizes: vector tails
z = rng.standard_normal((2, 9, 11, 37)).astype(np.float32)
a, b = mpsnn.MPSNNImageNode(handle=None), mpsnn.MPSNNImageNode(handle=None)
ss = mpsnn.MPSCNNNeuronSoftSignNode(source=a)
mul = mpsnn.MPSNNMultiplicationNode(left_source=ss.result_image, right_source=b)
graph = mpsnn.MPSNNGraph(device, result_image=mul.result_image, result_image_is_needed=True)
y = np.asarray(graph.run([x, z]), np.float64)
xd, zd = x.astype(np.float64), z.astype(np.float64)
expected = xd / (1 + np.abs(xd)) * zd
out["max_err"] = float(np.abs(y - expected).max())
out["scale"] = float(np.abs(expected).max())
print(json.dumps(out))
"""


def run_child(isa):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT, env.get("PYTHONPATH", "")])
    env.pop("MPSNN_CPU_ISA", None)
    if isa is not None:
        env["MPSNN_CPU_ISA"] = isa
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def compiled_isas():
    """The ISAs of this build, as the error for an unknown name lists them."""
    out = run_child("no-such-isa")
    assert out["error"] and out["error"][0] == "mpsnn.UnsupportedError", out
    m = re.search(r"expected one of: (.*)$", out["error"][1])
    assert m, out["error"][1]
    return [s.strip() for s in m.group(1).split(",")]


def test_unknown_isa_is_an_unsupported_error_naming_the_variable():
    out = run_child("no-such-isa")
    kind, message = out["error"]
    assert kind == "mpsnn.UnsupportedError"
    assert "MPSNN_CPU_ISA=no-such-isa" in message and "not compiled into this build" in message
    isas = compiled_isas()
    assert isas in (["native"], ["avx512", "avx2", "baseline"], ["generic"]), isas


def test_default_choice_is_named_on_the_device():
    out = run_child(None)
    assert out["error"] is None
    m = re.search(r"own kernels: (\w+)\)", out["name"])
    assert m and m.group(1) in compiled_isas(), out["name"]
    assert out["max_err"] <= 1e-6 * max(1.0, out["scale"])


@pytest.mark.parametrize("isa", ["native", "avx512", "avx2", "baseline", "generic"])
def test_each_compiled_isa_matches_numpy_or_is_refused(isa):
    if isa not in compiled_isas():
        pytest.skip(f"{isa} is not compiled into this build")
    out = run_child(isa)
    if out["error"] is not None:
        # Compiled in but beyond this CPU: refused, with what the CPU can run.
        kind, message = out["error"]
        assert kind == "mpsnn.UnsupportedError" and "this CPU cannot run" in message, message
        return
    assert f"own kernels: {isa})" in out["name"], out["name"]
    assert out["max_err"] <= 1e-6 * max(1.0, out["scale"]), out
