"""Port of the ESPCN super-resolution MPSNNGraph of lgyStoic/super_resolution_MPSNNGraph
(espcnnproj/espcnnGraph.m and DataSource.m): four convolutions built with the node(...) class
factories (5x5 1->64, 3x3 64->64, 3x3 64->32, each with a ReLU, set both on the descriptor with the
deprecated set_neuron_type and as an MPSCNNNeuronReLUNode, as the sample does), and a 3x3 32->9
sub-pixel convolution (MPSCNNSubPixelConvolutionDescriptor.cnn_convolution_descriptor, scale
factor 3) that turns a one-channel HxW image into 3Hx3W; run with execute_async.

The weights are random (the sample loads weights converted from a trained PyTorch model), so the
upscaled image is noise.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

import numpy as np
import numpy.typing as npt

from mpsnn import (
    MPSCNNConvolutionDescriptor,
    MPSCNNConvolutionNode,
    MPSCNNNeuronReLUNode,
    MPSCNNNeuronType,
    MPSCNNSubPixelConvolutionDescriptor,
    MPSDataType,
    MPSImage,
    MPSNNGraph,
    MPSNNImageNode,
    MTLCreateSystemDefaultDevice,
    MTLDevice,
)

UPSCALE_FACTOR = 3


class DataSource:
    """One layer's weights and biases; the sub-pixel layer gets a sub-pixel descriptor."""

    def __init__(self, name: str, kernel_width: int, kernel_height: int, input_feature_channels: int,
                 output_channels: int, is_subpixel_layer: bool, rng: np.random.Generator) -> None:
        self._name = name
        self._kernel_width = kernel_width
        self._kernel_height = kernel_height
        self._input_channels = input_feature_channels
        self._output_channels = output_channels
        self._is_subpixel_layer = is_subpixel_layer
        self._rng = rng
        self.weight_data: Optional[npt.NDArray[np.float32]] = None
        self.bias_data: Optional[npt.NDArray[np.float32]] = None

    def load(self) -> bool:
        # The sample reads <name>.weight.bin / <name>.bias.bin (float32, OHWI); random ones here, made once.
        if self.weight_data is None:
            fan_in = self._kernel_height * self._kernel_width * self._input_channels
            shape = (self._output_channels, self._kernel_height, self._kernel_width, self._input_channels)
            self.weight_data = (self._rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
            self.bias_data = (self._rng.standard_normal(self._output_channels) * 0.01).astype(np.float32)
        return True

    def descriptor(self) -> MPSCNNConvolutionDescriptor:
        bdesc: MPSCNNConvolutionDescriptor
        if self._is_subpixel_layer:
            bdesc = MPSCNNSubPixelConvolutionDescriptor.cnn_convolution_descriptor(
                kernel_width=self._kernel_width, kernel_height=self._kernel_height,
                input_feature_channels=self._input_channels, output_feature_channels=self._output_channels)
            bdesc.sub_pixel_scale_factor = UPSCALE_FACTOR
        else:
            bdesc = MPSCNNConvolutionDescriptor.cnn_convolution_descriptor(
                kernel_width=self._kernel_width, kernel_height=self._kernel_height,
                input_feature_channels=self._input_channels, output_feature_channels=self._output_channels)
            bdesc.set_neuron_type(MPSCNNNeuronType.relu, parameter_a=0, parameter_b=0)  # deprecated, as the sample
        bdesc.stride_in_pixels_x = 1
        bdesc.stride_in_pixels_y = 1
        return bdesc

    def weights(self) -> Optional[npt.NDArray[np.float32]]:
        return self.weight_data

    def bias_terms(self) -> Optional[npt.NDArray[np.float32]]:
        return self.bias_data

    def data_type(self) -> MPSDataType:
        return MPSDataType.float32

    def purge(self) -> None:
        pass  # keeps the random weights (the sample drops its NSData and reads the files again)

    def label(self) -> str:
        return self._name


class EspcnnGraph:
    def __init__(self, device: MTLDevice, rng: np.random.Generator) -> None:
        self.rng = rng
        self.data_sources: list[DataSource] = []
        self.input_image = MPSNNImageNode(handle=None)
        self.conv1 = MPSCNNConvolutionNode.node(
            source=self.input_image, weights=self.data_source("conv1", 5, 5, 1, 64, False))
        r1 = MPSCNNNeuronReLUNode.node(source=self.conv1.result_image)
        self.conv2 = MPSCNNConvolutionNode.node(
            source=r1.result_image, weights=self.data_source("conv2", 3, 3, 64, 64, False))
        r2 = MPSCNNNeuronReLUNode.node(source=self.conv2.result_image)
        self.conv3 = MPSCNNConvolutionNode.node(
            source=r2.result_image, weights=self.data_source("conv3", 3, 3, 64, 32, False))
        r3 = MPSCNNNeuronReLUNode.node(source=self.conv3.result_image)
        self.conv4 = MPSCNNConvolutionNode.node(
            source=r3.result_image,
            weights=self.data_source("conv4", 3, 3, 32, UPSCALE_FACTOR * UPSCALE_FACTOR, True))
        self.inference_graph = MPSNNGraph(device, result_image=self.conv4.result_image, result_image_is_needed=True)

    def data_source(self, name: str, kernel_width: int, kernel_height: int, input_feature_channels: int,
                    output_channels: int, is_subpixel_layer: bool) -> DataSource:
        source = DataSource(name, kernel_width, kernel_height, input_feature_channels, output_channels,
                            is_subpixel_layer, rng=self.rng)
        self.data_sources.append(source)
        return source

    def prediction(self, input_image: MPSImage,
                   result_block: Callable[[Optional[MPSImage], Optional[str]], None]) -> None:
        def completion_handler(result: Optional[MPSImage], error: Optional[str]) -> None:
            result_block(result, error)

        self.inference_graph.execute_async([input_image], completion_handler)


def main(seed: int = 0, quiet: bool = False,
         size: tuple[int, int] = (64, 64)) -> tuple[EspcnnGraph, npt.NDArray[np.float32], MPSImage]:
    rng = np.random.default_rng(seed)
    device = MTLCreateSystemDefaultDevice()
    graph = EspcnnGraph(device, rng)
    luma = rng.uniform(0.0, 1.0, (1, size[0], size[1], 1)).astype(np.float32)  # the Y channel of a picture
    input_image = MPSImage.from_numpy(luma)
    finished = threading.Event()
    got: dict[str, Any] = {}

    def result_block(result: Optional[MPSImage], error: Optional[str]) -> None:
        got["result"], got["error"] = result, error
        finished.set()

    start = time.perf_counter()
    graph.prediction(input_image, result_block)
    if not finished.wait(60):
        raise TimeoutError("ESPCN did not complete")
    if got["error"] is not None:
        raise RuntimeError(got["error"])
    upscaled: MPSImage = got["result"]
    if not quiet:
        print(f"ESPCN graph (random weights, x{UPSCALE_FACTOR}): {luma.shape[2]}x{luma.shape[1]}x1 -> "
              f"{upscaled.width}x{upscaled.height}x{upscaled.feature_channels} in "
              f"{(time.perf_counter() - start) * 1e3:.1f} ms on {device.name}")
    return graph, luma, upscaled


if __name__ == "__main__":
    main()
