// Pooling on oneDNN (max, dilated max, average) and our own L2-norm pooling.
// MPS edge modes map onto oneDNN algorithms: clamp max = pooling_max (padding never wins);
// clamp average = avg_exclude_padding (divide by in-image taps); zero-edge average and
// excludeEdges = avg_include_padding (divide by the window size, every tap lies in the padded
// area by construction). Zero-edge max, where padded zeros can win, and clamp average with a
// zero-pad border pool over an explicitly zero-padded copy of the source.
#include <algorithm>
#include <cstring>

#include "backends/cpu/dnnl_utils.h"
#include "backends/cpu/kernels/own_kernels.h"
#include "backends/cpu/register.h"

namespace mpsnn::cpu {

namespace {

class PoolingKernel final : public Kernel {
 public:
  explicit PoolingKernel(const KernelSpec& spec) {
    const auto& a = spec.node->attrs_as<PoolingAttrs>();
    const ImageShape& src = spec.inputs[0];
    WindowAxis y = spec.geom.y, x = spec.geom.x;
    dnnl::algorithm alg;
    int64_t border_y = 0, border_x = 0;  // explicit zero border around the copied source
    const bool is_max = a.mode == PoolingMode::max || a.mode == PoolingMode::dilated_max;
    if (is_max) {
      alg = dnnl::algorithm::pooling_max;
      if (spec.geom.edge_mode == EdgeMode::zero) {
        border_y = std::max<int64_t>({y.pad_before, y.pad_after, 0});
        border_x = std::max<int64_t>({x.pad_before, x.pad_after, 0});
      }
    } else if (spec.geom.edge_mode == EdgeMode::zero || spec.geom.exclude_edges) {
      alg = dnnl::algorithm::pooling_avg_include_padding;
    } else {
      alg = dnnl::algorithm::pooling_avg_exclude_padding;
      border_y = std::min(a.zero_pad_size_y, std::max<int64_t>({y.pad_before, y.pad_after, 0}));
      border_x = std::min(a.zero_pad_size_x, std::max<int64_t>({x.pad_before, x.pad_after, 0}));
    }
    ImageShape pooled_src = src;
    if (border_y || border_x) {
      padded_ = ImageShape{src.n, src.h + 2 * border_y, src.w + 2 * border_x, src.c};
      border_y_ = border_y;
      border_x_ = border_x;
      y.pad_before -= border_y;
      y.pad_after -= border_y;
      x.pad_before -= border_x;
      x.pad_after -= border_x;
      pooled_src = padded_;
      copy_bytes_ = (size_t(padded_.numel()) * 4 + 63) / 64 * 64;
    }
    const SourceWindow w = source_window(pooled_src, spec.output, y, x);
    src_offset_ = w.offset;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    auto pd = MPSNN_CHECK_DNNL(
        dnnl::pooling_forward::primitive_desc(engine(), dnnl::prop_kind::forward_inference, alg, w.md,
                                              nhwc_desc(spec.output), {y.stride, x.stride}, {y.kernel, x.kernel},
                                              {y.dilation - 1, x.dilation - 1}, {w.y.pad_l, w.x.pad_l},
                                              {w.y.pad_r, w.x.pad_r}, attr),
        spec.context);
    primitive_ = dnnl::pooling_forward(pd);
    src_md_ = pd.src_desc();
    dst_md_ = pd.dst_desc();
    scratchpad_md_ = pd.scratchpad_desc();
  }
  size_t scratch_bytes() const override { return copy_bytes_ + scratchpad_md_.get_size(); }
  std::unique_ptr<KernelState> make_state() const override {
    auto s = std::make_unique<PrimitiveState>();
    s->args[DNNL_ARG_SRC] = memory(src_md_, engine(), DNNL_MEMORY_NONE);
    s->args[DNNL_ARG_DST] = memory(dst_md_, engine(), DNNL_MEMORY_NONE);
    s->args[DNNL_ARG_SCRATCHPAD] = memory(scratchpad_md_, engine(), DNNL_MEMORY_NONE);
    return s;
  }
  void run(const KernelArgs& a, KernelState* state) const override {
    auto* s = static_cast<PrimitiveState*>(state);
    float* src = a.inputs[0].data;
    if (copy_bytes_) {
      float* p = static_cast<float*>(a.scratch);
      std::memset(p, 0, size_t(padded_.numel()) * 4);
      const ImageShape& in = a.inputs[0].shape;
#pragma omp parallel for collapse(2)
      for (int64_t n = 0; n < in.n; ++n)
        for (int64_t i = 0; i < in.h; ++i)
          std::memcpy(p + ((n * padded_.h + i + border_y_) * padded_.w + border_x_) * in.c, a.inputs[0].pixel(n, i, 0),
                      size_t(in.w * in.c) * 4);
      src = p;
    }
    s->args[DNNL_ARG_SRC].set_data_handle(src + src_offset_);
    s->args[DNNL_ARG_DST].set_data_handle(a.output.data);
    s->args[DNNL_ARG_SCRATCHPAD].set_data_handle(static_cast<char*>(a.scratch) + copy_bytes_);
    primitive_.execute(s->stream, s->args);
    s->stream.wait();
  }

 private:
  dnnl::primitive primitive_;
  memory::desc src_md_, dst_md_, scratchpad_md_;
  int64_t src_offset_ = 0;
  ImageShape padded_;
  int64_t border_y_ = 0, border_x_ = 0;
  size_t copy_bytes_ = 0;
};

class L2PoolingKernel final : public Kernel {
 public:
  explicit L2PoolingKernel(const KernelSpec& spec) : y_(spec.geom.y), x_(spec.geom.x) {}
  void run(const KernelArgs& a, KernelState*) const override { own::l2_pooling(a.inputs[0], a.output, y_, x_); }

 private:
  WindowAxis y_, x_;
};

}  // namespace

std::unique_ptr<Kernel> make_pooling(const KernelSpec& spec) {
  if (spec.node->attrs_as<PoolingAttrs>().mode == PoolingMode::l2_norm) return std::make_unique<L2PoolingKernel>(spec);
  return std::make_unique<PoolingKernel>(spec);
}

}  // namespace mpsnn::cpu
