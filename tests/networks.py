"""Three example networks built from many mpsnn nodes, each in three forms with the same weights:

* ``build()``: the MPSNNGraph node chain (fresh nodes on every call);
* ``reference(x)``: a float64 NumPy forward pass composed from the oracles in ``tests/reference``;
* ``torch_model()``: the same model as a PyTorch user would write it (NCHW, OIHW weights, native
  padding arguments), in float64. PyTorch is imported only there.

Networks (all on odd spatial sizes, batch > 1, small channel counts):

* :class:`AlexNet` — 11x11 stride-4 valid convolution, ReLU, cross-channel normalization (LRN),
  3x3 stride-2 max pooling, grouped 5x5 / 3x3 convolutions, a convolution with a fused ReLU in its
  descriptor, fully connected layers (the first on a 2x2x16 source, so the row-column-channel
  flatten order matters), dropout (the identity in inference), softmax.
* :class:`UNet` — encoder/decoder with a stride-2 convolution paired with a transposed convolution
  through its gradient state (back to the odd input size), 2x2 max pooling, bilinear upsampling with
  align_corners off (decoder) and on (a side head), two skip concatenations: one with a 5-channel
  source in the middle (3 zero gap channels), one whose last source has 6 channels (14 channels in
  total, no gap).
* :class:`StyleTransfer` — Johnson-style image transformation net: 9x9 / stride-2 convolutions with
  zero padding (convolutions only zero-pad; mpsnn has no MPSNNPadNode for reflection padding),
  instance normalization from an MPSCNNInstanceNormalizationDataSource, ReLU, two residual blocks
  joined by MPSNNAdditionNode, nearest upsampling + convolution, and a final scaled tanh neuron.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

import mpsnn
import reference as R

PM = mpsnn.MPSNNPaddingMethod


def he_conv(rng, cin, cout, kh, kw, groups=1, bias=True):
    """OHWI float32 weights with He scaling (keeps activations O(1) through deep stacks) and a bias."""
    fan_in = kh * kw * (cin // groups)
    w = (rng.standard_normal((cout, kh, kw, cin // groups)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    b = (0.1 * rng.standard_normal(cout)).astype(np.float32) if bias else None
    return w, b


class Conv:
    """One convolution-like layer: weights (OHWI), bias, geometry and the MPS padding method it uses
    (None = the node's default). Knows how to make its mpsnn node and its float64 reference."""

    def __init__(self, rng, cin, cout, k, stride=1, groups=1, method=None, fused_neuron=None, label=None):
        self.cin, self.cout, self.k, self.stride, self.groups = cin, cout, k, stride, groups
        self.method = method
        self.fused_neuron = fused_neuron      # MPSCNNNeuronType applied through the descriptor
        self.label = label
        self.w, self.b = he_conv(rng, cin, cout, k, k, groups)

    def data_source(self):
        d = mpsnn.MPSCNNConvolutionDescriptor(kernel_width=self.k, kernel_height=self.k,
                                              input_feature_channels=self.cin,
                                              output_feature_channels=self.cout)
        d.stride_in_pixels_x = d.stride_in_pixels_y = self.stride
        d.groups = self.groups
        if self.fused_neuron is not None:
            d.fused_neuron_descriptor = mpsnn.MPSNNNeuronDescriptor.cnn_neuron_descriptor(self.fused_neuron)
        return mpsnn.ArrayConvolutionDataSource(d, self.w, self.b, label=self.label)

    def node(self, src):
        n = mpsnn.MPSCNNConvolutionNode(source=src, weights=self.data_source())
        if self.method is not None:
            n.padding_policy = mpsnn.MPSNNDefaultPadding.padding_with_method(self.method)
        return n

    def geometry(self, hw):
        method = R.SIZE_SAME if self.method is None else int(self.method)
        return R.window_geometry(hw, (self.k, self.k), (self.stride, self.stride), (1, 1), method)

    def ref(self, x):
        geo = self.geometry(x.shape[1:3])
        y = R.conv2d(x, self.w, self.b, stride=(self.stride, self.stride), groups=self.groups, pad=geo['pad'],
                     out_hw=geo['out_hw'])
        if self.fused_neuron is not None:
            y = R.neuron(y, int(self.fused_neuron))
        return y

    def load_torch(self, module):
        """Copy the weights into an nn.Conv2d (OHWI -> OIHW; grouped layout is the same)."""
        import torch
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(self.w.transpose(0, 3, 1, 2).astype(np.float64)))
            module.bias.copy_(torch.from_numpy(self.b.astype(np.float64)))
        return module


