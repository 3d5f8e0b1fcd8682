// ember._C.measure_fma_peak and measure_read_bandwidth: the machine's ceilings
// (compute, memory) that the benchmarks quote their kernels against.
#include <algorithm>
#include <chrono>
#include <vector>

#include "bindings/common.h"
#include "ops/gemm/gemm.h"

namespace ember::bindings {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int probe_threads(int threads) {
  EMBER_CHECK_VALUE(threads >= 0 && threads <= 1024, "threads must be between 0 (all) and 1024, got ", threads);
  return threads == 0 ? get_num_threads() : threads;
}

// The machine's fp32 FMA rate with the active ISA's widest FMA, on `threads`
// threads at once, in GFLOP/s.
double measure_fma_peak(double seconds, int threads) {
  EMBER_CHECK_VALUE(seconds > 0 && seconds <= 60, "seconds must be in (0, 60], got ", seconds);
  threads = probe_threads(threads);
  const auto fn = lookup_fn<gemm::fma_peak_fn>("fma_peak", active_isa());
  py::gil_scoped_release release;
  float sink = 0.0f;
  // Calibrate on one thread, then run every thread for about `seconds`.
  int64_t iters = 1 << 16;
  double elapsed = 0.0;
  for (;;) {
    const auto t0 = Clock::now();
    fn(iters, &sink);
    elapsed = seconds_since(t0);
    if (elapsed > 0.02) break;
    iters *= 4;
  }
  iters = std::max<int64_t>(1, static_cast<int64_t>(iters * seconds / elapsed));
  std::vector<float> sinks(threads, 0.0f);
  std::vector<int64_t> flops(threads, 0);
  const auto t0 = Clock::now();
  parallel_run(threads, [&](int tid) { flops[tid] = fn(iters, &sinks[tid]); });
  const double wall = seconds_since(t0);
  double total = 0;
  for (int64_t f : flops) total += static_cast<double>(f);
  return total / wall * 1e-9 + 0.0 * (sink + sinks[0]);
}

// The rate at which `threads` threads together read the float32 array `buffer`
// (each summing its own contiguous slice, `repeats` times), in GB/s. With a
// buffer well past the last-level cache this is the machine's read bandwidth,
// the ceiling of memory-bound kernels.
double measure_read_bandwidth(const py::handle& buffer, int repeats, int threads) {
  const ArrayView buf = array_arg(buffer, "buffer", {DType::float32, {-1}});
  EMBER_CHECK_VALUE(repeats >= 1 && repeats <= 1000, "repeats must be between 1 and 1000, got ", repeats);
  threads = probe_threads(threads);
  const float* data = buf.ptr<const float>();
  const int64_t n = buf.shape[0];
  py::gil_scoped_release release;
  std::vector<float> sinks(threads, 0.0f);
  const auto t0 = Clock::now();
  parallel_run(threads, [&](int tid) {
    const int64_t lo = n * tid / threads, hi = n * (tid + 1) / threads;
    float lanes[16] = {};
    for (int r = 0; r < repeats; ++r) {
      int64_t i = lo;
      for (; i + 16 <= hi; i += 16)
        for (int l = 0; l < 16; ++l) lanes[l] += data[i + l];
      for (; i < hi; ++i) lanes[0] += data[i];
    }
    for (float l : lanes) sinks[tid] += l;
  });
  const double wall = seconds_since(t0);
  return 4.0 * static_cast<double>(n) * repeats / wall * 1e-9 + 0.0 * sinks[0];
}

}  // namespace

void bind_probes(py::module_& m) {
  def(m, "measure_fma_peak", &measure_fma_peak,
      "Measure the fp32 FMA rate (GFLOP/s) of the active ISA on `threads` threads (0: all).",
      py::arg("seconds") = 0.2, py::arg("threads") = 0);
  def(m, "measure_read_bandwidth", &measure_read_bandwidth,
      "Measure how fast `threads` threads (0: all) read a float32 array (1-D, C-contiguous), in GB/s.",
      py::arg("buffer"), py::arg("repeats") = 1, py::arg("threads") = 0);
}

}  // namespace ember::bindings
