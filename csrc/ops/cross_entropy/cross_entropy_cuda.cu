// Softmax cross-entropy forward and backward on the GPU.
//
// Strategy: one group of G threads per row -- a warp for up to 1024 classes
// (eight rows per block), a whole block of 256 or 512 threads above that.
// The row is walked as a scalar head up to a 16-byte boundary, a body of
// float4 loads (four in flight per thread) and a scalar tail, so rows of any
// length and alignment are read with full-width loads.
//
// Forward: one read of the logits. Each thread keeps an online max and a sum
// of exp(z - max) rescaled when the max grows (exp2 of (z - max) * log2(e)),
// plus, for label smoothing or soft targets, double sums of b_j z_j and b_j
// (b_j the per-class target weight), so the row's weighted distance
// sum_j b_j (lse - z_j) = lse * sum b_j - sum b_j z_j needs no second pass.
// The group combines its partial states (warp shuffles, then shared memory)
// and one thread writes lse, nll and smooth in double. Nothing of size B x V
// is written.
//
// Backward: one read of the logits and one write of the gradient (in place
// allowed: each element is read and then written by the same thread). Soft
// targets (and weighted label smoothing) first reduce sum_j b_j over the
// target row (or the weights) -- an extra read of that row, not of z.
//
// NaN: a NaN anywhere in a row makes its lse NaN (the exp of a NaN poisons
// the sum; rows of only -inf and NaN set a flag), +inf makes it NaN as in
// the double reference, a row of only -inf has lse = -inf.
#include <cmath>
#include <type_traits>

#include "core/cuda_launch.cuh"
#include "ops/cross_entropy/cross_entropy_cuda.h"

namespace ember::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
#define EMBER_NEG_INF (-__int_as_float(0x7f800000))

// What a thread accumulates over its share of a row.
struct Acc {
  float m;     // running max (NaN ignored)
  float s;     // sum of exp(z - m)
  double bz;   // sum b_j z_j (modes 1 and 2)
  double bs;   // sum b_j
  int flags;   // 1: saw a NaN while every value so far was -inf; 2: some b_j != 0
};

__device__ __forceinline__ Acc acc_init() { return Acc{EMBER_NEG_INF, 0.0f, 0.0, 0.0, 0}; }

// Modes: 0 hard targets without smoothing (only lse needed), 1 hard targets with label
// smoothing (sum_j w_j z_j and sum_j w_j too), 2 soft targets.
template <int MODE>
struct RowCtx {
  const float* w;   // class weights or null
  const float* q;   // the soft target row (mode 2)
  float ct, cc;     // b_j = w_j (ct q_j + cc) in mode 2
};

template <int MODE>
__device__ __forceinline__ void weigh(Acc& a, const RowCtx<MODE>& c, float z, int64_t j) {
  if constexpr (MODE == 1) {
    const double b = c.w ? static_cast<double>(c.w[j]) : 1.0;
    a.bz += b * static_cast<double>(z);
    a.bs += b;
  } else if constexpr (MODE == 2) {
    const double b = (c.w ? static_cast<double>(c.w[j]) : 1.0) *
                     (static_cast<double>(c.ct) * static_cast<double>(c.q[j]) + static_cast<double>(c.cc));
    if (b != 0.0) {
      a.bz += b * static_cast<double>(z);  // a zero target never multiplies an infinite logit
      a.flags |= 2;
    }
    a.bs += b;
  }
}

// Folds a chunk whose maximum (NaN ignored) is cmax into the running state.
__device__ __forceinline__ void raise_max(Acc& a, float cmax) {
  if (cmax > a.m) {
    a.s *= exp2f((a.m - cmax) * kLog2e);  // 0 when the old max was -inf (s is 0 then too)
    a.m = cmax;
  }
}

__device__ __forceinline__ float ex(float z, float m) { return exp2f((z - m) * kLog2e); }

template <int MODE>
__device__ __forceinline__ void add1(Acc& a, const RowCtx<MODE>& c, float z, int64_t j) {
  raise_max(a, z);
  if (a.m == EMBER_NEG_INF)
    a.flags |= (z != z);
  else
    a.s += ex(z, a.m);
  weigh<MODE>(a, c, z, j);
}

