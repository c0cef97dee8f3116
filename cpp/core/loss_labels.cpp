#include "core/loss_labels.h"

#include <cstring>

#include "core/errors.h"

namespace mpsnn {

int64_t LossDataDescriptor::dense_bytes_per_row() const {
  return layout == DataLayout::height_width_channels ? width * feature_channels * 4 : width * 4;
}

int64_t LossDataDescriptor::dense_bytes_per_image() const {
  const int64_t row = bytes_per_row > 0 ? bytes_per_row : dense_bytes_per_row();
  return layout == DataLayout::height_width_channels ? row * height : row * height * feature_channels;
}

int64_t LossDataDescriptor::image_count(const char* what) const {
  MPSNN_CHECK(width > 0 && height > 0 && feature_channels > 0, ShapeError, "[", what, "] size is ", width, "x",
              height, "x", feature_channels, "; expected width, height and depth (feature channels) > 0");
  const int64_t row = bytes_per_row > 0 ? bytes_per_row : dense_bytes_per_row();
  MPSNN_CHECK(row >= dense_bytes_per_row(), ShapeError, "[", what, "] bytes_per_row ", row,
              " is less than one row of data (", dense_bytes_per_row(), " bytes)");
  const int64_t per_image = bytes_per_image > 0 ? bytes_per_image : dense_bytes_per_image();
  const int64_t min_image = layout == DataLayout::height_width_channels ? row * height : row * height * feature_channels;
  MPSNN_CHECK(per_image >= min_image, ShapeError, "[", what, "] bytes_per_image ", per_image,
              " is less than one image of data (", min_image, " bytes)");
  const int64_t bytes = int64_t(data.size()) * 4;
  // The last image needs only its own extent, not a full stride after it.
  MPSNN_CHECK(bytes >= min_image && (bytes - min_image) % per_image == 0, ShapeError, "[", what, "] data holds ",
              data.size(), " float32 values; expected whole images of ", width, "x", height, "x", feature_channels,
              " (", min_image / 4, " values for one image, ", per_image / 4, " more for each further image)");
  return (bytes - min_image) / per_image + 1;
}

ImagePtr LossDataDescriptor::to_image(const DevicePtr& device, const char* what) const {
  const int64_t n = image_count(what);
  ImageDescriptor d;
  d.channel_format = ChannelFormat::float32;
  d.width = width;
  d.height = height;
  d.feature_channels = feature_channels;
  d.number_of_images = n;
  auto img = std::make_shared<Image>(device, d);
  HostStrides strides;
  strides.bytes_per_row = bytes_per_row > 0 ? bytes_per_row : dense_bytes_per_row();
  strides.bytes_per_image = bytes_per_image > 0 ? bytes_per_image : dense_bytes_per_image();
  ImageRegion region;
  region.depth = n;
  img->write_bytes(data.data(), data.size() * 4, layout, strides, region, 0);
  return img;
}

namespace {
void check_labels_image(const ImagePtr& img, const DevicePtr& device, const char* what) {
  MPSNN_CHECK(img != nullptr, GraphError, "[MPSCNNLossLabels] ", what, " is None");
  MPSNN_CHECK(img->device() == device, GraphError, "[MPSCNNLossLabels] ", what, " belongs to another device");
  MPSNN_CHECK(img->format() == ChannelFormat::float32 && img->dense() && !img->is_temporary(), DTypeError,
              "[MPSCNNLossLabels] ", what, " is a ", format_name(img->format()), img->dense() ? "" : " channel slice",
              img->is_temporary() ? " temporary" : "", " image; expected a persistent dense float32 image");
}

ImagePtr new_image(const DevicePtr& device, const ImageShape& s) {
  ImageDescriptor d;
  d.channel_format = ChannelFormat::float32;
  d.width = s.w;
  d.height = s.h;
  d.feature_channels = s.c;
  d.number_of_images = s.n;
  return std::make_shared<Image>(device, d);
}
}  // namespace

LossLabels::LossLabels(DevicePtr device, ImagePtr labels, ImagePtr weights, int64_t loss_w, int64_t loss_h,
                       int64_t loss_c)
    : State(device, {}, StateClass::loss_labels),  // no MTLBuffers: its resources are the three images
      labels_(std::move(labels)),
      weights_(std::move(weights)) {
  check_labels_image(labels_, this->device(), "labels");
  if (weights_) {
    check_labels_image(weights_, this->device(), "weights");
    const ImageShape& a = labels_->shape();
    const ImageShape& b = weights_->shape();
    MPSNN_CHECK(a == b, ShapeError, "[MPSCNNLossLabels] weights are ", b.w, "x", b.h, "x", b.c, " (", b.n,
                " images) but labels are ", a.w, "x", a.h, "x", a.c, " (", a.n, " images); expected equal sizes");
  }
  MPSNN_CHECK(loss_w > 0 && loss_h > 0 && loss_c > 0, ShapeError, "[MPSCNNLossLabels] loss_image_size is ", loss_w,
              "x", loss_h, "x", loss_c, "; expected width, height and depth > 0");
  loss_ = new_image(this->device(), ImageShape{labels_->number_of_images(), loss_h, loss_w, loss_c});
}

ImagePtr LossLabels::loss_image() const {
  std::lock_guard<std::mutex> lock(loss_mutex_);
  return loss_;
}

std::vector<ImagePtr> LossLabels::bound_inputs() const {
  if (weights_) return {labels_, weights_};
  return {labels_};
}

std::vector<ImagePtr> LossLabels::bound_outputs() const { return {loss_image()}; }

LossLabelsPtr LossLabels::gather(const std::vector<LossLabelsPtr>& items, const char* what) {
  MPSNN_CHECK(!items.empty(), GraphError, "[", what, "] empty batch of MPSCNNLossLabels");
  bool same = true;
  for (const auto& it : items) same = same && it == items[0];
  if (same) return items[0];
  const LossLabelsPtr& first = items[0];
  const ImageShape ls = first->labels_->shape();
  const ImageShape os = first->loss_image()->shape();
  for (size_t k = 0; k < items.size(); ++k) {
    const LossLabelsPtr& it = items[k];
    MPSNN_CHECK(it != nullptr, GraphError, "[", what, "] labels batch item ", k, " is None");
    const ImageShape s = it->labels_->shape();
    const ImageShape o = it->loss_image()->shape();
    MPSNN_CHECK(s.n == 1 && o.n == 1, ShapeError, "[", what, "] labels batch item ", k, " holds ", s.n,
                " images; a batch of MPSCNNLossLabels needs one image per item");
    MPSNN_CHECK(s == ls && o == os && bool(it->weights_) == bool(first->weights_) && it->device() == first->device(),
                ShapeError, "[", what, "] labels batch item ", k,
                " differs from item 0 in its labels size, loss image size or in having weights");
  }
  const int64_t n = int64_t(items.size());
  const DevicePtr& device = first->device();
  auto gather_images = [&](auto get) {
    ImageShape s = ls;
    s.n = n;
    ImagePtr out = new_image(device, s);
    const size_t per = size_t(ls.numel()) * 4;
    char* dst = static_cast<char*>(out->data());
    for (int64_t k = 0; k < n; ++k) {
      const ImagePtr& src = get(*items[size_t(k)]);
      src->wait_for_producer(what);
      device->copy_blocking(dst + size_t(k) * per, src->data(), per);
    }
    return out;
  };
  ImagePtr labels = gather_images([](const LossLabels& l) -> const ImagePtr& { return l.labels_; });
  ImagePtr weights;
  if (first->weights_) weights = gather_images([](const LossLabels& l) -> const ImagePtr& { return l.weights_; });
  auto batch = std::make_shared<LossLabels>(device, labels, weights, os.w, os.h, os.c);
  std::vector<ImagePtr> views = batch->loss_image()->batch_representation(0, n);
  for (int64_t k = 0; k < n; ++k) {
    std::lock_guard<std::mutex> lock(items[size_t(k)]->loss_mutex_);
    items[size_t(k)]->loss_ = views[size_t(k)];
  }
  return batch;
}

}  // namespace mpsnn
