// Multi-tensor Adam/AdamW/AMSGrad and SGD steps on the GPU.
//
// Strategy (PyTorch's multi_tensor_apply, simplified): the launch carries a
// table of up to 48 (Adam) or 96 (SGD) tensors by value -- pointers, sizes,
// per-tensor constants and a prefix sum of each tensor's chunk count. Block b
// finds its tensor by scanning the prefix sums and updates one chunk of 4096
// elements; with every pointer 16-byte aligned it moves float4 vectors,
// else single floats. Bytes: Adam reads p, g, m, v (and vmax) once and writes
// p, m, v (and vmax) once; SGD reads p, g (and buf) and writes p (and buf).
// No intermediate is stored.
#include <cmath>

#include "core/cuda_launch.cuh"
#include "ops/optim_step/optim_step_cuda.h"

namespace ember::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 4096;  // small enough that a small model still fills the GPU

struct AdamTable {
  float* p[kAdamPerLaunch];
  const float* g[kAdamPerLaunch];
  float* m[kAdamPerLaunch];
  float* v[kAdamPerLaunch];
  float* vmax[kAdamPerLaunch];
  int64_t n[kAdamPerLaunch];
  float step_size[kAdamPerLaunch];     // lr / (1 - beta1^t)
  float inv_sqrt_bc2[kAdamPerLaunch];  // 1 / sqrt(1 - beta2^t)
  int32_t chunk_end[kAdamPerLaunch];   // prefix sums of the chunk counts
  int count;
};

struct AdamConsts {
  float shrink, wd, one_m_b1, one_m_b2, beta2, eps, sign;
  bool m_is_g;  // b1 = 0: m = g exactly, as on the CPU (optim_step.h)
};

struct SgdTable {
  float* p[kSgdPerLaunch];
  const float* g[kSgdPerLaunch];
  float* buf[kSgdPerLaunch];
  int64_t n[kSgdPerLaunch];
  int32_t chunk_end[kSgdPerLaunch];
  int count;
};

static_assert(sizeof(AdamTable) + sizeof(AdamConsts) < 4000, "kernel parameters must stay under 4 KiB");
static_assert(sizeof(SgdTable) + 64 < 4000, "kernel parameters must stay under 4 KiB");

__device__ __forceinline__ int find_tensor(const int32_t* chunk_end, int count, int32_t block, int32_t& first) {
  int t = 0;
  while (t + 1 < count && block >= chunk_end[t]) ++t;
  first = t == 0 ? 0 : chunk_end[t - 1];
  return t;
}

template <bool DECOUPLED, bool AMSGRAD>
__device__ __forceinline__ void adam1(float& p, float g, float& m, float& v, float& vmax, const AdamConsts& c,
                                      float step_size, float inv_sqrt_bc2) {
  const float pi = DECOUPLED ? p * c.shrink : p;
  const float gi = c.sign * g + c.wd * pi;
  const float mi = c.m_is_g ? gi : m + c.one_m_b1 * (gi - m);
  const float vi = c.beta2 * v + c.one_m_b2 * gi * gi;
  m = mi;
  v = vi;
  float vv = vi;
  if (AMSGRAD) {
    vv = vmax > vi || vmax != vmax ? vmax : vi;  // NaN in either propagates
    vmax = vv;
  }
  p = pi - step_size * mi / (sqrtf(vv) * inv_sqrt_bc2 + c.eps);
}

