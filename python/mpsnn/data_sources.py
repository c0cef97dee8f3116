"""Ready data sources holding NumPy arrays (mpsnn helpers; MPS leaves these to the user).

Each implements the matching MPS protocol, so it can be handed to a node exactly like a
user-written data source.
"""

from __future__ import annotations

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


class ArrayConvolutionDataSource:
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
    """

    def __init__(self, descriptor: _core.MPSCNNConvolutionDescriptor, weights: npt.ArrayLike,
                 bias: Optional[FloatValues] = None, label: Optional[str] = None) -> None:
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
        return ArrayConvolutionDataSource(self._descriptor, self._weights.copy(), self._bias, self._label)


class ArrayBatchNormalizationDataSource:
    """An MPSCNNBatchNormalizationDataSource over NumPy arrays (None arrays take the defaults
    gamma 1, beta 0, mean 0, variance 1)."""

    def __init__(self, gamma: Optional[FloatValues] = None, beta: Optional[FloatValues] = None,
                 mean: Optional[FloatValues] = None, variance: Optional[FloatValues] = None,
                 epsilon: Optional[float] = None, label: Optional[str] = None,
                 number_of_feature_channels: Optional[int] = None) -> None:
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

    def copy(self) -> ArrayBatchNormalizationDataSource:
        return ArrayBatchNormalizationDataSource(self._gamma, self._beta, self._mean, self._variance, self._epsilon,
                                                 self._label, self._n)


class ArrayInstanceNormalizationDataSource(ArrayBatchNormalizationDataSource):
    """An MPSCNNInstanceNormalizationDataSource over NumPy arrays (gamma, beta)."""

    def __init__(self, gamma: Optional[FloatValues] = None, beta: Optional[FloatValues] = None,
                 epsilon: Optional[float] = None, label: Optional[str] = None,
                 number_of_feature_channels: Optional[int] = None) -> None:
        super().__init__(gamma, beta, None, None, epsilon, label, number_of_feature_channels)

    @property  # type: ignore[override]
    def number_of_feature_channels(self) -> int:  # a property in the instance-norm protocol
        return self._n
