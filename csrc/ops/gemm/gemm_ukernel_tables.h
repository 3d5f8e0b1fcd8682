// Tables of micro-kernel instantiations, one per row count.
//
// Included only by the per-ISA kernel files. Everything here is in an
// anonymous namespace on purpose: each ISA's translation unit gets its own
// copy, compiled with that ISA's flags, so none can be merged into another's.
#pragma once

#include <array>
#include <type_traits>
#include <utility>

namespace ember::gemm {
namespace {

template <int Size, class Pick, int... Ms>
constexpr auto rows_table_impl(Pick pick, std::integer_sequence<int, Ms...>) {
  using Fn = decltype(pick(std::integral_constant<int, 1>{}));
  return std::array<Fn, Size>{pick(std::integral_constant<int, Ms + 1>{})...};
}

// {pick(1), ..., pick(N)} padded with nulls to Size entries, where pick maps
// std::integral_constant<int, M> to the instantiation for M rows.
template <int Size, int N, class Pick>
constexpr auto rows_table(Pick pick) {
  static_assert(N <= Size, "more row counts than table entries");
  return rows_table_impl<Size>(pick, std::make_integer_sequence<int, N>{});
}

}  // namespace
}  // namespace ember::gemm
