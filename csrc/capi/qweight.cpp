// Quantized weights and products of the C API (see qweight.h and ember.h).
#include "capi/qweight.h"

#include <cmath>
#include <cstring>
#include <memory>

#include "capi/common.h"
#include "ops/qmatmul/qmatmul.h"

using namespace ember::capi;
namespace qm = ember::qmatmul;

namespace {

// A packed array's given length against what the weight's shape and format need.
void expect_count(const char* name, int64_t given, size_t need) {
  if (given != static_cast<int64_t>(need))
    invalid(name, " is ", given, "; the packed layout of this shape and format needs ", need);
}

}  // namespace

ember_qweight::ember_qweight(int bits_, int64_t n_, int64_t k_, int64_t group_, bool int8_groups_)
    : bits(bits_), n(n_), k(k_) {
  if (bits != 8 && bits != 4) invalid("bits must be 8 or 4, got ", bits);
  if (n < 1 || k < 1 || k > qm::kMaxK)
    invalid("the weight must be n x k with n >= 1 and 1 <= k <= ", qm::kMaxK, ", got ", n, " x ", k);
  if (n > (int64_t(1) << 40)) invalid("n (", n, ") is too large");
  if ((bits == 4 || int8_groups_) && (group_ < 8 || group_ % 8 || group_ > 4096))
    invalid("group_size must be a multiple of 8 from 8 to 4096, got ", group_);
  if (bits == 8 && int8_groups_) {
    group = group_, kp = (k + group - 1) / group * group;
    const qm::PackedSizes sizes = qm::packed_sizes_int8g(n, k, group);
    data.resize(static_cast<size_t>(sizes.data));
    scales16.resize(static_cast<size_t>(sizes.scales));
    return;
  }
  group = bits == 4 ? group_ : 0;
  kp = bits == 8 ? (k + 3) / 4 * 4 : (k + group - 1) / group * group;
  const qm::PackedSizes sizes = qm::packed_sizes(n, k, bits, bits == 4 ? group : 4);
  data.resize(static_cast<size_t>(sizes.data));
  scales.resize(static_cast<size_t>(sizes.scales));
  colsum.resize(static_cast<size_t>(sizes.colsum));
}

void ember_qweight::check() const {
  if (int8_groups()) {  // every e6m10 bit pattern is a positive finite scale
    for (const unsigned char byte : data)
      if (byte == 0) invalid("int8 weights must lie in [-127, 127] (bytes 1 to 255), found -128 (byte 0)");
    return;
  }
  for (size_t i = 0; i < scales.size(); ++i)
    if (!(std::isfinite(scales[i]) && scales[i] > 0))
      invalid("scales must be finite and > 0, found ", scales[i], " at ", i);
  if (bits == 4) return;
  std::vector<int64_t> sums(colsum.size(), 0);
  const auto* q = reinterpret_cast<const int8_t*>(data.data());
  for (size_t i = 0; i < data.size(); ++i) {  // blocks of 16 channels, 64 bytes per quad of inputs
    if (q[i] < -127) invalid("int8 weights must lie in [-127, 127], found -128");
    sums[i / static_cast<size_t>(kp * qm::kBlock) * qm::kBlock + i % 64 / 4] += q[i];
  }
  for (size_t c = 0; c < sums.size(); ++c)
    if (sums[c] != colsum[c])
      invalid("colsum: channel ", c, "'s column sum is ", colsum[c], ", its weights sum to ", sums[c]);
}

bool ember_qweight::matmul(const float* x, int64_t m, int64_t ldx, const float* bias, float* y, int64_t ldy) const {
  if (int8_groups()) {
    const qm::Int8GWeight w{n, k, group, kp, data.data(), scales16.data()};
    return qm::qmatmul_int8g(x, m, ldx, w, bias, y, ldy, active_isa(), threads());
  }
  if (bits == 8) {
    const qm::Int8Weight w{n, k, kp, reinterpret_cast<const int8_t*>(data.data()), scales.data(), colsum.data()};
    return qm::qmatmul_int8(x, m, ldx, w, bias, y, ldy, active_isa(), threads());
  }
  const qm::Int4Weight w{n, k, group, kp, data.data(), scales.data()};
  return qm::qmatmul_int4(x, m, ldx, w, bias, y, ldy, active_isa(), threads());
}

