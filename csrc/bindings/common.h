// What every binding file of ember._C shares besides the array validator:
// how a function is defined (named arguments, a docstring, its name in front
// of every error it raises), the ISA and threads read once per call, the
// float64 dispatch of the references. (The geometry of convolution and
// pooling: geometry.h.)
//
// A binding validates every argument while holding the GIL, reads the active
// ISA and thread count once, then releases the GIL around the kernel alone
// (py::gil_scoped_release), touching no Python object until it is back.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <utility>

#include "bindings/array_view.h"
#include "core/check.h"
#include "core/registry.h"
#include "core/threads.h"

namespace ember::bindings {

// m.def(name, f, doc, py::arg(...)...), with every TypeError and ValueError f
// raises prefixed by the function's name ("conv2d_fwd: out must be ...").
template <class R, class... A, class... Extra>
void def(py::module_& m, const char* name, R (*f)(A...), const char* doc, const Extra&... extra) {
  static_assert(sizeof...(Extra) == sizeof...(A), "name every argument with py::arg");
  m.def(
      name,
      [name, f](A... args) -> R {
        try {
          return f(std::forward<A>(args)...);
        } catch (const TypeError& e) {
          throw TypeError(detail::concat(name, ": ", e.what()));
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument(detail::concat(name, ": ", e.what()));
        }
      },
      doc, extra...);
}

// The instruction set and thread count of this call, read once while the GIL
// is held and passed down to the kernel: kernels never read them themselves.
struct Active {
  Isa isa = active_isa();
  int nthreads = get_num_threads();
};

// Whether a call runs in float64: the references take float64 as well as
// float32 (gradient checks run in float64), the fast paths float32 only, and
// say where float64 runs. `obj` is the call's leading array argument.
template <bool Ref>
bool runs_float64(py::handle obj, const char* name, const char* fn) {
  if (dtype_of_arg(obj) != DType::float64) return false;
  EMBER_CHECK_TYPE(Ref, name, " has dtype float64, but ", fn, " takes float32 (float64 runs on ", fn, "_ref)");
  return true;
}

}  // namespace ember::bindings
