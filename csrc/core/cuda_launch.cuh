// Helpers shared by the .cu kernels: turning CUDA errors into C++ exceptions
// and small launch utilities. Included only by files compiled with nvcc.
//
// Every kernel launch is followed by check_launch("name"): a launch error
// (bad configuration, too much shared memory, no kernel image for this GPU)
// is non-sticky, so reading it with cudaGetLastError both reports it and
// clears it, and the next call starts clean. Errors raised while a kernel
// runs (an illegal address) are sticky in CUDA itself: they surface at the
// next synchronising call, carrying CUDA's own message.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>

namespace ember::cuda {

// Raises std::bad_alloc (MemoryError in Python) for out-of-memory, else a
// std::runtime_error naming `what` and CUDA's message.
[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what) {
  if (err == cudaErrorMemoryAllocation) {
    throw std::bad_alloc();
  }
  throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it where it is not sticky
    throw_cuda_error(err, what);
  }
}

// After a launch: the launch's own error, if any, as an exception naming the kernel.
inline void check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(err, (std::string("launching ") + kernel).c_str());
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The current device's multiprocessor count (cached per device).
int sm_count();
// The current device's compute capability as 10 * major + minor.
int compute_capability();
// Whether the current device's compute capability is exactly 9.0 (sm_90a code runs there).
inline bool is_sm90() { return compute_capability() == 90; }

}  // namespace ember::cuda
