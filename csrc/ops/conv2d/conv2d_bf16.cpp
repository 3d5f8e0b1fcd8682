// conv2d forward with bf16 products (the bf16 precision policy): x and w
// rounded to bf16, every product summed in float32, y float32.
//
// One bf16 GEMM per image: y[n] (O x OH*OW) = w (O x C*KH*KW, converted to
// bf16 once) @ im2col(x[n]). The image is rounded to bf16 once; the im2col
// matrix is never stored: the GEMM asks for it 32 output pixels at a time, and
// the packer reads each row of those columns (one tap of one channel) with a
// masked load per run of pixels in one output row (unit stride: the loads of
// each kernel tap are worked out once per 32 pixels, for every channel;
// element by element otherwise) and interleaves row pairs into the tile layout. Threads over images, each running
// its GEMMs alone; the bias (one per output channel, a row of y[n]) and the
// ReLU are applied in the GEMM's epilogue. groups == 1 only. Without bf16
// products (below avx512_bf16) x and w are rounded to bf16 and the float32
// convolution computes the same values.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "core/registry.h"
#include "core/scratch.h"
#include "core/threads.h"
#include "ops/conv2d/conv2d.h"
#include "ops/conv2d/conv2d_internal.h"
#include "ops/gemm/gemm_bf16.h"

namespace ember::conv2d {
namespace {

thread_local Scratch t_image;
thread_local Scratch t_partials;

// Each im2col row's channel offset and tap position (Im2colBf16::tap).
std::vector<int64_t> im2col_taps(const Geometry& g) {
  const int64_t K = g.c * g.kh * g.kw;
  std::vector<int64_t> tap(static_cast<size_t>(3 * K));
  for (int64_t k = 0; k < K; ++k) {
    tap[3 * k] = k / (g.kh * g.kw) * g.h * g.w;
    tap[3 * k + 1] = k / g.kw % g.kh * g.dh;
    tap[3 * k + 2] = k % g.kw * g.dw;
  }
  return tap;
}

}  // namespace

void conv2d_fwd_bf16(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                     int nthreads) {
  if (g.groups != 1) throw std::logic_error("conv2d_fwd_bf16: groups must be 1");
  if (g.n == 0) return;  // no images: nothing to write (and no image-sized scratch to ask for)
  const int64_t K = g.c * g.kh * g.kw, pixels = g.oh * g.ow;
  const int64_t xsize = g.c * g.h * g.w;
  if (lookup<gemm::Bf16Kernels>("gemm_bf16", isa).block == nullptr) {
    // No bf16 products: round the operands to bf16 and convolve in float32 (the same values).
    std::vector<float> xr(static_cast<size_t>(g.n * xsize)), wr(static_cast<size_t>(g.o * K));
    std::vector<uint16_t> h(std::max(xr.size(), wr.size()));
    gemm::bf16_from_f32_cpu(x, g.n * xsize, h.data(), isa, nthreads);
    gemm::f32_from_bf16_cpu(h.data(), g.n * xsize, xr.data(), isa, nthreads);
    gemm::bf16_from_f32_cpu(w, g.o * K, h.data(), isa, nthreads);
    gemm::f32_from_bf16_cpu(h.data(), g.o * K, wr.data(), isa, nthreads);
    conv2d_fwd(g, xr.data(), wr.data(), bias, relu, y, isa, nthreads);
    return;
  }
  const std::vector<int64_t> tap = im2col_taps(g);
  std::vector<uint16_t> wb(static_cast<size_t>(g.o * K));
  gemm::bf16_from_f32_cpu(w, g.o * K, wb.data(), isa, nthreads);
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, g.n)));
  parallel_run(nt, [&](int tid) {
    uint16_t* image = reinterpret_cast<uint16_t*>(t_image.get(static_cast<size_t>(xsize / 2 + 32)));
    for (int64_t n = g.n * tid / nt; n < g.n * (tid + 1) / nt; ++n) {
      gemm::bf16_from_f32_cpu(x + n * xsize, xsize, image, isa, 1);  // each input value once, not once per tap
      const Im2colBf16 cols = {&g, image, tap.data()};
      const gemm::Bf16BPacker packer = {pack_im2col_bf16, &cols};
      gemm::GemmBf16Args a;
      a.a = {wb.data(), g.o, K, K, 1};
      a.b = {nullptr, K, pixels, pixels, 1};
      a.c = {y + n * g.o * pixels, g.o, pixels, pixels};
      a.row_bias = bias;
      a.relu = relu;
      a.b_packer = &packer;
      gemm::gemm_bf16_cpu(a, isa, 1);
    }
  });
}

