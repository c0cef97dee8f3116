"""Ready data sources holding NumPy arrays (mpsnn helpers; MPS leaves these to the user).

Each implements the matching MPS protocol, so it can be handed to a node exactly like a
user-written data source.
"""

from __future__ import annotations

import copy as copy_module
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from . import _core

# What the data sources take as a vector of floats: an array, a sequence, or raw float32 bytes.
FloatValues = Union[npt.ArrayLike, bytes, bytearray, memoryview]


def _float_vector(values: Optional[FloatValues], name: str,
                  count: Optional[int] = None) -> Optional[npt.NDArray[np.float32]]:
    if values is None:
        return None
    if isinstance(values, (bytes, bytearray, memoryview)) and memoryview(values).format in ("B", "b", "c"):
        # Raw float32 bytes, as Apple code hands over a float pointer.
        raw = memoryview(values).cast("B")
        if raw.nbytes % 4:
            raise _core.DTypeError(f"{name} has {raw.nbytes} bytes; raw bytes are float32, a multiple of 4 bytes")
        values = np.frombuffer(raw, dtype=np.float32)
    arr = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if count is not None and arr.size != count:
        raise _core.ShapeError(f"{name} has {arr.size} values; expected {count}")
    return arr


Optimizer = Union["_core.MPSNNOptimizerStochasticGradientDescent", "_core.MPSNNOptimizerRMSProp",
                  "_core.MPSNNOptimizerAdam"]


class _Trainer:
    """The optimizer side of a trainable Array data source: the live float32 parameter arrays (which
    the data source's accessors return), a state over them, and the optimizer's moment vectors
    (zeros, float32, one per parameter array: SGD momentum when its momentum_scale is not 0, RMSProp
    sum of squares, Adam momentum and velocity, plus AMSGrad's maximum velocity when asked for).

    Updates run the optimizer with the parameters as its result (in place), so after the command
    buffer completed the arrays hold the trained values. GPU style (update_*_with_command_buffer)
    encodes it on the training graph's command buffer; CPU style runs it at once on a private
    command buffer of the data source's device, after the graph's command buffer completed."""

    def __init__(self, optimizer: Optimizer, arrays: list[npt.NDArray[np.float32]], amsgrad: bool) -> None:
        if not isinstance(optimizer, (_core.MPSNNOptimizerStochasticGradientDescent, _core.MPSNNOptimizerRMSProp,
                                      _core.MPSNNOptimizerAdam)):
            raise _core.DTypeError(f"optimizer is {type(optimizer).__name__}; expected an MPSNNOptimizer "
                                   "(StochasticGradientDescent, RMSProp or Adam)")
        if amsgrad and not isinstance(optimizer, _core.MPSNNOptimizerAdam):
            raise _core.GraphError("amsgrad=True needs an MPSNNOptimizerAdam")
        self.optimizer = optimizer
        self.arrays = arrays
        self.amsgrad = amsgrad
        device = optimizer.device
        self.buffers = [_core.MTLBuffer.from_numpy(a, device) for a in arrays]
        if isinstance(optimizer, _core.MPSNNOptimizerAdam):
            kinds = ["input_momentum_vectors", "input_velocity_vectors"] + (["maximum_velocity_vectors"] if amsgrad else [])
        elif isinstance(optimizer, _core.MPSNNOptimizerRMSProp):
            kinds = ["input_sum_of_squares_vectors"]
        else:
            kinds = ["input_momentum_vectors"] if optimizer.momentum_scale != 0 else []
        self.moments = {k: [np.zeros(a.size, np.float32) for a in arrays] for k in kinds}
        self.vectors = {k: [_core.MPSVector.from_numpy(m, device) for m in ms] for k, ms in self.moments.items()}
        self._queue: Optional[_core.MTLCommandQueue] = None

    def moment_values(self) -> list[tuple[str, list[npt.NDArray[np.float32]]]]:
        """The moment vectors' current values (copies read from the vectors' memory, which on a
        device without host-visible memory the NumPy arrays given to it do not follow)."""
        return [(k, [np.array(v.numpy(), np.float32).reshape(-1) for v in vs]) for k, vs in self.vectors.items()]

    def restore_moments(self, lists: list[tuple[str, list[npt.NDArray[np.float32]]]]) -> None:
        """Sets the moment vectors (moment_values() of a trainer with the same rule and shapes)."""
        if [k for k, _ in lists] != list(self.vectors):
            raise _core.GraphError(f"moment lists {[k for k, _ in lists]}; this optimizer keeps {list(self.vectors)}")
        device = self.optimizer.device
        for k, values in lists:
            if [v.size for v in values] != [m.size for m in self.moments[k]]:
                raise _core.ShapeError(f"{k} have sizes {[v.size for v in values]}; expected "
                                       f"{[m.size for m in self.moments[k]]}")
            for m, v in zip(self.moments[k], values):
                m[...] = v
            self.vectors[k] = [_core.MPSVector.from_numpy(m, device) for m in self.moments[k]]

    def copy(self, arrays: list[npt.NDArray[np.float32]], device: Optional[_core.MTLDevice]) -> _Trainer:
        o = self.optimizer.copy() if device is None else self.optimizer.copy_with_device(device)
        t = _Trainer(o, arrays, self.amsgrad)
        t.restore_moments(self.moment_values())
        return t

    def record(self, statistics_momentum: Optional[float] = None) -> tuple[Any, ...]:
        """What graph serialization stores (cpp/bindings/serialize.cpp reads it)."""
        return (self.optimizer, self.amsgrad, self.moment_values(), statistics_momentum)

    def private_command_buffer(self) -> _core.MTLCommandBuffer:
        if self._queue is None:
            self._queue = self.optimizer.device.make_command_queue()
        return self._queue.make_command_buffer()


