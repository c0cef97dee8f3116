// The command-queue machinery and the graph's plan cache under ThreadSanitizer
// (tests/test_tsan_cpp.py builds this with -fsanitize=thread together with cpp/core and
// cpp/graph, no backend): many threads, each with its own queue and
// all sharing one more, encode tasks that write shared and private memory through the stream,
// retain storage, add completion handlers, commit, commit_and_continue, wait and drain. Checks
// every task ran exactly once, every handler ran exactly once after its buffer's tasks, results
// are those of a serial run, and TSan reports no race (it exits non-zero if it does).
#include <atomic>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "test_support.h"
#include "core/command.h"
#include "core/image.h"
#include "core/storage.h"
#include "graph/kernel.h"
#include "graph/nn_graph.h"

using namespace mpsnn;

namespace {
using test::check;
using test::failures;
}  // namespace

// A registry with one kernel of our own (y = 2x + 1), so that the graph layer's plan cache, pooled
// execution contexts and parameter snapshots run under TSan without a vendor library.
class LinearKernel final : public Kernel {
 public:
  int in_place_input() const override { return 0; }
  void run(const KernelArgs& a, KernelState*) const override {
    const TensorRef& x = a.inputs[0];
    const TensorRef& y = a.outputs[0];
    const int64_t pixels = x.shape.n * x.shape.h * x.shape.w;
    for (int64_t p = 0; p < pixels; ++p)
      for (int64_t c = 0; c < x.shape.c; ++c)
        y.as<float>()[p * y.pixel_stride + c] = 2.0f * x.as<float>()[p * x.pixel_stride + c] + 1.0f;
  }
};
std::unique_ptr<Kernel> make_linear(const KernelSpec&, Device&) { return std::make_unique<LinearKernel>(); }

// Threads run one graph on inputs of four sizes at once: plans are compiled concurrently (cache
// misses), then shared (hits); every result must be 2x + 1.
void plan_cache_case(const DevicePtr& device) {
  KernelRegistry registry("cpu");
  registry.add(OpKind::Neuron, make_linear);
  auto src = std::make_shared<ImageNode>();
  auto node = std::make_shared<FilterNode>(OpKind::Neuron, NeuronAttrs{make_neuron(NeuronType::linear, 2.0f, 1.0f)},
                                           std::vector<ImageNodePtr>{src});
  NNGraph graph(device, {node->result_image()}, {true}, &registry);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const int64_t size = 3 + (t + i) % 4;
        ImageShape s{1 + t % 2, size, size + 1, 3};
        std::vector<float> x(size_t(s.numel()), float(t));
        auto in = Image::wrap(device, ChannelFormat::float32, s, x.data(), nullptr);
        auto out = graph.run({in});
        const float* y = static_cast<const float*>(out.at(0)->data());
        for (int64_t k = 0; k < s.numel(); ++k)
          if (y[k] != 2.0f * float(t) + 1.0f) wrong.fetch_add(1);
      }
    });
  for (auto& th : threads) th.join();
  check(wrong.load() == 0, "concurrent runs through the plan cache give 2x + 1");
  check(graph.num_plans() == 8, "one plan per input size and batch");
}

int main() {
  DevicePtr device = std::make_shared<test::HostDevice>();
  auto shared_queue = std::make_shared<CommandQueue>(device);
  constexpr int kThreads = 8, kBuffers = 200, kValues = 64;
  std::atomic<int> tasks_run{0}, handlers_run{0}, handler_order_errors{0};
  std::vector<std::vector<float>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto own = std::make_shared<CommandQueue>(device);
      std::vector<float> acc(kValues, 0.0f);
      for (int b = 0; b < kBuffers; ++b) {
        auto& queue = b % 3 == 0 ? shared_queue : own;
        auto cb = queue->make_command_buffer();
        auto block = host_allocator().allocate(kValues * sizeof(float), true);
        auto* ran = new std::atomic<int>(0);
        cb->retain(block);
        cb->encode(
            [&, block, ran, b](Stream& s) {
              std::vector<float> src(kValues, float(b));
              s.copy(src.data(), block->data(), kValues * sizeof(float));
              ran->fetch_add(1);
              tasks_run.fetch_add(1);
            },
            "write");
        cb->add_completed_handler([&, block, ran, b](CommandBuffer& done) {
          if (ran->load() != 1 || done.status() != CommandBufferStatus::completed) handler_order_errors.fetch_add(1);
          const float* v = static_cast<const float*>(block->data());
          if (v[kValues - 1] != float(b)) handler_order_errors.fetch_add(1);
          delete ran;
          handlers_run.fetch_add(1);
        });
        if (b % 7 == 0) cb->commit_and_continue();
        cb->commit();
        if (b % 5 == 0) queue->drain();
        cb->wait_until_completed();
        const float* v = static_cast<const float*>(block->data());
        for (int i = 0; i < kValues; ++i) acc[size_t(i)] += v[i];
      }
      own->drain();
      results[size_t(t)] = acc;
    });
  }
  for (auto& th : threads) th.join();
  shared_queue->drain();
  check(tasks_run.load() == kThreads * kBuffers, "every task ran once");
  check(handlers_run.load() == kThreads * kBuffers, "every handler ran once");
  check(handler_order_errors.load() == 0, "handlers ran after their buffer's task, with its result");
  const float serial = float(kBuffers) * float(kBuffers - 1) / 2.0f;
  for (const auto& r : results)
    for (float x : r) check(x == serial, "results equal the serial sum");
  plan_cache_case(device);
  if (failures == 0) std::printf("all cases passed\n");
  return failures == 0 ? 0 : 1;
}