def relu(src):
    return mpsnn.MPSCNNNeuronReLUNode(source=src).result_image


def relu_ref(x):
    return R.neuron(x, 'relu')


class Tap:
    """MPSHandle naming an exported interior image."""

    def __init__(self, name):
        self.name = name

    def label(self):
        return self.name


class Network:
    """Base: input shape, mpsnn graph building and the two references."""

    name = "network"
    input_shape = (1, 1, 1, 1)   # N, H, W, C

    def make_input(self, rng, n=None):
        shape = self.input_shape if n is None else (n,) + tuple(self.input_shape[1:])
        return rng.standard_normal(shape).astype(np.float32)

    def build(self):
        """Return (input image node, result image node, taps) of a fresh node chain; taps maps names
        to interior image nodes worth inspecting (see ``export_taps``)."""
        raise NotImplementedError

    def graph(self, device, fusion=True, poison=False, export_taps=False):
        """The MPSNNGraph of a fresh node chain. With export_taps the interior tap images are exported
        (returned through ``intermediate_images``) with :class:`Tap` handles, so
        ``[h.label() for h in graph.intermediate_image_handles]`` names them in order."""
        x, y, taps = self.build()
        if export_taps:
            for name, node in taps.items():
                node.export_from_graph = True
                node.handle = Tap(name)
        g = mpsnn.MPSNNGraph(device, result_image=y, result_image_is_needed=True)
        g.fusion_enabled = fusion
        g.poison_temporaries = poison
        return g

    def reference(self, x, with_taps=False):
        """float64 forward pass; with_taps also returns {name: float64 image} of the taps."""
        raise NotImplementedError

    def torch_model(self):
        raise NotImplementedError

    def torch_forward(self, x):
        """Run the PyTorch model on NHWC NumPy input in float64; returns NHWC NumPy."""
        import torch
        model = self.torch_model().double().eval()
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float64).transpose(0, 3, 1, 2)))
            y = model(t)
        return y.permute(0, 2, 3, 1).contiguous().numpy()


# ------------------------------------------------------------------------------------------------
# 1. AlexNet