template <bool DECOUPLED, bool AMSGRAD, bool VEC>
__global__ void __launch_bounds__(kThreads) adam_kernel(AdamTable t, AdamConsts c) {
  int32_t first;
  const int k = find_tensor(t.chunk_end, t.count, static_cast<int32_t>(blockIdx.x), first);
  const int64_t lo = static_cast<int64_t>(blockIdx.x - first) * kChunk;
  const int64_t hi = min(lo + kChunk, t.n[k]);
  float *p = t.p[k], *m = t.m[k], *v = t.v[k], *vmax = t.vmax[k];
  const float* g = t.g[k];
  const float ss = t.step_size[k], ib = t.inv_sqrt_bc2[k];
  int64_t i = lo + threadIdx.x * (VEC ? 4 : 1);
  if constexpr (VEC) {
    for (; i + 3 < hi; i += kThreads * 4) {
      float4 P = *reinterpret_cast<float4*>(p + i), G = *reinterpret_cast<const float4*>(g + i);
      float4 M = *reinterpret_cast<float4*>(m + i), V = *reinterpret_cast<float4*>(v + i);
      float4 X = AMSGRAD ? *reinterpret_cast<float4*>(vmax + i) : make_float4(0.f, 0.f, 0.f, 0.f);
      adam1<DECOUPLED, AMSGRAD>(P.x, G.x, M.x, V.x, X.x, c, ss, ib);
      adam1<DECOUPLED, AMSGRAD>(P.y, G.y, M.y, V.y, X.y, c, ss, ib);
      adam1<DECOUPLED, AMSGRAD>(P.z, G.z, M.z, V.z, X.z, c, ss, ib);
      adam1<DECOUPLED, AMSGRAD>(P.w, G.w, M.w, V.w, X.w, c, ss, ib);
      *reinterpret_cast<float4*>(p + i) = P;
      *reinterpret_cast<float4*>(m + i) = M;
      *reinterpret_cast<float4*>(v + i) = V;
      if (AMSGRAD) *reinterpret_cast<float4*>(vmax + i) = X;
    }
    // The tensor's last partial vector (only in its last chunk).
    for (; i < hi; ++i) {
      float x = AMSGRAD ? vmax[i] : 0.0f;
      adam1<DECOUPLED, AMSGRAD>(p[i], g[i], m[i], v[i], x, c, ss, ib);
      if (AMSGRAD) vmax[i] = x;
    }
  } else {
    for (; i < hi; i += kThreads) {
      float x = AMSGRAD ? vmax[i] : 0.0f;
      adam1<DECOUPLED, AMSGRAD>(p[i], g[i], m[i], v[i], x, c, ss, ib);
      if (AMSGRAD) vmax[i] = x;
    }
  }
}

struct SgdConsts {
  float lr, mom, keep, wd, sign;
  bool nesterov, first;
};

template <bool MOMENTUM>
__device__ __forceinline__ void sgd1(float& p, float g, float& b, const SgdConsts& c) {
  float d = c.sign * g + c.wd * p;
  if (MOMENTUM) {
    b = c.first ? d : c.mom * b + c.keep * d;
    d = c.nesterov ? d + c.mom * b : b;
  }
  p -= c.lr * d;
}

template <bool MOMENTUM, bool VEC>
__global__ void __launch_bounds__(kThreads) sgd_kernel(SgdTable t, SgdConsts c) {
  int32_t first;
  const int k = find_tensor(t.chunk_end, t.count, static_cast<int32_t>(blockIdx.x), first);
  const int64_t lo = static_cast<int64_t>(blockIdx.x - first) * kChunk;
  const int64_t hi = min(lo + kChunk, t.n[k]);
  float *p = t.p[k], *buf = t.buf[k];
  const float* g = t.g[k];
  int64_t i = lo + threadIdx.x * (VEC ? 4 : 1);
  if constexpr (VEC) {
    for (; i + 3 < hi; i += kThreads * 4) {
      float4 P = *reinterpret_cast<float4*>(p + i), G = *reinterpret_cast<const float4*>(g + i);
      float4 B = MOMENTUM ? *reinterpret_cast<float4*>(buf + i) : make_float4(0.f, 0.f, 0.f, 0.f);
      sgd1<MOMENTUM>(P.x, G.x, B.x, c);
      sgd1<MOMENTUM>(P.y, G.y, B.y, c);
      sgd1<MOMENTUM>(P.z, G.z, B.z, c);
      sgd1<MOMENTUM>(P.w, G.w, B.w, c);
      *reinterpret_cast<float4*>(p + i) = P;
      if (MOMENTUM) *reinterpret_cast<float4*>(buf + i) = B;
    }
    for (; i < hi; ++i) {
      float b = MOMENTUM ? buf[i] : 0.0f;
      sgd1<MOMENTUM>(p[i], g[i], b, c);
      if (MOMENTUM) buf[i] = b;
    }
  } else {
    for (; i < hi; i += kThreads) {
      float b = MOMENTUM ? buf[i] : 0.0f;
      sgd1<MOMENTUM>(p[i], g[i], b, c);
      if (MOMENTUM) buf[i] = b;
    }
  }
}

