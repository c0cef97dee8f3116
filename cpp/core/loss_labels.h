#pragma once
// MPSCNNLossLabels and MPSCNNLossDataDescriptor (graph.md §5.2, nodes.md §13.1): the labels of a
// loss node, optional per-element weights, and the loss image the loss kernel writes. A labels
// object is a source state of the graph: NNGraph binds its labels (and weights) as inputs of the
// loss step and its loss image as an output (State::bound_inputs / bound_outputs). All three are
// float32 images with one image per batch item; one object may hold all N images of a batch (an
// mpsnn convenience), or encode_batch gathers N single-image objects (gather()).
#include <memory>
#include <mutex>
#include <vector>

#include "core/image.h"
#include "core/state.h"

namespace mpsnn {

// MPSCNNLossDataDescriptor: float32 data in either MPS data layout. Strides as in write_bytes
// (graph.md §3.3): bytes_per_row between rows, bytes_per_image between images (0: dense). The data
// may hold several images one after the other.
struct LossDataDescriptor {
  std::vector<float> data;
  DataLayout layout = DataLayout::height_width_channels;
  int64_t width = 1, height = 1, feature_channels = 1;
  int64_t bytes_per_row = 0, bytes_per_image = 0;

  int64_t dense_bytes_per_row() const;
  int64_t dense_bytes_per_image() const;
  // Number of images the data holds; a ShapeError naming `what` unless it is a whole number > 0.
  int64_t image_count(const char* what) const;
  // The data as a float32 (N, H, W, C) image on `device`.
  ImagePtr to_image(const DevicePtr& device, const char* what) const;
};

class LossLabels : public State {
 public:
  // Labels (and weights, or null) as float32 dense images of equal shape; a loss image of
  // loss_w x loss_h x loss_c per labels image (zero until a loss node writes it).
  LossLabels(DevicePtr device, ImagePtr labels, ImagePtr weights, int64_t loss_w, int64_t loss_h, int64_t loss_c);

  const ImagePtr& labels_image() const { return labels_; }
  const ImagePtr& weights_image() const { return weights_; }
  ImagePtr loss_image() const;

  std::vector<ImagePtr> bound_inputs() const override;
  std::vector<ImagePtr> bound_outputs() const override;

  // One labels object standing for a batch of single-image ones (encode_batch with an
  // MPSStateBatch of N distinct MPSCNNLossLabels): labels and weights are copied into N-image
  // images, and each item's loss image becomes a view of image k of the batch's loss image, so
  // that after the run every item holds its own loss. A batch repeating one object is that object.
  static std::shared_ptr<LossLabels> gather(const std::vector<std::shared_ptr<LossLabels>>& items, const char* what);

 private:
  ImagePtr labels_, weights_;
  mutable std::mutex loss_mutex_;
  ImagePtr loss_;
};
using LossLabelsPtr = std::shared_ptr<LossLabels>;

}  // namespace mpsnn
