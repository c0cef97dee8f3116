"""Benchmark networks built three times from one set of weights: PyTorch, ONNX Runtime, mpsnn.

Each network is described by a plain dict of float32 NumPy arrays (the single source of truth):

* convolution and fully connected weights ``<name>.weight``, layout OHWI = (Cout, KH, KW, Cin),
  optional ``<name>.bias`` (Cout,);
* batch normalization ``<name>.gamma``, ``.beta``, ``.mean``, ``.var`` (C,), epsilon ``BN_EPS``.

The builders turn that dict into a PyTorch eager module (channels_last, eval), an ONNX Runtime
session (exported from the PyTorch module) and an ``MPSNNGraph``. Every framework takes the same
input, a C-contiguous float32 NumPy array (N, H, W, C), and returns softmax probabilities (N, classes).

Networks:

* ``mnist``: the inference form of the MNIST classifier of graph.md §8.1 (28x28x1 input).
* ``resnet18``, ``resnet50``: the torchvision architectures (ResNet v1.5: the stride of a bottleneck
  sits on its 3x3 convolution), 224x224x3 input, 1000 classes, softmax at the end.

Padding: the MPS default policy (``sizeSame``, centred, remainder top-left; nodes.md §1.2) reproduces
PyTorch's symmetric padding for every ResNet window (``check_resnet_padding`` verifies it with the
formula), and the MNIST pools use ``padding_for_tensorflow_average_pooling()``, which on 28 and 14
pixels adds no padding at all, like ``nn.MaxPool2d(2, 2)``.

PyTorch, ONNX Runtime and onnx are benchmark extras, never package dependencies; each is imported
only by the builder that needs it.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

BN_EPS = 1e-5

MODEL_NAMES = ("mnist", "resnet18", "resnet50")

# (H, W, C) of one input image and number of classes, per model.
INPUT_HWC = {"mnist": (28, 28, 1), "resnet18": (224, 224, 3), "resnet50": (224, 224, 3)}
NUM_CLASSES = {"mnist": 10, "resnet18": 1000, "resnet50": 1000}

# ResNet stage layout: (block kind, blocks per stage).
RESNET_LAYOUT = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet50": ("bottleneck", (3, 4, 6, 3))}
STAGE_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4

Weights = dict[str, np.ndarray]


# --------------------------------------------------------------------------------------------------
# Weights (seeded NumPy, float32)
# --------------------------------------------------------------------------------------------------


class _WeightMaker:
    """Draws every tensor of one model from one seeded generator, in a fixed order."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.w: Weights = {}

    def conv(self, name: str, cout: int, k: int, cin: int, *, bias: bool, gain: float = 2.0) -> None:
        """OHWI weights with std sqrt(gain / fan_in) (He for gain 2); bias small if requested."""
        fan_in = k * k * cin
        std = math.sqrt(gain / fan_in)
        self.w[f"{name}.weight"] = (self.rng.standard_normal((cout, k, k, cin)) * std).astype(np.float32)
        if bias:
            self.w[f"{name}.bias"] = (self.rng.standard_normal(cout) * 0.05).astype(np.float32)

    def bn(self, name: str, c: int, *, gamma_scale: float = 1.0) -> None:
        """Random but sane inference statistics: mean near 0, variance near 1, gamma near gamma_scale."""
        r = self.rng
        self.w[f"{name}.gamma"] = (r.uniform(0.8, 1.2, c) * gamma_scale).astype(np.float32)
        self.w[f"{name}.beta"] = (r.standard_normal(c) * 0.1).astype(np.float32)
        self.w[f"{name}.mean"] = (r.standard_normal(c) * 0.1).astype(np.float32)
        self.w[f"{name}.var"] = r.uniform(0.8, 1.2, c).astype(np.float32)


def mnist_weights(seed: int = 0) -> Weights:
    m = _WeightMaker(seed)
    m.conv("conv1", 32, 5, 1, bias=True)
    m.conv("conv2", 64, 5, 32, bias=True)
    # fc1 is a 7x7 "convolution" over the 7x7x64 map: OHWI (1024, 7, 7, 64).
    m.conv("fc1", 1024, 7, 64, bias=True)
    # Last layer with unit gain: logits O(1), so the softmax is not saturated and the check is strict.
    m.conv("fc2", 10, 1, 1024, bias=True, gain=1.0)
    return m.w


