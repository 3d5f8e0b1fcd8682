// Quantized matrix products: y = x @ dequant(W)^T + bias, with float32 x and y.
//
// Weights (N outputs x K inputs) are quantized once, symmetrically:
//  - int8: q in [-127, 127], one float scale per output channel;
//  - int8 in groups (8.5 bits per weight at G = 32, the size of llama.cpp's q8_0): q in
//    [-127, 127], one 16-bit scale per output channel and group of G consecutive inputs
//    (G a multiple of 8). The scale is an unsigned float with 6 exponent and 10 mantissa
//    bits ("e6m10": bits h stand for 2^(h >> 10) * (1 + (h & 1023) / 1024) / 2^31, so every
//    h is a positive finite scale from 2^-31 to about 2^33 with fp16's precision, and it
//    widens to float32 exactly as the bits (h << 13) + (96 << 23)), chosen per group near
//    max|w| / 127 for least squared error (see quantize_pack_int8g), q rounded against it;
//  - int4: q in [-8, 7], one float scale per output channel and group of G
//    consecutive inputs (G = 32, 64 or 128), two values per byte.
// Activations are quantized inside the call, symmetrically to int8 in
// [-127, 127]: per row for int8 weights (W8A8), per row and group for grouped
// int8 and for int4 (W4A8). For a row x with largest magnitude a (over the row or the group):
//   scale = a / 127,  q = round_half_even(x * (127 / a))   (a = 0: all zero)
// in float32, exactly as written, so every implementation gets the same
// integers. The integer dot products are exact (int32 with at most 2^17
// products of at most 127 * 255 each, so K <= 65536), and the float epilogue
// is, per output, in this order and with fused multiply-adds:
//   W8A8:  y = fma(float(acc), sx[m] * sw[n], bias[n])
//   W4A8 and grouped W8A8:
//          y = 0; for each group g: y = fma(float(acc_g), sx[m,g] * sw[n,g], y); y += bias[n]
// so the reference and every ISA's kernels agree bit for bit.
//
// Packed layout (the same for every ISA), N padded to a multiple of 16 and K
// to a multiple of 4 (int8) or of G (int4) with zeros:
//  - int8: blocks of 16 channels; within a block, for each quad of inputs
//    k = 4q..4q+3, 64 bytes: channel c's 4 values at bytes 4c..4c+3.
//    colsum[n] = sum_k q[n, k] (for the unsigned-activation form of vpdpbusd).
//  - int8 in groups: the int8 layout (K padded to a multiple of G) holding q + 128 as
//    unsigned bytes (the unsigned operand of vpdpbusd; the activations enter signed), and
//    the scales' e6m10 bits laid out (N/16 blocks, K/G groups, 16 channels).
//  - int4: blocks of 16 channels; within a block, for each octet of inputs
//    k = 8o..8o+7, 64 bytes: channel c's byte 4c+j holds (q[k=8o+j] + 8) in its
//    low nibble and (q[k=8o+4+j] + 8) in its high nibble. Scales are laid out
//    (N/16 blocks, K/G groups, 16 channels).
//
// int4 with a codebook (4.5 bits per weight, the size of llama.cpp's q4_K and
// more accurate than it): K is cut into super-blocks of 256 inputs (the last
// one may be shorter) and those into sub-blocks of 16. A weight is
//   w[n, k] = D[n, s] * c[n, s, j] * kCodebook[q[n, k]]
// with q a 4-bit index into a fixed non-uniform int8 codebook (fitted to
// Gaussian-like weights), c a signed 6-bit sub-block scale in [-32, 31] (the
// sign lets each sub-block put the codebook's longer tail on its own longer
// side) and D a float32 scale per channel and super-block. Activations are
// quantized per row and super-block (group 256, the formula above), and per
// output the integer sum of a super-block
//   T = sum_j c_j * sum_{k in j} qa[k] * kCodebook[q[k]]      (|T| < 2^28)
// enters y = 0; for each super-block s: y = fma(float(T_s), D[n, s] * sx[m, s], y);
// y += bias[n]. Packed: K padded to a multiple of 16 with zeros, the indices in
// the int4 octet layout above (an index where int4 has q + 8); per block of 16
// channels and super-block (a last partial one included), 256 bytes
// of scales: D (16 floats), then for each quad of sub-blocks 4p..4p+3 three
// 16-byte rows a, b, c where channel l's bytes hold u_i = c_{4p+i} + 32 (6 bits):
//   a[l] = u_0 | (u_3 & 3) << 6,  b[l] = u_1 | (u_3 >> 2 & 3) << 6,  c[l] = u_2 | (u_3 >> 4) << 6.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/cpu_features.h"