def _no_updates(source: object, names: tuple[str, ...]) -> None:
    """An untrainable data source answers its update methods with None, which the protocols read as
    "not implemented": graphs then make no update calls for it (and compute no parameter gradients
    for updates: no cost in training graphs that only want gradients)."""
    for name in names:
        setattr(source, name, None)


_CONVOLUTION_UPDATES = ("update_with_command_buffer", "update_with_gradient_state")
_NORMALIZATION_UPDATES = ("update_gamma_and_beta_with_command_buffer", "update_mean_and_variance_with_command_buffer",
                          "update_gamma_and_beta_with_batch_normalization_state",
                          "update_mean_and_variance_with_batch_normalization_state",
                          "update_gamma_and_beta_with_instance_normalization_state_batch")


class _Trainable:
    """What the trainable Array data sources share: their optimizer, and what serialization stores
    of their training (cpp/bindings/serialize.cpp calls these)."""

    _trainer: Optional[_Trainer] = None
    _statistics_momentum: Optional[float] = None  # batch normalization's running statistics

    @property
    def optimizer(self) -> Optional[Optimizer]:
        """The optimizer that trains this data source's parameters, or None."""
        return None if self._trainer is None else self._trainer.optimizer

    def _training_record(self) -> Optional[tuple[Any, ...]]:
        """mpsnn: what MPSNNGraph.to_bytes and pickle store of this source's training (its optimizer,
        time step and moments), so that a loaded training graph trains on; None when not trainable."""
        return None if self._trainer is None else self._trainer.record(self._statistics_momentum)

    def _restore_moments(self, lists: list[tuple[str, list[npt.NDArray[np.float32]]]]) -> None:
        assert self._trainer is not None
        self._trainer.restore_moments(lists)


