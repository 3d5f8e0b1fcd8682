// conv2d forward, backward-data and backward-weight on the GPU: implicit GEMMs.
//
// Each is a policy for the fp32 SIMT GEMM kernel (gemm_simt.cuh; 128 x 128
// tiles, double-buffered shared memory): the policy's fetch functions compute,
// for each element of a tile, where it lives in x, w or dy (or that it is
// padding, hence 0) with precomputed 32-bit divisions, and its store function
// scatters results to NCHW / OIHW. blockIdx.z is the group (times the K split
// for backward-weight). What moves: the GEMM's operand panels gathered from
// x / dy / w (re-reads mostly from L1/L2), each output once. Nothing of im2col
// size is written anywhere; backward-weight's K slices write S x |dw| floats
// of scratch, summed by a fixed-order reduction (deterministic, no atomics).
#include "core/cuda_launch.cuh"
#include "ops/conv2d/conv2d_cuda.h"
#include "ops/gemm/gemm_simt.cuh"

namespace ember::cuda {
namespace {

using conv2d::Geometry;

// n / d for n < 2^31 by a multiply and a shift (d fixed per launch).
struct FastDiv {
  uint32_t d = 1, m = 0, s = 0;
  FastDiv() = default;
  explicit FastDiv(int64_t dd) : d(static_cast<uint32_t>(dd)) {
    if (d <= 1) return;
    uint32_t l = 0;
    while ((uint64_t(1) << l) < d) ++l;
    const uint64_t p = 31 + l;
    m = static_cast<uint32_t>(((uint64_t(1) << p) + d - 1) / d);
    s = static_cast<uint32_t>(p - 32);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return d == 1 ? n : (__umulhi(n, m) >> s); }
};

struct ConvShape {
  int32_t n, c, h, w, o, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, groups, cg, og;
  FastDiv by_ow, by_ohw, by_w, by_hw, by_kw, by_khw;
  ConvShape() = default;
  explicit ConvShape(const Geometry& g)
      : n(int32_t(g.n)), c(int32_t(g.c)), h(int32_t(g.h)), w(int32_t(g.w)), o(int32_t(g.o)), oh(int32_t(g.oh)),
        ow(int32_t(g.ow)), kh(int32_t(g.kh)), kw(int32_t(g.kw)), sh(int32_t(g.sh)), sw(int32_t(g.sw)),
        pt(int32_t(g.pt)), pl(int32_t(g.pl)), dh(int32_t(g.dh)), dw(int32_t(g.dw)), groups(int32_t(g.groups)),
        cg(int32_t(g.c / g.groups)), og(int32_t(g.o / g.groups)), by_ow(g.ow), by_ohw(g.oh * g.ow), by_w(g.w),
        by_hw(g.h * g.w), by_kw(g.kw), by_khw(g.kh * g.kw) {}
};

__device__ __forceinline__ float relu_if(float x, bool relu) { return relu && x < 0.0f ? 0.0f : x; }

// ---------------------------------------------------------------- forward
struct FwdPolicy {
  static constexpr bool A_K_FAST = true, B_N_FAST = true;
  int64_t M, N;  // O/groups, N*OH*OW
  int64_t K;     // C/groups*KH*KW
  ConvShape s;
  const float* x;
  const float* w;
  const float* bias;
  float* y;
  bool relu, vec_w, vec_y;

