// ember._cuda bindings: relu_fwd, relu_bwd, erf.
#include "bindings/cuda_common.h"
#include "ops/eltwise/eltwise_cuda.h"

namespace ember::cuda_bind {
namespace {

// The inputs and out, read as device arrays and checked as every elementwise binding's are
// (bindings::check_elementwise); out last.
std::vector<ArrayView> eltwise_arrays(std::initializer_list<std::pair<const char*, py::handle>> inputs,
                                      py::handle out_obj) {
  std::vector<ArrayView> arrays;
  for (const auto& [name, obj] : inputs) arrays.push_back(device_array(obj, name, "float32 or float64"));
  arrays.push_back(device_array(out_obj, "out", "float32 or float64"));
  bindings::check_elementwise(arrays.data(), arrays.size() - 1, arrays.back());
  return arrays;
}

void py_relu_fwd(py::handle x, py::handle out, py::handle stream) {
  auto arrs = eltwise_arrays({{"input", x}}, out);
  const auto s = stream_arg(stream);
  const int64_t n = arrs[0].size();
  py::gil_scoped_release release;
  if (arrs[0].dtype == DType::float32)
    ember::cuda::relu_fwd(arrs[0].ptr<const float>(), arrs[1].ptr<float>(), n, s);
  else
    ember::cuda::relu_fwd(arrs[0].ptr<const double>(), arrs[1].ptr<double>(), n, s);
}

void py_relu_bwd(py::handle g, py::handle y, py::handle out, py::handle stream) {
  auto arrs = eltwise_arrays({{"grad_output", g}, {"output", y}}, out);
  const auto s = stream_arg(stream);
  const int64_t n = arrs[0].size();
  py::gil_scoped_release release;
  if (arrs[0].dtype == DType::float32)
    ember::cuda::relu_bwd(arrs[0].ptr<const float>(), arrs[1].ptr<const float>(), arrs[2].ptr<float>(), n, s);
  else
    ember::cuda::relu_bwd(arrs[0].ptr<const double>(), arrs[1].ptr<const double>(), arrs[2].ptr<double>(), n, s);
}

void py_erf(py::handle x, py::handle out, py::handle stream) {
  auto arrs = eltwise_arrays({{"input", x}}, out);
  const auto s = stream_arg(stream);
  const int64_t n = arrs[0].size();
  py::gil_scoped_release release;
  if (arrs[0].dtype == DType::float32)
    ember::cuda::erf(arrs[0].ptr<const float>(), arrs[1].ptr<float>(), n, s);
  else
    ember::cuda::erf(arrs[0].ptr<const double>(), arrs[1].ptr<double>(), n, s);
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
        "out = output <= 0 ? 0 : grad_output (a NaN output passes it), output being relu_fwd's result. float32 or\n"
        "float64 C-contiguous device arrays of one shape; out may be grad_output itself. Asynchronous on `stream`.",
        py::arg("grad_output"), py::arg("output"), py::arg("out"), py::arg("stream") = 0);
}

}  // namespace ember::cuda_bind
