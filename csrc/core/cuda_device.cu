// Device queries through the CUDA runtime (linked statically, so the module
// loads on machines without a driver and reports no devices there).
#include <cuda_runtime.h>

#include "core/check.h"
#include "core/cuda_device.h"

namespace ember::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" / "no device" error
    return 0;
  }
  return n;
}

DeviceInfo device_info(int index) {
  const int n = device_count();
  EMBER_CHECK_VALUE(index >= 0 && index < n, "device index ", index, " is out of range: ", n,
                    " CUDA device(s) visible");
  cudaDeviceProp prop{};
  cudaError_t err = cudaGetDeviceProperties(&prop, index);
  if (err != cudaSuccess) throw std::runtime_error(std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(err));
  DeviceInfo info;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.total_memory = prop.totalGlobalMem;
  return info;
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) return 0;
  return v;
}

int current_device() {
  int dev = 0;
  const cudaError_t err = cudaGetDevice(&dev);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("cudaGetDevice: ") + cudaGetErrorString(err));
  }
  return dev;
}

PointerInfo pointer_info(const void* p) {
  PointerInfo info;
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, p);
  if (err != cudaSuccess) {
    cudaGetLastError();  // an unknown pointer is host memory; clear the error
    return info;
  }
  if (attr.type == cudaMemoryTypeDevice) {
    info.kind = PointerInfo::device_memory;
    info.device = attr.device;
  } else if (attr.type == cudaMemoryTypeManaged) {
    info.kind = PointerInfo::managed_memory;
    info.device = attr.device;
  }
  return info;
}

}  // namespace ember::cuda