template <int MODE>
__device__ __forceinline__ void add4(Acc& a, const RowCtx<MODE>& c, float4 z, int64_t j) {
  raise_max(a, fmaxf(fmaxf(z.x, z.y), fmaxf(z.z, z.w)));
  if (a.m == EMBER_NEG_INF)
    a.flags |= (z.x != z.x) | (z.y != z.y) | (z.z != z.z) | (z.w != z.w);
  else
    a.s += (ex(z.x, a.m) + ex(z.y, a.m)) + (ex(z.z, a.m) + ex(z.w, a.m));
  if constexpr (MODE != 0) {
    weigh<MODE>(a, c, z.x, j);
    weigh<MODE>(a, c, z.y, j + 1);
    weigh<MODE>(a, c, z.z, j + 2);
    weigh<MODE>(a, c, z.w, j + 3);
  }
}

__device__ __forceinline__ Acc combine(const Acc& a, const Acc& b) {
  Acc r;
  r.m = fmaxf(a.m, b.m);
  const float sa = a.m == EMBER_NEG_INF ? 0.0f : a.s * exp2f((a.m - r.m) * kLog2e);
  const float sb = b.m == EMBER_NEG_INF ? 0.0f : b.s * exp2f((b.m - r.m) * kLog2e);
  r.s = sa + sb;
  r.bz = a.bz + b.bz;
  r.bs = a.bs + b.bs;
  r.flags = a.flags | b.flags;
  return r;
}

__device__ __forceinline__ Acc shfl_xor(const Acc& a, int mask) {
  Acc o;
  o.m = __shfl_xor_sync(0xffffffffu, a.m, mask);
  o.s = __shfl_xor_sync(0xffffffffu, a.s, mask);
  o.bz = __shfl_xor_sync(0xffffffffu, a.bz, mask);
  o.bs = __shfl_xor_sync(0xffffffffu, a.bs, mask);
  o.flags = __shfl_xor_sync(0xffffffffu, a.flags, mask);
  return o;
}

