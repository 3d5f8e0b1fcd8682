// ember._C.qmatmul_int8, qmatmul_int4 and their references: y = x @ dequant(W)^T + bias with
// weights packed by ember.quant (the layout of ops/qmatmul/qmatmul.h).
#include <cstdlib>

#include "bindings/common.h"
#include "ops/qmatmul/qmatmul.h"

namespace ember::bindings {
namespace {

// A packed-weight array: any shape, C-contiguous, exactly `count` elements.
ArrayView packed(const py::handle& obj, const char* name, DType dtype, int64_t count, Access access = Access::read) {
  const ArrayView a = array_arg(obj, name, {dtype, Shape::any(), Layout::contiguous, access});
  EMBER_CHECK_VALUE(a.size() == count, name, " has ", a.size(), " elements; the packed layout of this shape needs ",
                    count, " (was it packed for another shape or group size?)");
  return a;
}

// The float arguments: input (M x K, unit column stride), bias (N, or None), out (M x N, unit
// column stride, writable, apart from the others and from the packed weight), checked against
// the weight's n and k.
struct Floats {
  ArrayView x, bias, out;

  Floats(const py::handle& x_obj, const py::handle& bias_obj, const py::handle& out_obj, int64_t n, int64_t k) {
    EMBER_CHECK_VALUE(n >= 1 && k >= 1 && k <= qmatmul::kMaxK, "the weight's shape must have 1 <= N and 1 <= K <= ",
                      qmatmul::kMaxK, ", got N=", n, ", K=", k);
    // The kernels walk each row as contiguous: a strided or reversed row (even a single
    // one) must be copied by the caller.
    x = array_arg(x_obj, "input", {DType::float32, {-1, -1}, Layout::rows});
    EMBER_CHECK_VALUE(x.shape[1] == k, "input has K=", x.shape[1], " (shape ", shape_str(x.shape),
                      ") but the weight was quantized for K=", k);
    out = array_arg(out_obj, "out", {DType::float32, {-1, -1}, Layout::rows, Access::write});
    EMBER_CHECK_VALUE(out.shape[0] == x.shape[0] && out.shape[1] == n, "out has shape ", shape_str(out.shape),
                      ", expected (", x.shape[0], ", ", n, ")");
    EMBER_CHECK_VALUE(x.shape[0] <= 1 || std::abs(out.strides[0]) >= n,
                      "out rows must not overlap: row stride must be at least ", 4 * n, " bytes, got ",
                      4 * out.strides[0]);
    check_apart(out, x);
    if (!bias_obj.is_none()) {
      bias = array_arg(bias_obj, "bias", {DType::float32, {n}});
      check_apart(out, bias);
    }
  }

