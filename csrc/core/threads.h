// A persistent worker pool shared by all CPU kernels.
//
// Workers are created on first use and live for the process (a forked child
// starts with a fresh, empty pool). Between regions a worker spins for a
// short while (back-to-back kernels start at once), then sleeps. A parallel
// region runs fn(tid) for tid = 0..n-1 on the caller and the workers. Task t
// normally runs on thread t, but tasks are claimed dynamically, so a worker
// that is slow to wake never makes a region slower than running it serially;
// fn must therefore depend only on tid, not on the thread. Only one region
// uses the pool at a time: a region started while the pool is busy (from
// another Python thread) or nested inside a region runs all its tids serially
// in the calling thread, so concurrent callers are correct and never deadlock.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <type_traits>
#include <utility>

namespace ember {

// CPUs in this process's affinity mask.
int affinity_cpu_count();
// Threads kernels use: EMBER_NUM_THREADS if set, else affinity_cpu_count().
// The first call reads the environment and throws std::invalid_argument for
// an invalid EMBER_NUM_THREADS (ember._C makes that call at import).
int get_num_threads();
// Throws std::invalid_argument unless 1 <= n <= 1024.
void set_num_threads(int n);

namespace detail {
struct TaskRef {
  void* obj;
  void (*call)(void* obj, int tid);
};
void parallel_run_impl(int nthreads, TaskRef task);
}  // namespace detail

// Runs fn(tid) for every tid in [0, nthreads). An exception fn throws on any
// thread (a scratch buffer's std::bad_alloc, say) is caught there and the
// first one is rethrown here, once every tid has finished.
template <class F>
void parallel_run(int nthreads, F&& fn) {
  if (nthreads <= 1) {
    fn(0);
    return;
  }
  struct Region {
    std::remove_reference_t<F>* fn;
    std::atomic<bool> failed{false};
    std::exception_ptr error;  // written by the first failing thread, read after the region
  } region{&fn};
  detail::TaskRef task{static_cast<void*>(&region), [](void* obj, int tid) {
                         auto* r = static_cast<Region*>(obj);
                         try {
                           (*r->fn)(tid);
                         } catch (...) {
                           if (!r->failed.exchange(true)) r->error = std::current_exception();
                         }
                       }};
  detail::parallel_run_impl(nthreads, task);
  if (region.error) std::rethrow_exception(region.error);
}

// Splits [0, n) into contiguous ranges of equal size, one per thread, on as
// many threads (up to nthreads) as leave each at least min_per_thread
// elements -- below that, waking another costs more than it saves -- and runs
// body(lo, hi) for each (an exception as parallel_run's).
template <class F>
void parallel_ranges(int64_t n, int nthreads, int64_t min_per_thread, F&& body) {
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(nthreads, n / min_per_thread));
  parallel_run(static_cast<int>(nt), [&](int tid) { body(n * tid / nt, n * (tid + 1) / nt); });
}

}  // namespace ember