class AlexNet(Network):
    name = "alexnet"
    input_shape = (3, 63, 71, 3)
    lrn = dict(size=5, alpha=1.0, beta=0.75, delta=2.0)
    keep_probability = 0.5

    def __init__(self, rng):
        self.conv1 = Conv(rng, 3, 8, 11, stride=4, method=PM.size_valid_only, label="conv1")   # 63x71 -> 14x16
        self.conv2 = Conv(rng, 8, 16, 5, groups=2, label="conv2")                          # 7x8
        self.conv3 = Conv(rng, 16, 24, 3, fused_neuron=mpsnn.MPSCNNNeuronType.reLU, label="conv3")  # 4x4
        self.conv4 = Conv(rng, 24, 24, 3, groups=2, label="conv4")
        self.conv5 = Conv(rng, 24, 16, 3, groups=2, label="conv5")
        # fully connected: fc1 covers the whole 2x2x16 source (OHWI = row, column, channel flatten)
        self.fc1 = Conv(rng, 16, 32, 2, label="fc1")
        self.fc2 = Conv(rng, 32, 32, 1, label="fc2")
        self.fc3 = Conv(rng, 32, 10, 1, label="fc3")
        self.fc3.w *= 4.0          # spread the logits so that the softmax is far from uniform

    def _lrn(self, src):
        n = mpsnn.MPSCNNCrossChannelNormalizationNode(source=src, kernel_size=self.lrn['size'])
        n.alpha, n.beta, n.delta = self.lrn['alpha'], self.lrn['beta'], self.lrn['delta']
        return n.result_image

    @staticmethod
    def _pool(src):
        return mpsnn.MPSCNNPoolingMaxNode(source=src, filter_size=3, stride=2).result_image

    @staticmethod
    def _fc(src, layer):
        return mpsnn.MPSCNNFullyConnectedNode(source=src, weights=layer.data_source()).result_image

    def build(self):
        taps = {}
        x = mpsnn.MPSNNImageNode(handle=None)
        h = taps["lrn1"] = self._lrn(relu(self.conv1.node(x).result_image))
        h = self._pool(h)
        h = self._pool(self._lrn(relu(self.conv2.node(h).result_image)))
        h = self.conv3.node(h).result_image                      # ReLU fused through the descriptor
        h = relu(self.conv4.node(h).result_image)
        h = taps["pool3"] = self._pool(relu(self.conv5.node(h).result_image))
        h = relu(self._fc(h, self.fc1))
        h = mpsnn.MPSCNNDropoutNode(source=h, keep_probability=self.keep_probability, seed=7).result_image
        h = relu(self._fc(h, self.fc2))
        h = mpsnn.MPSCNNDropoutNode(source=h, keep_probability=self.keep_probability, seed=8).result_image
        h = taps["logits"] = self._fc(h, self.fc3)
        return x, mpsnn.MPSCNNSoftMaxNode(source=h).result_image, taps

    def reference(self, x, with_taps=False):
        p = self.lrn

        def lrn(v):
            return R.cross_channel_norm(v, p['size'], p['alpha'], p['beta'], p['delta'])

        taps = {}
        h = np.asarray(x, np.float64)
        h = taps["lrn1"] = lrn(relu_ref(self.conv1.ref(h)))
        h = R.max_pool2d(h, (3, 3), (2, 2))
        h = R.max_pool2d(lrn(relu_ref(self.conv2.ref(h))), (3, 3), (2, 2))
        h = relu_ref(self.conv4.ref(self.conv3.ref(h)))
        h = taps["pool3"] = R.max_pool2d(relu_ref(self.conv5.ref(h)), (3, 3), (2, 2))
        h = relu_ref(R.fully_connected(h, self.fc1.w, self.fc1.b))
        h = relu_ref(R.fully_connected(R.dropout_inference(h), self.fc2.w, self.fc2.b))
        h = taps["logits"] = R.fully_connected(R.dropout_inference(h), self.fc3.w, self.fc3.b)
        y = R.softmax(h)
        return (y, taps) if with_taps else y

    def torch_model(self):
        import torch
        from torch import nn
        net = self

        def conv(layer, padding):
            return layer.load_torch(nn.Conv2d(layer.cin, layer.cout, layer.k, stride=layer.stride, padding=padding,
                                              groups=layer.groups))

        def linear(layer, chw):
            m = nn.Linear(int(np.prod(chw)), layer.cout)
            # OHWI -> O,(C,H,W): nn.Flatten flattens NCHW channel-first
            w = layer.w.transpose(0, 3, 1, 2).reshape(layer.cout, -1)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(w.astype(np.float64)))
                m.bias.copy_(torch.from_numpy(layer.b.astype(np.float64)))
            return m

        p = self.lrn

        class TorchAlexNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Sequential(
                    conv(net.conv1, 0), nn.ReLU(),
                    nn.LocalResponseNorm(p['size'], alpha=p['alpha'], beta=p['beta'], k=p['delta']),
                    nn.MaxPool2d(3, 2, padding=1),
                    conv(net.conv2, 2), nn.ReLU(),
                    nn.LocalResponseNorm(p['size'], alpha=p['alpha'], beta=p['beta'], k=p['delta']),
                    nn.MaxPool2d(3, 2, padding=1),
                    conv(net.conv3, 1), nn.ReLU(),
                    conv(net.conv4, 1), nn.ReLU(),
                    conv(net.conv5, 1), nn.ReLU(),
                    nn.MaxPool2d(3, 2, padding=1),
                )
                self.classifier = nn.Sequential(
                    nn.Flatten(),
                    linear(net.fc1, (16, 2, 2)), nn.ReLU(), nn.Dropout(1 - net.keep_probability),
                    linear(net.fc2, (32,)), nn.ReLU(), nn.Dropout(1 - net.keep_probability),
                    linear(net.fc3, (32,)), nn.Softmax(dim=1),
                )

            def forward(self, t):
                return self.classifier(self.features(t))[:, :, None, None]

        return TorchAlexNet()


# ------------------------------------------------------------------------------------------------
# 2. U-Net

