// ember._cuda: the CUDA kernels. Importable on any machine: without a driver
// or a GPU, device_count() is 0 and the kernels are never reached.
//
// This file only assembles the module; each op family's bindings live in
// cuda_<op>.cpp over the validator ember._C uses (array_view.h), with the
// device checks of cuda_array.h. Conventions shared by every kernel binding:
//  - arrays are device arrays (__cuda_array_interface__: CuPy, PyTorch CUDA
//    tensors) on the current device; outputs are allocated by the caller;
//  - the last argument `stream` (an int holding a cudaStream_t, default 0,
//    the legacy default stream) is where the kernels are queued: calls return
//    at once and never synchronise;
//  - bad arguments raise TypeError/ValueError naming the argument; a CUDA
//    launch error raises RuntimeError with CUDA's message (MemoryError for
//    out-of-memory); the GIL is released while kernels are launched.
#include <pybind11/pybind11.h>

#include "bindings/cuda_common.h"
#include "core/cuda_device.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "Ember's CUDA kernels";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ember::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
  m.attr("__version__") = EMBER_VERSION;
  m.def("device_count", &ember::cuda::device_count, "Number of visible CUDA devices (0 without a driver).");
  m.def("runtime_version", &ember::cuda::runtime_version, "CUDA runtime version Ember was built with.");
  m.def("driver_version", &ember::cuda::driver_version, "Installed CUDA driver version (0 if none).");
  m.def(
      "device_info",
      [](int index) {
        ember::cuda::DeviceInfo info = ember::cuda::device_info(index);
        py::dict d;
        d["name"] = info.name;
        d["compute_capability"] = py::make_tuple(info.major, info.minor);
        d["multiprocessors"] = info.multiprocessors;
        d["total_memory"] = info.total_memory;
        return d;
      },
      "Name, compute capability, SM count and memory of one device.", py::arg("index") = 0);

  ember::cuda_bind::register_eltwise(m);
  ember::cuda_bind::register_cross_entropy(m);
  ember::cuda_bind::register_pool2d(m);
  ember::cuda_bind::register_optim(m);
  ember::cuda_bind::register_gemm(m);
  ember::cuda_bind::register_conv2d(m);
}
