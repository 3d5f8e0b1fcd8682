// Pooling geometry checks shared by ember._C, ember._cuda and the C API (see pool2d.h).
#include <algorithm>
#include <stdexcept>
#include <tuple>

#include "core/check.h"
#include "ops/pool2d/pool2d.h"

namespace ember::pool2d {

// 128-bit arithmetic: the extents are below 2^62, their sums are not.
int64_t output_size(int64_t size, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil_mode) {
  using wide = __int128;
  const wide num = wide(size) + 2 * wide(pad) - wide(dil) * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  wide out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= wide(size) + pad) --out;
  return out > INT64_MAX ? INT64_MAX : static_cast<int64_t>(out);
}

void check_output(const Geometry& g) {
  for (bool ceil_mode : {false, true})
    if (g.oh == output_size(g.h, g.kh, g.ph, g.sh, g.dh, ceil_mode) &&
        g.ow == output_size(g.w, g.kw, g.pw, g.sw, g.dw, ceil_mode))
      return;
  throw std::invalid_argument(detail::concat("output plane ", g.oh, "x", g.ow, " does not match input plane ", g.h,
                                             "x", g.w, " pooled by ", g.kh, "x", g.kw, " windows (stride ", g.sh, "x",
                                             g.sw, ", padding ", g.ph, "x", g.pw, ", dilation ", g.dh, "x", g.dw, ")"));
}

void check_windows_reach_input(const Geometry& g) {
  if (g.planes == 0 || g.oh == 0 || g.ow == 0) return;
  // A window that starts inside the input covers its first element, so only those starting in the
  // padding before it (the first p / s + 1) or past its end (a suffix, in ceil mode) need a look:
  // the check costs nothing like the output's size.
  auto axis = [](int64_t outputs, int64_t size, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis) {
    auto check = [&](int64_t o) {
      int64_t t0, t1;
      valid_taps(o * s - p, d, k, size, &t0, &t1);
      EMBER_CHECK_VALUE(t1 > t0, "the pooling window of output ", axis, " ", o, " covers no input element (input ",
                        axis, " ", size, ", kernel_size ", k, ", stride ", s, ", padding ", p, ", dilation ", d,
                        "): lower the padding or the dilation");
    };
    for (int64_t o = 0; o < std::min(outputs, p / s + 1); ++o) check(o);
    const __int128 past = (__int128(size) + p + s - 1) / s;  // the first window that starts past the end
    if (past < outputs) check(static_cast<int64_t>(past));
  };
  axis(g.oh, g.h, g.kh, g.sh, g.ph, g.dh, "row");
  axis(g.ow, g.w, g.kw, g.sw, g.pw, g.dw, "column");
}

void check_adaptive(const Geometry& g) {
  using wide = __int128;
  for (auto [size, out, axis] : {std::tuple{g.h, g.oh, "height"}, std::tuple{g.w, g.ow, "width"}})
    EMBER_CHECK_VALUE(wide(size) * out + out <= INT64_MAX, "adaptive pooling of ", axis, " ", size, " to ", out,
                      " is beyond 64-bit window arithmetic (", axis, " x output ", axis, " must stay below 2**63)");
}

// One branch-free pass (it reads as many bytes as the kernel), then the first bad index is
// looked for only when there is one.
void check_indices(const int64_t* idx, int64_t n, int64_t plane_size) {
  uint64_t worst = 0;  // as unsigned, a negative index is larger than any valid one
  for (int64_t e = 0; e < n; ++e) worst = std::max(worst, static_cast<uint64_t>(idx[e]));
  if (n == 0 || worst < static_cast<uint64_t>(plane_size)) return;
  for (int64_t e = 0; e < n; ++e)
    EMBER_CHECK_VALUE(idx[e] >= 0 && idx[e] < plane_size, "indices[", e, "] = ", idx[e],
                      " is outside the input plane (0 <= index < ", plane_size, ")");
}

}  // namespace ember::pool2d