  __device__ __forceinline__ void k_range(int, int64_t& k0, int64_t& k1) const { k0 = 0, k1 = K; }
  __device__ __forceinline__ void fetch_a(int g, int64_t m, int64_t k, float (&r)[4]) const {
    if (m >= M || k >= K) return simt::load4<float, false>(w, 1, 0, r);
    const float* p = w + (static_cast<int64_t>(g) * M + m) * K + k;
    if (vec_w) return simt::load4<float, true>(p, 1, K - k, r);
    simt::load4<float, false>(p, 1, K - k, r);
  }
  __device__ __forceinline__ void fetch_b(int g, int64_t k, int64_t n, float (&r)[4]) const {
    if (k >= K) return simt::load4<float, false>(x, 1, 0, r);
    const uint32_t kk = static_cast<uint32_t>(k);
    const uint32_t c = s.by_khw.div(kk), pq = kk - c * s.by_khw.d, p = s.by_kw.div(pq), q = pq - p * s.kw;
    const float* xc = x + (static_cast<int64_t>(g) * s.cg + c) * s.h * s.w;
    const int64_t cstride = static_cast<int64_t>(s.c) * s.h * s.w;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      r[e] = 0.0f;
      if (n + e >= N) continue;
      const uint32_t nn = static_cast<uint32_t>(n + e);
      const uint32_t b = s.by_ohw.div(nn), ij = nn - b * s.by_ohw.d, i = s.by_ow.div(ij), j = ij - i * s.ow;
      const int hh = static_cast<int>(i) * s.sh - s.pt + static_cast<int>(p) * s.dh;
      const int ww = static_cast<int>(j) * s.sw - s.pl + static_cast<int>(q) * s.dw;
      if (hh >= 0 && hh < s.h && ww >= 0 && ww < s.w) r[e] = xc[b * cstride + static_cast<int64_t>(hh) * s.w + ww];
    }
  }
  __device__ __forceinline__ void store(int g, int64_t m, int64_t n, const float (&v)[4]) const {
    const int64_t o = static_cast<int64_t>(g) * M + m;
    const float bo = bias ? bias[o] : 0.0f;
    const int64_t ohw = s.by_ohw.d;
    if (vec_y && n + 3 < N) {  // OH*OW % 4 == 0: the four share an image and are consecutive
      const uint32_t b = s.by_ohw.div(static_cast<uint32_t>(n)), ij = static_cast<uint32_t>(n) - b * s.by_ohw.d;
      float* p = y + (static_cast<int64_t>(b) * s.o + o) * ohw + ij;
      *reinterpret_cast<float4*>(p) = make_float4(relu_if(v[0] + bo, relu), relu_if(v[1] + bo, relu),
                                                  relu_if(v[2] + bo, relu), relu_if(v[3] + bo, relu));
      return;
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (n + e >= N) continue;
      const uint32_t nn = static_cast<uint32_t>(n + e);
      const uint32_t b = s.by_ohw.div(nn), ij = nn - b * s.by_ohw.d;
      y[(static_cast<int64_t>(b) * s.o + o) * ohw + ij] = relu_if(v[e] + bo, relu);
    }
  }
};

// ---------------------------------------------------------------- backward-data
struct BwdDataPolicy {
  static constexpr bool A_K_FAST = true, B_N_FAST = true;
  int64_t M, N;  // C/groups, N*H*W
  int64_t K;     // O/groups*KH*KW
  ConvShape s;
  const float* dy;
  const float* w;
  float* dx;
  bool vec_x;