namespace ember::qmatmul {

constexpr int64_t kBlock = 16;  // channels per packed block
constexpr int64_t kMaxK = 65536;  // the most inputs an exact int32 dot product takes (above)

struct Int8Weight {
  int64_t n, k;          // logical shape
  int64_t kp;            // K padded to a multiple of 4
  const int8_t* data;    // (n padded to 16) / 16 blocks of kp / 4 x 64 bytes
  const float* scales;   // n (padded to 16)
  const int32_t* colsum; // n (padded to 16)
};

struct Int8GWeight {
  int64_t n, k;            // logical shape
  int64_t group;           // G
  int64_t kp;              // K padded to a multiple of G
  const uint8_t* data;     // (n padded to 16) / 16 blocks of kp / 4 x 64 bytes, q + 128
  const uint16_t* scales;  // e6m10 bits, (n padded to 16) / 16 x kp / G x 16
};

// A grouped int8 scale's float value (exact).
constexpr uint32_t kE6m10Bias = uint32_t(127 - 31) << 23;
inline float e6m10_value(uint16_t bits) {
  const uint32_t wide = (uint32_t(bits) << 13) + kE6m10Bias;
  float f;
  std::memcpy(&f, &wide, 4);
  return f;
}

struct Int4Weight {
  int64_t n, k;          // logical shape
  int64_t group;         // G
  int64_t kp;            // K padded to a multiple of G
  const uint8_t* data;   // (n padded to 16) / 16 blocks of kp / 8 x 64 bytes
  const float* scales;   // (n padded to 16) / 16 x kp / G x 16
};

constexpr int64_t kSuper = 256, kSub = 16;  // the codebook format's super-block and sub-block
constexpr int64_t kCbScaleBytes = 256;      // scale bytes per 16-channel block and super-block
extern const int8_t kCodebook[16];

struct Int4CbWeight {
  int64_t n, k;          // logical shape
  int64_t kp;            // K padded to a multiple of 16
  const uint8_t* data;   // (n padded to 16) / 16 blocks of kp / 8 x 64 bytes
  const uint8_t* scales; // (n padded to 16) / 16 x supers() x 256 bytes

