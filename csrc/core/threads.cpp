#include "core/threads.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EMBER_PAUSE() _mm_pause()
#else
#define EMBER_PAUSE() ((void)0)
#endif

namespace ember {

namespace {

// How long an idle worker keeps polling for the next region before it sleeps
// on the condition variable: back-to-back kernels (a training step) then start
// without a futex wake-up, and an idle process costs no CPU.
constexpr auto kSpinTime = std::chrono::microseconds(200);

class Pool {
 public:
  // Serialises regions: the owner of this lock is the only user of the workers.
  std::mutex region_mutex;

  void run(int nthreads, detail::TaskRef task) {
    ensure_workers(nthreads - 1);
    task_ = task;
    pending_.store(nthreads - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(sleep_mutex_);
      uint64_t next = ((state_.load(std::memory_order_relaxed) >> 16) + 1) << 16;
      state_.store(next | static_cast<uint64_t>(nthreads), std::memory_order_release);
    }
    if (sleepers_.load(std::memory_order_acquire) > 0) wake_.notify_all();
    task.call(task.obj, 0);
    while (pending_.load(std::memory_order_acquire) != 0) EMBER_PAUSE();
  }

 private:
  void ensure_workers(int n) {
    while (static_cast<int>(workers_) < n) {
      int tid = static_cast<int>(workers_) + 1;
      std::thread(&Pool::worker_loop, this, tid, state_.load()).detach();
      ++workers_;
    }
  }

  // `state_` packs (generation << 16 | nthreads) in one word, so a worker
  // reads the generation and whether it takes part in it atomically. A
  // participant is waited for, so task_ cannot change under it; a worker that
  // does not take part reads nothing else.
  void worker_loop(int tid, uint64_t seen) {
    for (;;) {
      seen = wait_for_generation(seen);
      if (tid < static_cast<int>(seen & 0xffff)) {
        task_.call(task_.obj, tid);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  uint64_t wait_for_generation(uint64_t seen) {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0;; ++i) {
      uint64_t g = state_.load(std::memory_order_acquire);
      if (g != seen) return g;
      EMBER_PAUSE();
      if ((i & 255) == 255 && std::chrono::steady_clock::now() - start > kSpinTime) break;
    }
    std::unique_lock<std::mutex> lk(sleep_mutex_);
    sleepers_.fetch_add(1, std::memory_order_acq_rel);
    wake_.wait(lk, [&] { return state_.load(std::memory_order_acquire) != seen; });
    sleepers_.fetch_sub(1, std::memory_order_acq_rel);
    return state_.load(std::memory_order_acquire);
  }

  size_t workers_ = 0;
  detail::TaskRef task_{nullptr, nullptr};
  std::atomic<uint64_t> state_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

// Never destroyed: detached workers may still be waiting on it at exit.
std::atomic<Pool*> g_pool{nullptr};
std::once_flag g_pool_once;
std::atomic<int> g_num_threads{0};

void reset_pool_after_fork() {
  // The child has only the forking thread; the parent's workers and any lock
  // they held do not exist here. Start over with an empty pool (the old one
  // is deliberately leaked).
  g_pool.store(new Pool());
}

Pool& pool() {
  std::call_once(g_pool_once, [] {
    g_pool.store(new Pool());
    pthread_atfork(nullptr, nullptr, reset_pool_after_fork);
  });
  return *g_pool.load();
}

int default_num_threads() {
  const char* env = std::getenv("EMBER_NUM_THREADS");
  if (env != nullptr && *env != '\0') {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    EMBER_CHECK_VALUE(end != env && *end == '\0' && v >= 1 && v <= 1024,
                      "EMBER_NUM_THREADS must be an integer between 1 and 1024, got '", env, "'");
    return static_cast<int>(v);
  }
  return affinity_cpu_count();
}

}  // namespace

int affinity_cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  n = default_num_threads();
  int expected = 0;
  g_num_threads.compare_exchange_strong(expected, n);
  return g_num_threads.load(std::memory_order_relaxed);
}

void set_num_threads(int n) {
  EMBER_CHECK_VALUE(n >= 1 && n <= 1024, "set_num_threads: n must be between 1 and 1024, got ", n);
  g_num_threads.store(n);
}

namespace detail {
void parallel_run_impl(int nthreads, TaskRef task) {
  Pool& p = pool();
  std::unique_lock<std::mutex> lk(p.region_mutex, std::try_to_lock);
  if (!lk.owns_lock()) {
    for (int tid = 0; tid < nthreads; ++tid) task.call(task.obj, tid);
    return;
  }
  p.run(nthreads, task);
}
}  // namespace detail

}  // namespace ember
