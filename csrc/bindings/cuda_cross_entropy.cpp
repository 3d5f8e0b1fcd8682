// ember._cuda bindings: cross_entropy_fwd, cross_entropy_bwd.
#include "bindings/cuda_common.h"
#include "ops/cross_entropy/cross_entropy_cuda.h"

namespace ember::cuda_bind {
namespace {

struct XentArrays {
  DevArray z, target, weight, error;
  bool has_weight = false, has_error = false;
  ember::cuda::XentProblem p;
};

XentArrays xent_args(py::handle z_obj, py::handle target_obj, py::handle weight_obj, double eps, int64_t ignore_index,
                     py::handle error_obj) {
  XentArrays x;
  x.z = dense(z_obj, "logits", DType::f32, {-1, -1});
  const int64_t b = x.z.shape[0], v = x.z.shape[1];
  EMBER_CHECK_VALUE(v >= 1, "logits must have at least one class, got shape ", x.z.shape_str());
  require_below(b, int64_t(1) << 31, "the number of rows");
  EMBER_CHECK_VALUE(eps >= 0.0 && eps <= 1.0, "label_smoothing (eps) must be in [0, 1], got ", eps);
  x.p.b = b;
  x.p.v = v;
  x.p.z = x.z.data<const float>();
  x.p.eps = static_cast<float>(eps);
  x.p.ignore_index = ignore_index;
  x.target = device_array(target_obj, "target");
  if (x.target.ndim() == 2) {
    require_dtype(x.target, "target", {DType::f32});
    require_shape(x.target, "target", {b, v});
    require_contiguous(x.target, "target");
    x.p.soft = x.target.data<const float>();
  } else {
    EMBER_CHECK_TYPE(x.target.dtype == DType::i64, "target must be int64 class indices of shape (", b,
                     ",) or float32 probabilities of shape (", b, ", ", v, "), got typestr '", x.target.typestr,
                     "' with shape ", x.target.shape_str());
    require_shape(x.target, "target", {b});
    require_contiguous(x.target, "target");
    x.p.target = x.target.data<const int64_t>();
  }
  if ((x.has_weight = optional_device_array(weight_obj, "weight", x.weight))) {
    require_dtype(x.weight, "weight", {DType::f32});
    require_shape(x.weight, "weight", {v});
    require_contiguous(x.weight, "weight");
    x.p.weight = x.weight.data<const float>();
  }
  if ((x.has_error = optional_device_array(error_obj, "error", x.error))) {
    require_dtype(x.error, "error", {DType::i32});
    require_shape(x.error, "error", {1});
    require_writable(x.error, "error");
  }
  return x;
}

void py_xent_fwd(py::handle z_obj, py::handle target_obj, py::handle weight_obj, double eps, int64_t ignore_index,
                 py::handle lse_obj, py::handle nll_obj, py::handle smooth_obj, py::handle error_obj,
                 py::handle stream) {
  XentArrays x = xent_args(z_obj, target_obj, weight_obj, eps, ignore_index, error_obj);
  const int64_t b = x.p.b;
  DevArray lse = dense(lse_obj, "out_lse", DType::f64, {b}, true);
  DevArray nll = dense(nll_obj, "out_nll", DType::f64, {b}, true);
  DevArray smooth = dense(smooth_obj, "out_smooth", DType::f64, {b}, true);
  const std::pair<const DevArray*, const char*> outs[] = {{&lse, "out_lse"}, {&nll, "out_nll"}, {&smooth, "out_smooth"}};
  for (const auto& [o, name] : outs) {
    require_apart(*o, name, x.z, "logits");
    require_apart(*o, name, x.target, "target");
    if (x.has_weight) require_apart(*o, name, x.weight, "weight");
    if (x.has_error) require_apart(*o, name, x.error, "error");
  }
  require_apart(lse, "out_lse", nll, "out_nll");
  require_apart(lse, "out_lse", smooth, "out_smooth");
  require_apart(nll, "out_nll", smooth, "out_smooth");
  const auto s = stream_arg(stream);
  int32_t* err = x.has_error ? x.error.data<int32_t>() : nullptr;
  py::gil_scoped_release release;
  ember::cuda::cross_entropy_fwd(x.p, lse.data<double>(), nll.data<double>(), smooth.data<double>(), err, s);
}

void py_xent_bwd(py::handle z_obj, py::handle target_obj, py::handle weight_obj, double eps, int64_t ignore_index,
                 py::handle lse_obj, py::handle scale_obj, py::handle out_obj, py::handle error_obj,
                 py::handle stream) {
  XentArrays x = xent_args(z_obj, target_obj, weight_obj, eps, ignore_index, error_obj);
  const int64_t b = x.p.b, v = x.p.v;
  DevArray lse = dense(lse_obj, "lse", DType::f64, {b});
  DevArray scale = dense(scale_obj, "scale", DType::f32, {b});
  DevArray out = dense(out_obj, "out", DType::f32, {b, v}, true);
  require_apart(out, "out", x.z, "logits", true);  // in place over the logits is allowed
  require_apart(out, "out", x.target, "target");
  if (x.has_weight) require_apart(out, "out", x.weight, "weight");
  if (x.has_error) require_apart(out, "out", x.error, "error");
  require_apart(out, "out", lse, "lse");
  require_apart(out, "out", scale, "scale");
  const auto s = stream_arg(stream);
  int32_t* err = x.has_error ? x.error.data<int32_t>() : nullptr;
  py::gil_scoped_release release;
  ember::cuda::cross_entropy_bwd(x.p, lse.data<const double>(), scale.data<const float>(), out.data<float>(), err, s);
}

}  // namespace

void register_cross_entropy(py::module_& m) {
  m.def("cross_entropy_fwd", &py_xent_fwd,
        "Per-row softmax cross-entropy of float32 logits (B, V), C-contiguous, against int64 class indices (B,)\n"
        "or float32 probabilities (B, V), with optional float32 class weights (V,), label smoothing eps and\n"
        "ignore_index. Writes float64 (B,) out_lse (log-sum-exp), out_nll and out_smooth exactly as\n"
        "ember._C's cross-entropy does; the caller reduces them. A class index that is neither in [0, V) nor\n"
        "ignore_index makes its row NaN and, when `error` (int32 (1,), preset to >= B) is given, lowers\n"
        "error[0] to the first such row. One read of the logits; asynchronous on `stream`.",
        py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("eps"), py::arg("ignore_index"),
        py::arg("out_lse"), py::arg("out_nll"), py::arg("out_smooth"), py::arg("error") = py::none(),
        py::arg("stream") = 0);
  m.def("cross_entropy_bwd", &py_xent_bwd,
        "Gradient of the cross-entropy with respect to the logits: out = scale_r (a_r softmax(z_r) - b_r) with\n"
        "lse the forward's float64 (B,) log-sum-exps and scale float32 (B,) per-row factors (0 for ignored\n"
        "rows). out is float32 (B, V) C-contiguous and may be the logits themselves (in place). Bad class\n"
        "indices give NaN rows and lower `error` as in cross_entropy_fwd. One read of the logits and one\n"
        "write; asynchronous on `stream`.",
        py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("eps"), py::arg("ignore_index"),
        py::arg("lse"), py::arg("scale"), py::arg("out"), py::arg("error") = py::none(), py::arg("stream") = 0);
}

}  // namespace ember::cuda_bind
