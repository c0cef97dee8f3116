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
        with np.errstate(invalid="ignore"):
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


def check_nonfinite_inputs(spec, device, which, positions, values):
    """NaN and ±inf in a source image propagate (nodes.md §3.1, §6.2, §7.1: IEEE-754, no error).
    Unfused, the result has NaN and infinities exactly where the float64 reference has them; fused,
    the clamps of neurons and residual additions folded into a convolution may replace them by a
    bound (the documented oneDNN eltwise behaviour, tests/ops/test_convolution.py), so only finite
    reference values are compared. The same graph then runs finite inputs correctly."""
    base = [i.array() for i in spec.inputs]
    arrays = list(base)
    a = np.array(arrays[which], copy=True)
    a.reshape(-1)[positions] = np.asarray(values, a.dtype)
    arrays[which] = a
    ref, deltas = reference(spec, arrays)
    _, nodes, _ = build(spec)
    # A neuron in a convolution descriptor is part of the convolution kernel: fused either way
    # (oneDNN post-ops: relu and clip bounds replace NaN, and its vectorized logistic gives 0).
    # Softmax: the spec (nodes.md §7.1) says only that a +inf entry gives NaN; whether the NaN of
    # the denominator reaches the pixel's other channels is open (the oneDNN kernel gives them 0,
    # tests/reference/test_references.py accepts NaN or 0), so below a softmax only the values
    # the reference has finite are compared.
    relaxed = any((op.kind in ("conv", "fc", "transpose", "binary") and op.params.get("neuron") is not None)
                  or op.kind == "softmax" for op in spec.ops)
    # Where a fused neuron turned NaN into a number, a later binarization (xnor / and) turns the
    # difference into different finite values: nothing to compare then, the run must just work.
    binarized = any(op.kind == "binary" and op.params["type"] != 0 for op in spec.ops)
    for fuse in (False, True):
        g = make_graph(spec, device, nodes, fuse)
        out, labels = run(spec, g, arrays, device)
        loose = fuse or relaxed
        if loose and binarized:
            continue
        check_outputs(spec, out, labels, ref, deltas, f"fuse={fuse} non-finite input v{which}",
                      allow_nonfinite_mismatch=loose)
    ref0, deltas0 = reference(spec, base)
    out, labels = run(spec, g, base, device)
    check_outputs(spec, out, labels, ref0, deltas0, "finite inputs after non-finite ones")


def check_resized_inputs(spec, device, shapes, conditioned):
    """One graph, inputs of other sizes (graph.md §1.1: sizes come from the images supplied): the
    reference interpreter's shape rules decide. Valid sizes must give the reference's values (when
    they are well conditioned); invalid ones a typed error naming a node that cannot take them,
    after which the graph still runs its original inputs correctly."""
    from .graphs import InputSpec
    base = [i.array() for i in spec.inputs]
    ref0, deltas0 = reference(spec, base)
    _, nodes, _ = build(spec)
    g = make_graph(spec, device, nodes, True)
    out, labels = run(spec, g, base, device)
    check_outputs(spec, out, labels, ref0, deltas0, "original sizes")
    resized = [InputSpec(tuple(s), i.dtype, i.domain, i.seed + 1) for i, s in zip(spec.inputs, shapes)]
    arrays = [i.array() for i in resized]
    vals, invalid = evaluate(spec, arrays)
    if invalid:
        if any(e.error is None for e in invalid.values()):
            return "uncertain"
        errors = tuple({e.error for e in invalid.values()})
        labels_bad = [f"'{spec.ops[i].label}'" for i in invalid]
        try:
            run(spec, g, arrays, device)
        except errors as e:
            msg = str(e)
            assert any(lab in msg for lab in labels_bad), f"error {msg!r} names none of {labels_bad}"
        else:
            raise AssertionError(f"inputs {shapes} ran; the reference rejects {[(spec.ops[i].label, str(e)) for i, e in invalid.items()]}")
        result = "invalid"
    else:
        ops_ok = all(conditioned(op, [vals[s] for s in op.sources], vals[spec.value_of(i)])
                     for i, op in enumerate(spec.ops) if spec.value_of(i) in vals)
        out, labels = run(spec, g, arrays, device)
        if ops_ok:
            ref, deltas = reference(spec, arrays)
            check_outputs(spec, out, labels, ref, deltas, f"resized inputs {shapes}")
        result = "valid"
    out, labels = run(spec, g, base, device)
    check_outputs(spec, out, labels, ref0, deltas0, "original sizes again")
    return result


def check_case(case, device):
    """An invalid Case raises one of its typed errors naming the node; then the process (and the
    case's graph, through case.recover) still works."""
    try:
        case.trigger()
    except case.errors as e:
        msg = str(e)
        assert any(w in msg for w in case.where), f"{case!r}\nmessage {msg!r} names none of {case.where}"
    except Exception as e:
        raise AssertionError(f"{case!r}\nraised {type(e).__module__}.{type(e).__name__}: {e}") from e
    else:
        raise AssertionError(f"{case!r}\nraised nothing")
    if case.recover is not None:
        case.recover()
    sanity_check(device)
