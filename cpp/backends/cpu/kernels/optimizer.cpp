// The optimizers' element loop on the CPU (graph.md §7.2-7.5): our own kernel, since oneDNN has
// no optimizer primitives. One pass per vector, each element independent (so any thread count
// gives the same bits), float32 arithmetic in the order the spec writes the equations.
#include <cmath>

#include "backends/cpu/register.h"

namespace mpsnn::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;

// §7.2: clip, rescale, then the regularization term (sign(0) = 0).
inline float preprocess(const OptimizerDescriptor& d, float g, float w) {
  if (d.apply_gradient_clipping) g = std::fmin(std::fmax(g, d.gradient_clip_min), d.gradient_clip_max);
  g = d.gradient_rescale * g;
  switch (d.regularization_type) {
    case RegularizationType::l1: return g + d.regularization_scale * float((w > 0.0f) - (w < 0.0f));
    case RegularizationType::l2: return g + d.regularization_scale * w;
    case RegularizationType::none: break;
  }
  return g;
}
}  // namespace

void optimizer_update(const OptimizerStep& s, const OptimizerBuffers& b, Stream&) {
  const OptimizerDescriptor d = s.desc;
  const int64_t n = b.count;
  const float lr = s.learning_rate;
  const float* G = b.gradient;
  const float* W = b.values;
  float* R = b.result;
  float* M = b.state0;
  float* V = b.state1;
  float* U = b.state2;
  // std::fmin/fmax drop a NaN gradient in favour of the bound; a NaN must reach the result
  // instead (no silent repair), so clipping keeps it.
  auto clipped = [&](int64_t i) {
    const float g = G[i];
    return g != g ? g : preprocess(d, g, W[i]);
  };
  switch (s.rule) {
    case OptimizerRule::sgd: {
      const float mu = s.momentum_scale;
      if (!M) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) R[i] = W[i] - lr * clipped(i);
      } else if (s.nesterov) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
          const float g = clipped(i);
          const float m = mu * M[i] + g;
          M[i] = m;
          R[i] = W[i] - lr * (g + mu * m);
        }
      } else {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
          const float m = mu * M[i] + lr * clipped(i);
          M[i] = m;
          R[i] = W[i] - m;
        }
      }
      return;
    }
    case OptimizerRule::rmsprop: {
      const float decay = s.decay, eps = s.epsilon;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        const float g = clipped(i);
        const float sq = decay * M[i] + (1.0f - decay) * g * g;
        M[i] = sq;
        R[i] = W[i] - lr * g / (std::sqrt(sq) + eps);
      }
      return;
    }
    case OptimizerRule::adam: {
      const float b1 = s.beta1, b2 = s.beta2, eps = s.epsilon;
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        const float g = clipped(i);
        const float m = b1 * M[i] + (1.0f - b1) * g;
        const float v = b2 * V[i] + (1.0f - b2) * g * g;
        M[i] = m;
        V[i] = v;
        float denom = v;
        if (U) {  // AMSGrad: the running maximum of v (NaN kept)
          const float u = U[i];
          denom = v != v || v > u ? v : u;
          U[i] = denom;
        }
        R[i] = W[i] - lr * m / (std::sqrt(denom) + eps);
      }
      return;
    }
  }
}

}  // namespace mpsnn::cpu