def _resnet_blocks(model: str) -> list[tuple[str, int, int, int]]:
    """(block name, input channels, width, stride) for every residual block, in order."""
    _, counts = RESNET_LAYOUT[model]
    kind = RESNET_LAYOUT[model][0]
    expansion = BOTTLENECK_EXPANSION if kind == "bottleneck" else 1
    blocks = []
    cin = 64
    for stage, (width, n) in enumerate(zip(STAGE_WIDTHS, counts, strict=True), start=1):
        for i in range(n):
            stride = 2 if (i == 0 and stage > 1) else 1
            blocks.append((f"layer{stage}.{i}", cin, width, stride))
            cin = width * expansion
    return blocks


def resnet_out_channels(model: str) -> int:
    kind = RESNET_LAYOUT[model][0]
    return STAGE_WIDTHS[-1] * (BOTTLENECK_EXPANSION if kind == "bottleneck" else 1)


def resnet_weights(model: str, seed: int = 0) -> Weights:
    """Torchvision-shaped ResNet weights. The last batch norm of every residual branch gets a small
    gamma (0.3) so that the residual sum grows slowly and activations stay O(1) through 16 blocks."""
    kind, _ = RESNET_LAYOUT[model]
    m = _WeightMaker(seed)
    m.conv("conv1", 64, 7, 3, bias=False)
    m.bn("bn1", 64)
    for name, cin, width, stride in _resnet_blocks(model):
        if kind == "basic":
            cout = width
            m.conv(f"{name}.conv1", width, 3, cin, bias=False)
            m.bn(f"{name}.bn1", width)
            m.conv(f"{name}.conv2", width, 3, width, bias=False)
            m.bn(f"{name}.bn2", width, gamma_scale=0.3)
        else:
            cout = width * BOTTLENECK_EXPANSION
            m.conv(f"{name}.conv1", width, 1, cin, bias=False)
            m.bn(f"{name}.bn1", width)
            m.conv(f"{name}.conv2", width, 3, width, bias=False)
            m.bn(f"{name}.bn2", width)
            m.conv(f"{name}.conv3", cout, 1, width, bias=False)
            m.bn(f"{name}.bn3", cout, gamma_scale=0.3)
        if stride != 1 or cin != cout:
            m.conv(f"{name}.downsample.0", cout, 1, cin, bias=False, gain=1.0)
            m.bn(f"{name}.downsample.1", cout)
    m.conv("fc", 1000, 1, resnet_out_channels(model), bias=True, gain=1.0)
    return m.w


def make_weights(model: str, seed: int = 0) -> Weights:
    if model == "mnist":
        return mnist_weights(seed)
    if model in RESNET_LAYOUT:
        return resnet_weights(model, seed)
    raise ValueError(f"unknown model {model!r}; choose from {MODEL_NAMES}")


def make_input(model: str, batch: int, seed: int = 1) -> np.ndarray:
    """Standard-normal NHWC float32 input, C-contiguous."""
    h, w, c = INPUT_HWC[model]
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(rng.standard_normal((batch, h, w, c)).astype(np.float32))


# --------------------------------------------------------------------------------------------------
# Padding check (nodes.md §1.2)
# --------------------------------------------------------------------------------------------------


def mps_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(result size D, pad before P, pad after) of the MPS default policy: sizeSame, centred,
    remainder top-left."""
    d = -(-size // stride)
    e = (d - 1) * stride + kernel - size
    p = int((e + 1) / 2)  # C-style truncation toward zero
    return d, p, e - p


def torch_padding_result(size: int, kernel: int, stride: int, pad: int) -> tuple[int, int, int]:
    """(result size, pad before, pad actually used after) of PyTorch's symmetric padding."""
    d = (size + 2 * pad - kernel) // stride + 1
    used_after = (d - 1) * stride + kernel - size - pad
    return d, pad, used_after


def check_resnet_padding() -> list[str]:
    """Every (size, kernel, stride, torch pad) window of ResNet-18/50 at 224x224; returns mismatches."""
    windows = [(224, 7, 2, 3), (112, 3, 2, 1)]  # stem convolution, stem max pool
    for size in (56, 28, 14, 7):
        windows += [(size, 3, 1, 1), (size, 1, 1, 0)]
    for size in (56, 28, 14):
        windows += [(size, 3, 2, 1), (size, 1, 2, 0)]
    bad = []
    for size, k, s, p in windows:
        mps = mps_same_padding(size, k, s)
        pt = torch_padding_result(size, k, s, p)
        # A negative "after" (the last source column is never read) is fine as long as both agree.
        if mps != pt:
            bad.append(f"S={size} K={k} s={s} p={p}: mps (D, before, after)={mps} torch={pt}")
    return bad


