"""Forward tests of the upsampling (nodes.md §9) and scale nodes (§10): nearest and bilinear upsampling,
bilinear and Lanczos scaling with and without a transform provider."""

from __future__ import annotations

import numpy as np
import pytest

import mpsnn
import reference as R
from conftest import assert_close

from ._common import FP16, run_graph, to_t, from_t

SHAPES = [(1, 1, 1, 3), (1, 5, 3, 7), (2, 4, 6, 5), (3, 3, 2, 1)]
FACTORS = [(1, 1), (2, 2), (2, 3), (3, 1), (1, 4)]


class Provider:
    """An MPSImageTransformProvider returning a fixed transform; records what it was asked."""

    def __init__(self, sx, sy, tx, ty):
        self.t = mpsnn.MPSScaleTransform(sx, sy, tx, ty)
        self.seen = []

    def transform(self, for_source_image, handle):
        self.seen.append((for_source_image.width, for_source_image.height, handle))
        return self.t


# --------------------------------------------------------------------------------------------
# upsampling

@pytest.mark.parametrize("fx,fy", FACTORS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_upsampling_nearest(shape, fx, fy, device, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSCNNUpsamplingNearestNode(s, fx, fy), [x])
    assert y.shape == (shape[0], shape[1] * fy, shape[2] * fx, shape[3])
    assert_close(y, R.upsample_nearest(x, fx, fy), "exact")


@pytest.mark.parametrize("align", [False, True], ids=["half_pixel", "align_corners"])
@pytest.mark.parametrize("fx,fy", FACTORS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_upsampling_bilinear(shape, fx, fy, align, device, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSCNNUpsamplingBilinearNode(s, fx, fy, align_corners=align), [x])
    assert y.shape == (shape[0], shape[1] * fy, shape[2] * fx, shape[3])
    assert_close(y, R.upsample_bilinear(x, fx, fy, align), "elementwise")


def test_upsampling_properties():
    n = mpsnn.MPSCNNUpsamplingBilinearNode(mpsnn.MPSNNImageNode(), 3, 2, align_corners=True)
    assert (n.scale_factor_x, n.scale_factor_y, n.align_corners) == (3.0, 2.0, True)
    n = mpsnn.MPSCNNUpsamplingNearestNode(mpsnn.MPSNNImageNode(), integer_scale_factor_x=1,
                                          integer_scale_factor_y=4)
    assert (n.scale_factor_x, n.scale_factor_y) == (1.0, 4.0)
    assert mpsnn.MPSCNNUpsamplingBilinearNode(mpsnn.MPSNNImageNode(), 2, 2).align_corners is False


@pytest.mark.parametrize("fx,fy", [(2, 2), (2, 3), (4, 1)], ids=str)
def test_upsampling_vs_torch(fx, fy, device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = rng.standard_normal((2, 5, 3, 7)).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSCNNUpsamplingNearestNode(s, fx, fy), [x])
    assert_close(y, from_t(F.interpolate(to_t(x), scale_factor=(fy, fx), mode='nearest')), "exact")
    for align in (False, True):
        y = run_graph(device, lambda s: mpsnn.MPSCNNUpsamplingBilinearNode(s, fx, fy, align_corners=align), [x])
        ref = F.interpolate(to_t(x), scale_factor=(fy, fx), mode='bilinear', align_corners=align)
        assert_close(y, from_t(ref), "elementwise")


# --------------------------------------------------------------------------------------------
# bilinear and Lanczos scale

SCALE_SIZES = [(13, 9), (20, 7), (5, 4), (3, 2), (40, 31), (1, 1), (26, 27)]
TRANSFORMS = [(1.7, 0.6, -2.0, -1.0), (0.45, 2.5, 3.0, 2.2), (1.0, 1.0, 0.5, -0.25), (0.8, 1.5, -0.5, -1.5)]
SCALES = {"bilinear": (mpsnn.MPSNNBilinearScaleNode, R.bilinear_scale, "elementwise"),
          "lanczos": (mpsnn.MPSNNLanczosScaleNode, R.lanczos_scale, "reduction")}


@pytest.mark.parametrize("size", SCALE_SIZES, ids=str)
@pytest.mark.parametrize("kind", list(SCALES))
def test_scale_whole_source(kind, size, device, rng):
    node, ref, row = SCALES[kind]
    ow, oh = size
    x = rng.standard_normal((2, 9, 13, 5)).astype(np.float32)
    y = run_graph(device, lambda s: node(s, output_size=(ow, oh)), [x])
    assert y.shape == (2, oh, ow, 5)
    assert_close(y, ref(x, ow, oh), row, k=36)


@pytest.mark.parametrize("tr", TRANSFORMS, ids=str)
@pytest.mark.parametrize("size", [(20, 4), (11, 17), (9, 12)], ids=str)
@pytest.mark.parametrize("kind", list(SCALES))
def test_scale_with_transform_provider(kind, size, tr, device, rng):
    node, ref, row = SCALES[kind]
    ow, oh = size
    x = rng.standard_normal((2, 9, 13, 3)).astype(np.float32)
    provider = Provider(*tr)
    y = run_graph(device, lambda s: node(s, provider, (ow, oh, 1)), [x])
    assert (13, 9) in [seen[:2] for seen in provider.seen]
    assert_close(y, ref(x, ow, oh, tr), row, k=36)


def test_scale_output_size_object_and_provider_returning_none(device, rng):
    class NoTransform:
        def transform(self, for_source_image, handle):
            return None

    x = rng.standard_normal((1, 6, 5, 4)).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSNNBilinearScaleNode(s, NoTransform(), mpsnn.MTLSize(8, 3, 1)), [x])
    assert_close(y, R.bilinear_scale(x, 8, 3), "elementwise")


def test_bilinear_scale_vs_torch(device, rng):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = rng.standard_normal((2, 9, 13, 5)).astype(np.float32)
    for ow, oh in ((20, 7), (5, 4), (13, 9), (40, 2)):
        y = run_graph(device, lambda s: mpsnn.MPSNNBilinearScaleNode(s, output_size=(ow, oh)), [x])
        ref = F.interpolate(to_t(x), size=(oh, ow), mode='bilinear', align_corners=False, antialias=False)
        assert_close(y, from_t(ref), "elementwise")
    for (sx, sy, tx, ty), (ow, oh) in (((1.7, 0.6, -2.0, -1.0), (20, 4)), ((0.45, 2.5, 3.0, 2.2), (11, 17))):
        y = run_graph(device, lambda s: mpsnn.MPSNNBilinearScaleNode(s, Provider(sx, sy, tx, ty), (ow, oh)), [x])
        xi = (np.arange(ow) + 0.5 - tx) / sx
        yi = (np.arange(oh) + 0.5 - ty) / sy
        grid = np.stack(np.broadcast_arrays((2 * xi / 13 - 1)[None, :], (2 * yi / 9 - 1)[:, None]), axis=-1)
        ref = F.grid_sample(to_t(x), torch.from_numpy(grid[None].repeat(2, 0)), mode='bilinear',
                            padding_mode='border', align_corners=False)
        assert_close(y, from_t(ref), "elementwise")


@pytest.mark.parametrize("size,tr", [((20, 7), None), ((5, 4), None), ((40, 31), None),
                                     ((9, 12), (0.8, 1.5, -0.5, -1.5))], ids=str)
def test_lanczos_scale_vs_pillow(size, tr, device, rng):
    Image = pytest.importorskip("PIL.Image")
    lanczos = getattr(getattr(Image, 'Resampling', Image), 'LANCZOS')
    ow, oh = size
    x = rng.standard_normal((2, 9, 13, 3)).astype(np.float32)
    if tr is None:
        y = run_graph(device, lambda s: mpsnn.MPSNNLanczosScaleNode(s, output_size=(ow, oh)), [x])
        box = (0.0, 0.0, 13.0, 9.0)
    else:
        y = run_graph(device, lambda s: mpsnn.MPSNNLanczosScaleNode(s, Provider(*tr), (ow, oh)), [x])
        sx, sy, tx, ty = tr
        box = (-tx / sx, -ty / sy, (ow - tx) / sx, (oh - ty) / sy)
    ref = np.empty(y.shape, np.float64)
    for n in range(2):
        for c in range(3):
            im = Image.fromarray(np.ascontiguousarray(x[n, :, :, c]))
            ref[n, :, :, c] = np.asarray(im.resize((ow, oh), lanczos, box=box), np.float64)
    assert_close(y, ref, "reduction", k=36)      # Pillow rounds to float32 between the passes


def test_lanczos_identity_scale(device, rng):
    x = rng.standard_normal((2, 9, 13, 3)).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSNNLanczosScaleNode(s, output_size=(13, 9)), [x])
    assert_close(y, x, "elementwise")


