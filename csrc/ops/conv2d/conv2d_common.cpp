// The helpers the conv2d algorithms share (conv2d_internal.h): padding,
// sums, and the image-by-image summation of the weight gradient.
#include <algorithm>
#include <cstring>
#include <memory>

#include "ops/conv2d/conv2d_internal.h"

namespace ember::conv2d {

thread_local Scratch t_plane;
thread_local Scratch t_col;
thread_local Scratch t_rows;

float sum_floats(const float* v, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += v[i + l];
  for (; i < n; ++i) lanes[i % 16] += v[i];
  float total = 0.0f;
  for (float l : lanes) total += l;
  return total;
}

void pad_plane(const float* src, int64_t ld, int64_t h, int64_t w, int64_t top, int64_t left, int64_t rows,
               int64_t cols, float* dst) {
  const int64_t l = std::min(left, cols), copy = std::clamp<int64_t>(cols - left, 0, w);
  for (int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * cols;
    const int64_t hh = r - top;
    if (hh < 0 || hh >= h) {
      std::fill(d, d + cols, 0.0f);
      continue;
    }
    std::fill(d, d + l, 0.0f);
    std::memcpy(d + l, src + hh * ld, sizeof(float) * copy);
    std::fill(d + l + copy, d + cols, 0.0f);
  }
}

// Images are split into `parts`, each summed into its own accumulators (the
// weight part, then the g.o bias sums) -- part 0 straight into dw and db when
// the layout is theirs -- which are added up at the end, in part order, so the
// result depends on the thread count but not on timing.
void sum_weight_grad(const Geometry& g, const float* dy, float* dw, float* db, const WeightGradSum& sum,
                     int nthreads) {
  const int64_t P = g.oh * g.ow;
  const int parts = g.n >= nthreads ? nthreads : 1;
  const int inner = parts == 1 ? nthreads : 1;
  const bool in_place = !sum.finish;
  const int64_t stride = sum.size + g.o;
  const int own = parts - (in_place ? 1 : 0);
  std::unique_ptr<float[]> partial(own > 0 ? new float[static_cast<size_t>(stride * own)] : nullptr);
  auto acc_of = [&](int64_t p) {
    return in_place ? (p == 0 ? dw : partial.get() + (p - 1) * stride) : partial.get() + p * stride;
  };
  for_tasks(parts, parts, [&](int64_t p, int) {
    float* acc = acc_of(p);
    float* accb = db == nullptr ? nullptr : (in_place && p == 0) ? db : acc + sum.size;
    const int64_t n0 = g.n * p / parts, n1 = g.n * (p + 1) / parts;
    for (int64_t n = n0; n < n1; ++n) {
      sum.image(n, acc, n == n0, inner);
      if (accb)  // accb[o] (+)= the sum of image n's dy plane o
        for (int64_t o = 0; o < g.o; ++o) {
          const float s = sum_floats(dy + (n * g.o + o) * P, P);
          accb[o] = n == n0 ? s : accb[o] + s;
        }
    }
  });
  if (own == 0) return;
  const int64_t total = db ? stride : sum.size;
  if (in_place) {
    for_tasks(nthreads, nthreads, [&](int64_t tid, int) {
      for (int64_t i = total * tid / nthreads; i < total * (tid + 1) / nthreads; ++i) {
        float& d = i < sum.size ? dw[i] : db[i - sum.size];
        float s = d;
        for (int q = 0; q < own; ++q) s += partial[q * stride + i];
        d = s;
      }
    });
    return;
  }
  float* m = partial.get();  // the parts summed into part 0
  if (own > 1)
    for_tasks(nthreads, nthreads, [&](int64_t tid, int) {
      for (int64_t i = total * tid / nthreads; i < total * (tid + 1) / nthreads; ++i)
        for (int q = 1; q < own; ++q) m[i] += m[q * stride + i];
    });
  sum.finish(m, dw);
  if (db) std::copy(m + sum.size, m + sum.size + g.o, db);
}

}  // namespace ember::conv2d
