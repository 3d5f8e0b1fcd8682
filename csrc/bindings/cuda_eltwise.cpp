// ember._cuda bindings: relu_fwd, relu_bwd, erf.
#include "bindings/cuda_common.h"
#include "ops/eltwise/eltwise_cuda.h"

namespace ember::cuda_bind {
namespace {

// Every array float32, or every one float64, C-contiguous and of one shape; out may be an
// input itself (elementwise, so in place is exact) but may not partly overlap one.
std::vector<DevArray> eltwise_arrays(std::initializer_list<std::pair<const char*, py::handle>> inputs,
                                     py::handle out_obj) {
  std::vector<DevArray> arrays;
  const char* first = inputs.begin()->first;
  for (const auto& [name, obj] : inputs) {
    DevArray a = device_array(obj, name);
    require_dtype(a, name, {DType::f32, DType::f64});
    if (!arrays.empty()) {
      EMBER_CHECK_TYPE(a.dtype == arrays[0].dtype, name, " has dtype ", dtype_name(a.dtype), " but ", first, " has ",
                       dtype_name(arrays[0].dtype));
      EMBER_CHECK_VALUE(a.shape == arrays[0].shape, name, " has shape ", a.shape_str(), " but ", first,
                        " has shape ", arrays[0].shape_str());
    }
    require_contiguous(a, name);
    arrays.push_back(std::move(a));
  }
  DevArray out = device_array(out_obj, "out");
  EMBER_CHECK_TYPE(out.dtype == arrays[0].dtype, "out has dtype ", dtype_name(out.dtype), " but ", first, " has ",
                   dtype_name(arrays[0].dtype));
  EMBER_CHECK_VALUE(out.shape == arrays[0].shape, "out has shape ", out.shape_str(), " but ", first, " has shape ",
                    arrays[0].shape_str());
  require_contiguous(out, "out");
  require_writable(out, "out");
  size_t i = 0;
  for (const auto& in : inputs) require_apart(out, "out", arrays[i++], in.first, true);
  arrays.push_back(std::move(out));
  return arrays;
}

void py_relu_fwd(py::handle x, py::handle out, py::handle stream) {
  auto arrs = eltwise_arrays({{"input", x}}, out);
  const auto s = stream_arg(stream);
  const int64_t n = arrs[0].size();
  py::gil_scoped_release release;
  if (arrs[0].dtype == DType::f32)
    ember::cuda::relu_fwd(arrs[0].data<const float>(), arrs[1].data<float>(), n, s);
  else
    ember::cuda::relu_fwd(arrs[0].data<const double>(), arrs[1].data<double>(), n, s);
}

void py_relu_bwd(py::handle g, py::handle y, py::handle out, py::handle stream) {
  auto arrs = eltwise_arrays({{"grad_output", g}, {"output", y}}, out);
  const auto s = stream_arg(stream);
  const int64_t n = arrs[0].size();
  py::gil_scoped_release release;
  if (arrs[0].dtype == DType::f32)
    ember::cuda::relu_bwd(arrs[0].data<const float>(), arrs[1].data<const float>(), arrs[2].data<float>(), n, s);
  else
    ember::cuda::relu_bwd(arrs[0].data<const double>(), arrs[1].data<const double>(), arrs[2].data<double>(), n, s);
}

void py_erf(py::handle x, py::handle out, py::handle stream) {
  auto arrs = eltwise_arrays({{"input", x}}, out);
  const auto s = stream_arg(stream);
  const int64_t n = arrs[0].size();
  py::gil_scoped_release release;
  if (arrs[0].dtype == DType::f32)
    ember::cuda::erf(arrs[0].data<const float>(), arrs[1].data<float>(), n, s);
  else
    ember::cuda::erf(arrs[0].data<const double>(), arrs[1].data<double>(), n, s);
}

}  // namespace

void register_eltwise(py::module_& m) {
  m.def("erf", &py_erf,
        "out = erf(input). float32 or float64 C-contiguous device arrays of one shape; out may be input itself.\n"
        "Asynchronous on `stream`.",
        py::arg("input"), py::arg("out"), py::arg("stream") = 0);
  m.def("relu_fwd", &py_relu_fwd,
        "out = input > 0 ? input : 0 (NaN kept, -0.0 -> +0.0). float32 or float64 C-contiguous device arrays of one\n"
        "shape; out may be input itself. Asynchronous on `stream`.",
        py::arg("input"), py::arg("out"), py::arg("stream") = 0);
  m.def("relu_bwd", &py_relu_bwd,
        "out = output > 0 ? grad_output : 0, output being relu_fwd's result. float32 or float64 C-contiguous device\n"
        "arrays of one shape; out may be grad_output itself. Asynchronous on `stream`.",
        py::arg("grad_output"), py::arg("output"), py::arg("out"), py::arg("stream") = 0);
}

}  // namespace ember::cuda_bind
