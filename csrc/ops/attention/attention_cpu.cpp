// attention on the CPU: the tasks and their threads. A forward task is one block of queries of
// one head, a backward task one (batch, kv head); threads take tasks in turn (tid, tid +
// nthreads, ...), which evens out the causal triangle's growing rows. Each thread's working
// memory (attention.h: fwd_work_floats, bwd_work_floats) is its own grow-only scratch, so a warm
// call allocates (and faults in) nothing.
#include <algorithm>

#include "core/registry.h"
#include "core/scratch.h"
#include "core/threads.h"
#include "ops/attention/attention.h"

namespace ember::attention {
namespace {

// run(task, work) for every task, the threads taking them in turn; std::bad_alloc if a thread
// could not have its working memory.
template <class Run>
void run_tasks(int64_t tasks, int64_t work_floats, int nthreads, Run&& run) {
  if (tasks <= 0) return;
  const int nt = static_cast<int>(std::min<int64_t>(nthreads, tasks));
  parallel_run(nt, [&](int tid) {
    thread_local Scratch scratch;
    float* work = scratch.get(static_cast<size_t>(work_floats));
    for (int64_t t = tid; t < tasks; t += nt) run(t, work);
  });
}

}  // namespace

void attention_fwd(const Problem& p, const float* q, const float* k, const float* v, float* out, float* lse, Isa isa,
                   int nthreads) {
  const Kernels& kern = lookup<Kernels>("attention", isa);
  const int64_t blocks = (p.tq + kBlockQ - 1) / kBlockQ;
  run_tasks(p.batch * p.heads * blocks, fwd_work_floats(p), nthreads, [&](int64_t t, float* work) {
    const int64_t bh = t / blocks;
    kern.fwd_block(p, bh / p.heads, bh % p.heads, t % blocks * kBlockQ, q, k, v, out, lse, work);
  });
}

void attention_bwd(const Problem& p, const float* q, const float* k, const float* v, const float* out,
                   const float* dout, const float* lse, float* dq, float* dk, float* dv, Isa isa, int nthreads) {
  const Kernels& kern = lookup<Kernels>("attention", isa);
  run_tasks(p.batch * p.kv_heads, bwd_work_floats(p), nthreads, [&](int64_t t, float* work) {
    kern.bwd_group(p, t / p.kv_heads, t % p.kv_heads, q, k, v, out, dout, lse, dq, dk, dv, work);
  });
}

DecodeFn decode_kernel(Isa isa) { return lookup<Kernels>("attention", isa).decode; }

}  // namespace ember::attention
