"""The properties the fuzz tests check, as plain functions of a GraphSpec (regression tests call
them with a concrete spec)."""

from __future__ import annotations

import numpy as np

import mpsnn

from .graphs import (build, compare, evaluate, expected_intermediates, make_graph, run, value_format)


def reference(spec, arrays):
    """float64 values of the spec's values, and two perturbed runs' deviations from them."""
    ref, invalid = evaluate(spec, arrays)
    assert not invalid, f"generator produced an invalid op: {invalid}"
    deltas = []
    for seed in (1, 2):
        pert, _ = evaluate(spec, arrays, perturb=np.random.default_rng(seed))
        deltas.append({v: pert[v] - ref[v] for v in ref})
    return ref, deltas


def check_outputs(spec, out, inter_labels, ref, deltas, what, allow_nonfinite_mismatch=False):
    if inter_labels is not None:
        assert len(inter_labels) == len(set(inter_labels)), f"{what}: duplicate intermediate handles {inter_labels}"
        got = {int(lab[1:]) for lab in inter_labels}
        assert got == expected_intermediates(spec), \
            f"{what}: intermediate handles {sorted(got)}, expected {sorted(expected_intermediates(spec))}"
    for v, a in out.items():
        compare(a, ref[v], [d[v] for d in deltas], value_format(spec, v), f"{what} v{v}",
                allow_nonfinite_mismatch)


def check_valid_spec(spec, device, arrays=None, fuse_modes=(True, False)):
    """Builds `spec` and runs it with fusion on and off; every returned image must match the
    float64 reference."""
    arrays = [i.array() for i in spec.inputs] if arrays is None else arrays
    ref, deltas = reference(spec, arrays)
    _, nodes, _ = build(spec)
    for fuse in fuse_modes:
        what = f"fuse={fuse}"
        g = make_graph(spec, device, nodes, fuse)
        src = sorted(int(h.label()[1:]) for h in g.source_image_handles)
        assert src == sorted(spec.graph_inputs()), f"{what}: source images {src}, expected {sorted(spec.graph_inputs())}"
        out, labels = run(spec, g, arrays, device)
        expect = {v for v, n in zip(spec.results, spec.needed) if n}
        if spec.entry != "execute_async":
            expect |= expected_intermediates(spec)
        assert set(out) == expect, f"{what}: returned values {sorted(out)}, expected {sorted(expect)}"
        check_outputs(spec, out, labels, ref, deltas, what)
        if spec.repeat:
            again, _ = run(spec, g, arrays, device)
            for v in out:
                np.testing.assert_array_equal(again[v], out[v], err_msg=f"{what}: second run differs at v{v}")
    return ref


SANITY = {}


def sanity_check(device):
    """The process still runs a fixed small graph correctly (after an error)."""
    if "graph" not in SANITY:
        rng = np.random.default_rng(0)
        d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=3,
                                              output_feature_channels=4)
        w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
        b = rng.standard_normal(4).astype(np.float32)
        x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
        conv = mpsnn.MPSCNNConvolutionNode(source=mpsnn.MPSNNImageNode(), weights=mpsnn.ArrayConvolutionDataSource(d, w, b))
        relu = mpsnn.MPSCNNNeuronReLUNode(source=conv.result_image)
        import reference as R
        SANITY.update(graph=mpsnn.MPSNNGraph(device, relu.result_image), x=x,
                      ref=np.maximum(R.conv2d(x, w, b), 0.0))
    y = SANITY["graph"].run([SANITY["x"]]).numpy()
    np.testing.assert_allclose(y, SANITY["ref"], rtol=1e-4, atol=1e-4)
    # and a fresh graph can be built and run
    relu = mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode())
    y = mpsnn.MPSNNGraph(device, relu.result_image).run([SANITY["x"]]).numpy()
    np.testing.assert_array_equal(y, np.maximum(SANITY["x"], 0))
