"""Typed uses of mpsnn: tests/test_typing.py runs `mypy --strict` over this file (and examples/), and
runs it as a script. Not collected by pytest (the name has no test_ prefix).

It starts with the README's "Using it" example, written with annotations.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import numpy.typing as npt

import mpsnn
from mpsnn import (ArrayBatchNormalizationDataSource, ArrayConvolutionDataSource, MPSCNNBatchNormalizationNode,
                   MPSCNNConvolutionDescriptor, MPSCNNConvolutionNode, MPSCNNNeuronReLUNode, MPSCNNPoolingMaxNode,
                   MPSDataLayout, MPSDataType, MPSImage, MPSImageFeatureChannelFormat, MPSNNDefaultPadding, MPSNNGraph,
                   MPSNNImageNode, MPSNNPaddingMethod, MPSNNPaddingMethodSizeSame, MPSNNPaddingMethodSizeValidOnly,
                   MTLBuffer, MTLCommandBuffer, MTLCommandQueue, MTLCreateSystemDefaultDevice, MTLDevice)
from mpsnn.protocols import MPSCNNConvolutionDataSource, MPSHandle, MPSNNPadding


def readme_example() -> tuple[int, ...]:
    device: MTLDevice = MTLCreateSystemDefaultDevice()
    x = MPSNNImageNode(handle=None)
    desc = MPSCNNConvolutionDescriptor(kernel_width=3, kernel_height=3, input_feature_channels=3,
                                       output_feature_channels=16)
    weights: npt.NDArray[np.float32] = np.random.randn(16, 3, 3, 3).astype(np.float32)  # OHWI, as MPS
    conv = MPSCNNConvolutionNode(source=x, weights=ArrayConvolutionDataSource(desc, weights, bias=None))
    relu = MPSCNNNeuronReLUNode(source=conv.result_image)
    graph = MPSNNGraph(device, result_image=relu.result_image)
    y = graph.run([np.random.randn(8, 32, 32, 3).astype(np.float32)])  # (N, H, W, C), wrapped without copying
    assert isinstance(y, MPSImage)  # one result image (a list for the several-results initializer)
    out: npt.NDArray[np.float32] = y.numpy()
    return tuple(out.shape)  # (8, 32, 32, 16), a view


class Handle:
    """A user handle (MPSHandle: a label)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def label(self) -> Optional[str]:
        return self.name


class OnesDataSource:
    """A user-written MPSCNNConvolutionDataSource (structural: no base class)."""

    def __init__(self, cin: int, cout: int) -> None:
        self._descriptor = MPSCNNConvolutionDescriptor(kernel_width=1, kernel_height=1, input_feature_channels=cin,
                                                       output_feature_channels=cout)

    def data_type(self) -> MPSDataType:
        return MPSDataType.float32

    def descriptor(self) -> MPSCNNConvolutionDescriptor:
        return self._descriptor

    def weights(self) -> npt.NDArray[np.float32]:
        d = self._descriptor
        return np.ones((d.output_feature_channels, 1, 1, d.input_feature_channels), np.float32)

    def bias_terms(self) -> bytes:
        return np.zeros(self._descriptor.output_feature_channels, np.float32).tobytes()  # raw float32, as Apple

    def load(self) -> bool:
        return True

    def purge(self) -> None:
        pass

    def label(self) -> str:
        return "ones"


class ValidOnlyPadding:
    """A user padding policy (MPSNNPadding: padding_method)."""

    def padding_method(self) -> MPSNNPaddingMethod:
        return MPSNNPaddingMethodSizeValidOnly


def typed_graph() -> MPSNNGraph:
    source: MPSCNNConvolutionDataSource = OnesDataSource(2, 4)
    padding: MPSNNPadding = ValidOnlyPadding()
    handle: MPSHandle = Handle("input")
    x = MPSNNImageNode(handle=handle)
    conv = MPSCNNConvolutionNode(source=x, weights=source)
    conv.padding_policy = MPSNNDefaultPadding.padding_with_method(MPSNNPaddingMethodSizeSame)
    bn = MPSCNNBatchNormalizationNode(source=conv.result_image, data_source=ArrayBatchNormalizationDataSource(
        gamma=np.full(4, 2.0, np.float32), beta=[0.0, 0.0, 0.0, 0.0], epsilon=1e-5))
    pool = MPSCNNPoolingMaxNode(source=bn.result_image, filter_size=2)
    pool.padding_policy = padding
    return MPSNNGraph(MTLCreateSystemDefaultDevice(), result_image=pool.result_image)


def command_buffers(graph: MPSNNGraph) -> list[npt.NDArray[np.float32]]:
    queue: MTLCommandQueue = graph.device.make_command_queue()
    handles: list[Optional[MPSHandle]] = graph.source_image_handles
    assert [h.label() if h is not None else None for h in handles] == ["input"]
    images = [MPSImage.from_numpy(np.full((1, 4, 4, 2), float(i), np.float32)) for i in range(3)]

    buffer: MTLCommandBuffer = queue.make_command_buffer()
    one: Optional[MPSImage] = graph.encode(buffer, [images[0]])
    batch: Optional[list[MPSImage]] = graph.encode_batch(buffer, [images])
    buffer.commit()
    buffer.wait_until_completed()
    assert one is not None and batch is not None
    results = [one.numpy()] + [image.numpy() for image in batch]

    # read_bytes into a NumPy array, write_bytes from one (buffers on every Python version).
    out = np.zeros((2, 2, 4), np.float32)
    one.read_bytes(out, MPSDataLayout.height_x_width_x_feature_channels)
    staging = MPSImage.from_numpy(np.zeros((1, 4, 4, 2), np.float32))
    staging.write_bytes(np.ones((4, 4, 2), np.float32), MPSDataLayout.height_x_width_x_feature_channels)
    raw: MTLBuffer = graph.device.make_buffer(16)
    assert raw.length == 16
    return results + [out]


def main() -> None:
    assert readme_example() == (8, 32, 32, 16)
    graph = typed_graph()
    graph.format = MPSImageFeatureChannelFormat.float32
    results = command_buffers(graph)
    # 1x1 convolution of ones over 2 channels, batch norm x2, 2x2 max pool (valid only): 4 * value.
    maxima = [float(r.max()) for r in results[:4]]
    assert np.allclose(maxima, [0.0, 0.0, 4.0, 8.0], rtol=1e-4), maxima
    assert results[0].shape == (1, 2, 2, 4) and float(results[4].max()) == 0.0
    assert mpsnn.MPSNNPaddingMethodSizeSame is MPSNNPaddingMethod.size_same
    relu = mpsnn.MPSCNNNeuronReLUNode(source=mpsnn.MPSNNImageNode(handle=None))
    small = mpsnn.MPSNNGraph(graph.device, relu.result_image)
    data: bytes = small.to_bytes()
    loaded: mpsnn.MPSNNGraph = mpsnn.MPSNNGraph.from_bytes(data, device=graph.device)
    dot: str = loaded.to_dot()
    assert dot.startswith("digraph") and loaded.format == small.format
    print("typing_usage: ok")


if __name__ == "__main__":
    main()