  // Runs kernel(x, m, ldx, bias, y, ldy, isa, nthreads) without the GIL; it returns false for
  // a non-finite input, which becomes a ValueError.
  template <class Kernel>
  void run(Kernel&& kernel) const {
    const Active active;
    bool finite;
    {
      py::gil_scoped_release release;
      finite = kernel(x.ptr<const float>(), x.shape[0], x.strides[0], bias.ptr<const float>(), out.ptr<float>(),
                      out.strides[0], active.isa, active.nthreads);
    }
    EMBER_CHECK_VALUE(finite, "input holds NaN or infinite values, which cannot be quantized");
  }
};

template <bool Ref>
void int8(const py::handle& input, const py::handle& data, const py::handle& scales, const py::handle& colsum,
          int64_t n, int64_t k, const py::handle& bias, const py::handle& out) {
  const Floats f(input, bias, out, n, k);
  const int64_t np16 = checked_mul((n + 15) / 16, 16, "N"), kp = (k + 3) / 4 * 4;
  const ArrayView d = packed(data, "data", DType::int8, checked_mul(np16, kp, "the packed weight"));
  const ArrayView s = packed(scales, "scales", DType::float32, np16);
  const ArrayView c = packed(colsum, "colsum", DType::int32, np16);
  for (const ArrayView* in : {&d, &s, &c}) check_apart(f.out, *in);
  const qmatmul::Int8Weight w{n, k, kp, d.ptr<const int8_t>(), s.ptr<const float>(), c.ptr<const int32_t>()};
  f.run([&](const float* x, int64_t m, int64_t ldx, const float* b, float* y, int64_t ldy, Isa isa, int nt) {
    return Ref ? qmatmul::qmatmul_int8_ref(x, m, ldx, w, b, y, ldy)
               : qmatmul::qmatmul_int8(x, m, ldx, w, b, y, ldy, isa, nt);
  });
}

void check_group(int64_t group_size) {
  EMBER_CHECK_VALUE(group_size >= 8 && group_size % 8 == 0 && group_size <= 4096,
                    "group_size must be a multiple of 8 from 8 to 4096, got ", group_size);
}

template <bool Ref>
void int8g(const py::handle& input, const py::handle& data, const py::handle& scales, int64_t n, int64_t k,
           int64_t group_size, const py::handle& bias, const py::handle& out) {
  check_group(group_size);
  const Floats f(input, bias, out, n, k);
  const int64_t np16 = checked_mul((n + 15) / 16, 16, "N"), kp = (k + group_size - 1) / group_size * group_size;
  const ArrayView d = packed(data, "data", DType::uint8, checked_mul(np16, kp, "the packed weight"));
  const ArrayView s = packed(scales, "scales", DType::uint16, checked_mul(np16, kp / group_size, "the scales"));
  for (const ArrayView* in : {&d, &s}) check_apart(f.out, *in);
  const qmatmul::Int8GWeight w{n, k, group_size, kp, d.ptr<const uint8_t>(), s.ptr<const uint16_t>()};
  f.run([&](const float* x, int64_t m, int64_t ldx, const float* b, float* y, int64_t ldy, Isa isa, int nt) {
    return Ref ? qmatmul::qmatmul_int8g_ref(x, m, ldx, w, b, y, ldy)
               : qmatmul::qmatmul_int8g(x, m, ldx, w, b, y, ldy, isa, nt);
  });
}

template <bool Ref>
void int4(const py::handle& input, const py::handle& data, const py::handle& scales, int64_t n, int64_t k,
          int64_t group_size, const py::handle& bias, const py::handle& out) {
  check_group(group_size);
  const Floats f(input, bias, out, n, k);
  const int64_t np16 = checked_mul((n + 15) / 16, 16, "N"), kp = (k + group_size - 1) / group_size * group_size;
  const ArrayView d = packed(data, "data", DType::uint8, checked_mul(np16, kp / 2, "the packed weight"));
  const ArrayView s = packed(scales, "scales", DType::float32, checked_mul(np16, kp / group_size, "the scales"));
  for (const ArrayView* in : {&d, &s}) check_apart(f.out, *in);
  const qmatmul::Int4Weight w{n, k, group_size, kp, d.ptr<const uint8_t>(), s.ptr<const float>()};
  f.run([&](const float* x, int64_t m, int64_t ldx, const float* b, float* y, int64_t ldy, Isa isa, int nt) {
    return Ref ? qmatmul::qmatmul_int4_ref(x, m, ldx, w, b, y, ldy)
               : qmatmul::qmatmul_int4(x, m, ldx, w, b, y, ldy, isa, nt);
  });
}

template <bool Ref>
void int4cb(const py::handle& input, const py::handle& data, const py::handle& scales, int64_t n, int64_t k,
            const py::handle& bias, const py::handle& out) {
  const Floats f(input, bias, out, n, k);
  const qmatmul::PackedSizes sizes = qmatmul::packed_sizes_cb(n, k);
  const ArrayView d = packed(data, "data", DType::uint8, sizes.data);
  const ArrayView s = packed(scales, "scales", DType::uint8, sizes.scales);
  for (const ArrayView* in : {&d, &s}) check_apart(f.out, *in);
  const qmatmul::Int4CbWeight w{n, k, (k + qmatmul::kSub - 1) / qmatmul::kSub * qmatmul::kSub,
                                d.ptr<const uint8_t>(), s.ptr<const uint8_t>()};
  f.run([&](const float* x, int64_t m, int64_t ldx, const float* b, float* y, int64_t ldy, Isa isa, int nt) {
    return Ref ? qmatmul::qmatmul_int4cb_ref(x, m, ldx, w, b, y, ldy)
               : qmatmul::qmatmul_int4cb(x, m, ldx, w, b, y, ldy, isa, nt);
  });
}

// The (N, K) float32 weight a packer reads.
ArrayView weight_arg(const py::handle& weight) {
  const ArrayView w = array_arg(weight, "weight", {DType::float32, {-1, -1}, Layout::rows});
  EMBER_CHECK_VALUE(w.shape[0] >= 1 && w.shape[1] >= 1 && w.shape[1] <= qmatmul::kMaxK,
                    "weight must be (N, K) with N >= 1 and 1 <= K <= ", qmatmul::kMaxK, ", got ", shape_str(w.shape));
  return w;
}

void pack_cb(const py::handle& weight, const py::handle& out_data, const py::handle& out_scales) {
  const ArrayView w = weight_arg(weight);
  const int64_t n = w.shape[0], k = w.shape[1];
  const qmatmul::PackedSizes sizes = qmatmul::packed_sizes_cb(n, k);
  const ArrayView d = packed(out_data, "out_data", DType::uint8, sizes.data, Access::write);
  const ArrayView s = packed(out_scales, "out_scales", DType::uint8, sizes.scales, Access::write);
  for (const ArrayView* out : {&d, &s}) check_apart(*out, w);
  check_disjoint({&d, &s});
  const Active active;
  py::gil_scoped_release release;
  qmatmul::quantize_pack_cb(w.ptr<const float>(), n, k, w.strides[0], d.ptr<uint8_t>(), s.ptr<uint8_t>(),
                            active.nthreads);
}

void pack_int8g(const py::handle& weight, int64_t group_size, const py::handle& out_data,
                const py::handle& out_scales) {
  check_group(group_size);
  const ArrayView w = weight_arg(weight);
  const int64_t n = w.shape[0], k = w.shape[1];
  checked_mul((n + 15) / 16 * 16, (k + group_size - 1) / group_size * group_size, "the packed weight");
  const qmatmul::PackedSizes sizes = qmatmul::packed_sizes_int8g(n, k, group_size);
  const ArrayView d = packed(out_data, "out_data", DType::uint8, sizes.data, Access::write);
  const ArrayView s = packed(out_scales, "out_scales", DType::uint16, sizes.scales, Access::write);
  for (const ArrayView* out : {&d, &s}) check_apart(*out, w);
  check_disjoint({&d, &s});
  const Active active;
  py::gil_scoped_release release;
  qmatmul::quantize_pack_int8g(w.ptr<const float>(), n, k, w.strides[0], group_size, d.ptr<uint8_t>(),
                               s.ptr<uint16_t>(), active.nthreads);
}

void pack(const py::handle& weight, int64_t bits, int64_t group_size, const py::handle& out_data,
          const py::handle& out_scales, const py::handle& out_colsum) {
  EMBER_CHECK_VALUE(bits == 8 || bits == 4, "bits must be 8 or 4, got ", bits);
  if (bits == 4) check_group(group_size);
  const ArrayView w = weight_arg(weight);
  const int64_t n = w.shape[0], k = w.shape[1];
  const int64_t group = bits == 4 ? group_size : 4;  // int8 packs K by fours; group_size is not used
  checked_mul((n + 15) / 16 * 16, (k + group - 1) / group * group, "the packed weight");
  const qmatmul::PackedSizes sizes = qmatmul::packed_sizes(n, k, static_cast<int>(bits), group);
  const ArrayView d = packed(out_data, "out_data", bits == 8 ? DType::int8 : DType::uint8, sizes.data, Access::write);
  const ArrayView s = packed(out_scales, "out_scales", DType::float32, sizes.scales, Access::write);
  ArrayView c;
  if (bits == 8) c = packed(out_colsum, "out_colsum", DType::int32, sizes.colsum, Access::write);
  else EMBER_CHECK_VALUE(out_colsum.is_none(), "out_colsum must be None for int4 weights");
  for (const ArrayView* out : {&d, &s, static_cast<const ArrayView*>(&c)}) check_apart(*out, w);
  check_disjoint({&d, &s, &c});
  const Active active;
  py::gil_scoped_release release;
  qmatmul::quantize_pack(w.ptr<const float>(), n, k, w.strides[0], static_cast<int>(bits), group, d.ptr<void>(),
                         s.ptr<float>(), c.ptr<int32_t>(), active.nthreads);
}

}  // namespace

void bind_qmatmul(py::module_& m) {
  py::tuple codebook(16);
  for (int i = 0; i < 16; ++i) codebook[i] = py::int_(qmatmul::kCodebook[i]);
  m.attr("int4_codebook") = codebook;  // the int4 codebook format's 16 levels
  def(m, "quantize_pack", &pack,
      "Quantize weight (N x K float32, unit column stride, finite) symmetrically to int8 (bits=8: one scale per\n"
      "channel) or int4 (bits=4: one per channel and group_size inputs, the clipping level of least rounding\n"
      "error) and pack it into out_data (int8 or uint8), out_scales (float32) and out_colsum (int32, int8\n"
      "only, else None), sized by the packed layout. group_size is not used for int8.",
      py::arg("weight"), py::arg("bits"), py::arg("group_size"), py::arg("out_data"), py::arg("out_scales"),
      py::arg("out_colsum"));
  def(m, "quantize_pack_int8g", &pack_int8g,
      "Quantize weight (N x K float32, unit column stride, finite) to int8 in groups (one 16-bit e6m10 scale\n"
      "per channel and group_size inputs, of least squared error near max|w| / 127) and pack it into out_data (uint8, q + 128)\n"
      "and out_scales (uint16: the scales' bits), sized by the packed layout.",
      py::arg("weight"), py::arg("group_size"), py::arg("out_data"), py::arg("out_scales"));
  def(m, "qmatmul_int8g", &int8g<false>,
      "out = input @ dequant(W)^T + bias for int8 weights in groups (N x K, one e6m10 scale per output channel\n"
      "and group of group_size inputs), activations quantized per row and group; ember.quant's packed layout.",
      py::arg("input"), py::arg("data"), py::arg("scales"), py::arg("n"), py::arg("k"), py::arg("group_size"),
      py::arg("bias"), py::arg("out"));
  def(m, "qmatmul_int8g_ref", &int8g<true>, "The reference qmatmul_int8g (int64 sums, bit for bit the same).",
      py::arg("input"), py::arg("data"), py::arg("scales"), py::arg("n"), py::arg("k"), py::arg("group_size"),
      py::arg("bias"), py::arg("out"));
  def(m, "quantize_pack_cb", &pack_cb,
      "Quantize weight (N x K float32, unit column stride, finite) to int4 with a codebook (4.5 bits per weight:\n"
      "6-bit scales per 16 inputs under a float scale per 256) and pack it into out_data and out_scales (uint8),\n"
      "sized by the packed layout.",
      py::arg("weight"), py::arg("out_data"), py::arg("out_scales"));
  def(m, "qmatmul_int4cb", &int4cb<false>,
      "out = input @ dequant(W)^T + bias for int4 codebook weights (N x K), activations quantized per row and\n"
      "256 inputs (W4A8); ember.quant's packed layout.",
      py::arg("input"), py::arg("data"), py::arg("scales"), py::arg("n"), py::arg("k"), py::arg("bias"),
      py::arg("out"));
  def(m, "qmatmul_int4cb_ref", &int4cb<true>, "The reference qmatmul_int4cb (int64 sums, bit for bit the same).",
      py::arg("input"), py::arg("data"), py::arg("scales"), py::arg("n"), py::arg("k"), py::arg("bias"),
      py::arg("out"));
  def(m, "qmatmul_int8", &int8<false>,
      "out = input @ dequant(W)^T + bias for int8 weights (N x K, one scale per output channel), the\n"
      "activations quantized per row inside the call (W8A8). data, scales and colsum are ember.quant's\n"
      "packed layout; input and out are float32 with unit column stride; bias (N) or None.",
      py::arg("input"), py::arg("data"), py::arg("scales"), py::arg("colsum"), py::arg("n"), py::arg("k"),
      py::arg("bias"), py::arg("out"));
  def(m, "qmatmul_int8_ref", &int8<true>, "The reference qmatmul_int8 (int64 sums, bit for bit the same).",
      py::arg("input"), py::arg("data"), py::arg("scales"), py::arg("colsum"), py::arg("n"), py::arg("k"),
      py::arg("bias"), py::arg("out"));
  def(m, "qmatmul_int4", &int4<false>,
      "out = input @ dequant(W)^T + bias for int4 weights (N x K, one scale per output channel and group of\n"
      "group_size inputs), activations quantized per row and group (W4A8); ember.quant's packed layout.",
      py::arg("input"), py::arg("data"), py::arg("scales"), py::arg("n"), py::arg("k"), py::arg("group_size"),
      py::arg("bias"), py::arg("out"));
  def(m, "qmatmul_int4_ref", &int4<true>, "The reference qmatmul_int4 (int64 sums, bit for bit the same).",
      py::arg("input"), py::arg("data"), py::arg("scales"), py::arg("n"), py::arg("k"), py::arg("group_size"),
      py::arg("bias"), py::arg("out"));
}

}  // namespace ember::bindings