class ArrayConvolutionDataSource(_Trainable):
    """An MPSCNNConvolutionDataSource over NumPy arrays.

    Args:
        descriptor: the MPSCNNConvolutionDescriptor.
        weights: OHWI array (Cout, KH, KW, Cin/groups; depthwise (Cout, KH, KW, 1)) of float32,
            float16 or uint8, or the same values flat (Apple passes a pointer); for binary
            convolution uint32 words (Cout, KH, KW, ceil(Cin/32)). A transposed convolution's
            weights are OHWI too, with O the descriptor's output channels (nodes.md §4.3). A 4-D
            array of another shape raises mpsnn.ShapeError when a graph reads it, with the
            transpose that fixes a PyTorch layout (OIHW: ``w.transpose(0, 2, 3, 1)``). The rule
            lives in one place, the C++ reader (graph/data_source.cpp), and holds for every data
            source; a flat buffer longer than needed is used (its first values) with a
            UserWarning.
        bias: Cout float32 values (array, sequence, or float32 bytes / bytearray / memoryview) or None.
        label: kernel label.
        optimizer: makes the data source trainable (graph.md §6.4): an MPSNNOptimizer that updates
            the weights and biases after each training step, through update_with_command_buffer
            (training style GPU, the default) or update_with_gradient_state (CPU). The weights must
            then be float32. The arrays given (when float32, C-contiguous and writeable; copies
            otherwise) are the live parameters, trained in place: ``weights()`` and
            ``bias_terms()`` return them and they hold the trained values once a step's command
            buffer completed. A convolution without bias gets a zero bias, trained too.
        amsgrad: with an MPSNNOptimizerAdam, keep AMSGrad's maximum-velocity vectors.
    """

    def __init__(self, descriptor: _core.MPSCNNConvolutionDescriptor, weights: npt.ArrayLike,
                 bias: Optional[FloatValues] = None, label: Optional[str] = None, *,
                 optimizer: Optional[Optimizer] = None, amsgrad: bool = False) -> None:
        self._descriptor = descriptor
        w = np.ascontiguousarray(weights)
        types = {
            np.dtype(np.float32): _core.MPSDataType.float32,
            np.dtype(np.float16): _core.MPSDataType.float16,
            np.dtype(np.uint8): _core.MPSDataType.uint8,
            np.dtype(np.uint32): _core.MPSDataType.uint32,
        }
        if w.dtype not in types:
            raise _core.DTypeError(f"weights have dtype {w.dtype}; expected float32, float16, uint8 or uint32")
        self._weights = w
        self._data_type = types[w.dtype]
        self._bias = _float_vector(bias, "bias", descriptor.output_feature_channels)
        self._label = label
        self.load_count = 0
        self._trainer: Optional[_Trainer] = None
        if optimizer is not None:
            if w.dtype != np.float32:
                raise _core.DTypeError(f"weights have dtype {w.dtype}; a trainable data source (optimizer given) "
                                       "keeps float32 weights")
            if not w.flags.writeable:
                w = w.copy()
            self._weights = w
            if self._bias is None:
                self._bias = np.zeros(descriptor.output_feature_channels, np.float32)
            elif not self._bias.flags.writeable:
                self._bias = self._bias.copy()
            self._trainer = _Trainer(optimizer, [self._weights.reshape(-1), self._bias], amsgrad)
            self._state = _core.MPSCNNConvolutionWeightsAndBiasesState(weights=self._trainer.buffers[0],
                                                                       biases=self._trainer.buffers[1])
        else:
            _no_updates(self, _CONVOLUTION_UPDATES)

    def _encode(self, command_buffer: _core.MTLCommandBuffer, gradient_state: _core.MPSState,
                source_state: _core.MPSState) -> None:
        assert self._trainer is not None
        self._trainer.optimizer.encode(command_buffer, convolution_gradient_state=gradient_state,
                                       convolution_source_state=source_state, result_state=self._state,
                                       **self._trainer.vectors)

    def update_with_command_buffer(self, command_buffer: _core.MTLCommandBuffer, gradient_state: _core.MPSState,
                                   source_state: _core.MPSState) -> Optional[_core.MPSCNNConvolutionWeightsAndBiasesState]:
        """GPU-style update (graph.md §6.4): encodes the optimizer on the graph's command buffer and
        returns the state over the live arrays (None when not trainable: no update)."""
        if self._trainer is None:
            return None
        self._encode(command_buffer, gradient_state, source_state)
        return self._state

    def update_with_gradient_state(self, gradient_state: _core.MPSState, source_state: _core.MPSState) -> bool:
        """CPU-style update, after the step's command buffer completed: runs the optimizer now."""
        if self._trainer is None:
            return False
        cb = self._trainer.private_command_buffer()
        self._encode(cb, gradient_state, source_state)
        cb.commit()
        cb.wait_until_completed()
        return True

    def data_type(self) -> _core.MPSDataType:
        return self._data_type

    def descriptor(self) -> _core.MPSCNNConvolutionDescriptor:
        return self._descriptor

    def weights(self) -> npt.NDArray[Any]:
        return self._weights

    def bias_terms(self) -> Optional[npt.NDArray[np.float32]]:
        return self._bias

    def load(self) -> bool:
        self.load_count += 1
        return True

    def purge(self) -> None:
        pass

    def label(self) -> Optional[str]:
        return self._label

    def copy(self) -> ArrayConvolutionDataSource:
        """An independent copy: own arrays and, when trainable, its own optimizer and moments."""
        return self._copy(None)

    def copy_with_device(self, device: _core.MTLDevice) -> ArrayConvolutionDataSource:
        """copy(), its optimizer on `device` (MPS's copyWithZone:device:)."""
        return self._copy(device)

    def _copy(self, device: Optional[_core.MTLDevice]) -> ArrayConvolutionDataSource:
        bias = None if self._bias is None else self._bias.copy()
        out = ArrayConvolutionDataSource(self._descriptor, self._weights.copy(), bias, self._label)
        if self._trainer is not None:
            for name in _CONVOLUTION_UPDATES:
                delattr(out, name)  # the class's methods again
            out._trainer = self._trainer.copy([out._weights.reshape(-1), out._bias], device)
            out._state = _core.MPSCNNConvolutionWeightsAndBiasesState(weights=out._trainer.buffers[0],
                                                                      biases=out._trainer.buffers[1])
        return out


