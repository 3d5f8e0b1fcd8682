// Scalar arguments (int, float, bool and str parameters) whose errors name the
// parameter. pybind11's own conversions answer a value they cannot take (an
// int beyond 64 bits, a float beyond the float range, a str for a number)
// with "incompatible function arguments", naming nothing; def() receives such
// parameters through the types below instead, whose conversions never fail,
// and refuses what they could not take by the parameter's name:
// OverflowError for a number out of range, TypeError for a value of another
// kind (None included). Values pybind11 takes convert exactly as it converts them.
#pragma once

#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "bindings/array_view.h"
#include "core/check.h"

namespace ember::bindings {

// What the conversion made of a Python value: the value, or why there is none.
template <class T>
struct Scalar {
  enum class State : uint8_t { ok, out_of_range, wrong_kind } state = State::ok;
  T value{};
  std::string kind;  // the Python type's name, when not ok
};

// The parameter type def() registers for a C++ parameter type T: int64_t, int
// and int32_t arrive as Scalar<int64_t>, double and float as Scalar<double>,
// bool as Scalar<bool>, std::string as Scalar<std::string>; every other type
// as itself.
template <class T>
struct wire {
  using type = T;
};
template <>
struct wire<int64_t> {
  using type = Scalar<int64_t>;
};
template <>
struct wire<int> {
  using type = Scalar<int64_t>;
};
template <>
struct wire<double> {
  using type = Scalar<double>;
};
template <>
struct wire<float> {
  using type = Scalar<double>;
};
template <>
struct wire<bool> {
  using type = Scalar<bool>;
};
template <>
struct wire<std::string> {
  using type = Scalar<std::string>;
};

// A wired argument as the C++ parameter T, or the error naming `name`.
template <class T, class W>
decltype(auto) unwire(W&& w, const char* name) {
  using V = std::decay_t<W>;
  if constexpr (std::is_same_v<V, Scalar<int64_t>> || std::is_same_v<V, Scalar<double>> ||
                std::is_same_v<V, Scalar<bool>> || std::is_same_v<V, Scalar<std::string>>) {
    using S = decltype(w.value);
    constexpr const char* what = std::is_same_v<S, bool>          ? "a bool"
                                 : std::is_same_v<S, double>      ? "a real number"
                                 : std::is_same_v<S, std::string> ? "a str"
                                                                  : "an int";
    if (w.state == V::State::wrong_kind) throw TypeError(detail::concat(name, " must be ", what, ", got ", w.kind));
    if (w.state == V::State::out_of_range)
      throw std::overflow_error(detail::concat(name, " is too large: a Python ", w.kind, " out of the range of ",
                                               std::is_same_v<S, double> ? "a double" : "a 64-bit integer"));
    if constexpr (std::is_same_v<T, int>) {
      if (w.value < std::numeric_limits<int>::min() || w.value > std::numeric_limits<int>::max())
        throw std::overflow_error(detail::concat(name, " = ", w.value, " is out of the range of a 32-bit integer"));
      return static_cast<int>(w.value);
    } else if constexpr (std::is_same_v<T, float>) {
      if (std::isfinite(w.value) && std::fabs(w.value) > std::numeric_limits<float>::max())
        throw std::overflow_error(detail::concat(name, " = ", w.value, " is out of the range of a float32"));
      return static_cast<float>(w.value);
    } else {
      return static_cast<T>(w.value);
    }
  } else {
    return std::forward<W>(w);
  }
}

}  // namespace ember::bindings

namespace pybind11::detail {

// The Python type a signature shows for Scalar<T>.
template <class T>
constexpr auto scalar_name() {
  if constexpr (std::is_same_v<T, bool>)
    return const_name("bool");
  else if constexpr (std::is_same_v<T, std::string>)
    return const_name("str");
  else if constexpr (std::is_same_v<T, double>)
    return const_name("float");
  else
    return const_name("int");
}

template <class T>
struct type_caster<ember::bindings::Scalar<T>> {
  using Value = ember::bindings::Scalar<T>;
  PYBIND11_TYPE_CASTER(Value, scalar_name<T>());

  bool load(handle src, bool) {
    make_caster<T> inner;
    if (inner.load(src, true)) {
      value.value = cast_op<T>(inner);
      return true;
    }
    PyErr_Clear();
    value.kind = str(type::handle_of(src).attr("__name__"));
    // An integer pybind11 refused: too large for T (for a double: beyond its range).
    const bool integer = !std::is_same_v<T, bool> && !std::is_same_v<T, std::string> && !PyFloat_Check(src.ptr()) &&
                         PyIndex_Check(src.ptr());
    value.state = integer ? Value::State::out_of_range : Value::State::wrong_kind;
    return true;
  }

  static handle cast(const Value& v, return_value_policy, handle) { return pybind11::cast(v.value).release(); }
};

}  // namespace pybind11::detail