  __device__ __forceinline__ void k_range(int, int64_t& k0, int64_t& k1) const { k0 = 0, k1 = K; }
  // A(c, (o,p,q)) = w[g*og + o, c, p, q]
  __device__ __forceinline__ void fetch_a(int g, int64_t m, int64_t k, float (&r)[4]) const {
    const int64_t khw = s.by_khw.d;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      r[e] = 0.0f;
      if (m >= M || k + e >= K) continue;
      const uint32_t kk = static_cast<uint32_t>(k + e);
      const uint32_t o = s.by_khw.div(kk), pq = kk - o * s.by_khw.d;
      r[e] = w[((static_cast<int64_t>(g) * s.og + o) * s.cg + m) * khw + pq];
    }
  }
  // B((o,p,q), (n,h,w)) = dy[n, g*og + o, (h + pt - p*dh)/sh, (w + pl - q*dw)/sw] where that divides.
  __device__ __forceinline__ void fetch_b(int g, int64_t k, int64_t n, float (&r)[4]) const {
    if (k >= K) return simt::load4<float, false>(dy, 1, 0, r);
    const uint32_t kk = static_cast<uint32_t>(k);
    const uint32_t o = s.by_khw.div(kk), pq = kk - o * s.by_khw.d, p = s.by_kw.div(pq), q = pq - p * s.kw;
    const int64_t ohw = s.by_ohw.d;
    const float* d0 = dy + (static_cast<int64_t>(g) * s.og + o) * ohw;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      r[e] = 0.0f;
      if (n + e >= N) continue;
      const uint32_t nn = static_cast<uint32_t>(n + e);
      const uint32_t b = s.by_hw.div(nn), hw = nn - b * s.by_hw.d, h = s.by_w.div(hw), ww = hw - h * s.w;
      const int hi = static_cast<int>(h) + s.pt - static_cast<int>(p) * s.dh;
      const int wj = static_cast<int>(ww) + s.pl - static_cast<int>(q) * s.dw;
      if (hi < 0 || wj < 0 || hi % s.sh != 0 || wj % s.sw != 0) continue;
      const int i = hi / s.sh, j = wj / s.sw;
      if (i >= s.oh || j >= s.ow) continue;
      r[e] = d0[static_cast<int64_t>(b) * s.o * ohw + static_cast<int64_t>(i) * s.ow + j];
    }
  }
  __device__ __forceinline__ void store(int g, int64_t m, int64_t n, const float (&v)[4]) const {
    const int64_t c = static_cast<int64_t>(g) * M + m;
    const int64_t hw = s.by_hw.d;
    if (vec_x && n + 3 < N) {
      const uint32_t b = s.by_hw.div(static_cast<uint32_t>(n)), e0 = static_cast<uint32_t>(n) - b * s.by_hw.d;
      *reinterpret_cast<float4*>(dx + (static_cast<int64_t>(b) * s.c + c) * hw + e0) =
          make_float4(v[0], v[1], v[2], v[3]);
      return;
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (n + e >= N) continue;
      const uint32_t nn = static_cast<uint32_t>(n + e);
      const uint32_t b = s.by_hw.div(nn), e0 = nn - b * s.by_hw.d;
      dx[(static_cast<int64_t>(b) * s.c + c) * hw + e0] = v[e];
    }
  }
};

// ---------------------------------------------------------------- backward-weight
struct BwdWeightPolicy {
  static constexpr bool A_K_FAST = true, B_N_FAST = false;
  int64_t M, N;  // O/groups, C/groups*KH*KW
  int64_t K;     // N*OH*OW
  int64_t split_k;  // K per slice (a multiple of BK)
  int splits;
  ConvShape s;
  const float* x;
  const float* dy;
  float* out;  // dw (splits == 1) or scratch [groups][splits][M][N]