# --------------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------------


def _torch_modules() -> Any:
    """Module classes, defined lazily so that importing this file does not need torch."""
    import torch
    from torch import nn

    def conv(w: Weights, name: str, stride: int, padding: int) -> nn.Conv2d:
        wt = w[f"{name}.weight"]
        cout, kh, kw, cin = wt.shape
        bias = f"{name}.bias" in w
        m = nn.Conv2d(cin, cout, (kh, kw), stride=stride, padding=padding, bias=bias)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(wt).permute(0, 3, 1, 2))  # OHWI -> OIHW
            if bias:
                m.bias.copy_(torch.from_numpy(w[f"{name}.bias"]))
        m.weights_name = name  # the key prefix in the weights dict (bench_train.py pairs parameters by it)
        return m

    def bn(w: Weights, name: str) -> nn.BatchNorm2d:
        c = w[f"{name}.gamma"].shape[0]
        m = nn.BatchNorm2d(c, eps=BN_EPS)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(w[f"{name}.gamma"]))
            m.bias.copy_(torch.from_numpy(w[f"{name}.beta"]))
            m.running_mean.copy_(torch.from_numpy(w[f"{name}.mean"]))
            m.running_var.copy_(torch.from_numpy(w[f"{name}.var"]))
        m.weights_name = name
        return m

    def linear(w: Weights, name: str) -> nn.Linear:
        wt = w[f"{name}.weight"]
        cout = wt.shape[0]
        # OHWI flattened per output = the (row, column, channel) order in which MPS reads its window.
        flat = wt.reshape(cout, -1)
        m = nn.Linear(flat.shape[1], cout)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(flat))
            m.bias.copy_(torch.from_numpy(w[f"{name}.bias"]))
        m.weights_name = name
        return m

    class NHWCInput(nn.Module):
        """Accepts (N, H, W, C) and hands (N, C, H, W) in channels_last memory to the network.
        The permute is a view: no copy in eager mode; a Transpose node in the ONNX graph."""

        def __init__(self, body: nn.Module) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x.permute(0, 3, 1, 2))

    class MNIST(nn.Module):
        """Ends in a softmax unless ``softmax=False`` (logits, for training with a loss)."""

        def __init__(self, w: Weights, softmax: bool = True) -> None:
            super().__init__()
            self.softmax = softmax
            self.conv1 = conv(w, "conv1", 1, 2)
            self.conv2 = conv(w, "conv2", 1, 2)
            self.pool = nn.MaxPool2d(2, 2)
            self.fc1 = linear(w, "fc1")
            self.fc2 = linear(w, "fc2")
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(self.relu(self.conv1(x)))
            x = self.pool(self.relu(self.conv2(x)))
            # MPS flattens the 7x7x64 window as (row, column, channel): NCHW -> NHWC first.
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            x = self.fc2(self.relu(self.fc1(x)))
            return torch.softmax(x, dim=1) if self.softmax else x

    class BasicBlock(nn.Module):
        def __init__(self, w: Weights, name: str, stride: int) -> None:
            super().__init__()
            self.conv1 = conv(w, f"{name}.conv1", stride, 1)
            self.bn1 = bn(w, f"{name}.bn1")
            self.conv2 = conv(w, f"{name}.conv2", 1, 1)
            self.bn2 = bn(w, f"{name}.bn2")
            self.relu = nn.ReLU(inplace=True)
            self.downsample = _downsample(w, name, stride)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return self.relu(y + identity)

    class Bottleneck(nn.Module):
        def __init__(self, w: Weights, name: str, stride: int) -> None:
            super().__init__()
            self.conv1 = conv(w, f"{name}.conv1", 1, 0)
            self.bn1 = bn(w, f"{name}.bn1")
            self.conv2 = conv(w, f"{name}.conv2", stride, 1)
            self.bn2 = bn(w, f"{name}.bn2")
            self.conv3 = conv(w, f"{name}.conv3", 1, 0)
            self.bn3 = bn(w, f"{name}.bn3")
            self.relu = nn.ReLU(inplace=True)
            self.downsample = _downsample(w, name, stride)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + identity)

    def _downsample(w: Weights, name: str, stride: int) -> nn.Module | None:
        if f"{name}.downsample.0.weight" not in w:
            return None
        return nn.Sequential(conv(w, f"{name}.downsample.0", stride, 0), bn(w, f"{name}.downsample.1"))

    class ResNet(nn.Module):
        """Ends in a softmax unless ``softmax=False`` (logits, for training with a loss)."""

        def __init__(self, w: Weights, model: str, softmax: bool = True) -> None:
            super().__init__()
            self.softmax = softmax
            block = BasicBlock if RESNET_LAYOUT[model][0] == "basic" else Bottleneck
            self.conv1 = conv(w, "conv1", 2, 3)
            self.bn1 = bn(w, "bn1")
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.blocks = nn.Sequential(*[block(w, name, s) for name, _, _, s in _resnet_blocks(model)])
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = linear(w, "fc")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.blocks(x)
            x = self.fc(torch.flatten(self.avgpool(x), 1))
            return torch.softmax(x, dim=1) if self.softmax else x

    return NHWCInput, MNIST, ResNet


