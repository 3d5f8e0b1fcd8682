// pool2d_ref: the oracle for every pooling path.
//
// Direct loops over the definitions in pool2d.h, window by window, with double
// sums for the averages; no threads, no vectorisation, nothing precomputed.
#include "ops/pool2d/pool2d.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace ember::pool2d {

namespace {

// The window of output (i, j) for avg pooling, clipped as PyTorch clips it.
struct AvgWindow {
  int64_t h0, h1, w0, w1;  // valid rows [h0, h1) and columns [w0, w1)
  double divisor;
};

AvgWindow avg_window(const Geometry& g, bool count_include_pad, int64_t i, int64_t j) {
  int64_t h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
  int64_t h1 = std::min(h0 + g.kh, g.h + g.ph), w1 = std::min(w0 + g.kw, g.w + g.pw);
  const double padded = static_cast<double>(h1 - h0) * static_cast<double>(w1 - w0);  // may pass 2^63
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, g.h);
  w1 = std::min(w1, g.w);
  const double valid = static_cast<double>(h1 - h0) * static_cast<double>(w1 - w0);
  return {h0, h1, w0, w1, count_include_pad ? padded : valid};
}

int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return i * in / out; }
int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

}  // namespace

template <class T>
void max_pool2d_fwd_ref(const Geometry& g, const T* x, T* y, int64_t* idx) {
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const T* xp = x + pl * g.h * g.w;
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t j = 0; j < g.ow; ++j) {
        const int64_t h0 = i * g.sh - g.ph, w0 = j * g.sw - g.pw;
        int64_t p0, p1, q0, q1;  // the taps inside the plane (the loops below still test each)
        valid_taps(h0, g.dh, g.kh, g.h, &p0, &p1);
        valid_taps(w0, g.dw, g.kw, g.w, &q0, &q1);
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_idx = (h0 + p0 * g.dh) * g.w + w0 + q0 * g.dw;
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t h = h0 + p * g.dh;
          if (h < 0 || h >= g.h) continue;
          for (int64_t q = q0; q < q1; ++q) {
            const int64_t w = w0 + q * g.dw;
            if (w < 0 || w >= g.w) continue;
            const T v = xp[h * g.w + w];
            if (v > best || std::isnan(v)) {
              best = v;
              best_idx = h * g.w + w;
            }
          }
        }
        const int64_t o = (pl * g.oh + i) * g.ow + j;
        y[o] = best;
        if (idx) idx[o] = best_idx;
      }
  }
}

template <class T>
void max_pool2d_bwd_ref(const Geometry& g, const T* dy, const int64_t* idx, T* dx) {
  std::vector<double> plane(static_cast<size_t>(g.h * g.w));
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    std::fill(plane.begin(), plane.end(), 0.0);
    for (int64_t e = 0; e < g.oh * g.ow; ++e) {
      const int64_t o = pl * g.oh * g.ow + e;
      plane[static_cast<size_t>(idx[o])] += static_cast<double>(dy[o]);
    }
    for (int64_t e = 0; e < g.h * g.w; ++e) dx[pl * g.h * g.w + e] = static_cast<T>(plane[e]);
  }
}

template <class T>
void avg_pool2d_fwd_ref(const Geometry& g, bool count_include_pad, const T* x, T* y) {
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const T* xp = x + pl * g.h * g.w;
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t j = 0; j < g.ow; ++j) {
        const AvgWindow win = avg_window(g, count_include_pad, i, j);
        double sum = 0.0;
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) sum += static_cast<double>(xp[h * g.w + w]);
        y[(pl * g.oh + i) * g.ow + j] = static_cast<T>(sum / win.divisor);
      }
  }
}

template <class T>
void avg_pool2d_bwd_ref(const Geometry& g, bool count_include_pad, const T* dy, T* dx) {
  std::vector<double> plane(static_cast<size_t>(g.h * g.w));
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    std::fill(plane.begin(), plane.end(), 0.0);
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t j = 0; j < g.ow; ++j) {
        const AvgWindow win = avg_window(g, count_include_pad, i, j);
        const double share = static_cast<double>(dy[(pl * g.oh + i) * g.ow + j]) / win.divisor;
        for (int64_t h = win.h0; h < win.h1; ++h)
          for (int64_t w = win.w0; w < win.w1; ++w) plane[h * g.w + w] += share;
      }
    for (int64_t e = 0; e < g.h * g.w; ++e) dx[pl * g.h * g.w + e] = static_cast<T>(plane[e]);
  }
}

template <class T>
void adaptive_avg_pool2d_fwd_ref(const Geometry& g, const T* x, T* y) {
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const T* xp = x + pl * g.h * g.w;
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t j = 0; j < g.ow; ++j) {
        const int64_t h0 = adaptive_start(i, g.h, g.oh), h1 = adaptive_end(i, g.h, g.oh);
        const int64_t w0 = adaptive_start(j, g.w, g.ow), w1 = adaptive_end(j, g.w, g.ow);
        double sum = 0.0;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) sum += static_cast<double>(xp[h * g.w + w]);
        y[(pl * g.oh + i) * g.ow + j] = static_cast<T>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
  }
}

template <class T>
void adaptive_avg_pool2d_bwd_ref(const Geometry& g, const T* dy, T* dx) {
  std::vector<double> plane(static_cast<size_t>(g.h * g.w));
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    std::fill(plane.begin(), plane.end(), 0.0);
    for (int64_t i = 0; i < g.oh; ++i)
      for (int64_t j = 0; j < g.ow; ++j) {
        const int64_t h0 = adaptive_start(i, g.h, g.oh), h1 = adaptive_end(i, g.h, g.oh);
        const int64_t w0 = adaptive_start(j, g.w, g.ow), w1 = adaptive_end(j, g.w, g.ow);
        const double share =
            static_cast<double>(dy[(pl * g.oh + i) * g.ow + j]) / static_cast<double>((h1 - h0) * (w1 - w0));
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) plane[h * g.w + w] += share;
      }
    for (int64_t e = 0; e < g.h * g.w; ++e) dx[pl * g.h * g.w + e] = static_cast<T>(plane[e]);
  }
}

#define EMBER_POOL2D_REF(T)                                                                        \
  template void max_pool2d_fwd_ref<T>(const Geometry&, const T*, T*, int64_t*);                  \
  template void max_pool2d_bwd_ref<T>(const Geometry&, const T*, const int64_t*, T*);            \
  template void avg_pool2d_fwd_ref<T>(const Geometry&, bool, const T*, T*);                      \
  template void avg_pool2d_bwd_ref<T>(const Geometry&, bool, const T*, T*);                      \
  template void adaptive_avg_pool2d_fwd_ref<T>(const Geometry&, const T*, T*);                   \
  template void adaptive_avg_pool2d_bwd_ref<T>(const Geometry&, const T*, T*);
EMBER_POOL2D_REF(float)
EMBER_POOL2D_REF(double)
#undef EMBER_POOL2D_REF

}  // namespace ember::pool2d
