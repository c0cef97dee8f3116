#pragma once
// The node model (graph.md §1): image nodes, state nodes and filter nodes. Nodes carry no
// device, storage or shape. A filter owns its result nodes; handing one out aliases the
// filter's ownership, so an image node keeps its producer alive without reference cycles.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/command.h"
#include "core/errors.h"
#include "core/image.h"
#include "core/state.h"
#include "graph/attrs.h"
#include "graph/data_source.h"
#include "graph/op_kind.h"
#include "graph/padding.h"

namespace mpsnn {

class FilterNode;

// MPSHandle: an opaque user object handed back in the graph's handle lists.
class Handle {
 public:
  virtual ~Handle() = default;
  virtual std::optional<std::string> label() const = 0;
};
using HandlePtr = std::shared_ptr<Handle>;

// MPSImageAllocator.
class ImageAllocator {
 public:
  virtual ~ImageAllocator() = default;
  virtual ImagePtr allocate(const CommandBufferPtr& command_buffer, const DevicePtr& device,
                            const ImageDescriptor& desc) const = 0;
  virtual bool is_temporary_default() const { return false; }
};
using ImageAllocatorPtr = std::shared_ptr<const ImageAllocator>;

// The two built-in allocators (MPSImage.default_allocator / MPSTemporaryImage.default_allocator).
ImageAllocatorPtr persistent_image_allocator();
ImageAllocatorPtr temporary_image_allocator();

class ImageNode {
 public:
  ImageNode() = default;
  explicit ImageNode(HandlePtr handle) : handle(std::move(handle)) {}
  virtual ~ImageNode() = default;

  HandlePtr handle;
  ChannelFormat format = ChannelFormat::none;
  ImageAllocatorPtr image_allocator = temporary_image_allocator();
  bool export_from_graph = false;
  bool synchronize_resource = false;
  bool stop_gradient = false;

  // The producing filter, or null for a graph input.
  std::shared_ptr<FilterNode> parent() const;

 private:
  friend class FilterNode;
  FilterNode* parent_ = nullptr;
};
using ImageNodePtr = std::shared_ptr<ImageNode>;

// The subclass of a state node (MPSNNStateNode hierarchy); C++ types mirror it so that the
// Python classes can derive from one another.
class StateNode {
 public:
  virtual ~StateNode() = default;
  // The MPSState class a graph delivers for this node (destination_states).
  virtual StateClass state_class() const { return StateClass::plain; }
  HandlePtr handle;
  bool export_from_graph = false;
  bool synchronize_resource = false;
  std::shared_ptr<FilterNode> producer() const;

 private:
  friend class FilterNode;
  FilterNode* producer_ = nullptr;
};
class GradientStateNode : public StateNode {
 public:
  // `cls`: the MPSNNGradientState subclass delivered for it (MPS has one state node class for several).
  explicit GradientStateNode(StateClass cls = StateClass::gradient) : class_(cls) {}
  StateClass state_class() const override { return class_; }

 private:
  StateClass class_;
};
class ConvolutionGradientStateNode : public GradientStateNode {
 public:
  StateClass state_class() const override { return StateClass::convolution_gradient; }
};
class ConvolutionTransposeGradientStateNode : public ConvolutionGradientStateNode {};
// The result states of batch and instance normalization and of their gradients (MPS delivers
// MPSCNNBatchNormalizationState / MPSCNNInstanceNormalizationGradientState for them).
class BatchNormalizationStateNode : public GradientStateNode {
 public:
  StateClass state_class() const override { return StateClass::batch_normalization; }
};
class InstanceNormalizationGradientStateNode : public GradientStateNode {
 public:
  StateClass state_class() const override { return StateClass::instance_normalization_gradient; }
};
class BinaryGradientStateNode : public StateNode {
 public:
  StateClass state_class() const override { return StateClass::binary_gradient; }
};
class ArithmeticGradientStateNode : public BinaryGradientStateNode {
 public:
  StateClass state_class() const override { return StateClass::arithmetic_gradient; }
};
class MultiaryGradientStateNode : public StateNode {
 public:
  StateClass state_class() const override { return StateClass::multiary_gradient; }
};
// The labels of a loss node (MPSNNLabelsNode): never produced by a filter, so always a source state
// of the graph, bound to an MPSCNNLossLabels at encode time.
class LabelsNode : public StateNode {
 public:
  StateClass state_class() const override { return StateClass::loss_labels; }
};
using StateNodePtr = std::shared_ptr<StateNode>;

// The state node class of a kind's result state (OpSchema::result_states; created with the node).
// convolution_gradient makes an MPSCNNConvolutionTransposeGradientStateNode for transposed
// convolutions (and their gradients).
enum class ResultStateKind {
  none, gradient, convolution_gradient, arithmetic_gradient, multiary_gradient, batch_normalization,
  instance_normalization_gradient, dropout_gradient
};

class FilterNode : public std::enable_shared_from_this<FilterNode> {
 public:
  FilterNode(OpKind kind, Attrs attrs, std::vector<ImageNodePtr> sources,
             std::vector<StateNodePtr> source_states = {});
  virtual ~FilterNode() = default;
  FilterNode(const FilterNode&) = delete;
  FilterNode& operator=(const FilterNode&) = delete;

