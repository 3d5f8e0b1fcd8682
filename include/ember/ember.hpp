// C++17 conveniences over Ember's C API (header-only): failures become exceptions, and the
// settings a scope changes are restored when it ends.
//
//   ember::ThreadsScope threads(1);                      // 1 thread until the scope ends
//   ember::gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);   // throws ember::Error
//   ember::Model model("digits.safetensors");           // released when it goes out of scope
//   std::vector<float> logits = model.forward({1, 1, 8, 8}, pixels);
#ifndef EMBER_EMBER_HPP
#define EMBER_EMBER_HPP

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ember/ember.h"

namespace ember {

// What a failed call reports: its status and ember_last_error()'s message.
class Error : public std::runtime_error {
 public:
  Error(ember_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  ember_status status() const noexcept { return status_; }

 private:
  ember_status status_;
};

inline void check(ember_status status) {
  if (status != EMBER_OK) throw Error(status, ember_last_error());
}

inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                 const float* bias = nullptr, bool relu = false) {
  check(ember_gemm_f32(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, relu));
}

inline void conv2d_forward(const ember_conv2d_shape& shape, const float* x, const float* w, const float* bias,
                           bool relu, float* y) {
  check(ember_conv2d_forward_f32(&shape, x, w, bias, relu, y));
}

// An inference-only model loaded from an Ember checkpoint (ember_model_*); movable, not copyable.
class Model {
 public:
  explicit Model(const std::string& path) { check(ember_model_load(path.c_str(), &model_)); }
  ~Model() { ember_model_free(model_); }
  Model(Model&& other) noexcept : model_(std::exchange(other.model_, nullptr)) {}
  Model& operator=(Model&& other) noexcept {
    std::swap(model_, other.model_);
    return *this;
  }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // The output's shape for an input of this shape.
  std::vector<int64_t> output_shape(const std::vector<int64_t>& shape) const {
    int rank = 0;
    int64_t out[EMBER_MAX_DIMS];
    check(ember_model_output_shape(model_, static_cast<int>(shape.size()), shape.data(), &rank, out));
    return std::vector<int64_t>(out, out + rank);
  }

  // The model applied to x (float32, C-contiguous, of this shape), into y (resized to fit).
  void forward(const std::vector<int64_t>& shape, const float* x, std::vector<float>& y) const {
    int64_t size = 1;
    for (int64_t d : output_shape(shape)) size *= d;
    y.resize(static_cast<size_t>(size));
    check(ember_model_forward(model_, static_cast<int>(shape.size()), shape.data(), x, y.data(), size));
  }
  std::vector<float> forward(const std::vector<int64_t>& shape, const float* x) const {
    std::vector<float> y;
    forward(shape, x, y);
    return y;
  }

  std::vector<std::string> layers() const {
    std::vector<std::string> out;
    for (int64_t i = 0; i < ember_model_num_layers(model_); ++i) out.emplace_back(ember_model_layer(model_, i));
    return out;
  }
  const ember_model* get() const noexcept { return model_; }

 private:
  ember_model* model_ = nullptr;
};

// Sets the kernels' thread count for its lifetime, then restores the previous one.
class ThreadsScope {
 public:
  explicit ThreadsScope(int n) : previous_(ember_get_num_threads()) { check(ember_set_num_threads(n)); }
  ~ThreadsScope() { ember_set_num_threads(previous_); }
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;

 private:
  int previous_;
};

}  // namespace ember

#endif  // EMBER_EMBER_HPP