class ArrayBatchNormalizationDataSource(_Trainable):
    """An MPSCNNBatchNormalizationDataSource over NumPy arrays (None arrays take the defaults
    gamma 1, beta 0, mean 0, variance 1).

    With an ``optimizer`` it is trainable (graph.md §6.5): gamma and beta (live float32 arrays,
    trained in place, as for ArrayConvolutionDataSource) are updated by the optimizer after each
    training step, and the running statistics by the data source itself, as in PyTorch:
    ``mean = (1 - m) * mean + m * batch_mean`` and ``variance = (1 - m) * variance + m * batch_variance
    * n / (n - 1)`` with ``m = statistics_momentum`` (None: keep them fixed) and n the values per
    channel the batch statistics cover (``MPSCNNBatchNormalizationState.sample_count``). The running
    statistics change after the step's command buffer completed (a completion handler in GPU style),
    since the training graph normalizes with the batch's own statistics; an inference graph sharing
    this data source sees them after ``reload_from_data_sources()``."""

    def __init__(self, gamma: Optional[FloatValues] = None, beta: Optional[FloatValues] = None,
                 mean: Optional[FloatValues] = None, variance: Optional[FloatValues] = None,
                 epsilon: Optional[float] = None, label: Optional[str] = None,
                 number_of_feature_channels: Optional[int] = None, *, optimizer: Optional[Optimizer] = None,
                 amsgrad: bool = False, statistics_momentum: Optional[float] = 0.1) -> None:
        arrays = [a for a in (gamma, beta, mean, variance) if a is not None]
        n = number_of_feature_channels
        if n is None:
            if not arrays:
                raise _core.ShapeError("number_of_feature_channels is needed when no array is given")
            n = int(np.asarray(arrays[0]).size)
        self._n = n
        self._gamma = _float_vector(gamma, "gamma", n)
        self._beta = _float_vector(beta, "beta", n)
        self._mean = _float_vector(mean, "mean", n)
        self._variance = _float_vector(variance, "variance", n)
        self._epsilon = epsilon
        self._label = label
        self._statistics_momentum = statistics_momentum
        self._trainer: Optional[_Trainer] = None
        if optimizer is not None:
            self._make_trainable(optimizer, amsgrad)
        else:
            _no_updates(self, _NORMALIZATION_UPDATES)

    def _make_trainable(self, optimizer: Optimizer, amsgrad: bool) -> None:
        def live(a: Optional[npt.NDArray[np.float32]], default: float) -> npt.NDArray[np.float32]:
            if a is None:
                return np.full(self._n, default, np.float32)
            return a if a.flags.writeable else a.copy()
        self._gamma, self._beta = live(self._gamma, 1.0), live(self._beta, 0.0)
        self._mean, self._variance = live(self._mean, 0.0), live(self._variance, 1.0)
        self._trainer = _Trainer(optimizer, [self._gamma, self._beta], amsgrad)
        self._state = _core.MPSCNNNormalizationGammaAndBetaState(gamma=self._trainer.buffers[0],
                                                                 beta=self._trainer.buffers[1])

    def number_of_feature_channels(self) -> int:
        return self._n

    def gamma(self) -> Optional[npt.NDArray[np.float32]]:
        return self._gamma

    def beta(self) -> Optional[npt.NDArray[np.float32]]:
        return self._beta

    def mean(self) -> Optional[npt.NDArray[np.float32]]:
        return self._mean

    def variance(self) -> Optional[npt.NDArray[np.float32]]:
        return self._variance

    def epsilon(self) -> float:
        # FLT_MIN when not given, MPS's default.
        return float(np.finfo(np.float32).tiny) if self._epsilon is None else float(self._epsilon)

    def load(self) -> bool:
        return True

    def purge(self) -> None:
        pass

    def label(self) -> Optional[str]:
        return self._label

    # Updates (graph.md §6.5).
    def _encode(self, command_buffer: _core.MTLCommandBuffer, state: _core.MPSState) -> None:
        assert self._trainer is not None
        self._trainer.optimizer.encode(command_buffer, batch_normalization_state=state, result_state=self._state,
                                       **self._trainer.vectors)

    def update_gamma_and_beta_with_command_buffer(
            self, command_buffer: _core.MTLCommandBuffer,
            batch_normalization_state: _core.MPSState) -> Optional[_core.MPSCNNNormalizationGammaAndBetaState]:
        if self._trainer is None:
            return None
        self._encode(command_buffer, batch_normalization_state)
        return self._state

    def update_mean_and_variance_with_command_buffer(
            self, command_buffer: _core.MTLCommandBuffer,
            batch_normalization_state: _core.MPSState) -> Optional[_core.MPSCNNNormalizationMeanAndVarianceState]:
        if self._trainer is None or self._statistics_momentum is None:
            return None
        command_buffer.add_completed_handler(
            lambda cb: None if cb.error is not None else self._running_update(batch_normalization_state))
        return None  # the training graph normalizes with batch statistics: nothing to load there

    def update_gamma_and_beta_with_batch_normalization_state(self, batch_normalization_state: _core.MPSState) -> bool:
        if self._trainer is None:
            return False
        cb = self._trainer.private_command_buffer()
        self._encode(cb, batch_normalization_state)
        cb.commit()
        cb.wait_until_completed()
        return True

    def update_mean_and_variance_with_batch_normalization_state(self, batch_normalization_state: _core.MPSState) -> bool:
        if self._trainer is None or self._statistics_momentum is None:
            return False
        self._running_update(batch_normalization_state)
        return True

    def _running_update(self, state: _core.MPSState) -> None:
        assert self._mean is not None and self._variance is not None and self._statistics_momentum is not None
        m = np.float32(self._statistics_momentum)
        batch_mean = state.mean().numpy()[: self._n]  # type: ignore[attr-defined]
        batch_var = state.variance().numpy()[: self._n]  # type: ignore[attr-defined]
        count = state.sample_count  # type: ignore[attr-defined]
        unbiased = np.float32(count / (count - 1)) if count and count > 1 else np.float32(1)
        self._mean[...] = (1 - m) * self._mean + m * batch_mean
        self._variance[...] = (1 - m) * self._variance + m * batch_var * unbiased

    def copy(self) -> ArrayBatchNormalizationDataSource:
        """An independent copy: own arrays and, when trainable, its own optimizer and moments."""
        return self._copy(None)

    def copy_with_device(self, device: _core.MTLDevice) -> ArrayBatchNormalizationDataSource:
        return self._copy(device)

    def _copy(self, device: Optional[_core.MTLDevice]) -> ArrayBatchNormalizationDataSource:
        def dup(a: Optional[npt.NDArray[np.float32]]) -> Optional[npt.NDArray[np.float32]]:
            return None if a is None else a.copy()
        out = copy_module.copy(self)
        out._gamma, out._beta, out._mean, out._variance = (dup(self._gamma), dup(self._beta), dup(self._mean),
                                                           dup(self._variance))
        if self._trainer is not None:
            assert out._gamma is not None and out._beta is not None
            out._trainer = self._trainer.copy([out._gamma, out._beta], device)
            out._state = _core.MPSCNNNormalizationGammaAndBetaState(gamma=out._trainer.buffers[0],
                                                                    beta=out._trainer.buffers[1])
        return out


