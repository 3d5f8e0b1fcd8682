// Pooling on the CPU: threads over (n, c) planes, every plane pooled in one pass.
//
// Window bounds are clipped once per output row and column, so the inner
// loops carry no bounds checks; the common 2x2 stride-2 max pooling without
// padding or dilation has its own loop over pairs of input rows (the per-ISA
// row kernels of pool2d_rows_<isa>.cpp). Backward
// passes write each input plane exactly once (zero, then scatter or spread),
// inside the thread that owns the plane, so no two threads touch one line.
// Nothing but the outputs (and the argmax indices, when asked) is written.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/registry.h"
#include "core/threads.h"
#include "ops/pool2d/pool2d.h"

namespace ember::pool2d {
namespace {

// Waking a thread is worth it from about this many input elements per thread.
constexpr int64_t kMinElementsPerThread = 16 * 1024;

template <class F>
void for_planes(const Geometry& g, int nthreads, F&& per_plane) {
  const int64_t work = g.planes * std::max<int64_t>(1, g.h * g.w);
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>({static_cast<int64_t>(nthreads), g.planes,
                                                             work / kMinElementsPerThread}));
  parallel_run(static_cast<int>(nt), [&](int tid) {
    const int64_t p0 = g.planes * tid / nt, p1 = g.planes * (tid + 1) / nt;
    for (int64_t p = p0; p < p1; ++p) per_plane(p);
  });
}

// Valid kernel taps [t0, t1) of output position o along one axis.
struct Taps {
  int64_t start;  // input position of tap 0 (may be negative)
  int64_t t0, t1;
};

Taps taps(int64_t o, int64_t stride, int64_t pad, int64_t dil, int64_t k, int64_t size) {
  Taps t{o * stride - pad, 0, 0};
  valid_taps(t.start, dil, k, size, &t.t0, &t.t1);
  return t;
}

}  // namespace

void max_pool2d_fwd(const Geometry& g, const float* x, float* y, int64_t* idx, Isa isa, int nthreads) {
  // The row kernel needs every window whole (not so for a ceil_mode edge on an
  // odd size) and in-row offsets that fit in 32 bits.
  const bool two_by_two = g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 &&
                          g.dh == 1 && g.dw == 1 && 2 * g.oh <= g.h && 2 * g.ow <= g.w &&
                          g.w < (int64_t(1) << 30);
  const auto row_kernel = lookup<RowKernels>("pool2d", isa).max2x2_row;
  for_planes(g, nthreads, [&](int64_t pl) {
    const float* xp = x + pl * g.h * g.w;
    float* yp = y + pl * g.oh * g.ow;
    int64_t* ip = idx ? idx + pl * g.oh * g.ow : nullptr;
    if (two_by_two) {
      for (int64_t i = 0; i < g.oh; ++i)
        row_kernel(xp + 2 * i * g.w, xp + (2 * i + 1) * g.w, g.ow, 2 * i * g.w, g.w, yp + i * g.ow,
                   ip ? ip + i * g.ow : nullptr);
      return;
    }
    for (int64_t i = 0; i < g.oh; ++i) {
      const Taps th = taps(i, g.sh, g.ph, g.dh, g.kh, g.h);
      for (int64_t j = 0; j < g.ow; ++j) {
        const Taps tw = taps(j, g.sw, g.pw, g.dw, g.kw, g.w);
        float best = -std::numeric_limits<float>::infinity();
        int64_t bi = (th.start + th.t0 * g.dh) * g.w + tw.start + tw.t0 * g.dw;
        for (int64_t p = th.t0; p < th.t1; ++p) {
          const int64_t row = (th.start + p * g.dh) * g.w;
          for (int64_t q = tw.t0; q < tw.t1; ++q) {
            const int64_t at = row + tw.start + q * g.dw;
            const float v = xp[at];
            if (v > best || std::isnan(v)) best = v, bi = at;
          }
        }
        yp[i * g.ow + j] = best;
        if (ip) ip[i * g.ow + j] = bi;
      }
    }
  });
}