  __device__ __forceinline__ void k_range(int z, int64_t& k0, int64_t& k1) const {
    const int sl = z % splits;
    k0 = sl * split_k;
    k1 = min(K, k0 + split_k);
  }
  // A(o, (n,ij)) = dy[n, g*og + o, ij]
  __device__ __forceinline__ void fetch_a(int z, int64_t m, int64_t k, float (&r)[4]) const {
    int64_t k0, k1;
    k_range(z, k0, k1);
    const int g = z / splits;
    const int64_t ohw = s.by_ohw.d;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      r[e] = 0.0f;
      if (m >= M || k + e >= k1) continue;
      const uint32_t kk = static_cast<uint32_t>(k + e);
      const uint32_t b = s.by_ohw.div(kk), ij = kk - b * s.by_ohw.d;
      r[e] = dy[(static_cast<int64_t>(b) * s.o + static_cast<int64_t>(g) * s.og + m) * ohw + ij];
    }
  }
  // B((n,i,j), (c,p,q)) = x[n, g*cg + c, i*sh - pt + p*dh, j*sw - pl + q*dw]; 4 consecutive k.
  __device__ __forceinline__ void fetch_b(int z, int64_t k, int64_t n, float (&r)[4]) const {
    int64_t k0, k1;
    k_range(z, k0, k1);
    const int g = z / splits;
#pragma unroll
    for (int e = 0; e < 4; ++e) r[e] = 0.0f;
    if (n >= N) return;
    const uint32_t col = static_cast<uint32_t>(n);
    const uint32_t c = s.by_khw.div(col), pq = col - c * s.by_khw.d, p = s.by_kw.div(pq), q = pq - p * s.kw;
    const float* xc = x + (static_cast<int64_t>(g) * s.cg + c) * s.h * s.w;
    const int64_t cstride = static_cast<int64_t>(s.c) * s.h * s.w;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (k + e >= k1) continue;
      const uint32_t kk = static_cast<uint32_t>(k + e);
      const uint32_t b = s.by_ohw.div(kk), ij = kk - b * s.by_ohw.d, i = s.by_ow.div(ij), j = ij - i * s.ow;
      const int hh = static_cast<int>(i) * s.sh - s.pt + static_cast<int>(p) * s.dh;
      const int ww = static_cast<int>(j) * s.sw - s.pl + static_cast<int>(q) * s.dw;
      if (hh >= 0 && hh < s.h && ww >= 0 && ww < s.w) r[e] = xc[b * cstride + static_cast<int64_t>(hh) * s.w + ww];
    }
  }
  __device__ __forceinline__ void store(int z, int64_t m, int64_t n, const float (&v)[4]) const {
    float* row = out + (static_cast<int64_t>(z) * M + m) * N;  // z = g * splits + slice
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (n + e < N) row[n + e] = v[e];
  }
};

// dw[g][m][n] = sum over slices s (in order) of scratch[g][s][m][n].
__global__ void sum_slices_kernel(const float* __restrict__ scratch, float* __restrict__ dw, int64_t per_group,
                                  int splits, int64_t total) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t g = e / per_group, r = e - g * per_group;
    const float* p = scratch + g * splits * per_group + r;
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s) acc += p[s * per_group];
    dw[e] = acc;
  }
}

// db[o] = sum over n, ij of dy[n, o, ij]: one block per channel, a fixed-order tree.
__global__ void bias_grad_kernel(const float* __restrict__ dy, float* __restrict__ db, int64_t n, int64_t o,
                                 int64_t ohw) {
  __shared__ double part[256];
  const int64_t ch = blockIdx.x;
  double acc = 0.0;
  const int64_t total = n * ohw;
  for (int64_t e = threadIdx.x; e < total; e += blockDim.x) {
    const int64_t b = e / ohw, ij = e - b * ohw;
    acc += static_cast<double>(dy[(b * o + ch) * ohw + ij]);
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = 128; stride > 0; stride >>= 1) {
    if (static_cast<int>(threadIdx.x) < stride) part[threadIdx.x] += part[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) db[ch] = static_cast<float>(part[0]);
}

bool al16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <class P>
void launch_policy(const P& p, int64_t zdim, const char* name, stream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(p.N, simt::BN)), static_cast<unsigned>(ceil_div(p.M, simt::BM)),
                  static_cast<unsigned>(zdim));
  simt::simt_gemm_kernel<<<grid, simt::THREADS, 0, stream>>>(p);
  check_launch(name);
}

// The K split of backward-weight: enough blocks for two per multiprocessor, slices of at
// least 512 K-elements, at most 1024 slices.
int split_count(const Geometry& g) {
  const int64_t M = g.o / g.groups, N = (g.c / g.groups) * g.kh * g.kw, K = g.n * g.oh * g.ow;
  const int64_t tiles = ceil_div(M, simt::BM) * ceil_div(N, simt::BN) * g.groups;
  int64_t s = ceil_div(2 * static_cast<int64_t>(sm_count()), tiles);
  s = std::min<int64_t>(s, std::max<int64_t>(1, K / 512));
  s = std::min<int64_t>(s, 1024);
  s = std::min<int64_t>(s, 65535 / g.groups);
  return static_cast<int>(std::max<int64_t>(s, 1));
}

}  // namespace