class ArrayInstanceNormalizationDataSource(ArrayBatchNormalizationDataSource):
    """An MPSCNNInstanceNormalizationDataSource over NumPy arrays (gamma, beta), trainable with an
    ``optimizer`` as ArrayBatchNormalizationDataSource (without running statistics). mpsnn runs a
    batch as one run: the state batch its updates receive holds one state with the batch's sums."""

    def __init__(self, gamma: Optional[FloatValues] = None, beta: Optional[FloatValues] = None,
                 epsilon: Optional[float] = None, label: Optional[str] = None,
                 number_of_feature_channels: Optional[int] = None, *, optimizer: Optional[Optimizer] = None,
                 amsgrad: bool = False) -> None:
        super().__init__(gamma, beta, None, None, epsilon, label, number_of_feature_channels, optimizer=optimizer,
                         amsgrad=amsgrad, statistics_momentum=None)

    @property  # type: ignore[override]
    def number_of_feature_channels(self) -> int:  # a property in the instance-norm protocol
        return self._n

    @staticmethod
    def _one(state_batch: list[_core.MPSState]) -> _core.MPSState:
        if len(state_batch) != 1:
            raise _core.UnsupportedError(f"instance_normalization_state_batch has {len(state_batch)} states; this "
                                         "data source takes the one state of an mpsnn batch (already summed)")
        return state_batch[0]

    def update_gamma_and_beta_with_command_buffer(  # type: ignore[override]
            self, command_buffer: _core.MTLCommandBuffer,
            instance_normalization_state_batch: list[_core.MPSState]) -> Optional[_core.MPSCNNNormalizationGammaAndBetaState]:
        return super().update_gamma_and_beta_with_command_buffer(command_buffer,
                                                                 self._one(instance_normalization_state_batch))

    def update_gamma_and_beta_with_instance_normalization_state_batch(
            self, instance_normalization_state_batch: list[_core.MPSState]) -> bool:
        return self.update_gamma_and_beta_with_batch_normalization_state(self._one(instance_normalization_state_batch))

    def copy(self) -> ArrayInstanceNormalizationDataSource:
        out = self._copy(None)
        assert isinstance(out, ArrayInstanceNormalizationDataSource)
        return out