bool al16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

// In the vector path a thread starts at lo + 4 * tid and the tail loop runs only past the
// last full vector; chunks are multiples of 4 elements, so each chunk starts aligned.
void adam_step(const AdamTensor* tensors, int count, const AdamHyper& h, stream_t stream) {
  const AdamConsts c{1.0f - h.lr * h.weight_decay, h.decoupled ? 0.0f : h.weight_decay, 1.0f - h.beta1,
                     1.0f - h.beta2, h.beta2, h.eps, h.maximize ? -1.0f : 1.0f, h.beta1 == 0.0f};
  for (int base = 0; base < count; base += kAdamPerLaunch) {
    AdamTable t{};
    int32_t blocks = 0;
    bool vec = true;
    for (int k = 0; k < kAdamPerLaunch && base + k < count; ++k) {
      const AdamTensor& a = tensors[base + k];
      if (a.n == 0) continue;
      const int j = t.count++;
      t.p[j] = a.p;
      t.g[j] = a.g;
      t.m[j] = a.m;
      t.v[j] = a.v;
      t.vmax[j] = a.vmax;
      t.n[j] = a.n;
      const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(a.step)));
      const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(a.step)));
      t.step_size[j] = h.lr / bc1;
      t.inv_sqrt_bc2[j] = 1.0f / std::sqrt(bc2);
      blocks += static_cast<int32_t>(ceil_div(a.n, kChunk));
      t.chunk_end[j] = blocks;
      vec = vec && al16(a.p) && al16(a.g) && al16(a.m) && al16(a.v) && (!h.amsgrad || al16(a.vmax));
    }
    if (t.count == 0) continue;
    auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(t, c);
      check_launch("adam_kernel");
    };
    if (h.decoupled) {
      if (h.amsgrad) vec ? launch(adam_kernel<true, true, true>) : launch(adam_kernel<true, true, false>);
      else vec ? launch(adam_kernel<true, false, true>) : launch(adam_kernel<true, false, false>);
    } else {
      if (h.amsgrad) vec ? launch(adam_kernel<false, true, true>) : launch(adam_kernel<false, true, false>);
      else vec ? launch(adam_kernel<false, false, true>) : launch(adam_kernel<false, false, false>);
    }
  }
}

void sgd_step(const SgdTensor* tensors, int count, const SgdHyper& h, stream_t stream) {
  const SgdConsts c{h.lr, h.momentum, 1.0f - h.dampening, h.weight_decay, h.maximize ? -1.0f : 1.0f, h.nesterov,
                    h.first};
  for (int base = 0; base < count; base += kSgdPerLaunch) {
    SgdTable t{};
    int32_t blocks = 0;
    bool vec = true;
    for (int k = 0; k < kSgdPerLaunch && base + k < count; ++k) {
      const SgdTensor& a = tensors[base + k];
      if (a.n == 0) continue;
      const int j = t.count++;
      t.p[j] = a.p;
      t.g[j] = a.g;
      t.buf[j] = a.buf;
      t.n[j] = a.n;
      blocks += static_cast<int32_t>(ceil_div(a.n, kChunk));
      t.chunk_end[j] = blocks;
      vec = vec && al16(a.p) && al16(a.g) && (!h.has_momentum || al16(a.buf));
    }
    if (t.count == 0) continue;
    auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(t, c);
      check_launch("sgd_kernel");
    };
    if (h.has_momentum) vec ? launch(sgd_kernel<true, true>) : launch(sgd_kernel<true, false>);
    else vec ? launch(sgd_kernel<false, true>) : launch(sgd_kernel<false, false>);
  }
}

}  // namespace ember::cuda