def test_resample_chain_upsample_then_scale(device, rng):
    x = rng.standard_normal((2, 4, 3, 6)).astype(np.float32)

    def make(src):
        up = mpsnn.MPSCNNUpsamplingBilinearNode(src, 2, 3)
        return mpsnn.MPSNNBilinearScaleNode(up.result_image, output_size=(5, 7))

    assert_close(run_graph(device, make, [x]), R.bilinear_scale(R.upsample_bilinear(x, 2, 3), 5, 7), "elementwise")


# --------------------------------------------------------------------------------------------
# float16 format

def test_resample_float16_graph_format(device, rng):
    x = rng.standard_normal((2, 5, 3, 7)).astype(np.float32)
    y = run_graph(device, lambda s: mpsnn.MPSCNNUpsamplingBilinearNode(s, 2, 3), [x], fmt=FP16)
    assert y.dtype == np.float16
    assert_close(y, R.upsample_bilinear(x, 2, 3), "elementwise", "float16")
    y = run_graph(device, lambda s: mpsnn.MPSNNLanczosScaleNode(s, output_size=(7, 4)), [x], fmt=FP16)
    assert y.dtype == np.float16
    assert_close(y, R.lanczos_scale(x, 7, 4), "reduction", "float16")


# --------------------------------------------------------------------------------------------
# bad parameters