class UNet(Network):
    name = "unet"
    input_shape = (2, 19, 23, 3)

    def __init__(self, rng):
        self.enc0a = Conv(rng, 3, 6, 3, label="enc0a")          # 19x23x6 (6: not a multiple of 4)
        self.enc0b = Conv(rng, 6, 6, 3, label="enc0b")
        self.down0 = Conv(rng, 6, 8, 3, stride=2, label="down0")  # 10x12x8, paired with up0
        self.enc1 = Conv(rng, 8, 12, 3, label="enc1")           # 10x12x12
        self.bott_a = Conv(rng, 12, 16, 3, label="bott_a")      # after 2x2 max pool: 5x6
        self.bott_b = Conv(rng, 16, 16, 3, label="bott_b")
        self.head = Conv(rng, 16, 5, 1, label="head")           # 5-channel side head, upsampled aligned
        # decoder level 1: concat [e1 (12) | head (5) + 3 gap | bilinear (16)] = 36 channels
        self.dec1 = Conv(rng, 36, 12, 3, label="dec1")
        # up0: transposed convolution 12 -> 8 channels, 3x3 stride 2, sized by down0's gradient state
        self.up0 = Conv(rng, 12, 8, 3, stride=2, label="up0")
        # decoder level 0: concat [t0 (8) | e0 (6)] = 14 channels (last source unpadded)
        self.dec0 = Conv(rng, 14, 8, 3, label="dec0")
        self.out = Conv(rng, 8, 3, 1, label="out")

    def build(self):
        x = mpsnn.MPSNNImageNode(handle=None)
        e0 = relu(self.enc0b.node(relu(self.enc0a.node(x).result_image)).result_image)
        down0 = self.down0.node(e0)
        e1 = relu(self.enc1.node(relu(down0.result_image)).result_image)
        p1 = mpsnn.MPSCNNPoolingMaxNode(source=e1, filter_size=2).result_image
        b = relu(self.bott_b.node(relu(self.bott_a.node(p1).result_image)).result_image)
        up_b = mpsnn.MPSCNNUpsamplingBilinearNode(source=b, integer_scale_factor_x=2, integer_scale_factor_y=2,
                                                  align_corners=False).result_image
        head = mpsnn.MPSCNNUpsamplingBilinearNode(source=self.head.node(b).result_image, integer_scale_factor_x=2,
                                                  integer_scale_factor_y=2, align_corners=True).result_image
        cat1 = mpsnn.MPSNNConcatenationNode(sources=[e1, head, up_b])
        cat1.label = "skip1"
        cat1 = cat1.result_image
        taps = {"cat1": cat1}
        d1 = relu(self.dec1.node(cat1).result_image)
        t0 = mpsnn.MPSCNNConvolutionTransposeNode(source=d1,
                                                  convolution_gradient_state=down0.convolution_gradient_state,
                                                  weights=self.up0.data_source())
        t0 = taps["t0"] = relu(t0.result_image)
        cat0 = mpsnn.MPSNNConcatenationNode(sources=[t0, e0])
        cat0.label = "skip0"
        cat0 = taps["cat0"] = cat0.result_image
        d0 = relu(self.dec0.node(cat0).result_image)
        return x, self.out.node(d0).result_image, taps

    def reference(self, x, with_taps=False):
        x = np.asarray(x, np.float64)
        e0 = relu_ref(self.enc0b.ref(relu_ref(self.enc0a.ref(x))))
        e1 = relu_ref(self.enc1.ref(relu_ref(self.down0.ref(e0))))
        p1 = R.max_pool2d(e1, (2, 2), (2, 2))
        b = relu_ref(self.bott_b.ref(relu_ref(self.bott_a.ref(p1))))
        up_b = R.upsample_bilinear(b, 2, 2, align_corners=False)
        head = R.upsample_bilinear(self.head.ref(b), 2, 2, align_corners=True)
        cat1 = R.concatenate([e1, head, up_b])
        d1 = relu_ref(self.dec1.ref(cat1))
        # transpose paired with down0: result size = down0's source size, Pz = Ke - 1 - P_conv
        geo = self.down0.geometry(e0.shape[1:3])
        pz = tuple(R.transpose_pad_from_conv(p, 3, 1) for p in geo['pad'])
        t0 = relu_ref(R.conv_transpose2d(d1, self.up0.w, self.up0.b, (2, 2), pad_z=pz, out_hw=e0.shape[1:3]))
        cat0 = R.concatenate([t0, e0])
        y = self.out.ref(relu_ref(self.dec0.ref(cat0)))
        return (y, {"cat1": cat1, "t0": t0, "cat0": cat0}) if with_taps else y

    def torch_model(self):
        import torch
        import torch.nn.functional as F
        from torch import nn
        net = self

        def conv(layer, padding):
            return layer.load_torch(nn.Conv2d(layer.cin, layer.cout, layer.k, stride=layer.stride, padding=padding))

        def conv_transpose(layer, padding, output_padding):
            m = nn.ConvTranspose2d(layer.cin, layer.cout, layer.k, stride=layer.stride, padding=padding,
                                   output_padding=output_padding)
            # MPS uses the OHWI weights as given (no rotation): wt[c, o, p, q] = W[o, K-1-p, K-1-q, c]
            wt = np.flip(layer.w, (1, 2)).transpose(3, 0, 1, 2)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(wt, np.float64)))
                m.bias.copy_(torch.from_numpy(layer.b.astype(np.float64)))
            return m

        class TorchUNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.enc0 = nn.Sequential(conv(net.enc0a, 1), nn.ReLU(), conv(net.enc0b, 1), nn.ReLU())
                self.down0 = nn.Sequential(conv(net.down0, 1), nn.ReLU())
                self.enc1 = nn.Sequential(conv(net.enc1, 1), nn.ReLU())
                self.pool = nn.MaxPool2d(2)
                self.bottleneck = nn.Sequential(conv(net.bott_a, 1), nn.ReLU(), conv(net.bott_b, 1), nn.ReLU())
                self.head = conv(net.head, 0)
                self.dec1 = nn.Sequential(conv(net.dec1, 1), nn.ReLU())
                # ConvTranspose2d(k=3, s=2, p=1) on 10x12 gives 19x23: output_padding 0
                self.up0 = nn.Sequential(conv_transpose(net.up0, 1, 0), nn.ReLU())
                self.dec0 = nn.Sequential(conv(net.dec0, 1), nn.ReLU())
                self.out = conv(net.out, 0)

            def forward(self, t):
                e0 = self.enc0(t)
                e1 = self.enc1(self.down0(e0))
                b = self.bottleneck(self.pool(e1))
                up_b = F.interpolate(b, scale_factor=2, mode='bilinear', align_corners=False)
                head = F.interpolate(self.head(b), scale_factor=2, mode='bilinear', align_corners=True)
                gap = head.new_zeros(head.shape[0], 3, head.shape[2], head.shape[3])  # MPS 4-aligned slot
                d1 = self.dec1(torch.cat([e1, head, gap, up_b], dim=1))
                t0 = self.up0(d1)
                assert t0.shape[2:] == e0.shape[2:]
                return self.out(self.dec0(torch.cat([t0, e0], dim=1)))

        return TorchUNet()


