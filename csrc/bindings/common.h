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

#include <array>
#include <cstdint>
#include <stdexcept>
#include <utility>

#include "bindings/array_view.h"
#include "bindings/scalar_args.h"
#include "core/check.h"
#include "core/registry.h"
#include "core/threads.h"

namespace ember::bindings {

// f(args...) with each wired argument converted back to f's parameter type (or refused by name).
template <class R, class... A, size_t... I, class... W>
R call(R (*f)(A...), const std::array<const char*, sizeof...(A)>& names, std::index_sequence<I...>, W&&... args) {
  return f(unwire<A>(std::forward<W>(args), names[I])...);
}

// f() with every TypeError, ValueError and OverflowError it raises prefixed by `name`
// ("Decoder.step: tokens must ..."): what def() below does for a function, for a bound class's
// constructor and methods.
template <class F>
auto prefixed(const char* name, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const TypeError& e) {
    throw TypeError(detail::concat(name, ": ", e.what()));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(detail::concat(name, ": ", e.what()));
  } catch (const std::overflow_error& e) {
    throw std::overflow_error(detail::concat(name, ": ", e.what()));
  }
}

// m.def(name, f, doc, py::arg(...)...), with every TypeError, ValueError and
// OverflowError f raises prefixed by the function's name ("conv2d_fwd: out
// must be ..."), and int, float and bool parameters received through
// scalar_args.h, so that a value they cannot take is refused by name.
template <class R, class... A, class... Extra>
void def(py::module_& m, const char* name, R (*f)(A...), const char* doc, const Extra&... extra) {
  static_assert(sizeof...(Extra) == sizeof...(A), "name every argument with py::arg");
  const std::array<const char*, sizeof...(A)> names{extra.name...};
  m.def(
      name,
      [name, f, names](typename wire<A>::type... args) -> R {
        return prefixed(name, [&]() -> R {
          return call(f, names, std::index_sequence_for<A...>{}, std::forward<typename wire<A>::type>(args)...);
        });
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