@pytest.mark.parametrize("cls", [mpsnn.MPSCNNUpsamplingNearestNode, mpsnn.MPSCNNUpsamplingBilinearNode])
def test_upsampling_zero_factor(cls):
    with pytest.raises(mpsnn.ShapeError, match=r"\[upsampling\] scale_factor_y is 0; expected > 0"):
        cls(mpsnn.MPSNNImageNode(), 2, 0)


def test_scale_depth_not_one():
    with pytest.raises(mpsnn.ShapeError, match=r"\[scale\] output_size.depth is 2; expected 1"):
        mpsnn.MPSNNLanczosScaleNode(mpsnn.MPSNNImageNode(), output_size=(3, 3, 2))


def test_scale_bad_output_size():
    with pytest.raises(mpsnn.ShapeError, match=r"\[scale\] output_size.width is 0; expected > 0"):
        mpsnn.MPSNNBilinearScaleNode(mpsnn.MPSNNImageNode(), output_size=(0, 3))
    with pytest.raises(mpsnn.ShapeError, match=r"\[scale\] output_size must be \(width, height\[, depth\]\)"):
        mpsnn.MPSNNBilinearScaleNode(mpsnn.MPSNNImageNode(), output_size=(3,))


def test_scale_provider_without_transform():
    with pytest.raises(mpsnn.DTypeError, match=r"transform provider of type .*object.* lacks transform\(\)"):
        mpsnn.MPSNNBilinearScaleNode(mpsnn.MPSNNImageNode(), object(), (3, 3))


def test_scale_transform_with_zero_scale(device, rng):
    x = rng.standard_normal((1, 4, 4, 3)).astype(np.float32)
    with pytest.raises(mpsnn.ShapeError, match=r"\[scale\] transform scale is 0x1; expected non-zero scales"):
        run_graph(device, lambda s: mpsnn.MPSNNBilinearScaleNode(s, Provider(0.0, 1.0, 0.0, 0.0), (3, 3)), [x])


def test_transform_provider_receives_the_source_handle(device, rng):
    """MPSImageTransformProvider.transform(for_source_image, handle): the handle of the scale
    node's source image node (graph.md §2.9), here an input handle and a result-image handle."""
    class Handle:
        def __init__(self, label):
            self._label = label

        def label(self):
            return self._label

    x = rng.standard_normal((1, 6, 5, 4)).astype(np.float32)
    first, second = Provider(2.0, 2.0, 0.0, 0.0), Provider(0.5, 0.5, 0.0, 0.0)
    source = mpsnn.MPSNNImageNode(handle=Handle("input"))
    up = mpsnn.MPSNNBilinearScaleNode(source, first, (10, 12, 1))
    up.result_image.handle = Handle("upscaled")
    down = mpsnn.MPSNNBilinearScaleNode(up.result_image, second, (5, 6, 1))
    g = mpsnn.MPSNNGraph(device, result_image=down.result_image, result_image_is_needed=True)
    g.run([x])
    assert first.seen and all(h.label() == "input" for _, _, h in first.seen)
    assert second.seen and all(h.label() == "upscaled" for _, _, h in second.seen)
