// The inference-only models of the C API (ember_model_*): a checkpoint's layers, read from the
// architecture it records and the weights it holds, run one after another on the same kernels as
// ember's Python layers, in the same order of operations, so that both give the same numbers.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "capi/checkpoint.h"
#include "capi/json.h"

namespace ember::capi::model {

using Shape = std::vector<int64_t>;

// The parameters and buffers of one layer, taken from the checkpoint by name and widened to
// float32 (bf16 weights exactly), each shape checked; the names taken are recorded so that the
// model can refuse a file with tensors no layer uses.
class Weights {
 public:
  Weights(const Checkpoint& file, std::set<std::string>& taken) : file_(file), taken_(taken) {}
  // The float tensor `prefix + name` of this shape (float32, or bf16 widened).
  std::vector<float> floats(const std::string& key, const Shape& shape);
  // The raw values of an integer tensor of this dtype and element count.
  std::vector<unsigned char> raw(const std::string& key, const char* dtype, int64_t elements);
  bool has(const std::string& key) const;
  const std::string& path() const { return file_.path(); }

 private:
  const StoredTensor& find(const std::string& key);
  const Checkpoint& file_;
  std::set<std::string>& taken_;
};

struct Layer {
  std::string name;   // its place in the model ("3", "features.0"), for messages
  std::string kind;   // its class ("nn.Conv2d")
  virtual ~Layer() = default;
  // The output's shape for an input of shape `in` (std::invalid_argument naming the layer when
  // the input does not fit it).
  virtual Shape shape(const Shape& in) const = 0;
  // A layer that moves no data (Flatten, Dropout, Identity): run() is never called.
  virtual bool view() const { return false; }
  // y = the layer applied to x (shapes as shape() gave; y never overlaps x).
  virtual void run(const Shape& in, const Shape& out, const float* x, float* y) const = 0;

  [[noreturn]] void reject(const std::string& why) const;
};

// The layer a module description ({"class", "config", "children"}) at `name` stands for, with
// its weights (nested nn.Sequential are flattened into `out`). A class this library cannot run
// is Unsupported, naming it and where it is, as is a module applied twice (a "same_as" node).
void build(const json::Value& description, const std::string& name, Weights& weights,
           std::vector<std::unique_ptr<Layer>>& out);

}  // namespace ember::capi::model
