"""Port of the TinyYOLO MPSNNGraph of hollance/YOLO-CoreML-MPSNNGraph (TinyYOLO-NNGraph/YOLO.swift):
a Lanczos scale to 416x416, eight 3x3 convolutions with folded batch normalization and a leaky ReLU
(a = 0.1, set with the descriptor's deprecated neuron properties as the sample does), six max pools
(the last one with stride 1 and a custom padding policy that moves the pooling kernel and clamps its
edges) and a final 1x1 convolution to 13x13x125, run with execute_async; the 845 boxes are decoded
as the sample's computeBoundingBoxes does (without its non-maximum suppression).

The weights are random (the sample loads trained VOC weights from its bundle), so the boxes mean
nothing; the run takes a few seconds on a CPU.
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
    MPSCNNNeuronType,
    MPSCNNPooling,
    MPSCNNPoolingMaxNode,
    MPSDataType,
    MPSImage,
    MPSImageDescriptor,
    MPSImageEdgeMode,
    MPSKernel,
    MPSNNGraph,
    MPSNNImageNode,
    MPSNNLanczosScaleNode,
    MPSNNPaddingMethod,
    MPSOffset,
    MPSState,
    MTLCreateSystemDefaultDevice,
    MTLDevice,
    MTLSize,
)

Prediction = tuple[int, float, tuple[float, ...]]  # (class, score, (x, y, w, h))

INPUT_WIDTH = 416
INPUT_HEIGHT = 416
ANCHORS = [1.08, 1.19, 3.42, 4.41, 6.63, 11.38, 9.42, 5.11, 16.62, 10.52]


class DataSource:
    """Weights of one layer, laid out as the sample's .bin files: [weights | mean | variance | gamma | beta]."""

    def __init__(self, name: str, kernel_width: int, kernel_height: int, input_feature_channels: int,
                 output_feature_channels: int, use_leaky: bool = True,
                 rng: Optional[np.random.Generator] = None) -> None:
        self.name = name
        self.kernel_width = kernel_width
        self.kernel_height = kernel_height
        self.input_feature_channels = input_feature_channels
        self.output_feature_channels = output_feature_channels
        self.use_leaky = use_leaky
        self.rng = rng
        self.data: Optional[npt.NDArray[np.float32]] = None

    def descriptor(self) -> MPSCNNConvolutionDescriptor:
        desc = MPSCNNConvolutionDescriptor(kernel_width=self.kernel_width, kernel_height=self.kernel_height,
                                           input_feature_channels=self.input_feature_channels,
                                           output_feature_channels=self.output_feature_channels)
        if self.use_leaky:
            desc.neuron_type = MPSCNNNeuronType.relu  # deprecated in MPS (and here: a DeprecationWarning)
            desc.neuron_parameter_a = 0.1
            assert self.data is not None  # load() comes first
            weights_size = self.output_feature_channels * self.kernel_height * self.kernel_width * \
                self.input_feature_channels
            c = self.output_feature_channels
            mean = self.data[weights_size:weights_size + c]
            variance = self.data[weights_size + c:weights_size + 2 * c]
            gamma = self.data[weights_size + 2 * c:weights_size + 3 * c]
            beta = self.data[weights_size + 3 * c:weights_size + 4 * c]
            desc.set_batch_normalization_parameters_for_inference(mean, variance, gamma, beta, 1e-3)
        else:
            desc.neuron_type = MPSCNNNeuronType.none
        return desc

    def weights(self) -> npt.NDArray[np.float32]:
        count = self.output_feature_channels * self.kernel_height * self.kernel_width * self.input_feature_channels
        assert self.data is not None  # load() comes first
        return self.data[:count]

    def bias_terms(self) -> Optional[npt.NDArray[np.float32]]:
        if self.use_leaky:
            return None
        return np.zeros(self.output_feature_channels, np.float32)

    def load(self) -> bool:
        # The sample reads <name>.bin from the app bundle; random values of the same layout here
        # (made once: purge() keeps them, so every load() sees the same layer).
        if self.data is not None:
            return True
        assert self.rng is not None
        count = self.output_feature_channels * self.kernel_height * self.kernel_width * self.input_feature_channels
        fan_in = self.kernel_height * self.kernel_width * self.input_feature_channels
        c = self.output_feature_channels
        weights = self.rng.standard_normal(count).astype(np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        mean = self.rng.standard_normal(c).astype(np.float32) * 0.1
        variance = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        gamma = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        beta = self.rng.standard_normal(c).astype(np.float32) * 0.1
        self.data = np.concatenate([weights, mean, variance, gamma, beta]) if self.use_leaky else weights
        return True

    def purge(self) -> None:
        pass

    def label(self) -> str:
        return self.name

    def data_type(self) -> MPSDataType:
        return MPSDataType.float32


class Pool6Padding:
    """The padding of the pool6 layer: size same, the kernel moved by one pixel, clamped edges."""

    def __init__(self) -> None:
        self.kernels_seen: list[str] = []

    def padding_method(self) -> MPSNNPaddingMethod:
        return MPSNNPaddingMethod.custom | MPSNNPaddingMethod.size_same

    def destination_image_descriptor(self, source_images: list[MPSImage], source_states: Optional[list[MPSState]],
                                     kernel: MPSKernel,
                                     suggested_descriptor: MPSImageDescriptor) -> MPSImageDescriptor:
        if isinstance(kernel, MPSCNNPooling):
            kernel.offset = MPSOffset(x=1, y=1, z=0)
            kernel.edge_mode = MPSImageEdgeMode.clamp
            self.kernels_seen.append(type(kernel).__name__)
        return suggested_descriptor

    def label(self) -> str:
        return "Pool6Padding"


class YOLO:
    def __init__(self, device: MTLDevice, rng: np.random.Generator) -> None:
        self.device = device
        self.rng = rng
        self.data_sources: list[DataSource] = []
        input_image = MPSNNImageNode(handle=None)
        # MPS takes MTLSize(width: 416, height: 416, depth: 3); channels are never resampled, depth is 1 here.
        scale = MPSNNLanczosScaleNode(source=input_image, output_size=MTLSize(width=INPUT_WIDTH,
                                                                              height=INPUT_HEIGHT, depth=1))
        conv1 = MPSCNNConvolutionNode(source=scale.result_image, weights=self.data_source("conv1", 3, 3, 3, 16))
        pool1 = MPSCNNPoolingMaxNode(source=conv1.result_image, filter_size=2)
        conv2 = MPSCNNConvolutionNode(source=pool1.result_image, weights=self.data_source("conv2", 3, 3, 16, 32))
        pool2 = MPSCNNPoolingMaxNode(source=conv2.result_image, filter_size=2)
        conv3 = MPSCNNConvolutionNode(source=pool2.result_image, weights=self.data_source("conv3", 3, 3, 32, 64))
        pool3 = MPSCNNPoolingMaxNode(source=conv3.result_image, filter_size=2)
        conv4 = MPSCNNConvolutionNode(source=pool3.result_image, weights=self.data_source("conv4", 3, 3, 64, 128))
        pool4 = MPSCNNPoolingMaxNode(source=conv4.result_image, filter_size=2)
        conv5 = MPSCNNConvolutionNode(source=pool4.result_image, weights=self.data_source("conv5", 3, 3, 128, 256))
        pool5 = MPSCNNPoolingMaxNode(source=conv5.result_image, filter_size=2)
        conv6 = MPSCNNConvolutionNode(source=pool5.result_image, weights=self.data_source("conv6", 3, 3, 256, 512))
        # pool6 has stride 1 and clamps its edges: it gets its own padding policy.
        pool6 = MPSCNNPoolingMaxNode(source=conv6.result_image, filter_size=2, stride=1)
        self.pool6_padding = Pool6Padding()
        pool6.padding_policy = self.pool6_padding
        conv7 = MPSCNNConvolutionNode(source=pool6.result_image, weights=self.data_source("conv7", 3, 3, 512, 1024))
        conv8 = MPSCNNConvolutionNode(source=conv7.result_image,
                                      weights=self.data_source("conv8", 3, 3, 1024, 1024))
        # The final layer: a 1x1 kernel and no activation function.
        conv9 = MPSCNNConvolutionNode(source=conv8.result_image,
                                      weights=self.data_source("conv9", 1, 1, 1024, 125, use_leaky=False))
        self.graph = MPSNNGraph(self.device, result_image=conv9.result_image)
        # graph.options = MPSKernelOptions.verbose  # prints the compiled plan, as in the sample's comment

    def data_source(self, name: str, kernel_width: int, kernel_height: int, input_feature_channels: int,
                    output_feature_channels: int, use_leaky: bool = True) -> DataSource:
        source = DataSource(name, kernel_width, kernel_height, input_feature_channels, output_feature_channels,
                            use_leaky=use_leaky, rng=self.rng)
        self.data_sources.append(source)
        return source

    def predict(self, image: MPSImage, completion_handler: Callable[[dict[str, Any]], None]) -> None:
        start_time = time.perf_counter()

        def done(output_image: Optional[MPSImage], error: Optional[str]) -> None:
            predictions = self.compute_bounding_boxes(output_image) if output_image is not None else []
            completion_handler({"predictions": predictions, "elapsed": time.perf_counter() - start_time,
                                "output": output_image, "error": error})

        self.graph.execute_async([image], done)

    def compute_bounding_boxes(self, image: MPSImage) -> list[Prediction]:
        """The sample's decoding of the 13x13x125 grid (5 boxes of 4 coordinates, a score, 20 classes)."""
        features = image.numpy()[0]  # (13, 13, 125): channels are contiguous here, no texture slices
        block_size, boxes_per_cell, number_of_classes = 32.0, 5, 20
        predictions: list[Prediction] = []
        for cy in range(13):
            for cx in range(13):
                for b in range(boxes_per_cell):
                    channel = b * (number_of_classes + 5)
                    tx, ty, tw, th, tc = features[cy, cx, channel:channel + 5].astype(np.float64)
                    x = (cx + sigmoid(tx)) * block_size
                    y = (cy + sigmoid(ty)) * block_size
                    w = np.exp(tw) * ANCHORS[2 * b] * block_size
                    h = np.exp(th) * ANCHORS[2 * b + 1] * block_size
                    confidence = sigmoid(tc)
                    classes = softmax(features[cy, cx, channel + 5:channel + 5 + number_of_classes].astype(np.float64))
                    detected_class = int(classes.argmax())
                    confidence_in_class = classes[detected_class] * confidence
                    if confidence_in_class > 0.3:
                        rect = tuple(round(float(v), 1) for v in (x - w / 2, y - h / 2, w, h))
                        predictions.append((detected_class, round(float(confidence_in_class), 3), rect))
        return sorted(predictions, key=lambda p: -p[1])


def sigmoid(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: Any) -> Any:
    e = np.exp(x - x.max())
    return e / e.sum()


def main(seed: int = 0, quiet: bool = False) -> tuple[YOLO, npt.NDArray[np.uint8], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    device = MTLCreateSystemDefaultDevice()
    yolo = YOLO(device, rng)
    frame = rng.integers(0, 256, (1, 480, 640, 3), dtype=np.uint8)  # a camera frame, unorm8 pixels in [0, 1]
    image = MPSImage.from_numpy(frame)
    finished = threading.Event()
    result: dict[str, Any] = {}

    def handler(r: dict[str, Any]) -> None:
        result.update(r)
        finished.set()

    yolo.predict(image, handler)
    if not finished.wait(120):
        raise TimeoutError("TinyYOLO did not complete")
    if result["error"] is not None:
        raise RuntimeError(result["error"])
    if not quiet:
        print(f"TinyYOLO graph (random weights): {frame.shape[2]}x{frame.shape[1]} frame -> "
              f"{result['output'].width}x{result['output'].height}x{result['output'].feature_channels} grid in "
              f"{result['elapsed']:.2f} s on {device.name}; pool6 hook saw {yolo.pool6_padding.kernels_seen}")
        print(f"{len(result['predictions'])} of 845 boxes score over 0.3; best (class, score, x/y/w/h):",
              result["predictions"][:2])
    return yolo, frame, result


if __name__ == "__main__":
    main()
