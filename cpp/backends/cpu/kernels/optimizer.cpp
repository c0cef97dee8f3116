// The optimizers' element loop on the CPU (graph.md §7.2-7.5): our own kernel, since oneDNN has
// no optimizer primitives. One pass per vector, each element independent (so any thread count
// gives the same bits), float32 arithmetic in the order the spec writes the equations. The
// gradient pre-processing is a template parameter and every select is of values already computed,
// so each loop vectorizes (a possibly trapping operation inside a conditional is not if-converted
// by GCC; the loops were scalar, with a branch per element, before).
#include <cmath>

#include "backends/cpu/register.h"

namespace MPSNN_ISA_NAMESPACE {

namespace {
constexpr int64_t kParallelMin = 1 << 15;

// §7.2: clip, rescale, then the regularization term (sign(0) = 0). std::fmin/fmax drop a NaN
// gradient in favour of the bound; a NaN must reach the result instead (no silent repair), so
// clipping keeps it.
template <bool Clip, RegularizationType Reg>
struct Preprocess {
  float lo, hi, rescale, scale;
  float operator()(float g, float w) const {
    if (Clip) {
      const float c = std::fmin(std::fmax(g, lo), hi);
      g = g != g ? g : c;
    }
    g = rescale * g;
    if (Reg == RegularizationType::l1) g += scale * float((w > 0.0f) - (w < 0.0f));
    if (Reg == RegularizationType::l2) g += scale * w;
    return g;
  }
};

template <typename P>
void update(const OptimizerStep& s, const OptimizerBuffers& b, P pre) {
  const int64_t n = b.count;
  const float lr = s.learning_rate;
  const float* G = b.gradient;
  const float* W = b.values;
  float* R = b.result;
  float* M = b.state0;
  float* V = b.state1;
  float* U = b.state2;
  switch (s.rule) {
    case OptimizerRule::sgd: {
      const float mu = s.momentum_scale;
      if (!M) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) R[i] = W[i] - lr * pre(G[i], W[i]);
      } else if (s.nesterov) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
          const float g = pre(G[i], W[i]);
          const float m = mu * M[i] + g;
          M[i] = m;
          R[i] = W[i] - lr * (g + mu * m);
        }
      } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
          const float m = mu * M[i] + lr * pre(G[i], W[i]);
          M[i] = m;
          R[i] = W[i] - m;
        }
      }
      return;
    }
    case OptimizerRule::rmsprop: {
      const float decay = s.decay, eps = s.epsilon;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        const float g = pre(G[i], W[i]);
        const float sq = decay * M[i] + (1.0f - decay) * g * g;
        M[i] = sq;
        R[i] = W[i] - lr * g / (std::sqrt(sq) + eps);
      }
      return;
    }
    case OptimizerRule::adam: {
      const float b1 = s.beta1, b2 = s.beta2, eps = s.epsilon;
      if (!U) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
          const float g = pre(G[i], W[i]);
          const float m = b1 * M[i] + (1.0f - b1) * g;
          const float v = b2 * V[i] + (1.0f - b2) * g * g;
          M[i] = m;
          V[i] = v;
          R[i] = W[i] - lr * m / (std::sqrt(v) + eps);
        }
        return;
      }
      // AMSGrad: the running maximum of v (NaN kept). A second loop rather than one body with an
      // `if constexpr` in a generic lambda: GCC 12 does not vectorize the lambda's loop.
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        const float g = pre(G[i], W[i]);
        const float m = b1 * M[i] + (1.0f - b1) * g;
        const float v = b2 * V[i] + (1.0f - b2) * g * g;
        M[i] = m;
        V[i] = v;
        const float u = U[i];
        const float denom = v != v || v > u ? v : u;
        U[i] = denom;
        R[i] = W[i] - lr * m / (std::sqrt(denom) + eps);
      }
      return;
    }
  }
}

template <bool Clip>
void with_regularization(const OptimizerStep& s, const OptimizerBuffers& b) {
  const OptimizerDescriptor& d = s.desc;
  const float lo = d.gradient_clip_min, hi = d.gradient_clip_max, r = d.gradient_rescale, k = d.regularization_scale;
  switch (d.regularization_type) {
    case RegularizationType::l1: return update(s, b, Preprocess<Clip, RegularizationType::l1>{lo, hi, r, k});
    case RegularizationType::l2: return update(s, b, Preprocess<Clip, RegularizationType::l2>{lo, hi, r, k});
    case RegularizationType::none: break;
  }
  update(s, b, Preprocess<Clip, RegularizationType::none>{lo, hi, r, k});
}
}  // namespace

void optimizer_update(const OptimizerStep& s, const OptimizerBuffers& b, Stream&) {
  if (s.desc.apply_gradient_clipping) with_regularization<true>(s, b);
  else with_regularization<false>(s, b);
}

}  // namespace MPSNN_ISA_NAMESPACE