  int64_t supers() const { return (kp + kSuper - 1) / kSuper; }
  // The activations' row: K padded to whole super-blocks (their groups).
  int64_t kp_rows() const { return supers() * kSuper; }
};

// Readers of one 16-channel block's 256 scale bytes (channel l, sub-block j of the super-block).
inline float cb_super_scale(const uint8_t* s, int64_t l) {
  float d;
  std::memcpy(&d, s + 4 * l, 4);
  return d;
}
inline int32_t cb_sub_scale(const uint8_t* s, int64_t l, int64_t j) {
  const uint8_t* rows = s + 64 + 48 * (j / 4);
  const int32_t a = rows[l], b = rows[16 + l], c = rows[32 + l];
  switch (j % 4) {
    case 0: return (a & 63) - 32;
    case 1: return (b & 63) - 32;
    case 2: return (c & 63) - 32;
    default: return (a >> 6 | (b >> 6) << 2 | (c >> 6) << 4) - 32;
  }
}

// The packed arrays' sizes for an N x K weight: data (bytes), scales and colsum (int8 only)
// elements. bits is 8 or 4; group (int4) a multiple of 8.
struct PackedSizes {
  int64_t data, scales, colsum;
};
PackedSizes packed_sizes(int64_t n, int64_t k, int bits, int64_t group);

// Quantizes w (N x K float32, row stride ldw, every value finite: else std::invalid_argument)
// symmetrically and packs it: int8 with one scale per channel (max|w| / 127), int4 with one per
// channel and group, chosen among a few clipping levels of max|w| / 7 (1 to 0.75 of it) as the
// one whose rounding error is smallest. Rounding is half to even, in double. Padding rows keep
// scale 1 and zero values. Rows are quantized on up to nthreads threads (the result is the same).
void quantize_pack(const float* w, int64_t n, int64_t k, int64_t ldw, int bits, int64_t group, void* data,
                   float* scales, int32_t* colsum, int nthreads);

// Grouped int8: the sizes (data bytes, scale elements) and the quantizer: per group the e6m10
// scale of least squared error among 32 grid points around max|w| / 127 (the values rounded
// against each, half to even, clipped to +-127). Same contract as quantize_pack, and also
// std::invalid_argument for |w| > 1.09e12 (beyond the largest scale); group a multiple of 8.
PackedSizes packed_sizes_int8g(int64_t n, int64_t k, int64_t group);
void quantize_pack_int8g(const float* w, int64_t n, int64_t k, int64_t ldw, int64_t group, uint8_t* data,
                         uint16_t* scales, int nthreads);

// The codebook format's sizes (data and scales, in bytes) and its quantizer: per sub-block the
// signed scale (a few candidates around max|w| / 127 of either sign, each refit by least squares)
// of least squared error, then D = max |scale| / 31 and each 6-bit scale the rounded ratio or a
// neighbour, whichever errs least with every index re-chosen. Same contract as quantize_pack.
PackedSizes packed_sizes_cb(int64_t n, int64_t k);
void quantize_pack_cb(const float* w, int64_t n, int64_t k, int64_t ldw, uint8_t* data, uint8_t* scales,
                      int nthreads);

// x is M x K float32 with row stride ldx; y is M x N with row stride ldy; bias
// (N floats) may be null. Returns false (writing nothing) if x holds a NaN or
// an infinity.
bool qmatmul_int8_ref(const float* x, int64_t m, int64_t ldx, const Int8Weight& w, const float* bias, float* y,
                      int64_t ldy);
bool qmatmul_int8g_ref(const float* x, int64_t m, int64_t ldx, const Int8GWeight& w, const float* bias, float* y,
                       int64_t ldy);
bool qmatmul_int4_ref(const float* x, int64_t m, int64_t ldx, const Int4Weight& w, const float* bias, float* y,
                      int64_t ldy);
bool qmatmul_int4cb_ref(const float* x, int64_t m, int64_t ldx, const Int4CbWeight& w, const float* bias, float* y,
                        int64_t ldy);

// The fast paths: activations quantized (rows split across threads), then register-blocked
// integer kernels (AMX tiles for int8 with 16 rows or more, AVX-512 VNNI, AVX2, or plain C++)
// over panels of 16-channel blocks split across threads. Row blocks are walked inside each panel, so the
// weights are read from memory once (a matrix-vector product streams them) and
// from cache after. Same results as the references, bit for bit.
bool qmatmul_int8(const float* x, int64_t m, int64_t ldx, const Int8Weight& w, const float* bias, float* y,
                  int64_t ldy, Isa isa, int nthreads);
bool qmatmul_int8g(const float* x, int64_t m, int64_t ldx, const Int8GWeight& w, const float* bias, float* y,
                   int64_t ldy, Isa isa, int nthreads);
bool qmatmul_int4(const float* x, int64_t m, int64_t ldx, const Int4Weight& w, const float* bias, float* y,
                  int64_t ldy, Isa isa, int nthreads);
bool qmatmul_int4cb(const float* x, int64_t m, int64_t ldx, const Int4CbWeight& w, const float* bias, float* y,
                    int64_t ldy, Isa isa, int nthreads);

// --- internals shared by the driver and the per-ISA kernels -----------------

// Activations of rows [0, rows), quantized: for int8 weights one group of kp
// (scale per row), for grouped int8 and int4 one per G. qu holds q + 128 as bytes (the unsigned
// operand of vpdpbusd), qs holds q; sums[row][group] = sum of q over the group.
struct QuantRows {
  const uint8_t* qu;     // rows x kp
  const int8_t* qs;      // rows x kp
  const float* scale;    // rows x groups
  const int32_t* sums;   // rows x groups
  int64_t kp, groups, group;
};

struct Kernels {
  // Quantizes `rows` rows of x (K valid columns, zero-padded to kp) into the
  // buffers; returns false if any value is not finite.
  bool (*quantize)(const float* x, int64_t rows, int64_t ldx, int64_t k, int64_t kp, int64_t group, uint8_t* qu,
                   int8_t* qs, float* scale, int32_t* sums);
  // y rows [0, rows) x channel blocks [b0, b1) of the product, for 1 <= rows <= 8.
  void (*int8_tile)(const QuantRows& a, int64_t rows, const Int8Weight& w, int64_t b0, int64_t b1, const float* bias,
                    float* y, int64_t ldy);
  void (*int8g_tile)(const QuantRows& a, int64_t rows, const Int8GWeight& w, int64_t b0, int64_t b1,
                     const float* bias, float* y, int64_t ldy);
  void (*int4_tile)(const QuantRows& a, int64_t rows, const Int4Weight& w, int64_t b0, int64_t b1, const float* bias,
                    float* y, int64_t ldy);
  void (*int4cb_tile)(const QuantRows& a, int64_t rows, const Int4CbWeight& w, int64_t b0, int64_t b1,
                      const float* bias, float* y, int64_t ldy);
};
// One set per ISA: qmatmul_kernels_<isa>.cpp.
extern const Kernels kernels_generic;
extern const Kernels kernels_avx2;
extern const Kernels kernels_avx512vnni;
extern const Kernels kernels_avx512vbmi;  // VNNI and VBMI: the codebook looked up with vpermb

// Kernels that take up to kWideRows rows at once (AMX tiles), for M >= kWideMinRows: int8_rows
// up to kWideRows per call, int4cb_rows all of them in whole tiles of kWideRows; the registry's
// "qmatmul_wide" rows, null below the amx level. The activation buffer must hold a whole tile of
// kWideRows rows (and 64 bytes more) however few are valid.
constexpr int64_t kWideRows = 32, kWideMinRows = 16;
struct WideKernels {
  void (*int8_rows)(const QuantRows& a, int64_t rows, const Int8Weight& w, int64_t b0, int64_t b1, const float* bias,
                    float* y, int64_t ldy);
  void (*int4cb_rows)(const QuantRows& a, int64_t rows, const Int4CbWeight& w, int64_t b0, int64_t b1,
                      const float* bias, float* y, int64_t ldy);
  void (*thread_begin)();  // before a thread's first call (AMX tile configuration)
  void (*thread_end)();    // after its last
};
extern const WideKernels wide_none;
extern const WideKernels wide_amx;

}  // namespace ember::qmatmul
