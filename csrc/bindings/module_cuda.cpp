// ember._cuda: the CUDA kernels. Importable on any machine: without a driver
// or a GPU, device_count() is 0.
#include <pybind11/pybind11.h>

#include "core/cuda_device.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "Ember's CUDA kernels";
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
}
