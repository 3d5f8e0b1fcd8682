// What every binding file of ember._C shares besides the array validator:
// how a function is defined (named arguments, a docstring, its name in front
// of every error it raises), the ISA and threads read once per call, the
// float64 dispatch of the references, and the geometry bounds of convolution
// and pooling.
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

// ------------------------------------------------------------ geometry bounds
//
// Convolution and pooling geometry is bounded so that the kernels' unchecked
// index arithmetic cannot overflow: every step (stride, padding, dilation) and
// every extent (a dilated window, the span of the output positions, the padded
// input) is below 2^62, so a tap's position i * stride - pad + p * dilation and
// any sum of two extents fit in an int64. Larger values are refused, naming
// the argument.
constexpr int64_t kMaxExtent = int64_t(1) << 62;

inline void check_step(int64_t v, const char* name) {
  EMBER_CHECK_VALUE(v < kMaxExtent, name, " is ", v, ", too large: geometry values must be below 2**62");
}

// (count - 1) * step + 1, the extent of `count` positions `step` apart, checked.
inline int64_t checked_extent(int64_t count, int64_t step, const char* what) {
  int64_t span;
  EMBER_CHECK_VALUE(count >= 1 && !__builtin_mul_overflow(count - 1, step, &span) && span < kMaxExtent - 1, what,
                    " spans (", count, " - 1) x ", step, " + 1 positions, too large: geometry extents must be "
                    "below 2**62");
  return span + 1;
}

// One axis: kernel k with dilation d, stride s, leading padding p, input size n
// and output size o; checks every extent the kernels compute.
inline void check_axis(int64_t n, int64_t o, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis) {
  check_step(s, "stride");
  check_step(p, "padding");
  check_step(d, "dilation");
  const int64_t window = checked_extent(k, d, "the dilated kernel");
  const int64_t outputs = o >= 1 ? checked_extent(o, s, "the output positions (stride)") : 0;
  EMBER_CHECK_VALUE(n + p < kMaxExtent && outputs + window < kMaxExtent, "the padded ", axis,
                    " extent is too large: input ", n, ", padding ", p, ", output ", o, " x stride ", s, ", kernel ",
                    k, " x dilation ", d, " (geometry extents must be below 2**62)");
}

}  // namespace ember::bindings
