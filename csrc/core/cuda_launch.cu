// Cached per-device properties for the launchers.
#include "core/cuda_launch.cuh"

namespace ember::cuda {
namespace {

constexpr int kMaxDevices = 64;

struct Props {
  int sms = 0;
  int cc = 0;
};

Props& props_of_current() {
  static Props cache[kMaxDevices];
  int dev = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  Props& p = cache[dev < kMaxDevices ? dev : 0];
  if (p.sms == 0) {
    int sms = 0, major = 0, minor = 0;
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
    check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "cudaDeviceGetAttribute");
    check_cuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev), "cudaDeviceGetAttribute");
    p.cc = major * 10 + minor;
    p.sms = sms;  // written last: a concurrent reader sees 0 and queries again
  }
  return p;
}

}  // namespace

int sm_count() { return props_of_current().sms; }
int compute_capability() { return props_of_current().cc; }

}  // namespace ember::cuda
