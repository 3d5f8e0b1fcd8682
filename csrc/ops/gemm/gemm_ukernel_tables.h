// Choosing a micro-kernel instantiation by a runtime row count.
//
// Included only by the per-ISA kernel files. Everything here is in an
// anonymous namespace on purpose: each ISA's translation unit gets its own
// copy, compiled with that ISA's flags, so none can be merged into another's.
#pragma once

#include <utility>

namespace ember::gemm {
namespace {

// Pick<M>::fn is a function or a function pointer; unary + makes either a pointer.
template <template <int> class Pick, int... Ms>
auto by_rows_impl(int m, std::integer_sequence<int, Ms...>) {
  using Fn = decltype(+Pick<1>::fn);
  static const Fn table[] = {Pick<Ms + 1>::fn...};
  return table[m - 1];
}

// Pick<m>::fn for a runtime m in 1..N, from a table built once.
template <template <int> class Pick, int N>
auto by_rows(int m) {
  return by_rows_impl<Pick>(m, std::make_integer_sequence<int, N>{});
}

}  // namespace
}  // namespace ember::gemm
