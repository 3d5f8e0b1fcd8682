// ember._cuda bindings: gemm (and gemm_plan, which says which kernel a call would run).
//
// gemm(a, b, out, alpha, beta, trans_a, trans_b, bias, relu, variant, stream): as ember._C.gemm,
// but `out` is required (the caller allocates it, e.g. with CuPy). 2-D arrays, or 3-D with a
// leading batch dimension (a 2-D operand, or a batch of 1, is shared by every batch entry).
#include <cstdlib>
#include <string>

#include "bindings/cuda_common.h"
#include "ops/gemm/gemm_cuda.h"

namespace ember::cuda_bind {
namespace {

using ember::cuda::GemmCudaArgs;
using ember::cuda::GemmDType;
using ember::cuda::GemmVariant;

GemmVariant parse_variant(const std::string& v) {
  std::string name = v;
  if (name == "auto") {
    const char* env = std::getenv("EMBER_CUDA_GEMM");
    if (env && *env) name = env;
  }
  if (name == "auto") return GemmVariant::automatic;
  if (name == "simt") return GemmVariant::simt;
  if (name == "mma") return GemmVariant::mma;
  if (name == "wgmma") return GemmVariant::wgmma;
  throw std::invalid_argument("variant must be 'auto', 'simt', 'mma' or 'wgmma' (also through EMBER_CUDA_GEMM), got '" +
                              name + "'");
}

// op(X) of a 2-D or 3-D operand: rows x cols with one unit stride. `prefer_row_fast` picks the
// layout when both strides are free (a dimension of extent 1).
struct Operand {
  int64_t batch, rows, cols, ld, bs;
  bool row_fast;  // element (i, j) at i * ld + j; else at i + j * ld
};

Operand operand(const ArrayView& x, const char* name, bool trans, bool prefer_row_fast) {
  EMBER_CHECK_VALUE(x.ndim() == 2 || x.ndim() == 3, name, " must be 2-D (or 3-D with a leading batch dimension), ",
                    "got shape ", shape_str(x.shape));
  const int d = x.ndim() - 2;
  Operand o;
  o.batch = d ? x.shape[0] : 1;
  o.bs = d && x.shape[0] > 1 ? x.strides[0] : 0;
  int64_t r = x.shape[d], c = x.shape[d + 1], sr = x.strides[d], sc = x.strides[d + 1];
  if (trans) std::swap(r, c), std::swap(sr, sc);
  o.rows = r, o.cols = c;
  const bool row_free = r <= 1, col_free = c <= 1;
  const bool can_row_fast = sc == 1 || col_free, can_col_fast = sr == 1 || row_free;
  EMBER_CHECK_VALUE(can_row_fast || can_col_fast, name, " (shape ", shape_str(x.shape), ") has no unit stride: gemm reads ",
                    "row- or column-major operands; pass a contiguous copy (cupy.ascontiguousarray)");
  o.row_fast = can_row_fast && (prefer_row_fast || !can_col_fast);
  auto round8 = [](int64_t v) { return (std::max<int64_t>(v, 1) + 7) / 8 * 8; };
  if (o.row_fast)
    o.ld = row_free ? round8(c) : sr;  // an unused stride: any legal value
  else
    o.ld = col_free ? round8(r) : sc;
  EMBER_CHECK_VALUE(o.ld >= 0 && o.bs >= 0, name, " has negative strides; pass a contiguous copy");
  return o;
}

// The dtypes a and b may have, for messages.
constexpr const char* kInputs = "float32 or bf16 (uint16 bit patterns)";

struct GemmCall {
  ArrayView a, b, out, bias;
  GemmCudaArgs g;
};

GemmCall prepare(py::handle a_obj, py::handle b_obj, py::handle out_obj, double alpha, double beta, bool trans_a,
                 bool trans_b, py::handle bias_obj, bool relu) {
  GemmCall call;
  call.a = device_array(a_obj, "a", kInputs);
  call.b = device_array(b_obj, "b", kInputs);
  check_dtype(call.a, {DType::float32, DType::uint16, DType::bfloat16});
  check_dtype(call.b, {DType::float32, DType::uint16, DType::bfloat16});
  EMBER_CHECK_TYPE(is_bf16(call.a) == is_bf16(call.b), "a and b must both be float32 or both bf16, got ",
                   dtype_str(call.a), " and ", dtype_str(call.b));
  // Prefer K-contiguous operands when free to choose: what the tensor-core kernels read best.
  const Operand A = operand(call.a, "a", trans_a, true);
  const Operand B = operand(call.b, "b", trans_b, false);
  EMBER_CHECK_VALUE(A.cols == B.rows, "inner dimensions differ: op(a) is ", A.rows, "x", A.cols, " (a has shape ",
                    shape_str(call.a.shape), trans_a ? ", transposed" : "", ") but op(b) is ", B.rows, "x", B.cols,
                    " (b has shape ", shape_str(call.b.shape), trans_b ? ", transposed" : "", ")");
  const int64_t M = A.rows, N = B.cols, K = A.cols;
  EMBER_CHECK_VALUE(A.batch == B.batch || A.batch == 1 || B.batch == 1, "batch sizes differ: a has ", A.batch,
                    ", b has ", B.batch);
  const int64_t batch = std::max(A.batch, B.batch);
  const bool batched = call.a.ndim() == 3 || call.b.ndim() == 3;

  EMBER_CHECK_TYPE(!out_obj.is_none(), "out is required on CUDA: allocate it (e.g. cupy.empty((M, N), cupy.float32))");
  call.out = device_array(out_obj, "out");
  if (call.a.dtype == DType::float32)
    check_dtype(call.out, {DType::float32});
  else
    check_dtype(call.out, {DType::float32, DType::uint16, DType::bfloat16});
  if (batched)
    check_shape(call.out, {batch, M, N});
  else
    check_shape(call.out, {M, N});
  check_writable(call.out);
  const int d = batched ? 1 : 0;
  const int64_t ldc = M <= 1 ? N : call.out.strides[d];
  EMBER_CHECK_VALUE(N <= 1 || call.out.strides[d + 1] == 1, "out must have unit column stride (rows contiguous), got ",
                    "shape ", shape_str(call.out.shape));
  EMBER_CHECK_VALUE(M <= 1 || ldc >= N, "out rows must not overlap: row stride ", ldc, " is below N = ", N);
  const int64_t bsc = batched && batch > 1 ? call.out.strides[0] : 0;
  EMBER_CHECK_VALUE(!batched || batch <= 1 || bsc >= std::max<int64_t>(1, M * ldc) || M * N == 0,
                    "out's batch entries must not overlap");
  check_apart(call.out, call.a);
  check_apart(call.out, call.b);

  GemmCudaArgs& g = call.g;
  g.batch = batch, g.m = M, g.n = N, g.k = K;
  g.in_type = !is_bf16(call.a) ? GemmDType::f32 : GemmDType::bf16;
  g.a = call.a.data, g.lda = A.ld, g.bsa = A.batch > 1 ? A.bs : 0, g.a_kfast = A.row_fast;
  g.b = call.b.data, g.ldb = B.ld, g.bsb = B.batch > 1 ? B.bs : 0, g.b_nfast = B.row_fast;
  g.c = call.out.data, g.ldc = ldc, g.bsc = bsc;
  g.out_type = !is_bf16(call.out) ? GemmDType::f32 : GemmDType::bf16;
  g.alpha = static_cast<float>(alpha), g.beta = static_cast<float>(beta), g.relu = relu;
  if (optional_device_array(bias_obj, "bias", call.bias)) {
    check_dtype(call.bias, {DType::float32});
    check_shape(call.bias, {N});
    check_layout(call.bias, Layout::contiguous);
    check_apart(call.out, call.bias);
    g.bias = call.bias.ptr<const float>();
  }
  return call;
}

py::object py_gemm(py::handle a, py::handle b, py::handle out, double alpha, double beta, bool trans_a, bool trans_b,
                   py::handle bias, bool relu, const std::string& variant, py::handle stream) {
  GemmCall call = prepare(a, b, out, alpha, beta, trans_a, trans_b, bias, relu);
  const GemmVariant v = parse_variant(variant);
  const auto s = stream_arg(stream);
  {
    py::gil_scoped_release release;
    ember::cuda::gemm_cuda(call.g, v, s);
  }
  return py::reinterpret_borrow<py::object>(call.out.obj);
}

std::string py_gemm_plan(py::handle a, py::handle b, py::handle out, bool trans_a, bool trans_b,
                         const std::string& variant) {
  GemmCall call = prepare(a, b, out, 1.0, 0.0, trans_a, trans_b, py::none(), false);
  return ember::cuda::gemm_cuda_resolve(call.g, parse_variant(variant));
}

}  // namespace

void register_gemm(py::module_& m) {
  m.def("gemm", &py_gemm,
        "out = act(alpha * op(a) @ op(b) + beta * out + bias), op(x) = x.T when trans_x, act = ReLU when relu\n"
        "(NaN kept). a, b: 2-D, or 3-D with a leading batch dimension (a 2-D operand is shared by the batch),\n"
        "each with one unit stride (row- or column-major; any other layout raises ValueError: pass a\n"
        "contiguous copy). float32 inputs give float32 out; bf16 inputs (uint16 arrays of bf16 bit patterns,\n"
        "typestr '<u2' or '<V2') accumulate in fp32 and write float32 or bf16 out (rounded once). out is\n"
        "required (M, N) or (batch, M, N) with unit column stride; beta == 0 never reads it. bias: float32\n"
        "(N,) or None. variant: 'auto' (or EMBER_CUDA_GEMM), 'simt', 'mma', 'wgmma'. Returns out.",
        py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
        py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("bias") = py::none(), py::arg("relu") = false,
        py::arg("variant") = "auto", py::arg("stream") = 0);
  m.def("gemm_plan", &py_gemm_plan,
        "The kernel family gemm would run for these arrays and variant ('simt', 'mma', 'wgmma', or 'none'\n"
        "when there is nothing to compute); ValueError saying why when the variant cannot run them.",
        py::arg("a"), py::arg("b"), py::arg("out"), py::arg("trans_a") = false, py::arg("trans_b") = false,
        py::arg("variant") = "auto");
}

}  // namespace ember::cuda_bind