void max_pool2d_bwd(const Geometry& g, const float* dy, const int64_t* idx, float* dx, int nthreads) {
  for_planes(g, nthreads, [&](int64_t pl) {
    float* dxp = dx + pl * g.h * g.w;
    std::memset(dxp, 0, sizeof(float) * g.h * g.w);
    const float* dyp = dy + pl * g.oh * g.ow;
    const int64_t* ip = idx + pl * g.oh * g.ow;
    for (int64_t e = 0; e < g.oh * g.ow; ++e) dxp[ip[e]] += dyp[e];
  });
}

namespace {

// An averaging window: valid rows [h0, h1), columns [w0, w1), and its divisor.
struct Window {
  int64_t h0, h1, w0, w1;
  float divisor;
};

// avg pooling, PyTorch's clipping: the window is cut to the padded plane, the
// divisor is that size (count_include_pad) or the number of valid elements.
struct AvgWindows {
  const Geometry& g;
  bool count_include_pad;
  Window operator()(int64_t i, int64_t j) const {
    int64_t h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
    int64_t h1 = std::min(h0 + g.kh, g.h + g.ph), w1 = std::min(w0 + g.kw, g.w + g.pw);
    const double padded = static_cast<double>(h1 - h0) * static_cast<double>(w1 - w0);  // may pass 2^63
    h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
    h1 = std::min(h1, g.h), w1 = std::min(w1, g.w);
    return {h0, h1, w0, w1, static_cast<float>(count_include_pad ? padded : static_cast<double>((h1 - h0) * (w1 - w0)))};
  }
};

// adaptive pooling: rows [floor(i*H/OH), ceil((i+1)*H/OH)), likewise columns.
struct AdaptiveWindows {
  const Geometry& g;
  Window operator()(int64_t i, int64_t j) const {
    const int64_t h0 = i * g.h / g.oh, h1 = ((i + 1) * g.h + g.oh - 1) / g.oh;
    const int64_t w0 = j * g.w / g.ow, w1 = ((j + 1) * g.w + g.ow - 1) / g.ow;
    return {h0, h1, w0, w1, static_cast<float>((h1 - h0) * (w1 - w0))};
  }
};

template <class Windows>
void mean_fwd(const Geometry& g, const Windows& windows, const float* x, float* y, int nthreads) {
  for_planes(g, nthreads, [&](int64_t pl) {
    const float* xp = x + pl * g.h * g.w;
    float* yp = y + pl * g.oh * g.ow;
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t j = 0; j < g.ow; ++j) {
        const Window win = windows(i, j);
        float sum = 0.0f;
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) sum += xp[h * g.w + w];
        yp[i * g.ow + j] = sum / win.divisor;
      }
  });
}

template <class Windows>
void mean_bwd(const Geometry& g, const Windows& windows, const float* dy, float* dx, int nthreads) {
  for_planes(g, nthreads, [&](int64_t pl) {
    float* dxp = dx + pl * g.h * g.w;
    std::memset(dxp, 0, sizeof(float) * g.h * g.w);
    const float* dyp = dy + pl * g.oh * g.ow;
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t j = 0; j < g.ow; ++j) {
        const Window win = windows(i, j);
        const float share = dyp[i * g.ow + j] / win.divisor;
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) dxp[h * g.w + w] += share;
      }
  });
}

}  // namespace

void avg_pool2d_fwd(const Geometry& g, bool count_include_pad, const float* x, float* y, int nthreads) {
  mean_fwd(g, AvgWindows{g, count_include_pad}, x, y, nthreads);
}

void avg_pool2d_bwd(const Geometry& g, bool count_include_pad, const float* dy, float* dx, int nthreads) {
  mean_bwd(g, AvgWindows{g, count_include_pad}, dy, dx, nthreads);
}

void adaptive_avg_pool2d_fwd(const Geometry& g, const float* x, float* y, int nthreads) {
  mean_fwd(g, AdaptiveWindows{g}, x, y, nthreads);
}

void adaptive_avg_pool2d_bwd(const Geometry& g, const float* dy, float* dx, int nthreads) {
  mean_bwd(g, AdaptiveWindows{g}, dy, dx, nthreads);
}

}  // namespace ember::pool2d
