// ember._C.gemm and gemm_ref.
#include <vector>

#include "bindings/common.h"
#include "ops/gemm/gemm.h"

namespace ember::bindings {
namespace {

// op(x) of a 2-D view: transposition folded into the strides.
MatrixF32 matrix(const ArrayView& v, bool trans) {
  const float* p = v.ptr<const float>();
  if (trans) return {p, v.shape[1], v.shape[0], v.strides[1], v.strides[0]};
  return {p, v.shape[0], v.shape[1], v.strides[0], v.strides[1]};
}

template <bool Ref>
py::object gemm(const py::handle& a_obj, const py::handle& b_obj, const py::handle& out_obj, float alpha, float beta,
          bool trans_a, bool trans_b, const py::handle& bias_obj, bool relu) {
  const ArrayView a = array_arg(a_obj, "a", {DType::float32, {-1, -1}, Layout::strided});
  const ArrayView b = array_arg(b_obj, "b", {DType::float32, {-1, -1}, Layout::strided});
  gemm::GemmArgs g;
  g.a = matrix(a, trans_a);
  g.b = matrix(b, trans_b);
  const int64_t M = g.a.rows, K = g.a.cols, N = g.b.cols;
  EMBER_CHECK_VALUE(g.b.rows == K, "inner dimensions differ: op(a) is ", M, "x", K, " (a has shape ",
                    shape_str(a.shape), trans_a ? ", transposed" : "", ") but op(b) is ", g.b.rows, "x", N,
                    " (b has shape ", shape_str(b.shape), trans_b ? ", transposed" : "", ")");
  const ArrayView out = array_arg(out_obj, "out", {DType::float32, {-1, -1}, Layout::rows, Access::write});
  EMBER_CHECK_VALUE(out.shape[0] == M && out.shape[1] == N, "out must have shape (", M, ", ", N, ") for op(a) ", M,
                    "x", K, " @ op(b) ", K, "x", N, ", got ", shape_str(out.shape));
  EMBER_CHECK_VALUE(M <= 1 || out.strides[0] >= N, "out rows must not overlap: row stride must be at least ", 4 * N,
                    " bytes, got ", 4 * out.strides[0]);
  check_apart(out, a);
  check_apart(out, b);
  g.c = {out.ptr<float>(), M, N, M <= 1 ? N : out.strides[0]};
  g.alpha = alpha;
  g.beta = beta;
  g.relu = relu;
  std::vector<float> bias;  // a strided bias, copied: it is an input, only read
  if (!bias_obj.is_none()) {
    const ArrayView bv = array_arg(bias_obj, "bias", {DType::float32, {-1}, Layout::strided});
    EMBER_CHECK_VALUE(bv.shape[0] == N, "bias must have shape (", N,
                      ",) (one value per column of the result), got ", shape_str(bv.shape));
    check_apart(out, bv);
    if (N <= 1 || bv.strides[0] == 1) {
      g.bias = bv.ptr<const float>();
    } else {
      bias.resize(static_cast<size_t>(N));
      for (int64_t j = 0; j < N; ++j) bias[j] = bv.ptr<const float>()[j * bv.strides[0]];
      g.bias = bias.data();
    }
  }
  const Active active;
  {
    py::gil_scoped_release release;
    if constexpr (Ref)
      gemm::gemm_ref(g);
    else
      gemm::gemm_cpu(g, active.isa, active.nthreads);
  }
  return py::reinterpret_borrow<py::object>(out_obj);
}

}  // namespace

void bind_gemm(py::module_& m) {
  // Positional on purpose: ember.kernels.gemm.gemm (Python) takes the keywords, allocates out and
  // passes everything on positionally, which pybind11 handles in half the time.
  def(m, "gemm", &gemm<false>,
      "out = act(alpha * op(a) @ op(b) + beta * out + bias) over float32 arrays; op(x) is x.T when trans_x and\n"
      "act is ReLU when relu. a and b are read in place whatever their strides; out (M x N, unit column\n"
      "stride, apart from the inputs) is written in place and returned; beta == 0 never reads it; bias (N\n"
      "values) or None.",
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha"), py::arg("beta"), py::arg("trans_a"),
      py::arg("trans_b"), py::arg("bias"), py::arg("relu"));
  def(m, "gemm_ref", &gemm<true>, "The reference GEMM (plain loops, double accumulation); gemm's arguments.",
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha"), py::arg("beta"), py::arg("trans_a"),
      py::arg("trans_b"), py::arg("bias"), py::arg("relu"));
}

}  // namespace ember::bindings