def build_torch(model: str, w: Weights, softmax: bool = True) -> Any:
    """PyTorch eager module in eval mode, channels_last; call it inside ``torch.inference_mode()``
    with an (N, H, W, C) float32 tensor. ``softmax=False``: it returns the logits (for training:
    switch it to ``.train()``). Every convolution, linear and batch-norm module carries
    ``weights_name``, its key prefix in ``w``."""
    import torch

    nhwc_input, mnist_cls, resnet_cls = _torch_modules()
    body = mnist_cls(w, softmax) if model == "mnist" else resnet_cls(w, model, softmax)
    net = nhwc_input(body).eval().to(memory_format=torch.channels_last)
    return net


def torch_runner(net: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Callable NHWC NumPy in -> (N, classes) NumPy out (a view of the result, not copied)."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    return run


# --------------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------------


def export_onnx(net: Any, model: str, path: str) -> None:
    """torch.onnx.export, opset 17, dynamic batch axis. Uses the TorchScript exporter
    (``dynamo=False``) because the dynamo exporter needs onnxscript, which we do not install."""
    import torch

    h, w, c = INPUT_HWC[model]
    example = torch.zeros(2, h, w, c)
    with torch.no_grad():
        torch.onnx.export(
            net,
            (example,),
            path,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["probabilities"],
            dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
            do_constant_folding=True,
        )


def build_onnxruntime(net: Any, model: str, threads: int = 2) -> Any:
    """ONNX Runtime session (CPUExecutionProvider, all graph optimizations, ``threads`` intra-op
    threads) for the exported PyTorch module. The .onnx file lives in a temporary directory."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="mpsnn_bench_") as tmp:
        path = os.path.join(tmp, f"{model}.onnx")
        export_onnx(net, model, path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def onnxruntime_runner(sess: Any) -> Callable[[np.ndarray], np.ndarray]:
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: x})[0]

    return run


# --------------------------------------------------------------------------------------------------
# mpsnn
# --------------------------------------------------------------------------------------------------


def mpsnn_logits(
    model: str, w: Weights, optimizer: Callable[[], Any] | None = None, input_size: int | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """The network up to its logits as mpsnn nodes: (input image node, logits image node, data
    sources by weights name). ``optimizer``: a function returning a new MPSNNOptimizer, called once
    per data source, which makes every convolution and batch-norm data source trainable (each
    with its own optimizer, as in Apple's sample). ``input_size``: a ResNet's input height and width
    (a multiple of 32; default 224), which sets the global average pooling's window."""
    import mpsnn as m

    sources: dict[str, Any] = {}

    def trainer() -> dict[str, Any]:
        return {} if optimizer is None else {"optimizer": optimizer()}

    # Each helper takes an image node and returns the result image node of what it creates.
    def conv(src: Any, name: str, stride: int = 1, fully_connected: bool = False) -> Any:
        wt = np.array(w[f"{name}.weight"], dtype=np.float32)  # own copies: a trainable source trains them
        cout, kh, kw, cin = wt.shape
        d = m.MPSCNNConvolutionDescriptor(
            kernel_width=kw, kernel_height=kh, input_feature_channels=cin, output_feature_channels=cout
        )
        d.stride_in_pixels_x = stride
        d.stride_in_pixels_y = stride
        bias = w.get(f"{name}.bias")
        ds = m.ArrayConvolutionDataSource(d, wt, None if bias is None else bias.copy(), label=name, **trainer())
        sources[name] = ds
        node_cls = m.MPSCNNFullyConnectedNode if fully_connected else m.MPSCNNConvolutionNode
        node = node_cls(source=src, weights=ds)
        node.label = name
        return node.result_image

    def bn(src: Any, name: str) -> Any:
        ds = m.ArrayBatchNormalizationDataSource(
            *(w[f"{name}.{k}"].copy() for k in ("gamma", "beta", "mean", "var")), epsilon=BN_EPS, label=name,
            **trainer()
        )
        sources[name] = ds
        node = m.MPSCNNBatchNormalizationNode(source=src, data_source=ds)
        node.label = name
        return node.result_image

    def relu(src: Any) -> Any:
        return m.MPSCNNNeuronReLUNode(source=src).result_image

    def max_pool(src: Any, size: int, stride: int, padding: Any = None) -> Any:
        node = m.MPSCNNPoolingMaxNode(source=src, filter_size=size, stride=stride)
        if padding is not None:
            node.padding_policy = padding
        return node.result_image

    x = m.MPSNNImageNode(handle=None)

    if model == "mnist":
        tf_pool = m.MPSNNDefaultPadding.padding_for_tensorflow_average_pooling()
        t = max_pool(relu(conv(x, "conv1")), 2, 2, tf_pool)
        t = max_pool(relu(conv(t, "conv2")), 2, 2, tf_pool)
        t = relu(conv(t, "fc1", fully_connected=True))
        t = conv(t, "fc2", fully_connected=True)
    else:
        size = INPUT_HWC[model][0] if input_size is None else input_size
        if size % 32:
            raise ValueError(f"{model} input size {size} is not a multiple of 32")
        kind, _ = RESNET_LAYOUT[model]
        t = max_pool(relu(bn(conv(x, "conv1", stride=2), "bn1")), 3, 2)
        for name, _, _, stride in _resnet_blocks(model):
            if f"{name}.downsample.0.weight" in w:
                identity = bn(conv(t, f"{name}.downsample.0", stride=stride), f"{name}.downsample.1")
            else:
                identity = t
            if kind == "basic":
                y = relu(bn(conv(t, f"{name}.conv1", stride=stride), f"{name}.bn1"))
                y = bn(conv(y, f"{name}.conv2"), f"{name}.bn2")
            else:
                y = relu(bn(conv(t, f"{name}.conv1"), f"{name}.bn1"))
                y = relu(bn(conv(y, f"{name}.conv2", stride=stride), f"{name}.bn2"))
                y = bn(conv(y, f"{name}.conv3"), f"{name}.bn3")
            t = relu(m.MPSNNAdditionNode(left_source=y, right_source=identity).result_image)
        gap = m.MPSCNNPoolingAverageNode(source=t, filter_size=size // 32, stride=size // 32)
        gap.padding_policy = m.MPSNNDefaultPadding.padding_with_method(m.MPSNNPaddingMethod.size_valid_only)
        t = conv(gap.result_image, "fc", fully_connected=True)
    return x, t, sources


def build_mpsnn(model: str, w: Weights) -> Any:
    """MPSNNGraph (float32) whose result is the softmax node; run with ``graph.run([x_nhwc])``."""
    import mpsnn as m

    _, logits, _ = mpsnn_logits(model, w)
    sm = m.MPSCNNSoftMaxNode(source=logits)
    device = m.MTLCreateSystemDefaultDevice()
    graph = m.MPSNNGraph(device=device, result_image=sm.result_image, result_image_is_needed=True)
    graph.format = m.MPSImageFeatureChannelFormat.float32
    return graph


def mpsnn_runner(graph: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Callable NHWC NumPy in -> (N, classes) NumPy out; ``graph.run`` blocks until done."""

    def run(x: np.ndarray) -> np.ndarray:
        y = graph.run([x]).numpy()
        return y.reshape(y.shape[0], -1)

    return run