# ------------------------------------------------------------------------------------------------
# 3. Style transfer

class StyleTransfer(Network):
    name = "style"
    input_shape = (2, 33, 31, 3)
    epsilon = 1e-5
    tanh_a, tanh_b = 2.0, 0.5

    def __init__(self, rng):
        self.convs = {
            "c1": Conv(rng, 3, 8, 9, label="c1"),               # 33x31x8
            "c2": Conv(rng, 8, 12, 3, stride=2, label="c2"),    # 17x16x12
            "c3": Conv(rng, 12, 16, 3, stride=2, label="c3"),   # 9x8x16
            "r1a": Conv(rng, 16, 16, 3, label="r1a"),
            "r1b": Conv(rng, 16, 16, 3, label="r1b"),
            "r2a": Conv(rng, 16, 16, 3, label="r2a"),
            "r2b": Conv(rng, 16, 16, 3, label="r2b"),
            "u1": Conv(rng, 16, 12, 3, label="u1"),             # after nearest x2: 18x16x12
            "u2": Conv(rng, 12, 8, 3, label="u2"),              # 36x32x8
            "out": Conv(rng, 8, 3, 9, label="out"),             # 36x32x3
        }
        self.norms = {}
        for name in ("c1", "c2", "c3", "r1a", "r1b", "r2a", "r2b", "u1", "u2"):
            c = self.convs[name].cout
            gamma = (1.0 + 0.2 * rng.standard_normal(c)).astype(np.float32)
            beta = (0.1 * rng.standard_normal(c)).astype(np.float32)
            self.norms[name] = (gamma, beta)

    def _conv_in(self, src, name, relu_after=True):
        h = self.convs[name].node(src).result_image
        gamma, beta = self.norms[name]
        ds = mpsnn.ArrayInstanceNormalizationDataSource(gamma, beta, epsilon=self.epsilon, label="in_" + name)
        h = mpsnn.MPSCNNInstanceNormalizationNode(source=h, data_source=ds).result_image
        return relu(h) if relu_after else h

    def _conv_in_ref(self, x, name, relu_after=True):
        gamma, beta = self.norms[name]
        h = R.instance_norm(self.convs[name].ref(x), gamma, beta, self.epsilon)
        return relu_ref(h) if relu_after else h

    def build(self):
        x = mpsnn.MPSNNImageNode(handle=None)
        h = self._conv_in(x, "c1")
        h = self._conv_in(h, "c2")
        h = self._conv_in(h, "c3")
        # residual block 1: branch on the left, block 2: skip on the left
        r = self._conv_in(self._conv_in(h, "r1a"), "r1b", relu_after=False)
        h = mpsnn.MPSNNAdditionNode(left_source=r, right_source=h).result_image
        r = self._conv_in(self._conv_in(h, "r2a"), "r2b", relu_after=False)
        h = mpsnn.MPSNNAdditionNode(sources=[h, r]).result_image
        taps = {"residual2": h}
        h = mpsnn.MPSCNNUpsamplingNearestNode(source=h, integer_scale_factor_x=2, integer_scale_factor_y=2).result_image
        h = self._conv_in(h, "u1")
        h = mpsnn.MPSCNNUpsamplingNearestNode(source=h, integer_scale_factor_x=2, integer_scale_factor_y=2).result_image
        h = taps["u2"] = self._conv_in(h, "u2")
        h = self.convs["out"].node(h).result_image
        return x, mpsnn.MPSCNNNeuronTanHNode(source=h, a=self.tanh_a, b=self.tanh_b).result_image, taps

    def reference(self, x, with_taps=False):
        taps = {}
        h = np.asarray(x, np.float64)
        for name in ("c1", "c2", "c3"):
            h = self._conv_in_ref(h, name)
        for a, b in (("r1a", "r1b"), ("r2a", "r2b")):
            h = h + self._conv_in_ref(self._conv_in_ref(h, a), b, relu_after=False)
        taps["residual2"] = h
        h = self._conv_in_ref(R.upsample_nearest(h, 2, 2), "u1")
        h = taps["u2"] = self._conv_in_ref(R.upsample_nearest(h, 2, 2), "u2")
        y = R.neuron(self.convs["out"].ref(h), 'tanh', self.tanh_a, self.tanh_b)
        return (y, taps) if with_taps else y

    def torch_model(self):
        import torch
        from torch import nn
        net = self

        def block(name, padding, relu_after=True):
            layer = net.convs[name]
            conv = layer.load_torch(nn.Conv2d(layer.cin, layer.cout, layer.k, stride=layer.stride, padding=padding))
            norm = nn.InstanceNorm2d(layer.cout, eps=net.epsilon, affine=True)
            gamma, beta = net.norms[name]
            with torch.no_grad():
                norm.weight.copy_(torch.from_numpy(gamma.astype(np.float64)))
                norm.bias.copy_(torch.from_numpy(beta.astype(np.float64)))
            return nn.Sequential(conv, norm, nn.ReLU()) if relu_after else nn.Sequential(conv, norm)

        class Residual(nn.Module):
            def __init__(self, a, b):
                super().__init__()
                self.body = nn.Sequential(block(a, 1), block(b, 1, relu_after=False))

            def forward(self, t):
                return t + self.body(t)

        class TorchStyleTransfer(nn.Module):
            def __init__(self):
                super().__init__()
                out = net.convs["out"]
                self.body = nn.Sequential(
                    block("c1", 4), block("c2", 1), block("c3", 1),
                    Residual("r1a", "r1b"), Residual("r2a", "r2b"),
                    nn.Upsample(scale_factor=2, mode='nearest'), block("u1", 1),
                    nn.Upsample(scale_factor=2, mode='nearest'), block("u2", 1),
                    out.load_torch(nn.Conv2d(out.cin, out.cout, out.k, padding=4)),
                )

            def forward(self, t):
                return net.tanh_a * torch.tanh(net.tanh_b * self.body(t))

        return TorchStyleTransfer()


NETWORKS = {cls.name: cls for cls in (AlexNet, UNet, StyleTransfer)}


def make_network(name: str, seed: Optional[int] = None) -> Network:
    """The named network with weights from a seeded generator (seed defaults to a per-network value)."""
    cls = NETWORKS[name]
    if seed is None:
        seed = {"alexnet": 11, "unet": 22, "style": 33}[name]
    return cls(np.random.default_rng(seed))
