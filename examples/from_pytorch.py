"""A small PyTorch network moved to an MPSNNGraph, showing each conversion of the README's "Coming
from PyTorch" table: OIHW weights to OHWI, NCHW tensors to NHWC images, PyTorch's floor-mode pooling
sizes (validOnly padding), count_include_pad=False average pooling (clamp edges), and a Linear after
Flatten (its weights permuted from PyTorch's (C, H, W) flatten order to MPS's (H, W, C)). The weight
layout rules live in mpsnn.conversions, which mpsnn.onnx (the ONNX importer) uses too.

    pip install torch==2.13.0   # CPU build; see benchmarks/README.md
    python examples/from_pytorch.py
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, cast

import numpy as np

import mpsnn
from mpsnn import (ArrayConvolutionDataSource, MPSCNNConvolutionDescriptor, MPSCNNConvolutionNode,
                   MPSCNNFullyConnectedNode, MPSCNNNeuronReLUNode, MPSCNNPoolingAverageNode, MPSCNNPoolingMaxNode,
                   MPSImage, MPSNNDefaultPadding, MPSNNGraph, MPSNNImageNode, MPSNNPaddingMethod)
from mpsnn.conversions import convolution_weights_from_oihw, fully_connected_weights_from_nchw_flatten

if TYPE_CHECKING:
    from torch import nn


def conv_source(conv: nn.Conv2d, label: str) -> ArrayConvolutionDataSource:
    """nn.Conv2d -> data source: weights OIHW (out, in, kh, kw) -> OHWI (out, kh, kw, in)."""
    w = conv.weight.detach().numpy()
    d = MPSCNNConvolutionDescriptor(kernel_width=w.shape[3], kernel_height=w.shape[2],
                                    input_feature_channels=w.shape[1], output_feature_channels=w.shape[0])
    assert conv.bias is not None
    return ArrayConvolutionDataSource(d, convolution_weights_from_oihw(w), conv.bias.detach().numpy().copy(),
                                      label=label)


def linear_source(linear: nn.Linear, c: int, h: int, w: int, label: str) -> ArrayConvolutionDataSource:
    """nn.Linear after nn.Flatten of a (C, H, W) map -> a fully connected node with an HxW kernel:
    the input index c*H*W + y*W + x becomes the OHWI element (out, y, x, c)."""
    wt = fully_connected_weights_from_nchw_flatten(linear.weight.detach().numpy(), c, h, w)
    d = MPSCNNConvolutionDescriptor(kernel_width=w, kernel_height=h, input_feature_channels=c,
                                    output_feature_channels=wt.shape[0])
    return ArrayConvolutionDataSource(d, wt, linear.bias.detach().numpy().copy(), label=label)


def main() -> int:
    try:
        import torch
        from torch import nn
    except ImportError:
        print("this example needs PyTorch: pip install torch==2.13.0")
        return 0
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),                                            # 9x9 -> 4x4 (floor)
        nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
        nn.Flatten(), nn.Linear(12 * 4 * 4, 10),
    ).eval()
    conv1, conv2, linear = cast(nn.Conv2d, net[0]), cast(nn.Conv2d, net[3]), cast(nn.Linear, net[7])  # typed layers

    x = MPSNNImageNode()
    c1 = MPSCNNConvolutionNode(source=x, weights=conv_source(conv1, "conv1"))  # sizeSame = padding 1 for 3x3
    r1 = MPSCNNNeuronReLUNode(source=c1.result_image)
    p1 = MPSCNNPoolingMaxNode(source=r1.result_image, filter_size=2)
    p1.padding_policy = MPSNNDefaultPadding.padding_with_method(MPSNNPaddingMethod.size_valid_only)  # floor sizes
    c2 = MPSCNNConvolutionNode(source=p1.result_image, weights=conv_source(conv2, "conv2"))
    r2 = MPSCNNNeuronReLUNode(source=c2.result_image)
    a2 = MPSCNNPoolingAverageNode(source=r2.result_image, filter_size=3, stride=1)  # clamp edges: divide by taps inside
    fc = MPSCNNFullyConnectedNode(source=a2.result_image, weights=linear_source(linear, 12, 4, 4, "fc"))
    graph = MPSNNGraph(mpsnn.MTLCreateSystemDefaultDevice(), result_image=fc.result_image)

    images = torch.randn(2, 3, 9, 9)                                 # NCHW
    nhwc = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())  # the (N, H, W, C) images MPS takes
    result = graph.run([nhwc])
    assert isinstance(result, MPSImage)  # one result image (a list for several results)
    ours = result.numpy().reshape(2, 10)
    with torch.no_grad():
        theirs = net(images).numpy()
    diff = float(np.abs(ours - theirs).max())
    print(graph.plan_description([nhwc]), end="")
    print(f"PyTorch vs mpsnn, 2 images x 10 outputs: max abs difference {diff:.2e}")
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
