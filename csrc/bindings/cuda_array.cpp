// Device arrays for ember._cuda's bindings (see cuda_array.h).
#include "bindings/cuda_array.h"

#include "core/check.h"

namespace ember::cuda_bind {

using bindings::type_name;

ArrayView device_array(py::handle obj, const char* name, const char* of) {
  ArrayView a = bindings::read_array(obj, name, of, Device::cuda);
  bindings::check_device(a, Device::cuda);
  if (a.size() > 0) {
    const ember::cuda::PointerInfo info = ember::cuda::pointer_info(a.data);
    EMBER_CHECK_TYPE(info.kind != ember::cuda::PointerInfo::host_memory, name, " (", type_name(obj),
                     ") points to host memory; ember._cuda kernels need device memory");
    const int cur = ember::cuda::current_device();
    EMBER_CHECK_VALUE(info.kind == ember::cuda::PointerInfo::managed_memory || info.device == cur, name,
                      " is on CUDA device ", info.device, " but the current device is ", cur,
                      " (select it with cupy.cuda.Device(", info.device, ") or move the array)");
  }
  return a;
}

ArrayView device_arg(py::handle obj, const char* name, const Spec& spec) {
  ArrayView a = device_array(obj, name, bindings::dtype_name(spec.dtype));
  Spec on_device = spec;
  on_device.device = Device::cuda;
  bindings::check(a, on_device);
  return a;
}

ArrayView dense(py::handle obj, const char* name, DType dtype, Shape shape, Access access) {
  return device_arg(obj, name, {dtype, shape, Layout::contiguous, access});
}

bool optional_device_array(py::handle obj, const char* name, ArrayView& out) {
  if (obj.is_none()) return false;
  out = device_array(obj, name);
  return true;
}

ember::cuda::stream_t stream_arg(py::handle stream) {
  py::handle s = stream;
  py::object holder;
  if (!py::isinstance<py::int_>(s)) {
    if (py::hasattr(s, "ptr"))
      holder = s.attr("ptr");
    else if (py::hasattr(s, "cuda_stream"))
      holder = s.attr("cuda_stream");
    EMBER_CHECK_TYPE(holder && py::isinstance<py::int_>(holder), "stream must be an int holding a cudaStream_t ",
                     "(e.g. cupy.cuda.get_current_stream().ptr), got ", type_name(stream));
    s = holder;
  }
  const auto v = s.cast<long long>();
  EMBER_CHECK_VALUE(v >= 0, "stream must be a cudaStream_t handle (>= 0), got ", v);
  return reinterpret_cast<ember::cuda::stream_t>(static_cast<uintptr_t>(v));
}

}  // namespace ember::cuda_bind
