"""Draws docs/mnist_training_graph.svg: the training graph of examples/mnist_training.py (Apple's
MNIST training sample), with the image sizes of one digit, via MPSNNGraph.save_picture
(needs Graphviz's `dot` on PATH).

    PYTHONPATH=python python tools/mnist_picture.py [output.svg]
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np

import mpsnn

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> None:
    out = pathlib.Path(argv[0]) if argv else ROOT / "docs" / "mnist_training_graph.svg"
    spec = importlib.util.spec_from_file_location("mnist_training", ROOT / "examples" / "mnist_training.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    device = mpsnn.MTLCreateSystemDefaultDevice()
    classifier = example.MNISTClassifierGraph(device, np.random.default_rng(0), batch_size=example.BATCH_SIZE)
    graph = classifier.training_graph
    graph.label = "MNIST training (examples/mnist_training.py)"
    digit = np.zeros((1, 28, 28, 1), np.float32)
    one_hot = np.zeros(example.LABEL_CHANNELS, np.float32)
    one_hot[3] = 1.0
    labels = mpsnn.MPSCNNLossLabels(device, mpsnn.MPSCNNLossDataDescriptor(
        one_hot, mpsnn.MPSDataLayout.HeightxWidthxFeatureChannels, (1, 1, example.LABEL_CHANNELS)))
    out.parent.mkdir(parents=True, exist_ok=True)
    graph.save_picture(out, source_images=[digit], source_states=[labels])
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
