"""Optimizers (graph.md §7, issue 12 item 1, vector encode forms): MPSNNOptimizerDescriptor, SGD
(plain, classic and Nesterov momentum), RMSProp, Adam and AMSGrad against the float64 references of
tests/reference/optimizer.py and against torch.optim where the equations agree; MPSVector views;
typed errors for bad vectors."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
from mpsnn import (MPSNNOptimizerAdam, MPSNNOptimizerDescriptor, MPSNNOptimizerRMSProp,
                   MPSNNOptimizerStochasticGradientDescent, MPSNNRegularizationType, MPSVector)
from reference import optimizer as R

CPU = mpsnn.MTLDevice("cpu")
# Float32 arithmetic against the float64 reference: a few ulps per step, compounded over steps.
RTOL, ATOL = 2e-5, 1e-6


def vec(a):
    """A float32 MPSVector over a copy of `a` (from_numpy wraps without copying)."""
    return MPSVector.from_numpy(np.array(a, np.float32))


def run(encode):
    cb = CPU.make_command_queue().make_command_buffer()
    encode(cb)
    cb.commit()
    cb.wait_until_completed()
    assert cb.status == mpsnn.MTLCommandBufferStatus.completed, cb.error


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=RTOL, atol=ATOL)


DESCRIPTORS = {
    "plain": {},
    "clip+rescale": dict(apply_gradient_clipping=True, gradient_clip_max=0.5, gradient_clip_min=-0.25,
                         gradient_rescale=0.5),
    "L1": dict(regularization_type="L1", regularization_scale=0.01),
    "L2": dict(regularization_type="L2", regularization_scale=0.05, gradient_rescale=2.0),
}


def descriptor(lr, d):
    kw = dict(d)
    if "regularization_type" in kw:
        kw["regularization_type"] = getattr(MPSNNRegularizationType, kw["regularization_type"].lower())
    return MPSNNOptimizerDescriptor(learning_rate=lr, **kw)


def problem(rng, n=1037):
    w = rng.standard_normal(n).astype(np.float32)
    w[::97] = 0.0  # sign(0) = 0 for L1
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(4)]
    return w, grads


def test_descriptor_and_optimizer_properties():
    d = MPSNNOptimizerDescriptor()
    assert d.learning_rate == pytest.approx(0.001) and d.gradient_rescale == 1.0 and not d.apply_gradient_clipping
    assert d.gradient_clip_max == np.inf and d.gradient_clip_min == -np.inf
    assert d.regularization_type == MPSNNRegularizationType.none and d.regularization_scale == 0.0
    d2 = MPSNNOptimizerDescriptor.optimizer_descriptor(learning_rate=0.1, gradient_rescale=2.0,
                                                       regularization_type=MPSNNRegularizationType.l2,
                                                       regularization_scale=0.5)
    sgd = MPSNNOptimizerStochasticGradientDescent(CPU, momentum_scale=0.9, use_nestrov_momentum=True,
                                                  optimizer_descriptor=d2)
    assert isinstance(sgd, mpsnn.MPSNNOptimizer) and sgd.device is CPU
    assert sgd.learning_rate == pytest.approx(0.1) and sgd.gradient_rescale == 2.0
    assert sgd.regularization_type == MPSNNRegularizationType.l2 and sgd.regularization_scale == 0.5
    assert sgd.momentum_scale == pytest.approx(0.9) and sgd.use_nestrov_momentum and sgd.use_nesterov_momentum
    sgd.set_learning_rate(0.25)
    assert sgd.learning_rate == 0.25
    sgd.apply_gradient_clipping = True
    assert sgd.apply_gradient_clipping
    with pytest.raises(AttributeError):
        sgd.learning_rate = 1.0  # read-only, as MPS: set_learning_rate
    alias = MPSNNOptimizerStochasticGradientDescent(CPU, momentum_scale=0.5, use_nesterov_momentum=True,
                                                    optimizer_descriptor=d)
    assert alias.use_nestrov_momentum
    assert MPSNNOptimizerStochasticGradientDescent(CPU, learning_rate=0.01).momentum_scale == 0.0
    r = MPSNNOptimizerRMSProp(CPU, learning_rate=0.01)
    assert r.decay == pytest.approx(0.9) and r.epsilon == pytest.approx(1e-8)
    a = MPSNNOptimizerAdam(CPU, learning_rate=0.01)
    assert (a.beta1, a.beta2, a.time_step) == (pytest.approx(0.9), pytest.approx(0.999), 0)
    a2 = MPSNNOptimizerAdam(CPU, beta1=0.8, beta2=0.99, epsilon=1e-6, time_step=5, optimizer_descriptor=d)
    assert a2.time_step == 5 and a2.beta1 == pytest.approx(0.8)


@pytest.mark.parametrize("desc", list(DESCRIPTORS), ids=list(DESCRIPTORS))
@pytest.mark.parametrize("mode", ["plain", "momentum", "nesterov"])
def test_sgd_matches_the_reference(rng, desc, mode):
    w0, grads = problem(rng)
    lr, mu = 0.05, 0.9
    if mode == "plain":
        opt = MPSNNOptimizerStochasticGradientDescent(CPU, momentum_scale=0.0, use_nestrov_momentum=False,
                                                      optimizer_descriptor=descriptor(lr, DESCRIPTORS[desc]))
    else:
        opt = MPSNNOptimizerStochasticGradientDescent(CPU, momentum_scale=mu, use_nestrov_momentum=mode == "nesterov",
                                                      optimizer_descriptor=descriptor(lr, DESCRIPTORS[desc]))
    w, m = vec(w0), vec(np.zeros_like(w0))
    rw, rm = w0.astype(np.float64), np.zeros(w0.size)
    for g in grads:
        run(lambda cb: opt.encode(cb, input_gradient_vector=vec(g), input_values_vector=w,
                                  input_momentum_vector=None if mode == "plain" else m, result_values_vector=w))
        rw, rm = R.sgd(rw, g, None if mode == "plain" else rm, lr=lr, momentum_scale=mu if mode != "plain" else 0.0,
                       nesterov=mode == "nesterov", **DESCRIPTORS[desc])
    close(w.numpy(), rw)
    if mode != "plain":
        close(m.numpy(), rm)


@pytest.mark.parametrize("desc", list(DESCRIPTORS), ids=list(DESCRIPTORS))
def test_rmsprop_matches_the_reference(rng, desc):
    w0, grads = problem(rng)
    opt = MPSNNOptimizerRMSProp(CPU, decay=0.8, epsilon=1e-6, optimizer_descriptor=descriptor(0.01, DESCRIPTORS[desc]))
    w, s, out = vec(w0), vec(np.zeros_like(w0)), vec(np.zeros_like(w0))
    rw, rs = w0.astype(np.float64), np.zeros(w0.size)
    for g in grads:
        # Out of place: values -> result, then the result feeds the next step.
        run(lambda cb: opt.encode(cb, input_gradient_vector=vec(g), input_values_vector=w,
                                  input_sum_of_squares_vector=s, result_values_vector=out))
        w.numpy()[:] = out.numpy()
        rw, rs = R.rmsprop(rw, g, rs, lr=0.01, decay=0.8, epsilon=1e-6, **DESCRIPTORS[desc])
    close(w.numpy(), rw)
    close(s.numpy(), rs)


@pytest.mark.parametrize("desc", list(DESCRIPTORS), ids=list(DESCRIPTORS))
@pytest.mark.parametrize("amsgrad", [False, True], ids=["adam", "amsgrad"])
def test_adam_matches_the_reference_and_counts_time_steps(rng, desc, amsgrad):
    w0, grads = problem(rng)
    opt = MPSNNOptimizerAdam(CPU, beta1=0.9, beta2=0.999, epsilon=1e-8, time_step=0,
                             optimizer_descriptor=descriptor(0.01, DESCRIPTORS[desc]))
    w, m, v, u = (vec(x) for x in (w0, np.zeros_like(w0), np.zeros_like(w0), np.zeros_like(w0)))
    rw, rm, rv, ru = w0.astype(np.float64), np.zeros(w0.size), np.zeros(w0.size), np.zeros(w0.size)
    for t, g in enumerate(grads, start=1):
        run(lambda cb: opt.encode(cb, input_gradient_vector=vec(g), input_values_vector=w, input_momentum_vector=m,
                                  input_velocity_vector=v, maximum_velocity_vector=u if amsgrad else None,
                                  result_values_vector=w))
        assert opt.time_step == t  # once per encode
        rw, rm, rv, ru2 = R.adam(rw, g, rm, rv, ru if amsgrad else None, lr=0.01, t=t, **DESCRIPTORS[desc])
        ru = ru2 if amsgrad else ru
    close(w.numpy(), rw)
    close(m.numpy(), rm)
    close(v.numpy(), rv)
    if amsgrad:
        close(u.numpy(), ru)
    else:
        assert not u.numpy().any()


def test_adam_time_step_is_read_when_encoding(rng):
    w0, (g, *_) = problem(rng, 64)
    opt = MPSNNOptimizerAdam(CPU, learning_rate=0.01)
    opt.time_step = 9
    w, m, v = vec(w0), vec(np.zeros_like(w0)), vec(np.zeros_like(w0))
    run(lambda cb: opt.encode(cb, input_gradient_vector=vec(g), input_values_vector=w, input_momentum_vector=m,
                              input_velocity_vector=v, result_values_vector=w))
    assert opt.time_step == 10
    close(w.numpy(), R.adam(w0, g, np.zeros(64), np.zeros(64), lr=0.01, t=10)[0])


def test_updates_run_when_the_command_buffer_does(rng):
    w0, (g, *_) = problem(rng, 32)
    opt = MPSNNOptimizerStochasticGradientDescent(CPU, learning_rate=0.5)
    w = vec(w0)
    cb = CPU.make_command_queue().make_command_buffer()
    opt.encode(cb, input_gradient_vector=vec(g), input_values_vector=w, result_values_vector=w)
    np.testing.assert_array_equal(w.numpy(), w0)  # encoded, not run
    cb.commit()
    cb.wait_until_completed()
    close(w.numpy(), w0.astype(np.float64) - 0.5 * g)


def test_several_vectors_with_padded_rows_and_the_threaded_path(rng):
    # 3 vectors of 5 elements, rows 8 floats apart: the padding is never touched.
    buf = CPU.make_buffer(3 * 8 * 4)
    d = mpsnn.MPSVectorDescriptor(5, mpsnn.MPSDataType.float32, vectors=3, vector_bytes=32)
    w = MPSVector(buf, d)
    assert w.numpy().shape == (3, 5) and w.resource_size() == 2 * 32 + 20
    raw = buf.numpy(np.float32).reshape(3, 8)
    raw[:] = 7.0
    gbuf = CPU.make_buffer(3 * 8 * 4)
    gbuf.numpy(np.float32)[:] = np.arange(24, dtype=np.float32)
    opt = MPSNNOptimizerStochasticGradientDescent(CPU, learning_rate=1.0)
    run(lambda cb: opt.encode(cb, input_gradient_vector=MPSVector(gbuf, d), input_values_vector=w,
                              result_values_vector=w))
    expected = np.full((3, 8), 7.0)
    expected[:, :5] -= np.arange(24).reshape(3, 8)[:, :5]
    np.testing.assert_array_equal(raw, expected)
    # A long vector takes the threaded loop: same values as the reference.
    n = 200_003
    w0, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    adam = MPSNNOptimizerAdam(CPU, learning_rate=0.01)
    wv, mv, vv = vec(w0), vec(np.zeros(n)), vec(np.zeros(n))
    run(lambda cb: adam.encode(cb, input_gradient_vector=vec(g), input_values_vector=wv, input_momentum_vector=mv,
                               input_velocity_vector=vv, result_values_vector=wv))
    close(wv.numpy(), R.adam(w0, g, np.zeros(n), np.zeros(n), lr=0.01, t=1)[0])


def test_a_nan_gradient_reaches_the_result_instead_of_being_clipped_away():
    opt = MPSNNOptimizerStochasticGradientDescent(
        CPU, momentum_scale=0.0, use_nestrov_momentum=False,
        optimizer_descriptor=MPSNNOptimizerDescriptor(learning_rate=1.0, apply_gradient_clipping=True,
                                                      gradient_clip_max=1.0, gradient_clip_min=-1.0))
    w = vec([1.0, 2.0, 3.0])
    run(lambda cb: opt.encode(cb, input_gradient_vector=vec([np.nan, 5.0, -np.inf]), input_values_vector=w,
                              result_values_vector=w))
    out = w.numpy()
    assert np.isnan(out[0]) and out[1] == 1.0 and out[2] == 4.0


def test_pytorch_optimizers_agree(rng):
    torch = pytest.importorskip("torch")
    n = 257
    w0 = rng.standard_normal(n)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(5)]
    # torch.optim's SGD momentum buffer is MPS's m / lr (constant lr: the same values); Nesterov,
    # RMSProp and AMSGrad-free Adam with epsilon 0 are the same equations (MPS puts epsilon
    # outside the bias correction, torch inside: with epsilon 0 they agree).
    cases = [
        (lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9),
         MPSNNOptimizerStochasticGradientDescent(CPU, momentum_scale=0.9, use_nestrov_momentum=False,
                                                 optimizer_descriptor=MPSNNOptimizerDescriptor(learning_rate=0.1)), 1),
        (lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True),
         MPSNNOptimizerStochasticGradientDescent(CPU, momentum_scale=0.9, use_nestrov_momentum=True,
                                                 optimizer_descriptor=MPSNNOptimizerDescriptor(learning_rate=0.1)), 1),
        (lambda p: torch.optim.RMSprop([p], lr=0.01, alpha=0.9, eps=1e-8),
         MPSNNOptimizerRMSProp(CPU, decay=0.9, epsilon=1e-8, optimizer_descriptor=MPSNNOptimizerDescriptor(
             learning_rate=0.01)), 1),
        (lambda p: torch.optim.Adam([p], lr=0.01, eps=0.0),
         MPSNNOptimizerAdam(CPU, beta1=0.9, beta2=0.999, epsilon=0.0, time_step=0,
                            optimizer_descriptor=MPSNNOptimizerDescriptor(learning_rate=0.01)), 2),
    ]
    for make_torch, ours, nstates in cases:
        p = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
        topt = make_torch(p)
        w = vec(w0)
        states = [vec(np.zeros(n)) for _ in range(nstates)]
        for g in grads:
            p.grad = torch.tensor(g, dtype=torch.float64)
            topt.step()
            if isinstance(ours, MPSNNOptimizerAdam):
                run(lambda cb: ours.encode(cb, input_gradient_vector=vec(g), input_values_vector=w,
                                           input_momentum_vector=states[0], input_velocity_vector=states[1],
                                           result_values_vector=w))
            elif isinstance(ours, MPSNNOptimizerRMSProp):
                run(lambda cb: ours.encode(cb, input_gradient_vector=vec(g), input_values_vector=w,
                                           input_sum_of_squares_vector=states[0], result_values_vector=w))
            else:
                run(lambda cb: ours.encode(cb, input_gradient_vector=vec(g), input_values_vector=w,
                                           input_momentum_vector=states[0], result_values_vector=w))
        close(w.numpy(), p.detach().numpy())


def test_bad_vectors_raise_typed_errors_naming_the_optimizer(rng):
    opt = MPSNNOptimizerAdam(CPU, learning_rate=0.01)
    w, m, v = vec(np.zeros(8)), vec(np.zeros(8)), vec(np.zeros(8))
    cb = CPU.make_command_queue().make_command_buffer()
    with pytest.raises(mpsnn.ShapeError, match=r"\[MPSNNOptimizerAdam.encode\] input_velocity_vector has 1 vector\(s\) "
                                               r"of length 7; input_values_vector has 1 of length 8"):
        opt.encode(cb, input_gradient_vector=vec(np.zeros(8)), input_values_vector=w, input_momentum_vector=m,
                   input_velocity_vector=vec(np.zeros(7)), result_values_vector=w)
    with pytest.raises(mpsnn.DTypeError, match="input_gradient_vector holds float16; optimizers take float32"):
        opt.encode(cb, input_gradient_vector=MPSVector.from_numpy(np.zeros(8, np.float16)), input_values_vector=w,
                   input_momentum_vector=m, input_velocity_vector=v, result_values_vector=w)
    with pytest.raises(mpsnn.MPSGraphError, match="input_momentum_vector and input_velocity_vector overlap"):
        opt.encode(cb, input_gradient_vector=vec(np.zeros(8)), input_values_vector=w, input_momentum_vector=m,
                   input_velocity_vector=m, result_values_vector=w)
    assert opt.time_step == 0  # nothing encoded, the time step did not advance
    cb.commit()
    with pytest.raises(mpsnn.MPSGraphError, match="already committed"):
        opt.encode(cb, input_gradient_vector=vec(np.zeros(8)), input_values_vector=w, input_momentum_vector=m,
                   input_velocity_vector=v, result_values_vector=w)
    with pytest.raises(mpsnn.ShapeError, match=r"\[MPSVector\] 1 vector\(s\) of 4 float32 at offset 8 need 24 bytes"):
        MPSVector(CPU.make_buffer(16), mpsnn.MPSVectorDescriptor(4, mpsnn.MPSDataType.float32), offset=8)
    with pytest.raises(mpsnn.ShapeError, match="vector_bytes 8 is less than one vector"):
        mpsnn.MPSVectorDescriptor(4, mpsnn.MPSDataType.float32, vectors=2, vector_bytes=8)
    with pytest.raises(mpsnn.ShapeError, match="gradient_clip_min 1 is above gradient_clip_max -1"):
        MPSNNOptimizerDescriptor(gradient_clip_max=-1.0, gradient_clip_min=1.0)
