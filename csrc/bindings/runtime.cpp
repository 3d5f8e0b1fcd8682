// ember._C's runtime controls: threads, the instruction set, CPU features, the
// kernel table, host memory (empty and its cache), and a watchdog.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bindings/common.h"
#include "core/cpu_features.h"
#include "core/host_cache.h"
#include "ops/gemm/gemm_ukernel.h"

namespace ember::bindings {
namespace {

// shape as empty takes it: an int or a sequence of ints, each >= 0.
std::vector<py::ssize_t> shape_arg(const py::handle& obj) {
  std::vector<py::ssize_t> shape;
  auto extent = [&](const py::handle& item, const std::string& what) {
    EMBER_CHECK_TYPE(!PyFloat_Check(item.ptr()) && PyIndex_Check(item.ptr()), what, " must be an int, got ",
                     type_name(item));
    const auto index = py::reinterpret_steal<py::object>(PyNumber_Index(item.ptr()));
    if (!index) throw py::error_already_set();
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
    if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (overflow != 0) throw std::overflow_error(what + " does not fit in a 64-bit integer");
    EMBER_CHECK_VALUE(v >= 0, what, " is ", v, ": negative dimensions are not allowed");
    shape.push_back(static_cast<py::ssize_t>(v));
  };
  if (PyIndex_Check(obj.ptr()) && !PyFloat_Check(obj.ptr())) {
    extent(obj, "shape");
    return shape;
  }
  EMBER_CHECK_TYPE(py::isinstance<py::sequence>(obj) && !py::isinstance<py::str>(obj),
                   "shape must be an int or a sequence of ints, got ", type_name(obj));
  const auto seq = py::reinterpret_borrow<py::sequence>(obj);
  for (size_t i = 0; i < seq.size(); ++i) extent(seq[i], "shape[" + std::to_string(i) + "]");
  return shape;
}

// An uninitialised C-contiguous array; large ones come from the host cache and
// go back to it when the array (and every view of it) is gone. Only dtypes of
// plain numbers and bytes: an array of Python references must start from
// valid ones, which recycled memory does not hold.
py::array empty(const py::handle& shape_obj, const py::handle& dtype_obj) {
  const std::vector<py::ssize_t> shape = shape_arg(shape_obj);
  py::dtype dtype;
  try {
    dtype = py::dtype::from_args(py::reinterpret_borrow<py::object>(dtype_obj));
  } catch (const py::error_already_set& e) {
    throw TypeError(detail::concat("dtype must be a NumPy dtype, got ", type_name(dtype_obj), " (", e.what(), ")"));
  }
  EMBER_CHECK_TYPE(!dtype.attr("hasobject").cast<bool>(), "dtype ", std::string(py::str(dtype)),
                   " holds Python references; empty gives only dtypes of plain values");
  size_t bytes = static_cast<size_t>(dtype.itemsize());
  for (py::ssize_t d : shape)
    EMBER_CHECK_VALUE(!__builtin_mul_overflow(bytes, static_cast<size_t>(d), &bytes) &&
                          bytes <= static_cast<size_t>(PTRDIFF_MAX),
                      "array is too big: shape ", py::str(py::cast(shape)).cast<std::string>(), " of dtype ",
                      std::string(py::str(dtype)), " needs more bytes than the largest possible array");
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

void set_isa(std::string name) { set_active_isa(parse_isa(name)); }

void set_host_cache_limit(int64_t bytes) {
  EMBER_CHECK_VALUE(bytes >= 0, "limit must be >= 0 bytes, got ", bytes);
  host_cache::set_limit(static_cast<size_t>(bytes));
}

// A deadline for a call that blocks with the interpreter's lock held, which no Python thread or
// signal handler can interrupt (MPI's start-up, which waits for every process of the job): a
// native thread that, unless disarmed in time, writes a message to stderr and ends the process.
struct Watchdog {
  std::mutex control;  // one arm or disarm at a time
  std::mutex mutex;    // armed, between the caller and the thread
  std::condition_variable disarmed;
  bool armed = false;
  std::thread thread;

  void stop() {  // with control held
    {
      std::lock_guard<std::mutex> lock(mutex);
      armed = false;
    }
    disarmed.notify_all();
    if (thread.joinable()) thread.join();
  }
};

Watchdog& watchdog() {
  static auto* w = new Watchdog;  // never destroyed: an armed thread may outlive the interpreter
  return *w;
}

void watchdog_disarm() {
  Watchdog& w = watchdog();
  std::lock_guard<std::mutex> guard(w.control);
  w.stop();
}

void watchdog_arm(double seconds, std::string message) {
  EMBER_CHECK_VALUE(std::isfinite(seconds) && seconds > 0, "seconds must be a positive number, got ", seconds);
  seconds = std::min(seconds, 1e9);  // 30 years: within the clock's range, and as good as never
  Watchdog& w = watchdog();
  std::lock_guard<std::mutex> guard(w.control);
  w.stop();
  std::lock_guard<std::mutex> lock(w.mutex);
  w.armed = true;
  w.thread = std::thread([&w, seconds, message = std::move(message)] {
    std::unique_lock<std::mutex> lock(w.mutex);
    if (w.disarmed.wait_for(lock, std::chrono::duration<double>(seconds), [&w] { return !w.armed; })) return;
    for (size_t done = 0; done < message.size();) {  // stderr unbuffered, as the process ends at once
      const ssize_t n = ::write(2, message.data() + done, message.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    std::_Exit(1);
  });
}

}  // namespace

void bind_runtime(py::module_& m) {
  m.def("get_num_threads", &get_num_threads, "Threads the CPU kernels use.");
  def(m, "set_num_threads", &set_num_threads, "Set the threads the CPU kernels use (1..1024).", py::arg("n"));
  m.def("affinity_cpu_count", &affinity_cpu_count, "CPUs in this process's affinity mask.");

  m.def("get_isa", [] { return std::string(isa_name(active_isa())); }, "The instruction set the CPU kernels use.");
  def(m, "set_isa", &set_isa,
        "Force the kernels' instruction set: 'generic', 'avx2', 'avx512', 'avx512_bf16' or 'amx' (must be\n"
        "supported).", py::arg("name"));
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
        d["avx512_vbmi"] = f.avx512_vbmi;
        d["avx512_bf16"] = f.avx512_bf16;
        d["amx"] = f.amx;
        return d;
      },
      "The CPU features the kernels' dispatch reads (with the OS saving the wide registers).");
  def(m, "allow_cpu_feature", &allow_cpu_feature,
      "Let the dispatch use a CPU feature the CPU has ('avx512_vnni' or 'avx512_vbmi'), or not (the\n"
      "kernels needing it are passed over, as on a CPU without it: for tests). Returns the previous setting.",
      py::arg("name"), py::arg("allowed"));
  m.def("registered_kernels", &registered_kernels,
        "Every (op, isa) row of the kernel table; a call runs the highest level not above the active ISA.");
  m.def("gemm_ukernel_name", [] { return std::string(lookup<gemm::Ukernel>("gemm", active_isa()).name); },
        "The GEMM micro-kernel the active ISA uses.");

  def(m, "empty", &empty,
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
  def(m, "host_cache_set_limit", &set_host_cache_limit,
      "Set the most idle bytes the cache keeps (0 turns caching off).", py::arg("bytes"));
  def(m, "watchdog_arm", &watchdog_arm,
      "Unless watchdog_disarm() is called within `seconds`, write `message` to stderr and end the process "
      "with status 1 (from a native thread: it fires while Python is blocked in a call). One at a time: "
      "arming again replaces the deadline.",
      py::arg("seconds"), py::arg("message"));
  def(m, "watchdog_disarm", &watchdog_disarm, "Cancel the deadline watchdog_arm set (nothing if none is set).");
}

}  // namespace ember::bindings
