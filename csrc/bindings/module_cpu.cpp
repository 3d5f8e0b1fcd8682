// ember._C: the CPU kernels. This file only assembles the module; each op's
// bindings live in bindings/<op>.cpp over the shared validator (array_view.h).
#include <pybind11/pybind11.h>

#include "core/check.h"
#include "core/registry.h"
#include "core/threads.h"

namespace py = pybind11;

namespace ember::bindings {
void bind_runtime(py::module_& m);
void bind_probes(py::module_& m);
void bind_gemm(py::module_& m);
void bind_conv2d(py::module_& m);
void bind_pool2d(py::module_& m);
void bind_cross_entropy(py::module_& m);
void bind_eltwise(py::module_& m);
void bind_optim_step(py::module_& m);
void bind_qmatmul(py::module_& m);
void bind_inference(py::module_& m);
void bind_decoder(py::module_& m);
void bind_attention(py::module_& m);
void bind_layer_norm(py::module_& m);
}  // namespace ember::bindings

PYBIND11_MODULE(_C, m) {
  m.doc() = "Ember's CPU kernels";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ember::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
  // Environment overrides are validated at import, so a typo fails loudly.
  ember::init_isa_from_env();
  ember::get_num_threads();
  m.attr("__version__") = EMBER_VERSION;

  namespace b = ember::bindings;
  b::bind_runtime(m);
  b::bind_probes(m);
  b::bind_gemm(m);
  b::bind_conv2d(m);
  b::bind_pool2d(m);
  b::bind_cross_entropy(m);
  b::bind_eltwise(m);
  b::bind_optim_step(m);
  b::bind_qmatmul(m);
  b::bind_inference(m);
  b::bind_decoder(m);
  b::bind_attention(m);
  b::bind_layer_norm(m);
}