void conv2d_bwd_weight_bf16(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                            int nthreads) {
  if (g.groups != 1) throw std::logic_error("conv2d_bwd_weight_bf16: groups must be 1");
  const int64_t K = g.c * g.kh * g.kw, pixels = g.oh * g.ow, xsize = g.c * g.h * g.w;
  if (g.n == 0) {  // no images: the gradients are zero
    std::fill(dw, dw + g.o * K, 0.0f);
    if (db) std::fill(db, db + g.o, 0.0f);
    return;
  }
  if (lookup<gemm::Bf16Kernels>("gemm_bf16", isa).block == nullptr) {
    // No bf16 products: round the operands to bf16 and take the float32 weight gradient.
    std::vector<float> xr(static_cast<size_t>(g.n * xsize)), dyr(static_cast<size_t>(g.n * g.o * pixels));
    std::vector<uint16_t> h(std::max(xr.size(), dyr.size()));
    gemm::bf16_from_f32_cpu(x, g.n * xsize, h.data(), isa, nthreads);
    gemm::f32_from_bf16_cpu(h.data(), g.n * xsize, xr.data(), isa, nthreads);
    gemm::bf16_from_f32_cpu(dy, g.n * g.o * pixels, h.data(), isa, nthreads);
    gemm::f32_from_bf16_cpu(h.data(), g.n * g.o * pixels, dyr.data(), isa, nthreads);
    std::vector<float> unused(static_cast<size_t>(g.o));
    conv2d_bwd_weight(g, xr.data(), dyr.data(), dw, db ? unused.data() : nullptr, isa, nthreads);
  } else {
    // dw^T (K x O) = sum over images of im2col(x[n]) (K x P) @ dy[n]^T (P x O), the im2col rows
    // gathered as the GEMM packs them; one float32 partial per thread, summed at the end.
    const std::vector<int64_t> tap = im2col_taps(g);
    const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, g.n)));
    float* partial = t_partials.get(static_cast<size_t>(nt * K * g.o));
    parallel_run(nt, [&](int tid) {
      uint16_t* image = reinterpret_cast<uint16_t*>(t_image.get(static_cast<size_t>((xsize + g.o * pixels) / 2 + 64)));
      uint16_t* grad = image + (xsize + 63) / 64 * 64;
      float* mine = partial + tid * K * g.o;
      for (int64_t n = g.n * tid / nt; n < g.n * (tid + 1) / nt; ++n) {
        gemm::bf16_from_f32_cpu(x + n * xsize, xsize, image, isa, 1);
        gemm::bf16_from_f32_cpu(dy + n * g.o * pixels, g.o * pixels, grad, isa, 1);
        const Im2colBf16 rows = {&g, image, tap.data()};
        const gemm::Bf16APacker packer = {pack_im2col_rows_bf16, &rows};
        gemm::GemmBf16Args a;
        a.a = {nullptr, K, pixels, pixels, 1};
        a.b = {grad, pixels, g.o, 1, pixels};  // dy[n]^T, read column by column
        a.c = {mine, K, g.o, g.o};
        a.beta = n == g.n * tid / nt ? 0.0f : 1.0f;
        a.a_packer = &packer;
        gemm::gemm_bf16_cpu(a, isa, 1);
      }
    });
    for (int64_t k = 0; k < K; ++k)
      for (int64_t o = 0; o < g.o; ++o) {
        float sum = 0.0f;
        for (int t = 0; t < nt; ++t) sum += partial[(t * K + k) * g.o + o];
        dw[o * K + k] = sum;
      }
  }
  if (db) {  // the bias gradient in float32, from the float32 grad_output (eight double partial sums)
    for (int64_t o = 0; o < g.o; ++o) {
      double part[8] = {};
      for (int64_t n = 0; n < g.n; ++n) {
        const float* d = dy + (n * g.o + o) * pixels;
        int64_t p = 0;
        for (; p + 8 <= pixels; p += 8)
          for (int l = 0; l < 8; ++l) part[l] += d[p + l];
        for (; p < pixels; ++p) part[0] += d[p];
      }
      const double sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
      db[o] = static_cast<float>(sum);
    }
  }
}

bool conv2d_bwd_data_bf16(const Geometry& g, const float* dy, const float* w, float* dx, Isa isa, int nthreads) {
  // The forward of dy with the kernel flipped and its channels swapped, at unit stride.
  const int64_t pt = (g.kh - 1) * g.dh - g.pt, pl = (g.kw - 1) * g.dw - g.pl;
  if (g.groups != 1 || g.sh != 1 || g.sw != 1 || pt < 0 || pl < 0) return false;
  std::vector<float> flipped(static_cast<size_t>(g.o * g.c * g.kh * g.kw));
  for (int64_t o = 0; o < g.o; ++o)
    for (int64_t c = 0; c < g.c; ++c)
      for (int64_t p = 0; p < g.kh; ++p)
        for (int64_t q = 0; q < g.kw; ++q)
          flipped[((c * g.o + o) * g.kh + (g.kh - 1 - p)) * g.kw + (g.kw - 1 - q)] =
              w[((o * g.c + c) * g.kh + p) * g.kw + q];
  Geometry t = g;
  t.c = g.o, t.h = g.oh, t.w = g.ow;
  t.o = g.c, t.oh = g.h, t.ow = g.w;
  t.pt = pt, t.pl = pl;
  conv2d_fwd_bf16(t, dy, flipped.data(), nullptr, false, dx, isa, nthreads);
  return true;
}

}  // namespace ember::conv2d