  OpKind kind() const { return kind_; }
  const Attrs& attrs() const { return attrs_; }
  Attrs& attrs() { return attrs_; }
  // The attrs of this node's kind; a typed error (not std::bad_variant_access) when the node
  // has no such attributes, e.g. a property of another class of node.
  template <typename T>
  const T& attrs_as() const {
    if (auto* a = std::get_if<T>(&attrs_)) return *a;
    wrong_attrs();
  }
  template <typename T>
  T& attrs_as() {
    if (auto* a = std::get_if<T>(&attrs_)) return *a;
    wrong_attrs();
  }

  const std::vector<ImageNodePtr>& sources() const { return sources_; }
  const std::vector<StateNodePtr>& source_states() const { return source_states_; }
  ImageNodePtr result_image();
  std::vector<StateNodePtr> result_states();
  StateNodePtr result_state();  // first result state or null

  const PaddingPtr& padding_policy() const { return padding_; }
  void set_padding_policy(PaddingPtr policy);

  std::optional<std::string> label;

  // Parameter sources (set by the node's constructor binding).
  std::shared_ptr<ConvolutionDataSource> convolution_source;
  std::shared_ptr<NormalizationDataSource> normalization_source;
  void set_data_source(std::shared_ptr<ConvolutionDataSource> source);
  void set_data_source(std::shared_ptr<NormalizationDataSource> source);

  // "[convolution 'conv1']" for error messages: the node's label, else its data source's label
  // (read when the data source was given).
  std::string context() const;

 private:
  [[noreturn]] void wrong_attrs() const;
  void add_result_state(ResultStateKind kind);

  OpKind kind_;
  Attrs attrs_;
  std::vector<ImageNodePtr> sources_;
  std::vector<StateNodePtr> source_states_;
  std::unique_ptr<ImageNode> result_;
  std::vector<std::unique_ptr<StateNode>> result_states_;
  PaddingPtr padding_;
  std::optional<std::string> source_label_;  // the data source's label, for context()
};
using FilterNodePtr = std::shared_ptr<FilterNode>;

// Default padding of a node kind (nodes.md §1.3).
PaddingPtr default_padding_for(OpKind kind, const Attrs& attrs);

// The filter node whose user callbacks (padding policy, data source, transform provider) may run
// on this thread: set while a graph resolves the node's shape or reads its data source, so that
// calls back into that graph from a callback can be refused naming the node (NNGraph).
class NodeCallbackScope {
 public:
  explicit NodeCallbackScope(const FilterNode& node);
  ~NodeCallbackScope();
  NodeCallbackScope(const NodeCallbackScope&) = delete;
  NodeCallbackScope& operator=(const NodeCallbackScope&) = delete;
  static const FilterNode* current();

 private:
  const FilterNode* previous_;
};

// fn() inside a NodeCallbackScope for `node`. A typed error that does not name the node yet (one a
// callback adapter raised, e.g. a data source returning a value of the wrong type) gets the node's
// context as a prefix; user exceptions raised by the callbacks pass through unchanged.
template <typename Fn>
auto with_node_context(const FilterNode& node, Fn&& fn) -> decltype(fn()) {
  NodeCallbackScope scope(node);
  auto named = [&](const std::exception& e) {
    const std::string ctx = node.context();
    const std::string what = e.what();
    return what.find(ctx) == std::string::npos ? ctx + " " + what : what;
  };
  try {
    return fn();
  } catch (const ShapeError& e) {
    throw ShapeError(named(e));
  } catch (const DTypeError& e) {
    throw DTypeError(named(e));
  } catch (const GraphError& e) {
    throw GraphError(named(e));
  } catch (const UnsupportedError& e) {
    throw UnsupportedError(named(e));
  }
}

}  // namespace mpsnn
