// ember._C.gemm and gemm_ref.
#include <vector>

#include "bindings/common.h"
#include "ops/gemm/gemm.h"
#include "ops/gemm/gemm_bf16.h"

namespace ember::bindings {
namespace {

// op(x) of a 2-D view: transposition folded into the strides.
template <class Matrix, class T>
Matrix matrix(const ArrayView& v, bool trans) {
  const T* p = v.ptr<const T>();
  if (trans) return {p, v.shape[1], v.shape[0], v.strides[1], v.strides[0]};
  return {p, v.shape[0], v.shape[1], v.strides[0], v.strides[1]};
}

bool is_bf16(DType d) { return d == DType::uint16 || d == DType::bfloat16; }

template <bool Ref>
py::object gemm(const py::handle& a_obj, const py::handle& b_obj, const py::handle& out_obj, float alpha, float beta,
                bool trans_a, bool trans_b, const py::handle& bias_obj, bool relu) {
  // float32 inputs, or bf16 ones (ml_dtypes.bfloat16, or uint16 bit patterns) with a float32 out.
  const DType da = dtype_of_arg(a_obj), db = dtype_of_arg(b_obj);
  const DType in = is_bf16(da) ? da : DType::float32;
  const ArrayView a = array_arg(a_obj, "a", {in, {-1, -1}, Layout::strided});
  EMBER_CHECK_TYPE(is_bf16(da) == is_bf16(db), "a and b must both be float32 or both bf16, got ", dtype_str(a),
                   " and ", db == DType::other ? std::string("another dtype") : std::string(dtype_name(db)));
  const ArrayView b = array_arg(b_obj, "b", {is_bf16(db) ? db : DType::float32, {-1, -1}, Layout::strided});
  const int64_t M = trans_a ? a.shape[1] : a.shape[0], K = trans_a ? a.shape[0] : a.shape[1];
  const int64_t KB = trans_b ? b.shape[1] : b.shape[0], N = trans_b ? b.shape[0] : b.shape[1];
  EMBER_CHECK_VALUE(KB == K, "inner dimensions differ: op(a) is ", M, "x", K, " (a has shape ", shape_str(a.shape),
                    trans_a ? ", transposed" : "", ") but op(b) is ", KB, "x", N, " (b has shape ",
                    shape_str(b.shape), trans_b ? ", transposed" : "", ")");
  const ArrayView out = array_arg(out_obj, "out", {DType::float32, {-1, -1}, Layout::rows, Access::write});
  EMBER_CHECK_VALUE(out.shape[0] == M && out.shape[1] == N, "out must have shape (", M, ", ", N, ") for op(a) ", M,
                    "x", K, " @ op(b) ", K, "x", N, ", got ", shape_str(out.shape));
  EMBER_CHECK_VALUE(M <= 1 || out.strides[0] >= N, "out rows must not overlap: row stride must be at least ", 4 * N,
                    " bytes, got ", 4 * out.strides[0]);
  check_apart(out, a);
  check_apart(out, b);
  const MutMatrixF32 c = {out.ptr<float>(), M, N, M <= 1 ? N : out.strides[0]};
  std::vector<float> bias;  // a strided bias, copied: it is an input, only read
  const float* bias_ptr = nullptr;
  if (!bias_obj.is_none()) {
    const ArrayView bv = array_arg(bias_obj, "bias", {DType::float32, {-1}, Layout::strided});
    EMBER_CHECK_VALUE(bv.shape[0] == N, "bias must have shape (", N,
                      ",) (one value per column of the result), got ", shape_str(bv.shape));
    check_apart(out, bv);
    if (N <= 1 || bv.strides[0] == 1) {
      bias_ptr = bv.ptr<const float>();
    } else {
      bias.resize(static_cast<size_t>(N));
      for (int64_t j = 0; j < N; ++j) bias[j] = bv.ptr<const float>()[j * bv.strides[0]];
      bias_ptr = bias.data();
    }
  }
  const Active active;
  {
    py::gil_scoped_release release;
    if (is_bf16(da)) {
      gemm::GemmBf16Args g;
      g.a = matrix<gemm::MatrixBF16, uint16_t>(a, trans_a);
      g.b = matrix<gemm::MatrixBF16, uint16_t>(b, trans_b);
      g.c = c;
      g.alpha = alpha, g.beta = beta, g.bias = bias_ptr, g.relu = relu;
      if constexpr (Ref)
        gemm::gemm_bf16_ref(g);
      else
        gemm::gemm_bf16_cpu(g, active.isa, active.nthreads);
    } else {
      gemm::GemmArgs g;
      g.a = matrix<MatrixF32, float>(a, trans_a);
      g.b = matrix<MatrixF32, float>(b, trans_b);
      g.c = c;
      g.alpha = alpha, g.beta = beta, g.bias = bias_ptr, g.relu = relu;
      if constexpr (Ref)
        gemm::gemm_ref(g);
      else
        gemm::gemm_cpu(g, active.isa, active.nthreads);
    }
  }
  return py::reinterpret_borrow<py::object>(out_obj);
}

// out = x converted between float32 and bf16 (rounding to nearest even, NaN kept); same shapes,
// C-contiguous.
void convert(const py::handle& x_obj, const py::handle& out_obj) {
  const DType dx = dtype_of_arg(x_obj);
  const bool to_bf16 = !is_bf16(dx);
  const ArrayView x = array_arg(x_obj, "x", {to_bf16 ? DType::float32 : dx, Shape::any(), Layout::contiguous});
  const DType dout = dtype_of_arg(out_obj);
  EMBER_CHECK_TYPE(to_bf16 == is_bf16(dout), "out must be ", to_bf16 ? "bf16" : "float32", " for a ",
                   dtype_str(x), " x");
  const ArrayView out = array_arg(out_obj, "out", {to_bf16 ? dout : DType::float32, Shape::any(),
                                                   Layout::contiguous, Access::write});
  EMBER_CHECK_VALUE(out.shape == x.shape, "out must have x's shape ", shape_str(x.shape), ", got ",
                    shape_str(out.shape));
  check_apart(out, x);
  const Active active;
  py::gil_scoped_release release;
  if (to_bf16)
    gemm::bf16_from_f32_cpu(x.ptr<const float>(), x.size(), out.ptr<uint16_t>(), active.isa, active.nthreads);
  else
    gemm::f32_from_bf16_cpu(x.ptr<const uint16_t>(), x.size(), out.ptr<float>(), active.isa, active.nthreads);
}

}  // namespace

void bind_gemm(py::module_& m) {
  // Positional on purpose: ember.kernels.gemm.gemm (Python) takes the keywords, allocates out and
  // passes everything on positionally, which pybind11 handles in half the time.
  def(m, "gemm", &gemm<false>,
      "out = act(alpha * op(a) @ op(b) + beta * out + bias); a and b float32, or both bf16 (ml_dtypes.bfloat16\n"
      "or uint16 bit patterns: products exact, summed in float32), out float32; op(x) is x.T when trans_x and\n"
      "act is ReLU when relu. a and b are read in place whatever their strides; out (M x N, unit column\n"
      "stride, apart from the inputs) is written in place and returned; beta == 0 never reads it; bias (N\n"
      "values) or None.",
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha"), py::arg("beta"), py::arg("trans_a"),
      py::arg("trans_b"), py::arg("bias"), py::arg("relu"));
  def(m, "gemm_ref", &gemm<true>, "The reference GEMM (plain loops, double accumulation); gemm's arguments.",
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha"), py::arg("beta"), py::arg("trans_a"),
      py::arg("trans_b"), py::arg("bias"), py::arg("relu"));
  def(m, "convert_bf16", &convert,
      "out = x converted: float32 to bf16 (rounding to nearest even; NaN stays NaN, made quiet) or bf16 to\n"
      "float32 (exact). bf16 is ml_dtypes.bfloat16 or uint16 bit patterns; both C-contiguous, same shape.",
      py::arg("x"), py::arg("out"));
}

}  // namespace ember::bindings