extern "C" {

ember_status ember_qweight_quantize_f32(const float* w, int64_t n, int64_t k, int64_t ldw, int bits,
                                        int64_t group_size, ember_qweight** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("ember_qweight_quantize_f32", [&] {
    if (out == nullptr) invalid("out is NULL");
    check_count("n", n), check_count("k", k);  // w checked before the packed weight is allocated
    check_pointer("w", w, span("w", n, k, ldw), sizeof(float));
    auto q = std::make_unique<ember_qweight>(bits, n, k, group_size);
    qm::quantize_pack(w, n, k, ldw, bits, bits == 4 ? group_size : 4, q->data.data(), q->scales.data(),
                      q->colsum.data(), threads());
    *out = q.release();
  });
}

ember_status ember_qweight_from_packed(int bits, int64_t n, int64_t k, int64_t group_size, const void* data,
                                       int64_t data_bytes, const float* scales, int64_t scales_count,
                                       const int32_t* colsum, int64_t colsum_count, ember_qweight** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("ember_qweight_from_packed", [&] {
    if (out == nullptr) invalid("out is NULL");
    auto q = std::make_unique<ember_qweight>(bits, n, k, group_size);
    expect_count("data_bytes", data_bytes, q->data.size());
    expect_count("scales_count", scales_count, q->scales.size());
    expect_count("colsum_count", colsum_count, q->colsum.size());
    check_pointer("data", data, data_bytes, 1);
    check_pointer("scales", scales, scales_count, sizeof(float));
    check_pointer("colsum", colsum, colsum_count, sizeof(int32_t));
    std::memcpy(q->data.data(), data, q->data.size());
    std::memcpy(q->scales.data(), scales, q->scales.size() * sizeof(float));
    if (colsum_count) std::memcpy(q->colsum.data(), colsum, q->colsum.size() * sizeof(int32_t));
    q->check();
    *out = q.release();
  });
}

ember_status ember_qweight_packed(const ember_qweight* w, const void** data, int64_t* data_bytes, const float** scales,
                                  int64_t* scales_count, const int32_t** colsum, int64_t* colsum_count) {
  return guarded("ember_qweight_packed", [&] {
    if (w == nullptr) invalid("w is NULL");
    if (w->int8_groups()) invalid("w is int8 in groups, whose scales are 16-bit: use ember_qweight_packed_int8_groups");
    if (!data || !data_bytes || !scales || !scales_count || !colsum || !colsum_count)
      invalid("every output pointer must be given");
    *data = w->data.data(), *data_bytes = static_cast<int64_t>(w->data.size());
    *scales = w->scales.data(), *scales_count = static_cast<int64_t>(w->scales.size());
    *colsum = w->colsum.empty() ? nullptr : w->colsum.data(), *colsum_count = static_cast<int64_t>(w->colsum.size());
  });
}

void ember_qweight_free(ember_qweight* w) { delete w; }

ember_status ember_qweight_quantize_int8_groups_f32(const float* w, int64_t n, int64_t k, int64_t ldw,
                                                    int64_t group_size, ember_qweight** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("ember_qweight_quantize_int8_groups_f32", [&] {
    if (out == nullptr) invalid("out is NULL");
    check_count("n", n), check_count("k", k);  // w checked before the packed weight is allocated
    check_pointer("w", w, span("w", n, k, ldw), sizeof(float));
    auto q = std::make_unique<ember_qweight>(8, n, k, group_size, true);
    qm::quantize_pack_int8g(w, n, k, ldw, q->group, q->data.data(), q->scales16.data(), threads());
    *out = q.release();
  });
}

ember_status ember_qweight_from_packed_int8_groups(int64_t n, int64_t k, int64_t group_size, const void* data,
                                                   int64_t data_bytes, const uint16_t* scales, int64_t scales_count,
                                                   ember_qweight** out) {
  if (out != nullptr) *out = nullptr;
  return guarded("ember_qweight_from_packed_int8_groups", [&] {
    if (out == nullptr) invalid("out is NULL");
    auto q = std::make_unique<ember_qweight>(8, n, k, group_size, true);
    expect_count("data_bytes", data_bytes, q->data.size());
    expect_count("scales_count", scales_count, q->scales16.size());
    check_pointer("data", data, data_bytes, 1);
    check_pointer("scales", scales, scales_count, sizeof(uint16_t));
    std::memcpy(q->data.data(), data, q->data.size());
    std::memcpy(q->scales16.data(), scales, q->scales16.size() * sizeof(uint16_t));
    q->check();
    *out = q.release();
  });
}

ember_status ember_qweight_packed_int8_groups(const ember_qweight* w, const void** data, int64_t* data_bytes,
                                              const uint16_t** scales, int64_t* scales_count) {
  return guarded("ember_qweight_packed_int8_groups", [&] {
    if (w == nullptr) invalid("w is NULL");
    if (!data || !data_bytes || !scales || !scales_count) invalid("every output pointer must be given");
    if (!w->int8_groups()) invalid("w is not int8 in groups: use ember_qweight_packed");
    *data = w->data.data(), *data_bytes = static_cast<int64_t>(w->data.size());
    *scales = w->scales16.data(), *scales_count = static_cast<int64_t>(w->scales16.size());
  });
}

ember_status ember_qmatmul_f32(const ember_qweight* w, int64_t m, const float* x, int64_t ldx, const float* bias,
                               float* y, int64_t ldy) {
  return guarded("ember_qmatmul_f32", [&] {
    if (w == nullptr) invalid("w is NULL");
    check_count("m", m);
    const int64_t nx = span("x", m, w->k, ldx), ny = span("y", m, w->n, ldy);
    check_pointer("x", x, nx, sizeof(float)), check_pointer("y", y, ny, sizeof(float));
    check_pointer("bias", bias, 0, sizeof(float));
    const int64_t F = sizeof(float);
    check_apart("y", y, ny * F, "x", x, nx * F);
    check_apart("y", y, ny * F, "bias", bias, bias ? w->n * F : 0);
    if (m == 0) return;
    if (!w->matmul(x, m, ldx, bias, y, ldy)) invalid("x holds NaN or infinite values, which int8 activations cannot represent");
  });
}

}  // extern "C"
