// conv2d_ref: the oracle for every conv2d path.
//
// Direct loops over the definition in conv2d.h with one double accumulator per
// output element, for float32 and float64 data (float64 is what gradient checks use); no im2col, no threads, no intrinsics. Backward-data is written
// as the gather dual of the forward (for each input element, the outputs that
// read it), not as a transposed convolution, so it checks the fast paths'
// algebra rather than repeating it.
#include "ops/conv2d/conv2d.h"

namespace ember::conv2d {

namespace {
inline int64_t x_index(const Geometry& g, int64_t n, int64_t c, int64_t h, int64_t w) {
  return ((n * g.c + c) * g.h + h) * g.w + w;
}
inline int64_t y_index(const Geometry& g, int64_t n, int64_t o, int64_t i, int64_t j) {
  return ((n * g.o + o) * g.oh + i) * g.ow + j;
}
inline int64_t w_index(const Geometry& g, int64_t o, int64_t cg, int64_t p, int64_t q) {
  return ((o * (g.c / g.groups) + cg) * g.kh + p) * g.kw + q;
}
}  // namespace

template <class T>
void conv2d_fwd_ref(const Geometry& g, const T* x, const T* w, const T* bias, bool relu, T* y) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups;
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o) {
      const int64_t c0 = (o / opg) * cpg;
      for (int64_t i = 0; i < g.oh; ++i)
        for (int64_t j = 0; j < g.ow; ++j) {
          double acc = bias ? static_cast<double>(bias[o]) : 0.0;
          for (int64_t cg = 0; cg < cpg; ++cg)
            for (int64_t p = 0; p < g.kh; ++p) {
              const int64_t h = i * g.sh - g.pt + p * g.dh;
              if (h < 0 || h >= g.h) continue;
              for (int64_t q = 0; q < g.kw; ++q) {
                const int64_t ww = j * g.sw - g.pl + q * g.dw;
                if (ww < 0 || ww >= g.w) continue;
                acc += static_cast<double>(w[w_index(g, o, cg, p, q)]) *
                       static_cast<double>(x[x_index(g, n, c0 + cg, h, ww)]);
              }
            }
          // max(0, NaN) is NaN: ReLU propagates NaN, as PyTorch's does.
          if (relu && acc < 0.0) acc = 0.0;
          y[y_index(g, n, o, i, j)] = static_cast<T>(acc);
        }
    }
}

template <class T>
void conv2d_bwd_data_ref(const Geometry& g, const T* dy, const T* w, T* dx) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups;
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t c = 0; c < g.c; ++c) {
      const int64_t grp = c / cpg, cg = c - grp * cpg;
      for (int64_t h = 0; h < g.h; ++h)
        for (int64_t ww = 0; ww < g.w; ++ww) {
          double acc = 0.0;
          for (int64_t p = 0; p < g.kh; ++p) {
            // Output row i reads input row h through kernel row p when i*sh = h + pt - p*dh.
            const int64_t hi = h + g.pt - p * g.dh;
            if (hi < 0 || hi % g.sh != 0 || hi / g.sh >= g.oh) continue;
            for (int64_t q = 0; q < g.kw; ++q) {
              const int64_t wj = ww + g.pl - q * g.dw;
              if (wj < 0 || wj % g.sw != 0 || wj / g.sw >= g.ow) continue;
              for (int64_t og = 0; og < opg; ++og) {
                const int64_t o = grp * opg + og;
                acc += static_cast<double>(w[w_index(g, o, cg, p, q)]) *
                       static_cast<double>(dy[y_index(g, n, o, hi / g.sh, wj / g.sw)]);
              }
            }
          }
          dx[x_index(g, n, c, h, ww)] = static_cast<T>(acc);
        }
    }
}

template <class T>
void conv2d_bwd_weight_ref(const Geometry& g, const T* x, const T* dy, T* dw, T* db) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups;
  for (int64_t o = 0; o < g.o; ++o) {
    const int64_t c0 = (o / opg) * cpg;
    for (int64_t cg = 0; cg < cpg; ++cg)
      for (int64_t p = 0; p < g.kh; ++p)
        for (int64_t q = 0; q < g.kw; ++q) {
          double acc = 0.0;
          for (int64_t n = 0; n < g.n; ++n)
            for (int64_t i = 0; i < g.oh; ++i) {
              const int64_t h = i * g.sh - g.pt + p * g.dh;
              if (h < 0 || h >= g.h) continue;
              for (int64_t j = 0; j < g.ow; ++j) {
                const int64_t ww = j * g.sw - g.pl + q * g.dw;
                if (ww < 0 || ww >= g.w) continue;
                acc += static_cast<double>(dy[y_index(g, n, o, i, j)]) *
                       static_cast<double>(x[x_index(g, n, c0 + cg, h, ww)]);
              }
            }
          dw[w_index(g, o, cg, p, q)] = static_cast<T>(acc);
        }
    if (db) {
      double acc = 0.0;
      for (int64_t n = 0; n < g.n; ++n)
        for (int64_t i = 0; i < g.oh; ++i)
          for (int64_t j = 0; j < g.ow; ++j) acc += static_cast<double>(dy[y_index(g, n, o, i, j)]);
      db[o] = static_cast<T>(acc);
    }
  }
}

#define EMBER_CONV2D_REF(T)                                                                   \
  template void conv2d_fwd_ref<T>(const Geometry&, const T*, const T*, const T*, bool, T*); \
  template void conv2d_bwd_data_ref<T>(const Geometry&, const T*, const T*, T*);            \
  template void conv2d_bwd_weight_ref<T>(const Geometry&, const T*, const T*, T*, T*);
EMBER_CONV2D_REF(float)
EMBER_CONV2D_REF(double)
#undef EMBER_CONV2D_REF

}  // namespace ember::conv2d
