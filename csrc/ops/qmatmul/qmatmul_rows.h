// Row-count dispatch for the per-ISA tile kernels, which take the number of
// rows as a template argument so the accumulators stay in registers. Included
// only by qmatmul_kernels_<isa>.cpp; anonymous namespace: one copy per ISA.
#pragma once

#include <cstdint>
#include <type_traits>

namespace ember::qmatmul {
namespace {

// run(std::integral_constant<int, rows>{}) for 1 <= rows <= MaxRows.
template <int MaxRows, class Run>
void with_rows(int64_t rows, Run&& run) {
  if constexpr (MaxRows > 1) {
    if (rows >= MaxRows) return run(std::integral_constant<int, MaxRows>{});
    return with_rows<MaxRows - 1>(rows, run);
  } else {
    return run(std::integral_constant<int, 1>{});
  }
}

}  // namespace
}  // namespace ember::qmatmul
