// What every ember._cuda binding file shares: the validator (array_view.h with
// cuda_array.h's device additions), the argument conventions and the
// registration functions module_cuda.cpp calls.
#pragma once

#include <pybind11/pybind11.h>

#include "bindings/array_view.h"
#include "bindings/cuda_array.h"
#include "core/check.h"

namespace ember::cuda_bind {

using bindings::check_apart;
using bindings::check_dtype;
using bindings::check_in_place;
using bindings::check_layout;
using bindings::check_shape;
using bindings::check_writable;
using bindings::dtype_str;
using bindings::shape_str;
using bindings::type_name;

// One per binding file; module_cuda.cpp calls each once.
void register_eltwise(py::module_& m);
void register_cross_entropy(py::module_& m);
void register_pool2d(py::module_& m);
void register_optim(py::module_& m);
void register_gemm(py::module_& m);
void register_conv2d(py::module_& m);

// int64 sizes a kernel indexes with 32-bit grid dimensions or counters.
inline void require_below(int64_t v, int64_t limit, const char* what) {
  EMBER_CHECK_VALUE(v < limit, what, " is ", v, ", above this kernel's limit of ", limit - 1);
}

}  // namespace ember::cuda_bind
