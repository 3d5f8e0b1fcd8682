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
// Pause iterations (~20 ns each) a caller spins for unfinished tasks before it
// starts yielding its CPU (the thread running them may be queued behind it).
constexpr int kSpinBeforeYield = 1000;

// Task t of a region normally runs on thread t (the caller is thread 0), so
// back-to-back regions find their data in the same core's caches. But tasks
// are claimed, not assigned: a thread that is done claims the tasks nobody
// has started, so a worker the scheduler is slow to run (asleep, or queued
// on the caller's own CPU) never makes a region slower than running it
// serially. Which thread runs a task never changes what the task computes.
constexpr int kMaxThreads = 1024;

// True on a thread that is running a region's tasks (a worker, or a caller
// inside parallel_run): a parallel_run from there runs serially.
thread_local bool t_in_region = false;
class Pool {
 public:
  // Serialises regions: the owner of this lock is the only user of the workers.
  std::mutex region_mutex;

  // Needs region_mutex.
  void run(int n, const detail::TaskRef& task) {
    ensure_workers(n - 1);
    const uint64_t gen = ++generation_;
    task_.store(&task, std::memory_order_relaxed);
    caller_cpu_.store(sched_getcpu(), std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(sleep_mutex_);
      state_.store((gen << 16) | static_cast<uint64_t>(n), std::memory_order_release);
    }
    if (sleepers_.load(std::memory_order_acquire) > 0) wake_.notify_all();
    run_tasks(gen, n, 0);
    for (int i = 0; done_.load(std::memory_order_acquire) != n; ++i) {
      if (i < kSpinBeforeYield)
        EMBER_PAUSE();
      else
        std::this_thread::yield();
    }
  }

 private:
  void ensure_workers(int n) {
    while (workers_.load(std::memory_order_relaxed) < n) {
      int tid = workers_.load(std::memory_order_relaxed) + 1;
      std::thread(&Pool::worker_loop, this, tid, state_.load()).detach();
      workers_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // A worker woken onto the CPU of the thread that started the region would
  // only run when that thread yields, and the scheduler can take many
  // milliseconds to separate them. The worker moves itself: it narrows its
  // own affinity to the CPUs it inherited, less the caller's.
  static void move_off(int cpu, const cpu_set_t& inherited) {
    cpu_set_t allowed = inherited;
    CPU_CLR(cpu, &allowed);
    if (CPU_COUNT(&allowed) > 0) sched_setaffinity(0, sizeof(allowed), &allowed);
  }

  // claimed_[t] holds the last generation whose task t was claimed; a claim
  // only ever raises it, so a thread still holding an old generation can
  // never claim a task of a newer region. A task is read only after its
  // claim succeeded, while its region is certainly still running.
  bool claim(int t, uint64_t gen) {
    uint64_t cur = claimed_[t].load(std::memory_order_acquire);
    while (cur < gen)
      if (claimed_[t].compare_exchange_weak(cur, gen, std::memory_order_acq_rel)) return true;
    return false;
  }

  void run_one(int t) {
    const detail::TaskRef* task = task_.load(std::memory_order_acquire);
    task->call(task->obj, t);
    done_.fetch_add(1, std::memory_order_acq_rel);
  }

  // Runs task `self`, then any task of region `gen` nobody has claimed.
  void run_tasks(uint64_t gen, int n, int self) {
    if (self < n && claim(self, gen)) run_one(self);
    for (int i = 1; i < n; ++i) {
      const int t = (self + i) % n;
      if (claim(t, gen)) run_one(t);
    }
  }

  // `state_` packs (generation << 16 | n): workers 1..n-1 join region n.
  void worker_loop(int tid, uint64_t seen) {
    t_in_region = true;
    cpu_set_t inherited;
    CPU_ZERO(&inherited);
    const bool have_mask = sched_getaffinity(0, sizeof(inherited), &inherited) == 0;
    for (;;) {
      seen = wait_for_generation(seen);
      if (tid >= static_cast<int>(seen & 0xffff)) continue;
      const int caller_cpu = caller_cpu_.load(std::memory_order_relaxed);
      if (have_mask && caller_cpu >= 0 && caller_cpu == sched_getcpu()) move_off(caller_cpu, inherited);
      run_tasks(seen >> 16, static_cast<int>(seen & 0xffff), tid);
    }
  }

  // Spins for kSpinTime, then sleeps until the next region.
  uint64_t wait_for_generation(uint64_t seen) {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0;; ++i) {
      uint64_t g = state_.load(std::memory_order_acquire);
      if (g != seen) return g;
      EMBER_PAUSE();
      if ((i & 255) == 255) {
        if (std::chrono::steady_clock::now() - start > kSpinTime) break;
        // Let a thread that shares this CPU (the caller, or another worker
        // the scheduler put here) run.
        std::this_thread::yield();
      }
    }
    std::unique_lock<std::mutex> lk(sleep_mutex_);
    sleepers_.fetch_add(1, std::memory_order_acq_rel);
    wake_.wait(lk, [&] { return state_.load(std::memory_order_acquire) != seen; });
    sleepers_.fetch_sub(1, std::memory_order_acq_rel);
    return state_.load(std::memory_order_acquire);
  }

  std::atomic<int> workers_{0};
  std::atomic<const detail::TaskRef*> task_{nullptr};
  uint64_t generation_ = 0;  // the last region's; written under region_mutex
  std::atomic<uint64_t> claimed_[kMaxThreads] = {};
  std::atomic<int> done_{0};
  std::atomic<int> caller_cpu_{-1};
  std::atomic<uint64_t> state_{0};
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
    EMBER_CHECK_VALUE(end != env && *end == '\0' && v >= 1 && v <= kMaxThreads,
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
  EMBER_CHECK_VALUE(n >= 1 && n <= kMaxThreads, "set_num_threads: n must be between 1 and 1024, got ", n);
  g_num_threads.store(n);
}

namespace detail {
void parallel_run_impl(int nthreads, TaskRef task) {
  EMBER_ASSERT(nthreads <= kMaxThreads, "a region of ", nthreads, " threads");
  // Nested in a region (on its caller or a worker), or the pool is busy:
  // run serially here. The flag keeps a caller from re-locking the mutex it holds.
  if (!t_in_region) {
    Pool& p = pool();
    std::unique_lock<std::mutex> lk(p.region_mutex, std::try_to_lock);
    if (lk.owns_lock()) {
      t_in_region = true;
      p.run(nthreads, task);
      t_in_region = false;
      return;
    }
  }
  for (int tid = 0; tid < nthreads; ++tid) task.call(task.obj, tid);
}
}  // namespace detail

}  // namespace ember
