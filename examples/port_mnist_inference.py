"""Port of the inference half of Apple's sample "Training a Neural Network with Metal Performance
Shaders" (spec/graph.md §8): the MNIST classifier graph built with the node(...) class factories
as the sample builds it, one convolution data source class for all four layers, and a batch of 40
unorm8 digits evaluated with encode_batch and read back with read_bytes.

The weights are random (uniform in [-0.2, 0.2], biases 0.1, as the sample initializes them before
training; the sample trains them, this port does not), so the predicted digits mean nothing.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from mpsnn import (
    MPSCNNConvolutionDescriptor,
    MPSCNNConvolutionNode,
    MPSCNNFullyConnectedNode,
    MPSCNNNeuronReLUNode,
    MPSCNNPoolingMaxNode,
    MPSCNNSoftMaxNode,
    MPSCommandBuffer,
    MPSDataLayout,
    MPSDataType,
    MPSImage,
    MPSImageDescriptor,
    MPSImageFeatureChannelFormat,
    MPSNNDefaultPadding,
    MPSNNGraph,
    MPSNNImageNode,
    MPSNNPaddingMethod,
    MTLCommandQueue,
    MTLCreateSystemDefaultDevice,
    MTLDevice,
)

BATCH_SIZE = 40
NUMBER_OF_CLASSES = 10


class ConvDataSource:
    """The sample's convolution data source (one class for conv1, conv2, fc1 and fc2)."""

    def __init__(self, kernel_width: int, kernel_height: int, input_feature_channels: int,
                 output_feature_channels: int, stride: int, label: str, rng: np.random.Generator) -> None:
        self._descriptor = MPSCNNConvolutionDescriptor.cnn_convolution_descriptor(
            kernel_width=kernel_width, kernel_height=kernel_height, input_feature_channels=input_feature_channels,
            output_feature_channels=output_feature_channels)
        self._descriptor.stride_in_pixels_x = stride
        self._descriptor.stride_in_pixels_y = stride
        self._label = label
        count = output_feature_channels * kernel_height * kernel_width * input_feature_channels
        # OHWI weights in [-0.2, 0.2] and biases of 0.1, as the sample's initialization.
        self._weights = rng.uniform(-0.2, 0.2, count).astype(np.float32).reshape(
            output_feature_channels, kernel_height, kernel_width, input_feature_channels)
        self._bias = np.full(output_feature_channels, 0.1, np.float32)

    def data_type(self) -> MPSDataType:
        return MPSDataType.float32

    def descriptor(self) -> MPSCNNConvolutionDescriptor:
        return self._descriptor

    def weights(self) -> npt.NDArray[np.float32]:
        return self._weights

    def bias_terms(self) -> npt.NDArray[np.float32]:
        return self._bias

    def load(self) -> bool:
        return True

    def purge(self) -> None:
        pass

    def label(self) -> str:
        return self._label

    def copy(self) -> ConvDataSource:
        return self


class MNISTClassifierGraph:
    """The inference graph of the sample (#1-#8, #10, #11b of graph.md §8.1)."""

    def __init__(self, device: MTLDevice, rng: np.random.Generator) -> None:
        self.device = device
        self.conv1_weights = ConvDataSource(5, 5, 1, 32, 1, "conv1", rng)
        self.conv2_weights = ConvDataSource(5, 5, 32, 64, 1, "conv2", rng)
        self.fc1_weights = ConvDataSource(7, 7, 64, 1024, 1, "fc1", rng)
        self.fc2_weights = ConvDataSource(1, 1, 1024, NUMBER_OF_CLASSES, 1, "fc2", rng)

        same_padding = MPSNNDefaultPadding.padding_with_method(
            MPSNNPaddingMethod.align_centered | MPSNNPaddingMethod.add_remainder_to_top_left
            | MPSNNPaddingMethod.size_same)
        pooling_padding = MPSNNDefaultPadding.padding_for_tensorflow_average_pooling()

        input_image = MPSNNImageNode.node(handle=None)
        conv1 = MPSCNNConvolutionNode.node(source=input_image, weights=self.conv1_weights)
        conv1.padding_policy = same_padding
        relu1 = MPSCNNNeuronReLUNode.node(source=conv1.result_image, a=0.0)
        pool1 = MPSCNNPoolingMaxNode.node(source=relu1.result_image, filter_size=2, stride=2)
        pool1.padding_policy = pooling_padding
        conv2 = MPSCNNConvolutionNode.node(source=pool1.result_image, weights=self.conv2_weights)
        conv2.padding_policy = same_padding
        relu2 = MPSCNNNeuronReLUNode.node(source=conv2.result_image, a=0.0)
        pool2 = MPSCNNPoolingMaxNode.node(source=relu2.result_image, filter_size=2, stride=2)
        pool2.padding_policy = pooling_padding
        fc1 = MPSCNNFullyConnectedNode.node(source=pool2.result_image, weights=self.fc1_weights)
        relu3 = MPSCNNNeuronReLUNode.node(source=fc1.result_image, a=0.0)
        fc2 = MPSCNNFullyConnectedNode.node(source=relu3.result_image, weights=self.fc2_weights)
        softmax = MPSCNNSoftMaxNode.node(source=fc2.result_image)

        self.inference_graph = MPSNNGraph.graph(device, result_image=softmax.result_image,
                                                result_image_is_needed=True)
        self.inference_graph.format = MPSImageFeatureChannelFormat.float16  # as the sample

    def evaluate(self, command_queue: MTLCommandQueue, digits: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Classifies a batch of 28x28 uint8 digits; returns the (N, 10) probabilities."""
        image_batch: list[MPSImage] = []
        for digit in digits:
            image = MPSImage(self.device, MPSImageDescriptor.image_descriptor(
                MPSImageFeatureChannelFormat.unorm8, 28, 28, 1))
            image.write_bytes(np.ascontiguousarray(digit), MPSDataLayout.height_x_width_x_feature_channels,
                              image_index=0)
            image_batch.append(image)
        command_buffer = MPSCommandBuffer.command_buffer_from_command_queue(command_queue)
        outputs = self.inference_graph.encode_batch(command_buffer, [image_batch])
        command_buffer.commit()
        command_buffer.wait_until_completed()
        assert outputs is not None  # None only for a graph without a needed result
        probabilities = np.zeros((len(outputs), NUMBER_OF_CLASSES), np.float16)
        for i, output in enumerate(outputs):
            output.read_bytes(probabilities[i], MPSDataLayout.feature_channels_x_height_x_width, 0)
        return probabilities.astype(np.float32)


def main(seed: int = 0,
         quiet: bool = False) -> tuple[MNISTClassifierGraph, npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    device = MTLCreateSystemDefaultDevice()
    command_queue = device.make_command_queue()
    classifier = MNISTClassifierGraph(device, rng)
    digits = rng.integers(0, 256, (BATCH_SIZE, 28, 28, 1), dtype=np.uint8)
    start = time.perf_counter()
    probabilities = classifier.evaluate(command_queue, digits)
    elapsed = time.perf_counter() - start
    if not quiet:
        print(f"MNIST inference graph (random weights): {BATCH_SIZE} digits -> {probabilities.shape} "
              f"probabilities in {elapsed * 1e3:.1f} ms on {device.name}")
        print("predicted digits:", probabilities.argmax(axis=1)[:10].tolist(), "...")
    return classifier, digits, probabilities


if __name__ == "__main__":
    main()
