// ember._C's runtime controls: threads, the instruction set, CPU features, the
// kernel table, and host memory (empty and its cache).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "core/cpu_features.h"
#include "core/host_cache.h"
#include "ops/gemm/gemm_ukernel.h"

namespace ember::bindings {
namespace {

// An uninitialised C-contiguous array; large ones come from the host cache and
// go back to it when the array (and every view of it) is gone.
py::array empty(const std::vector<py::ssize_t>& shape, const py::object& dtype_obj) {
  const py::dtype dtype = py::dtype::from_args(dtype_obj);
  size_t bytes = static_cast<size_t>(dtype.itemsize());
  for (py::ssize_t d : shape) {
    EMBER_CHECK_VALUE(d >= 0, "negative dimensions are not allowed");
    EMBER_CHECK_VALUE(!__builtin_mul_overflow(bytes, static_cast<size_t>(d), &bytes) &&
                          bytes <= static_cast<size_t>(PTRDIFF_MAX),
                      "array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum possible size.");
  }
  if (bytes < host_cache::kMinBytes) return py::array(dtype, shape);
  host_cache::Block got{};
  try {
    got = host_cache::allocate(bytes);
  } catch (const std::bad_alloc&) {
    PyErr_Format(PyExc_MemoryError, "Unable to allocate %zu bytes for an array of dtype %s", bytes,
                 std::string(py::str(dtype)).c_str());
    throw py::error_already_set();
  }
  auto* block = new host_cache::Block(got);
  py::capsule owner;
  try {
    owner = py::capsule(block, [](void* p) {
      auto* b = static_cast<host_cache::Block*>(p);
      host_cache::release(*b);
      delete b;
    });
  } catch (...) {
    host_cache::release(*block);
    delete block;
    throw;
  }
  return py::array(dtype, shape, std::vector<py::ssize_t>{}, block->ptr, owner);
}

}  // namespace

void bind_runtime(py::module_& m) {
  m.def("get_num_threads", &get_num_threads, "Threads the CPU kernels use.");
  m.def("set_num_threads", &set_num_threads, "Set the threads the CPU kernels use (1..1024).", py::arg("n"));
  m.def("affinity_cpu_count", &affinity_cpu_count, "CPUs in this process's affinity mask.");

  m.def("get_isa", [] { return std::string(isa_name(active_isa())); }, "The instruction set the CPU kernels use.");
  m.def("set_isa", [](const std::string& name) { set_active_isa(parse_isa(name)); },
        "Force the kernels' instruction set: 'generic', 'avx2' or 'avx512' (must be supported).", py::arg("name"));
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); },
        "The widest instruction set this CPU supports (what the kernels use unless told otherwise).");
  m.def(
      "available_isas",
      [] {
        std::vector<std::string> out;
        for (Isa i : supported_isas()) out.emplace_back(isa_name(i));
        return out;
      },
      "The instruction sets this CPU supports, lowest first (EMBER_ISA and set_isa take these).");
  m.def(
      "cpu_features",
      [] {
        const CpuFeatures& f = cpu_features();
        py::dict d;
        d["avx2_fma"] = f.avx2_fma;
        d["avx512"] = f.avx512;
        d["avx512_vnni"] = f.avx512_vnni;
        d["avx512_bf16"] = f.avx512_bf16;
        return d;
      },
      "The CPU features the kernels' dispatch reads (with the OS saving the wide registers).");
  m.def("registered_kernels", &registered_kernels,
        "Every (op, isa) row of the kernel table; a call runs the highest level not above the active ISA.");
  m.def("gemm_ukernel_name", [] { return std::string(lookup<gemm::Ukernel>("gemm", active_isa()).name); },
        "The GEMM micro-kernel the active ISA uses.");

  m.def("empty", &empty,
        "An uninitialised C-contiguous array. Arrays of 256 KiB and more reuse memory from a cache of\n"
        "freed blocks, so repeated same-sized allocations cost no page faults.",
        py::arg("shape"), py::arg("dtype"));
  m.attr("host_cache_min_bytes") = host_cache::kMinBytes;
  m.def(
      "host_cache_stats",
      [] {
        const auto s = host_cache::stats();
        py::dict d;
        d["cached_bytes"] = s.cached_bytes;
        d["cached_blocks"] = s.cached_blocks;
        d["limit_bytes"] = s.limit_bytes;
        d["hits"] = s.hits;
        d["misses"] = s.misses;
        return d;
      },
      "The host cache's idle bytes and blocks, its limit, and the allocations it served (hits) or not.");
  m.def("host_cache_clear", &host_cache::clear, "Free every idle cached block.");
  m.def(
      "host_cache_set_limit",
      [](int64_t bytes) {
        EMBER_CHECK_VALUE(bytes >= 0, "limit must be >= 0 bytes, got ", bytes);
        host_cache::set_limit(static_cast<size_t>(bytes));
      },
      "Set the most idle bytes the cache keeps (0 turns caching off).", py::arg("bytes"));
}

}  // namespace ember::bindings
