// A quantized weight of the C API (ember_qweight): its packed arrays, owned and checked, and the
// product with float activations. The models' QuantLinear layers hold one too.
#pragma once

#include <cstdint>
#include <vector>

#include "ember/ember.h"

struct ember_qweight {
  int bits = 8;
  int64_t n = 0, k = 0, group = 0, kp = 0;  // group: int4's group size (0 for int8)
  std::vector<unsigned char> data;
  std::vector<float> scales;
  std::vector<int32_t> colsum;  // int8 only

  // An empty weight of this format, its arrays sized (std::invalid_argument for a bad format).
  ember_qweight(int bits, int64_t n, int64_t k, int64_t group);

  // The values checked as Ember's Python checks a file's: scales finite and > 0, int8 values
  // within [-127, 127] and each channel's column sum what its values give (else
  // std::invalid_argument naming what is wrong).
  void check() const;

  // y (m x n, row stride ldy) = x (m x k, row stride ldx) @ dequant(W)^T + bias; false (nothing
  // written) when x holds NaN or infinity.
  bool matmul(const float* x, int64_t m, int64_t ldx, const float* bias, float* y, int64_t ldy) const;
};