void conv2d_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y,
                stream_t stream) {
  if (g.n * g.o * g.oh * g.ow == 0) return;
  FwdPolicy p{g.o / g.groups, g.n * g.oh * g.ow, (g.c / g.groups) * g.kh * g.kw, ConvShape(g), x, w, bias, y, relu,
              false, false};
  p.vec_w = al16(w) && p.K % 4 == 0;
  p.vec_y = al16(y) && (g.oh * g.ow) % 4 == 0;
  launch_policy(p, g.groups, "conv2d_fwd (simt_gemm_kernel)", stream);
}

void conv2d_bwd_data(const Geometry& g, const float* dy, const float* w, float* dx, stream_t stream) {
  if (g.n * g.c * g.h * g.w == 0) return;
  BwdDataPolicy p{g.c / g.groups, g.n * g.h * g.w, (g.o / g.groups) * g.kh * g.kw, ConvShape(g), dy, w, dx, false};
  p.vec_x = al16(dx) && (g.h * g.w) % 4 == 0;
  launch_policy(p, g.groups, "conv2d_bwd_data (simt_gemm_kernel)", stream);
}

int64_t conv2d_bwd_weight_scratch(const Geometry& g) {
  const int s = split_count(g);
  return s > 1 ? static_cast<int64_t>(s) * g.o * (g.c / g.groups) * g.kh * g.kw : 0;
}

void conv2d_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, float* scratch,
                       stream_t stream) {
  const int64_t wsize = g.o * (g.c / g.groups) * g.kh * g.kw;
  if (db && g.o > 0) {
    bias_grad_kernel<<<static_cast<unsigned>(g.o), 256, 0, stream>>>(dy, db, g.n, g.o, g.oh * g.ow);
    check_launch("conv2d_bwd_weight (bias_grad_kernel)");
  }
  if (wsize == 0) return;
  const int splits = split_count(g);
  BwdWeightPolicy p;
  p.M = g.o / g.groups, p.N = (g.c / g.groups) * g.kh * g.kw, p.K = g.n * g.oh * g.ow;
  p.splits = splits;
  p.split_k = ceil_div(ceil_div(p.K, splits), simt::BK) * simt::BK;
  p.s = ConvShape(g);
  p.x = x, p.dy = dy;
  if (splits == 1) {
    p.out = dw;
    launch_policy(p, g.groups, "conv2d_bwd_weight (simt_gemm_kernel)", stream);
    return;
  }
  float* buf = scratch;
  if (!buf) {
    void* mem = nullptr;
    check_cuda(cudaMallocAsync(&mem, static_cast<size_t>(splits) * wsize * sizeof(float), stream),
               "conv2d_bwd_weight: cudaMallocAsync (scratch)");
    buf = static_cast<float*>(mem);
  }
  p.out = buf;
  try {
    launch_policy(p, static_cast<int64_t>(g.groups) * splits, "conv2d_bwd_weight (simt_gemm_kernel)", stream);
    const int64_t per_group = p.M * p.N;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(ceil_div(wsize, 256), 65535));
    sum_slices_kernel<<<blocks, 256, 0, stream>>>(buf, dw, per_group, splits, wsize);
    check_launch("conv2d_bwd_weight (sum_slices_kernel)");
  } catch (...) {
    if (!scratch) cudaFreeAsync(buf, stream);
    throw;
  }
  if (!scratch) check_cuda(cudaFreeAsync(buf, stream), "conv2d_bwd_weight: cudaFreeAsync (scratch)");
}

}  // namespace ember::cuda
