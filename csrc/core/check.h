// Error helpers shared by the kernels and the bindings.
//
// User errors (bad shapes, dtypes, arguments) throw the exception type that
// pybind11 maps to the right Python exception: std::invalid_argument ->
// ValueError, ember::TypeError -> TypeError, std::overflow_error ->
// OverflowError. Their messages name the argument and what it got, and carry
// no source location: they are the user's documentation.
// Internal invariants (EMBER_ASSERT) carry file:line, because a failure there
// is our bug, and the location is what a bug report needs.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ember {

// Raised as Python's TypeError by the bindings.
struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace ember

#define EMBER_CHECK_VALUE(cond, ...)                                        \
  do {                                                                      \
    if (!(cond)) throw std::invalid_argument(::ember::detail::concat(__VA_ARGS__)); \
  } while (0)

#define EMBER_CHECK_TYPE(cond, ...)                                         \
  do {                                                                      \
    if (!(cond)) throw ::ember::TypeError(::ember::detail::concat(__VA_ARGS__)); \
  } while (0)

#define EMBER_ASSERT(cond, ...)                                             \
  do {                                                                      \
    if (!(cond))                                                            \
      throw std::logic_error(::ember::detail::concat(                       \
          "internal error at ", __FILE__, ":", __LINE__, ": ", #cond, " ",  \
          ##__VA_ARGS__));                                                  \
  } while (0)
