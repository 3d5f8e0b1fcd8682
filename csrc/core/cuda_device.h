// CUDA device queries for ember._cuda. Plain C++ interface: the bindings that
// include it need no CUDA headers; the implementation is compiled by nvcc.
#pragma once

#include <cstddef>
#include <string>

namespace ember::cuda {

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

}  // namespace ember::cuda
