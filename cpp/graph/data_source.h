#pragma once
// Parameter sources of trainable nodes (MPSCNNConvolutionDataSource and the normalization data
// sources). The bindings adapt any Python object that implements the protocol; C++ reads it
// once, when an MPSNNGraph is built, into plain float32 parameter blocks.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "graph/attrs.h"

namespace mpsnn {

class CommandBuffer;
class State;

// MPSDataType raw values used by data sources.
enum class DataType : uint32_t {
  invalid = 0, float32 = 0x10000020, float16 = 0x10000010, int8 = 0x20000008, int16 = 0x20000010,
  uint8 = 8, uint16 = 16, uint32 = 32, unorm1 = 0x40000001, unorm8 = 0x40000008
};
const char* data_type_name(DataType t);
size_t data_type_size(DataType t);

// MPSCNNConvolutionDescriptor (with the depthwise and sub-pixel variants folded in).
struct ConvolutionDescriptor {
  int64_t kernel_width = 3, kernel_height = 3;
  int64_t input_feature_channels = 1, output_feature_channels = 1;
  int64_t stride_x = 1, stride_y = 1, dilation_x = 1, dilation_y = 1;
  int64_t groups = 1;
  bool depthwise = false;
  int64_t sub_pixel_scale_factor = 1;
  NeuronDescriptor fused_neuron;
  // set_batch_normalization_parameters_for_inference(mean, variance, gamma, beta, epsilon)
  struct FoldedBatchNorm {
    std::vector<float> mean, variance, gamma, beta;
    float epsilon = 0.0f;
  };
  std::optional<FoldedBatchNorm> batch_norm;
  // Set where those parameters were folded into the weights and bias read from the data source
  // (graph/params.cpp); the gradient refuses such a source (nodes.md §4.1).
  bool batch_norm_folded = false;
};

// Float weights a descriptor needs (OHWI: Cout * KH * KW * Cin/groups; depthwise Cout * KH * KW).
inline int64_t weights_count(const ConvolutionDescriptor& d) {
  return d.output_feature_channels * d.kernel_height * d.kernel_width *
         (d.depthwise ? 1 : d.input_feature_channels / d.groups);
}

// A block of host memory returned by a data source; `keepalive` owns it.
struct HostArray {
  const void* data = nullptr;
  size_t bytes = 0;
  std::shared_ptr<void> keepalive;
  // The array's shape when the data source returned an n-d array (a 4-D one is checked against
  // the descriptor's OHWI shape); empty for a flat buffer or a pointer.
  std::vector<int64_t> shape;
};

// What the reader must know about the node that reads a convolution data source.
enum class WeightsLayout { ohwi, binary, transpose };

class ConvolutionDataSource {
 public:
  virtual ~ConvolutionDataSource() = default;
  virtual DataType data_type() = 0;
  virtual ConvolutionDescriptor descriptor() = 0;
  virtual HostArray weights() = 0;
  virtual std::optional<std::vector<float>> bias_terms() = 0;
  virtual bool load() = 0;
  virtual void purge() = 0;
  virtual std::optional<std::string> label() = 0;
  // Optional members (uint8 weights): MPSCNNWeightsQuantizationType and its tables.
  virtual int weights_quantization_type() { return 0; }
  virtual std::vector<float> ranges_for_uint8_kernel() { return {}; }         // 2 per output channel
  virtual std::vector<float> lookup_table_for_uint8_kernel() { return {}; }   // 256 entries
  // Reports a non-fatal problem found while reading (a Python UserWarning from the bindings).
  virtual void warn(const std::string& message) { (void)message; }

