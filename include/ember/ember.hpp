// C++17 conveniences over Ember's C API (header-only): failures become exceptions, and the
// settings a scope changes are restored when it ends.
//
//   ember::ThreadsScope threads(1);                      // 1 thread until the scope ends
//   ember::gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);   // throws ember::Error
#ifndef EMBER_EMBER_HPP
#define EMBER_EMBER_HPP

#include <cstdint>
#include <stdexcept>
#include <string>

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
