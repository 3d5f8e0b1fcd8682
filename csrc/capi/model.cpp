// ember_model_*: loading a checkpoint's model and running it (see model.h and ember.h).
#include "capi/model.h"

#include <algorithm>
#include <cstring>

#include "capi/common.h"

using namespace ember::capi;
using ember::capi::model::Layer;
using ember::capi::model::Shape;

struct ember_model {
  std::vector<std::unique_ptr<Layer>> layers;
  std::vector<std::string> descriptions;  // "<name> <class>" per layer
};

namespace {

int64_t count(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d != 0 && n > kMaxElements / d) invalid("an intermediate result (", d, " x ...) is too large");
    n *= d;
  }
  return n;
}

// The shapes every layer produces for an input of shape `in`: shapes[0] = in, shapes[i + 1]
// the output of layer i.
std::vector<Shape> plan(const ember_model& m, int rank, const int64_t* shape) {
  if (rank < 1 || rank > EMBER_MAX_DIMS) invalid("rank must be between 1 and ", EMBER_MAX_DIMS, ", got ", rank);
  if (shape == nullptr) invalid("shape is NULL");
  std::vector<Shape> shapes{Shape(shape, shape + rank)};
  for (int64_t d : shapes[0])
    if (d < 0) invalid("shape has a negative size ", d);
  count(shapes[0]);
  for (const auto& layer : m.layers) {
    shapes.push_back(layer->shape(shapes.back()));
    if (shapes.back().size() > EMBER_MAX_DIMS)
      invalid("module '", layer->name, "' would make a result of more than ", EMBER_MAX_DIMS, " dimensions");
    count(shapes.back());
  }
  return shapes;
}

// Two buffers each thread reuses between calls, so that a served model allocates nothing in
// its steady state.
float* scratch(int which, int64_t n) {
  thread_local std::vector<float> buffers[2];
  std::vector<float>& b = buffers[which];
  if (static_cast<int64_t>(b.size()) < n) {
    b.clear();
    b.shrink_to_fit();
    b.resize(static_cast<size_t>(n));
  }
  return b.data();
}

// A metadata value's JSON; malformed, it makes the file damaged.
json::Value metadata_json(const char* path, const char* key, const std::string& text) {
  try {
    return json::parse(text);
  } catch (const std::invalid_argument& e) {
    throw IoError(ember::detail::concat(path, ": metadata ", key, " is not valid (", e.what(), ")"));
  }
}

void check_model(const ember_model* model) {
  if (model == nullptr) invalid("model is NULL");
}

}  // namespace

extern "C" {

ember_status ember_model_load(const char* path, ember_model** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("ember_model_load", [&] {
    if (path == nullptr) invalid("path is NULL");
    if (out == nullptr) invalid("model is NULL");
    const Checkpoint file(path);
    const std::string* text = file.metadata("ember.architecture");
    if (text == nullptr)
      throw IoError(ember::detail::concat(path, " does not record its model's architecture"));
    const json::Value description = metadata_json(path, "ember.architecture", *text);
    if (const json::Value* why = description.find("unavailable"); why != nullptr && why->is(json::Value::Kind::string))
      throw IoError(ember::detail::concat(path, " does not record its model's architecture: ", why->string));
    bool quantized = false;
    auto model = std::make_unique<ember_model>();
    std::set<std::string> taken;
    model::Weights weights(file, taken);
    model::build(description, "", weights, model->layers);
    for (const auto& l : model->layers) quantized = quantized || l->kind == "quant.QuantLinear";
    if (quantized) {  // the packed layout must be the one the kernels read
      const std::string* quant = file.metadata("ember.quant");
      const json::Value q = quant ? metadata_json(path, "ember.quant", *quant) : json::Value{};
      const json::Value* layout = q.find("layout");
      if (layout == nullptr || !layout->is(json::Value::Kind::string) || layout->string != "blocks16-v1")
        throw IoError(ember::detail::concat(path, " holds quantized weights in a layout this library does not read "
                                            "(ember.quant's layout must be 'blocks16-v1')"));
    }
    for (const auto& [key, tensor] : file.tensors())
      if (key.rfind("model.", 0) == 0 && !taken.count(key))
        throw IoError(ember::detail::concat(path, " holds tensor ", key, ", which no layer of its model uses"));
    for (const auto& l : model->layers) model->descriptions.push_back(l->name + " " + l->kind);
    *out = model.release();
  });
}

void ember_model_free(ember_model* model) { delete model; }

int64_t ember_model_num_layers(const ember_model* model) {
  return model == nullptr ? 0 : static_cast<int64_t>(model->layers.size());
}

const char* ember_model_layer(const ember_model* model, int64_t i) {
  if (model == nullptr || i < 0 || i >= static_cast<int64_t>(model->descriptions.size())) return nullptr;
  return model->descriptions[static_cast<size_t>(i)].c_str();
}

ember_status ember_model_output_shape(const ember_model* model, int rank, const int64_t* shape, int* out_rank,
                                      int64_t* out_shape) {
  return guarded("ember_model_output_shape", [&] {
    check_model(model);
    if (out_rank == nullptr || out_shape == nullptr) invalid("out_rank and out_shape must not be NULL");
    const Shape out = plan(*model, rank, shape).back();
    *out_rank = static_cast<int>(out.size());
    std::copy(out.begin(), out.end(), out_shape);
  });
}

ember_status ember_model_forward(const ember_model* model, int rank, const int64_t* shape, const float* x, float* y,
                                 int64_t y_size) {
  return guarded("ember_model_forward", [&] {
    check_model(model);
    const std::vector<Shape> shapes = plan(*model, rank, shape);
    const int64_t nx = count(shapes.front()), ny = count(shapes.back());
    if (y_size < ny) invalid("y_size (", y_size, ") is smaller than the output (", ny, " values)");
    check_pointer("x", x, nx, sizeof(float));
    check_pointer("y", y, ny, sizeof(float));
    check_apart("y", y, ny * int64_t(sizeof(float)), "x", x, nx * int64_t(sizeof(float)));
    // Each layer that computes writes to the buffer its input is not in; the last one to y.
    size_t last = model->layers.size();
    for (size_t i = 0; i < model->layers.size(); ++i)
      if (!model->layers[i]->view()) last = i;
    const float* current = x;
    int next = 0;
    for (size_t i = 0; i < model->layers.size(); ++i) {
      const Layer& layer = *model->layers[i];
      if (layer.view()) continue;
      float* target = i == last ? y : scratch(next, count(shapes[i + 1]));
      layer.run(shapes[i], shapes[i + 1], current, target);
      current = target;
      next ^= 1;
    }
    if (current != y && ny > 0) std::memcpy(y, current, static_cast<size_t>(ny) * sizeof(float));
  });
}

}  // extern "C"