  // Parameter updates (graph.md §6.4), optional. GPU style: called while the graph encodes, right
  // after the gradient; returns an MPSCNNConvolutionWeightsAndBiasesState (the graph loads it into
  // its kernels on the same command buffer) or null for "no update". CPU style: called after the
  // command buffer completed; returns whether the data source changed its weights (the graph then
  // reads it again).
  virtual bool has_gpu_update() { return false; }
  virtual std::shared_ptr<State> update_with_command_buffer(const std::shared_ptr<CommandBuffer>& command_buffer,
                                                            const std::shared_ptr<State>& gradient_state,
                                                            const std::shared_ptr<State>& source_state) {
    (void)command_buffer, (void)gradient_state, (void)source_state;
    return nullptr;
  }
  virtual bool has_cpu_update() { return false; }
  virtual bool update_with_gradient_state(const std::shared_ptr<State>& gradient_state,
                                          const std::shared_ptr<State>& source_state) {
    (void)gradient_state, (void)source_state;
    return false;
  }
};

// Both batch- and instance-normalization data sources; missing arrays take the chosen
// defaults of nodes.md §8.5-8.6 (gamma 1, beta 0, mean 0, variance 1, epsilon FLT_MIN).
class NormalizationDataSource {
 public:
  virtual ~NormalizationDataSource() = default;
  virtual int64_t number_of_feature_channels() = 0;
  virtual std::optional<std::vector<float>> gamma() = 0;
  virtual std::optional<std::vector<float>> beta() = 0;
  virtual std::optional<std::vector<float>> mean() { return std::nullopt; }
  virtual std::optional<std::vector<float>> variance() { return std::nullopt; }
  virtual std::optional<float> epsilon() { return std::nullopt; }
  virtual bool load() { return true; }
  virtual void purge() {}
  virtual std::optional<std::string> label() = 0;

  // Parameter updates (graph.md §6.5-6.6), each optional; `instance` selects the instance-norm
  // protocol's names. GPU style (during encode): gamma/beta return an
  // MPSCNNNormalizationGammaAndBetaState, mean/variance an MPSCNNNormalizationMeanAndVarianceState,
  // or null for none. CPU style (after completion): true when the data source changed its values.
  // Batch normalization passes its one state; instance normalization a state batch.
  enum class Update { gpu_gamma_beta, gpu_mean_variance, cpu_gamma_beta, cpu_mean_variance };
  virtual bool has_update(Update which, bool instance) {
    (void)which, (void)instance;
    return false;
  }
  virtual std::shared_ptr<State> update_on_command_buffer(Update which, bool instance,
                                                          const std::shared_ptr<CommandBuffer>& command_buffer,
                                                          const std::shared_ptr<State>& state) {
    (void)which, (void)instance, (void)command_buffer, (void)state;
    return nullptr;
  }
  virtual bool update_after_completion(Update which, bool instance, const std::shared_ptr<State>& state) {
    (void)which, (void)instance, (void)state;
    return false;
  }
};

// What a graph keeps of a data source after reading it.
struct ConvolutionParams {
  ConvolutionDescriptor desc;
  std::vector<float> weights;          // OHWI float32 (regular, depthwise, fully connected, transpose)
  std::vector<uint32_t> binary_weights;  // [Cout][KH][KW][ceil(Cin/32)] (binary convolution)
  std::vector<float> bias;             // Cout entries, or empty
  std::optional<std::string> label;
};

struct NormalizationParams {
  int64_t channels = 0;
  std::vector<float> gamma, beta, mean, variance;
  float epsilon = 0.0f;
  std::optional<std::string> label;
};

// Folds an inference batch normalization into convolution weights and bias, per output channel
// (nodes.md §4.1): scale = gamma / sqrt(variance + epsilon), W' = W * scale,
// b' = scale * (b - mean) + beta. Computed in double so fused and unfused results agree.
std::shared_ptr<ConvolutionParams> fold_batch_norm(const ConvolutionParams& conv, const std::vector<float>& mean,
                                                   const std::vector<float>& variance, const std::vector<float>& gamma,
                                                   const std::vector<float>& beta, float epsilon);

// Reads a data source (load, read, purge) and validates it against the node; `context` names
// the node in errors. Weights are the first N values of what weights() returns (Apple reads N
// values from a pointer): a longer buffer is used with a warning, a shorter one is a ShapeError;
// a 4-D array must have the expected OHWI shape (check_weights_shape).
std::shared_ptr<const ConvolutionParams> read_convolution_source(ConvolutionDataSource& source, bool binary,
                                                                 const std::string& context, bool transpose = false);

// The one rule for n-d weight arrays: a 4-D `shape` must be the OHWI shape the descriptor gives
// (Cout, KH, KW, Cin/groups; depthwise (Cout, KH, KW, 1); binary (Cout, KH, KW, ceil(Cin/32))).
// Throws a ShapeError naming `context` and, for a PyTorch layout, the transpose that fixes it.
void check_weights_shape(const ConvolutionDescriptor& d, const std::vector<int64_t>& shape, WeightsLayout layout,
                         const std::string& context);
std::shared_ptr<const NormalizationParams> read_normalization_source(NormalizationDataSource& source,
                                                                     bool with_statistics,
                                                                     const std::string& context);

}  // namespace mpsnn