// The row's combined state, valid in every thread of the group. G == 32: the group is a
// warp; otherwise G == blockDim.x and the group is the block.
template <int G>
__device__ __forceinline__ Acc group_reduce(Acc a) {
  for (int mask = 16; mask > 0; mask >>= 1) a = combine(a, shfl_xor(a, mask));
  if constexpr (G > 32) {
    __shared__ Acc part[G / 32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();  // part[] may still be read from a previous call
    if (lane == 0) part[warp] = a;
    __syncthreads();
    a = part[0];
    for (int w = 1; w < G / 32; ++w) a = combine(a, part[w]);
  }
  return a;
}

// A sum of doubles over the group (same rules as group_reduce).
template <int G>
__device__ __forceinline__ double group_sum(double x) {
  for (int mask = 16; mask > 0; mask >>= 1) x += __shfl_xor_sync(0xffffffffu, x, mask);
  if constexpr (G > 32) {
    __shared__ double part[G / 32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) part[warp] = x;
    __syncthreads();
    x = part[0];
    for (int w = 1; w < G / 32; ++w) x += part[w];
  }
  return x;
}

// Where a row's 16-byte-aligned body starts (in elements), given its first element's address.
__device__ __forceinline__ int64_t head_len(const float* row, int64_t v) {
  const int64_t mis = (reinterpret_cast<uintptr_t>(row) >> 2) & 3;
  const int64_t h = (4 - mis) & 3;
  return h < v ? h : v;
}

template <int MODE, int G>
__device__ Acc row_forward(const float* zr, int64_t v, const RowCtx<MODE>& c, int lane) {
  Acc a = acc_init();
  const int64_t head = head_len(zr, v);
  const int64_t nvec = (v - head) / 4;
  const float4* body = reinterpret_cast<const float4*>(zr + head);
  if (lane < head) add1<MODE>(a, c, zr[lane], lane);
  constexpr int U = 4;  // float4 loads in flight per thread
  for (int64_t k0 = lane; k0 < nvec; k0 += U * G) {
    float4 buf[U];
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (k0 + u * G < nvec) buf[u] = body[k0 + u * G];
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (k0 + u * G < nvec) add4<MODE>(a, c, buf[u], head + 4 * (k0 + u * G));
  }
  for (int64_t j = head + 4 * nvec + lane; j < v; j += G) add1<MODE>(a, c, zr[j], j);
  return group_reduce<G>(a);
}

template <int MODE, int G>
__global__ void xent_fwd_kernel(XentProblem p, double* out_lse, double* out_nll, double* out_smooth, int32_t* error) {
  constexpr int kRowsPerBlock = G == 32 ? 8 : 1;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / G;
  const int lane = threadIdx.x % G;
  if (G == 32 && row >= p.b) return;  // whole warps leave together; block-wide groups never pass here
  const float* zr = p.z + row * p.v;
  RowCtx<MODE> c{p.weight, p.soft ? p.soft + row * p.v : nullptr, 1.0f - p.eps, p.eps / static_cast<float>(p.v)};
  const Acc a = row_forward<MODE, G>(zr, p.v, c, lane);
  if (lane != 0) return;
  const bool nan = (a.flags & 1) || (a.s != a.s);
  const double lse = nan ? __longlong_as_double(0x7ff8000000000000LL)
                         : (a.m == EMBER_NEG_INF ? static_cast<double>(a.m)
                                                 : static_cast<double>(a.m) + log(static_cast<double>(a.s)));
  const double qnan = __longlong_as_double(0x7ff8000000000000LL);
  double nll = 0.0, smooth = 0.0;
  if constexpr (MODE == 2) {
    nll = (a.flags & 2) ? lse * a.bs - a.bz : 0.0;
  } else {
    const int64_t t = p.target[row];
    if (t == p.ignore_index) {
      // contributes nothing
    } else if (t < 0 || t >= p.v) {
      nll = smooth = qnan;
      out_lse[row] = qnan;
      out_nll[row] = qnan;
      out_smooth[row] = qnan;
      if (error) atomicMin(error, static_cast<int32_t>(row));
      return;
    } else {
      const double wt = p.weight ? static_cast<double>(p.weight[t]) : 1.0;
      nll = wt * (lse - static_cast<double>(zr[t]));
      if constexpr (MODE == 1) smooth = lse * a.bs - a.bz;
    }
  }
  out_lse[row] = lse;
  out_nll[row] = nll;
  out_smooth[row] = smooth;
}

// Backward. Modes: 0 hard targets, b_j nonzero only at the target (eps == 0); 1 hard targets
// with smoothing, b_j = cc w_j + [j == t] ct w_t; 2 soft targets, b_j = w_j (ct q_j + cc).
template <int MODE, bool VEC>
struct BwdRow {
  const float* w;
  const float* q;
  float ct, cc;
  int64_t t;
  float bt;     // ct * w_t (hard targets)
  float c, a;   // scale and a_r
  float lse;

  __device__ __forceinline__ float b(int64_t j) const {
    float r = 0.0f;
    if constexpr (MODE == 2) {
      r = (w ? w[j] : 1.0f) * (ct * q[j] + cc);
    } else {
      if constexpr (MODE == 1) r = (w ? w[j] : 1.0f) * cc;
      if (j == t) r += bt;
    }
    return r;
  }
  __device__ __forceinline__ float grad(float z, int64_t j) const { return c * (a * ex(z, lse) - b(j)); }
};

template <int MODE, int G, bool VEC>
__global__ void xent_bwd_kernel(XentProblem p, const double* lse, const float* scale, float* dz, int32_t* error) {
  constexpr int kRowsPerBlock = G == 32 ? 8 : 1;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / G;
  const int lane = threadIdx.x % G;
  if (G == 32 && row >= p.b) return;
  const float* zr = p.z + row * p.v;
  float* dr = dz + row * p.v;
  const int64_t v = p.v;
  const float c = scale[row];
  BwdRow<MODE, VEC> r{p.weight, p.soft ? p.soft + row * v : nullptr, 1.0f - p.eps, p.eps / static_cast<float>(v),
                      -1, 0.0f, c, 0.0f, static_cast<float>(lse[row])};
  float fill = 0.0f;  // the whole row's value when it is not computed
  bool compute = c != 0.0f;
  if constexpr (MODE != 2) {
    const int64_t t = p.target[row];
    if (t == p.ignore_index) {
      compute = false;
    } else if (t < 0 || t >= v) {
      compute = false;
      fill = __int_as_float(0x7fc00000);
      if (error && lane == 0) atomicMin(error, static_cast<int32_t>(row));
    } else {
      r.t = t;
      const float wt = p.weight ? p.weight[t] : 1.0f;
      r.bt = r.ct * wt;
      r.a = r.bt;
    }
  }
  // a_r = sum_j b_j: a reduction over the weights (smoothing) or the target row (soft).
  if constexpr (MODE == 1) {
    double sw = static_cast<double>(v);
    if (p.weight) {
      double part = 0.0;
      for (int64_t j = lane; j < v; j += G) part += static_cast<double>(p.weight[j]);
      sw = group_sum<G>(part);
    }
    r.a = static_cast<float>(static_cast<double>(r.bt) + static_cast<double>(r.cc) * sw);
  } else if constexpr (MODE == 2) {
    double part = 0.0;
    for (int64_t j = lane; j < v; j += G) part += static_cast<double>(r.b(j));
    r.a = static_cast<float>(group_sum<G>(part));
  }
  if (!compute) {
    for (int64_t j = lane; j < v; j += G) dr[j] = fill;
    return;
  }
  if constexpr (VEC) {
    const int64_t head = head_len(zr, v);
    const int64_t nvec = (v - head) / 4;
    const float4* zb = reinterpret_cast<const float4*>(zr + head);
    float4* db = reinterpret_cast<float4*>(dr + head);
    if (lane < head) dr[lane] = r.grad(zr[lane], lane);
    constexpr int U = 4;
    for (int64_t k0 = lane; k0 < nvec; k0 += U * G) {
      float4 buf[U];
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (k0 + u * G < nvec) buf[u] = zb[k0 + u * G];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t k = k0 + u * G;
        if (k < nvec) {
          const int64_t j = head + 4 * k;
          db[k] = make_float4(r.grad(buf[u].x, j), r.grad(buf[u].y, j + 1), r.grad(buf[u].z, j + 2),
                              r.grad(buf[u].w, j + 3));
        }
      }
    }
    for (int64_t j = head + 4 * nvec + lane; j < v; j += G) dr[j] = r.grad(zr[j], j);
  } else {
    for (int64_t j = lane; j < v; j += G) dr[j] = r.grad(zr[j], j);
  }
}

