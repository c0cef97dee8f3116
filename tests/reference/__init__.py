"""Float64 NumPy reference implementations (oracles) of the mpsnn nodes; see spec/nodes.md."""

from .geometry import (ALIGN_CENTERED, ALIGN_TOP_LEFT, ALIGN_BOTTOM_RIGHT, ALIGN_MASK,
                       ADD_REMAINDER_TO_TOP_LEFT, ADD_REMAINDER_TO_TOP_RIGHT,
                       ADD_REMAINDER_TO_BOTTOM_LEFT, ADD_REMAINDER_TO_BOTTOM_RIGHT, REMAINDER_MASK,
                       SIZE_VALID_ONLY, SIZE_SAME, SIZE_FULL, SIZE_MASK,
                       CUSTOM_WHITELIST_FOR_NODE_FUSION, CUSTOM, EXCLUDE_EDGES, TENSORFLOW_SAME,
                       TENSORFLOW_VALID, ALL_METHODS, extent, size_style, remainder_before,
                       window_axis, window_geometry, pad_after, transpose_pad_from_conv,
                       tap_indices, resolve_geometry, extract_patches, scatter_patches)
from .conv import (conv2d, fully_connected, zero_insert, conv_transpose2d, fold_batch_norm,
                   unpack_binary_weights, binary_conv2d, binary_fully_connected, subpixel_shuffle)
from .pooling import (pool2d, max_pool2d, average_pool2d, l2_pool2d, pool2d_gradient,
                      max_pool2d_gradient, average_pool2d_gradient, l2_pool2d_gradient)
from .neuron import NEURON_DEFAULTS, NEURON_TYPE_CODES, neuron, neuron_gradient, neuron_kinks, prelu_slopes
from .softmax import softmax, log_softmax
from .arithmetic import (FLT_MAX, FLT_MIN, binary_arithmetic, clamp_mask, result_shape,
                         address_operand)
from .normalization import (batch_norm_inference, batch_norm_statistics, batch_norm_training,
                            instance_norm, cross_channel_norm, spatial_norm, local_contrast_norm)
from .resample import (upsample_nearest, upsample_bilinear, bilinear_scale, lanczos_scale)
from .misc import concat_offsets, concatenate, dropout_inference, dropout_with_mask
from .gradients_misc import (arithmetic_gradient, concatenation_gradient, softmax_gradient, log_softmax_gradient,
                             cross_channel_norm_gradient, spatial_norm_gradient, local_contrast_norm_gradient,
                             upsample_nearest_gradient, upsample_bilinear_gradient, philox4x32_10,
                             dropout_mask_shape, dropout_mask, dropout_forward, dropout_gradient)

__all__ = [
    'ALIGN_CENTERED', 'ALIGN_TOP_LEFT', 'ALIGN_BOTTOM_RIGHT', 'ALIGN_MASK',
    'ADD_REMAINDER_TO_TOP_LEFT', 'ADD_REMAINDER_TO_TOP_RIGHT', 'ADD_REMAINDER_TO_BOTTOM_LEFT',
    'ADD_REMAINDER_TO_BOTTOM_RIGHT', 'REMAINDER_MASK', 'SIZE_VALID_ONLY', 'SIZE_SAME', 'SIZE_FULL',
    'SIZE_MASK', 'CUSTOM_WHITELIST_FOR_NODE_FUSION', 'CUSTOM', 'EXCLUDE_EDGES', 'TENSORFLOW_SAME',
    'TENSORFLOW_VALID', 'ALL_METHODS', 'extent', 'size_style', 'remainder_before', 'window_axis',
    'window_geometry', 'pad_after', 'transpose_pad_from_conv', 'tap_indices', 'resolve_geometry',
    'extract_patches', 'scatter_patches',
    'conv2d', 'fully_connected', 'zero_insert', 'conv_transpose2d', 'fold_batch_norm',
    'unpack_binary_weights', 'binary_conv2d', 'binary_fully_connected', 'subpixel_shuffle',
    'pool2d', 'max_pool2d', 'average_pool2d', 'l2_pool2d', 'pool2d_gradient', 'max_pool2d_gradient',
    'average_pool2d_gradient', 'l2_pool2d_gradient',
    'NEURON_DEFAULTS', 'NEURON_TYPE_CODES', 'neuron', 'neuron_gradient', 'neuron_kinks', 'prelu_slopes',
    'softmax', 'log_softmax',
    'FLT_MAX', 'FLT_MIN', 'binary_arithmetic', 'clamp_mask', 'result_shape', 'address_operand',
    'batch_norm_inference', 'batch_norm_statistics', 'batch_norm_training', 'instance_norm',
    'cross_channel_norm', 'spatial_norm', 'local_contrast_norm',
    'upsample_nearest', 'upsample_bilinear', 'bilinear_scale', 'lanczos_scale',
    'concat_offsets', 'concatenate', 'dropout_inference', 'dropout_with_mask',
    'arithmetic_gradient', 'concatenation_gradient', 'softmax_gradient', 'log_softmax_gradient',
    'cross_channel_norm_gradient', 'spatial_norm_gradient', 'local_contrast_norm_gradient',
    'upsample_nearest_gradient', 'upsample_bilinear_gradient', 'philox4x32_10', 'dropout_mask_shape',
    'dropout_mask', 'dropout_forward', 'dropout_gradient',
]

# gradients of the trainable families (nodes.md §4.3-4.6, §8.5-8.6)
from .conv import conv2d_gradient, fully_connected_gradient, conv_transpose2d_gradient  # noqa: E402
from .normalization import batch_norm_gradient, instance_norm_gradient  # noqa: E402

__all__ += ['conv2d_gradient', 'fully_connected_gradient', 'conv_transpose2d_gradient',
            'batch_norm_gradient', 'instance_norm_gradient']
