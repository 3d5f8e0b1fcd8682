// ember._C.relu_fwd, relu_bwd and erf: elementwise, float32 or float64.
#include <vector>

#include "bindings/common.h"
#include "ops/eltwise/eltwise.h"

namespace ember::bindings {
namespace {

// Every array float32, or every one float64, C-contiguous and of one shape. out may be an
// input itself (elementwise, so in place is exact) but may not partly overlap one. Runs
// kernel(T tag, inputs, out, n, nthreads) without the GIL.
template <class Kernel>
void run(std::initializer_list<std::pair<const char*, py::handle>> inputs, const py::handle& out_obj,
         Kernel&& kernel) {
  std::vector<ArrayView> in;
  for (const auto& [name, obj] : inputs) {
    ArrayView a = read_array(obj, name);
    check_device(a, Device::cpu);
    if (in.empty()) {
      check_dtype(a, {DType::float32, DType::float64});
    } else {
      EMBER_CHECK_TYPE(a.dtype == in[0].dtype, name, " has dtype ", dtype_str(a), " but ", in[0].name, " has ",
                       dtype_str(in[0]));
      EMBER_CHECK_VALUE(a.shape == in[0].shape, name, " has shape ", shape_str(a.shape), " but ", in[0].name,
                        " has shape ", shape_str(in[0].shape));
    }
    check_layout(a, Layout::contiguous);
    in.push_back(std::move(a));
  }
  const ArrayView out = read_array(out_obj, "out");
  check_device(out, Device::cpu);
  EMBER_CHECK_TYPE(out.dtype == in[0].dtype, "out has dtype ", dtype_str(out), " but ", in[0].name, " has ",
                   dtype_str(in[0]));
  EMBER_CHECK_VALUE(out.shape == in[0].shape, "out has shape ", shape_str(out.shape), " but ", in[0].name,
                    " has shape ", shape_str(in[0].shape));
  check_layout(out, Layout::contiguous);
  check_writable(out);
  for (const ArrayView& a : in)
    EMBER_CHECK_VALUE(a.data == out.data || !a.overlaps(out),
                      "out partly overlaps an input (in place is allowed, other overlaps are not)");
  std::vector<const void*> ptrs;
  for (const ArrayView& a : in) ptrs.push_back(a.data);
  const bool f32 = out.dtype == DType::float32;
  const Active active;
  py::gil_scoped_release release;
  if (f32)
    kernel(float{}, ptrs, out.data, out.size(), active.nthreads);
  else
    kernel(double{}, ptrs, out.data, out.size(), active.nthreads);
}

void relu_fwd(const py::handle& input, const py::handle& out) {
  run({{"input", input}}, out, [](auto tag, const std::vector<const void*>& in, void* o, int64_t n, int nt) {
    using T = decltype(tag);
    eltwise::relu_fwd(static_cast<const T*>(in[0]), static_cast<T*>(o), n, nt);
  });
}

void relu_bwd(const py::handle& grad_output, const py::handle& output, const py::handle& out) {
  run({{"grad_output", grad_output}, {"output", output}}, out,
      [](auto tag, const std::vector<const void*>& in, void* o, int64_t n, int nt) {
        using T = decltype(tag);
        eltwise::relu_bwd(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(o), n, nt);
      });
}

void erf(const py::handle& input, const py::handle& out) {
  run({{"input", input}}, out, [](auto tag, const std::vector<const void*>& in, void* o, int64_t n, int nt) {
    using T = decltype(tag);
    eltwise::erf(static_cast<const T*>(in[0]), static_cast<T*>(o), n, nt);
  });
}

}  // namespace

void bind_eltwise(py::module_& m) {
  def(m, "relu_fwd", &relu_fwd, "out = maximum(input, 0) (NaN kept); float32 or float64, C-contiguous; out may be input.",
      py::arg("input"), py::arg("out"));
  def(m, "relu_bwd", &relu_bwd,
      "out = where(output > 0, grad_output, 0), output being relu_fwd's; out may be an input.",
      py::arg("grad_output"), py::arg("output"), py::arg("out"));
  def(m, "erf", &erf, "out = erf(input); float32 or float64, C-contiguous; out may be input.", py::arg("input"),
      py::arg("out"));
}

}  // namespace ember::bindings
