// ember._C.relu_fwd, relu_bwd and erf: elementwise, float32 or float64.
#include "bindings/common.h"
#include "ops/eltwise/eltwise.h"

namespace ember::bindings {
namespace {

// Every array float32, or every one float64, C-contiguous and of one shape. out may be an
// input itself (elementwise, so in place is exact) but may not partly overlap one. Runs
// kernel(T{}, inputs, out, n, active) without the GIL.
struct Arg {
  const char* name;
  py::handle obj;
};

template <size_t N, class Kernel>
void run(const Arg (&args)[N], const py::handle& out_obj, Kernel&& kernel) {
  ArrayView in[N];
  const void* ptrs[N];
  for (size_t i = 0; i < N; ++i) {
    in[i] = read_array(args[i].obj, args[i].name);
    check_device(in[i], Device::cpu);
    ptrs[i] = in[i].data;
  }
  const ArrayView out = read_array(out_obj, "out");
  check_device(out, Device::cpu);
  check_elementwise(in, N, out);
  const bool f32 = out.dtype == DType::float32;
  const Active active;
  py::gil_scoped_release release;
  if (f32)
    kernel(float{}, ptrs, out.data, out.size(), active);
  else
    kernel(double{}, ptrs, out.data, out.size(), active);
}

void relu_fwd(const py::handle& input, const py::handle& out) {
  run({{"input", input}}, out, [](auto tag, const void* const* in, void* o, int64_t n, const Active& a) {
    using T = decltype(tag);
    eltwise::relu_fwd(static_cast<const T*>(in[0]), static_cast<T*>(o), n, a.nthreads);
  });
}

void relu_bwd(const py::handle& grad_output, const py::handle& output, const py::handle& out) {
  run({{"grad_output", grad_output}, {"output", output}}, out,
      [](auto tag, const void* const* in, void* o, int64_t n, const Active& a) {
        using T = decltype(tag);
        eltwise::relu_bwd(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(o), n, a.nthreads);
      });
}

void erf(const py::handle& input, const py::handle& out) {
  run({{"input", input}}, out, [](auto tag, const void* const* in, void* o, int64_t n, const Active& a) {
    using T = decltype(tag);
    eltwise::erf(static_cast<const T*>(in[0]), static_cast<T*>(o), n, a.nthreads);
  });
}

void gelu_fwd(const py::handle& input, const py::handle& out) {
  run({{"input", input}}, out, [](auto tag, const void* const* in, void* o, int64_t n, const Active& a) {
    using T = decltype(tag);
    eltwise::gelu_fwd(static_cast<const T*>(in[0]), static_cast<T*>(o), n, a.isa, a.nthreads);
  });
}

void gelu_bwd(const py::handle& grad_output, const py::handle& input, const py::handle& out) {
  run({{"grad_output", grad_output}, {"input", input}}, out,
      [](auto tag, const void* const* in, void* o, int64_t n, const Active& a) {
        using T = decltype(tag);
        eltwise::gelu_bwd(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(o), n, a.isa,
                          a.nthreads);
      });
}

}  // namespace

void bind_eltwise(py::module_& m) {
  def(m, "relu_fwd", &relu_fwd, "out = maximum(input, 0) (NaN kept); float32 or float64, C-contiguous; out may be input.",
      py::arg("input"), py::arg("out"));
  def(m, "relu_bwd", &relu_bwd,
      "out = where(output <= 0, 0, grad_output) (a NaN output passes the gradient), output being relu_fwd's; out\n"
      "may be an input.",
      py::arg("grad_output"), py::arg("output"), py::arg("out"));
  def(m, "erf", &erf, "out = erf(input); float32 or float64, C-contiguous; out may be input.", py::arg("input"),
      py::arg("out"));
  def(m, "gelu_fwd", &gelu_fwd,
      "out = input * (0.5 * (1 + erf(input / sqrt(2)))) (GELU, exact CDF); float32 or float64, C-contiguous;\n"
      "out may be input.",
      py::arg("input"), py::arg("out"));
  def(m, "gelu_bwd", &gelu_bwd,
      "out = grad_output * (cdf + input * pdf), the gradient of gelu_fwd at input; out may be an input.",
      py::arg("grad_output"), py::arg("input"), py::arg("out"));
}

}  // namespace ember::bindings
