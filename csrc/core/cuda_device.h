// CUDA device queries for ember._cuda. Plain C++ interface: the bindings that
// include it need no CUDA headers; the implementation is compiled by nvcc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

// cudaStream_t without the CUDA headers (it is `CUstream_st*`).
struct CUstream_st;

namespace ember::cuda {

using stream_t = CUstream_st*;

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;  // compute capability
  int multiprocessors = 0;
  size_t total_memory = 0;   // bytes
};

// Number of visible CUDA devices; 0 when there is no driver or no device.
int device_count();
// Throws std::invalid_argument for an index outside [0, device_count()).
DeviceInfo device_info(int index);
int runtime_version();
// 0 when no driver is installed.
int driver_version();

// The device currently selected for this thread (cudaGetDevice).
int current_device();

// Where a pointer lives, from cudaPointerGetAttributes.
struct PointerInfo {
  enum Kind { host_memory, device_memory, managed_memory } kind = host_memory;  // host: unregistered or pinned
  int device = -1;                                  // for device and managed memory
};
PointerInfo pointer_info(const void* p);

}  // namespace ember::cuda