template <int G, int THREADS>
unsigned grid_rows(int64_t b) {
  return static_cast<unsigned>(ceil_div(b, THREADS / G));
}

template <int MODE, int G, int THREADS>
void launch_fwd(const XentProblem& p, double* lse, double* nll, double* smooth, int32_t* error, stream_t s) {
  xent_fwd_kernel<MODE, G><<<grid_rows<G, THREADS>(p.b), THREADS, 0, s>>>(p, lse, nll, smooth, error);
  check_launch("xent_fwd_kernel");
}

template <int MODE, int G, int THREADS>
void launch_bwd(const XentProblem& p, const double* lse, const float* scale, float* dz, int32_t* error, stream_t s) {
  const bool vec = ((reinterpret_cast<uintptr_t>(dz) - reinterpret_cast<uintptr_t>(p.z)) & 15) == 0;
  if (vec)
    xent_bwd_kernel<MODE, G, true><<<grid_rows<G, THREADS>(p.b), THREADS, 0, s>>>(p, lse, scale, dz, error);
  else
    xent_bwd_kernel<MODE, G, false><<<grid_rows<G, THREADS>(p.b), THREADS, 0, s>>>(p, lse, scale, dz, error);
  check_launch("xent_bwd_kernel");
}

}  // namespace

// Group size by row length: a warp up to 1024 classes, then 256 threads, 512 above 8192.
void cross_entropy_fwd(const XentProblem& p, double* lse, double* nll, double* smooth, int32_t* error,
                       stream_t stream) {
  if (p.b == 0) return;
  const int mode = p.soft ? 2 : (p.eps > 0.0f ? 1 : 0);
  auto go = [&](auto mode_tag) {
    constexpr int M = decltype(mode_tag)::value;
    if (p.v <= 1024)
      launch_fwd<M, 32, 256>(p, lse, nll, smooth, error, stream);
    else if (p.v <= 8192)
      launch_fwd<M, 256, 256>(p, lse, nll, smooth, error, stream);
    else
      launch_fwd<M, 512, 512>(p, lse, nll, smooth, error, stream);
  };
  if (mode == 0) go(std::integral_constant<int, 0>{});
  else if (mode == 1) go(std::integral_constant<int, 1>{});
  else go(std::integral_constant<int, 2>{});
}

void cross_entropy_bwd(const XentProblem& p, const double* lse, const float* scale, float* dz, int32_t* error,
                       stream_t stream) {
  if (p.b == 0) return;
  const int mode = p.soft ? 2 : (p.eps > 0.0f ? 1 : 0);
  auto go = [&](auto mode_tag) {
    constexpr int M = decltype(mode_tag)::value;
    if (p.v <= 1024)
      launch_bwd<M, 32, 256>(p, lse, scale, dz, error, stream);
    else if (p.v <= 8192)
      launch_bwd<M, 256, 256>(p, lse, scale, dz, error, stream);
    else
      launch_bwd<M, 512, 512>(p, lse, scale, dz, error, stream);
  };
  if (mode == 0) go(std::integral_constant<int, 0>{});
  else if (mode == 1) go(std::integral_constant<int, 1>{});
  else go(std::integral_constant<int, 2>{});
}

}  // namespace ember::cuda
