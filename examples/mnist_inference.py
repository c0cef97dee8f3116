"""The MNIST network of Apple's training sample (spec/graph.md §8.1, inference form) as an
MPSNNGraph: builds it with seeded random weights, runs a batch of 40 images and prints the
output and the time per batch. The weights are random (nothing is trained), so the predicted
digits mean nothing: the demo shows the graph compiling and running."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from mpsnn import (
    ArrayConvolutionDataSource,
    MPSCNNConvolutionDescriptor,
    MPSCNNConvolutionNode,
    MPSCNNFullyConnectedNode,
    MPSCNNNeuronReLUNode,
    MPSCNNPoolingMaxNode,
    MPSCNNSoftMaxNode,
    MPSDataLayout,
    MPSImage,
    MPSImageDescriptor,
    MPSImageFeatureChannelFormat,
    MPSNNDefaultPadding,
    MPSNNGraph,
    MPSNNImageNode,
    MPSNNPaddingMethod,
    MTLCreateSystemDefaultDevice,
    MTLDevice,
)


def layer(rng: np.random.Generator, kernel: int, cin: int, cout: int, label: str) -> ArrayConvolutionDataSource:
    d = MPSCNNConvolutionDescriptor(kernel_width=kernel, kernel_height=kernel, input_feature_channels=cin,
                                    output_feature_channels=cout)
    weights = rng.uniform(-0.2, 0.2, (cout, kernel, kernel, cin)).astype(np.float32)  # OHWI, as the sample
    bias = np.full(cout, 0.1, np.float32)
    return ArrayConvolutionDataSource(d, weights, bias, label=label)


def build(device: MTLDevice, rng: np.random.Generator) -> MPSNNGraph:
    same = MPSNNDefaultPadding.padding_with_method(
        MPSNNPaddingMethod.align_centered | MPSNNPaddingMethod.add_remainder_to_top_left | MPSNNPaddingMethod.size_same)
    pool_padding = MPSNNDefaultPadding.padding_for_tensorflow_average_pooling()
    x = MPSNNImageNode(handle=None)
    conv1 = MPSCNNConvolutionNode(source=x, weights=layer(rng, 5, 1, 32, "conv1"))
    conv1.padding_policy = same
    relu1 = MPSCNNNeuronReLUNode(source=conv1.result_image)
    pool1 = MPSCNNPoolingMaxNode(source=relu1.result_image, filter_size=2, stride=2)
    pool1.padding_policy = pool_padding
    conv2 = MPSCNNConvolutionNode(source=pool1.result_image, weights=layer(rng, 5, 32, 64, "conv2"))
    conv2.padding_policy = same
    relu2 = MPSCNNNeuronReLUNode(source=conv2.result_image)
    pool2 = MPSCNNPoolingMaxNode(source=relu2.result_image, filter_size=2, stride=2)
    pool2.padding_policy = pool_padding
    fc1 = MPSCNNFullyConnectedNode(source=pool2.result_image, weights=layer(rng, 7, 64, 1024, "fc1"))
    relu3 = MPSCNNNeuronReLUNode(source=fc1.result_image)
    fc2 = MPSCNNFullyConnectedNode(source=relu3.result_image, weights=layer(rng, 1, 1024, 10, "fc2"))
    softmax = MPSCNNSoftMaxNode(source=fc2.result_image)
    graph = MPSNNGraph(device, result_image=softmax.result_image, result_image_is_needed=True)
    graph.format = MPSImageFeatureChannelFormat.float32
    return graph


def main() -> None:
    rng = np.random.default_rng(0)
    device = MTLCreateSystemDefaultDevice()
    graph = build(device, rng)
    # A batch of 40 unorm8 images, written as the sample does (write_bytes per image).
    digits = rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    batch = MPSImage(device, MPSImageDescriptor(MPSImageFeatureChannelFormat.unorm8, 28, 28, 1, number_of_images=40))
    for i in range(40):
        batch.write_bytes(np.ascontiguousarray(digits[i]), MPSDataLayout.HeightxWidthxFeatureChannels, image_index=i)
    result = graph.run([batch])  # warm-up: compiles the plan for this size
    times: list[float] = []
    for _ in range(20):
        t0 = time.perf_counter()
        result = graph.run([batch])
        times.append(time.perf_counter() - t0)
    assert isinstance(result, MPSImage)  # one result image (a list for several results)
    probs: npt.NDArray[np.float32] = result.numpy().reshape(40, 10)
    print("The weights are random, so the predictions below mean nothing. The plan the graph compiled for "
          "this input size (nodes, fused steps, buffers) follows:")
    print(graph.debug_description)
    print("first 4 predictions (probabilities):")
    np.set_printoptions(precision=3, suppress=True)
    print(probs[:4])
    print("arg-max of the batch:", probs.argmax(axis=1).tolist())
    print(f"batch of 40: median {np.median(times) * 1e3:.2f} ms over 20 runs "
          f"({40 / np.median(times):.0f} images/s) on {device.name}")


if __name__ == "__main__":
    main()
