// A quantized weight of the C API (ember_qweight): its packed arrays, owned and checked, and the
// product with float activations. The models' QuantLinear layers hold one too.
#pragma once

#include <cstdint>
#include <vector>

#include "ember/ember.h"

struct ember_qweight {
  int bits = 8;
  int64_t n = 0, k = 0, group = 0, kp = 0;  // group: int4's group size, or int8's in groups (else 0)
  std::vector<unsigned char> data;
  std::vector<float> scales;      // not for int8 in groups
  std::vector<uint16_t> scales16;  // int8 in groups: the e6m10 scales' bits
  std::vector<int32_t> colsum;    // int8 per channel only

  // An empty weight of this format, its arrays sized (std::invalid_argument for a bad format).
  // With int8_groups, bits 8 is int8 in groups of `group`, else per channel.
  ember_qweight(int bits, int64_t n, int64_t k, int64_t group, bool int8_groups = false);

  bool int8_groups() const { return bits == 8 && group > 0; }

  // The values checked as Ember's Python checks a file's: scales finite and > 0, int8 values
  // within [-127, 127] and each channel's column sum what its values give (else
  // std::invalid_argument naming what is wrong).
  void check() const;

  // y (m x n, row stride ldy) = x (m x k, row stride ldx) @ dequant(W)^T + bias; false (nothing
  // written) when x holds NaN or infinity.
  bool matmul(const float* x, int64_t m, int64_t ldx, const float* bias, float* y, int64_t ldy) const;
};
