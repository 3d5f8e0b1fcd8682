// Sliding-window geometry (see window.h).
#include "core/window.h"

#include "core/check.h"

namespace ember::window {
namespace {

void check_step(int64_t v, const char* name) {
  EMBER_CHECK_VALUE(v < kMaxExtent, name, " is ", v, ", too large: geometry values must be below 2**62");
}

// (count - 1) * step + 1, the extent of `count` positions `step` apart, checked.
int64_t checked_extent(int64_t count, int64_t step, const char* what) {
  int64_t span;
  EMBER_CHECK_VALUE(count >= 1 && !__builtin_mul_overflow(count - 1, step, &span) && span < kMaxExtent - 1, what,
                    " spans (", count, " - 1) x ", step, " + 1 positions, too large: geometry extents must be "
                    "below 2**62");
  return span + 1;
}

}  // namespace

void check_axis(int64_t n, int64_t o, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis) {
  check_step(s, "stride");
  check_step(p, "padding");
  check_step(d, "dilation");
  const int64_t window = checked_extent(k, d, "the dilated kernel");
  const int64_t outputs = o >= 1 ? checked_extent(o, s, "the output positions (stride)") : 0;
  EMBER_CHECK_VALUE(n + p < kMaxExtent && outputs + window < kMaxExtent, "the padded ", axis,
                    " extent is too large: input ", n, ", padding ", p, ", output ", o, " x stride ", s, ", kernel ",
                    k, " x dilation ", d, " (geometry extents must be below 2**62)");
}

int64_t conv_output_size(int64_t size, int64_t k, int64_t pad_a, int64_t pad_b, int64_t stride, int64_t dil,
                         const char* axis) {
  EMBER_CHECK_VALUE(size >= 0, "the input ", axis, " must be >= 0, got ", size);
  EMBER_CHECK_VALUE(k >= 1 && stride >= 1 && dil >= 1, "the kernel ", axis, " (", k, "), its stride (", stride,
                    ") and dilation (", dil, ") must be >= 1");
  EMBER_CHECK_VALUE(pad_a >= 0 && pad_b >= 0, "the padding along the ", axis, " must be >= 0, got (", pad_a, ", ",
                    pad_b, ")");
  for (int64_t v : {size, pad_a, pad_b, stride, dil})
    EMBER_CHECK_VALUE(v < kMaxExtent, "a ", axis, " geometry value is ", v, ", too large: they must be below 2**62");
  const int64_t window = checked_extent(k, dil, "the dilated kernel");
  const int64_t padded = size + pad_a + pad_b;  // three values below 2^62: no overflow
  EMBER_CHECK_VALUE(padded < kMaxExtent, "the padded ", axis, " (", padded, ") is too large: it must be below 2**62");
  EMBER_CHECK_VALUE(padded >= window, "the padded input ", axis, " (", padded, ") is smaller than the dilated kernel (",
                    window, ")");
  const int64_t out = (padded - window) / stride + 1;
  check_axis(size, out, k, stride, pad_a, dil, axis);
  return out;
}

}  // namespace ember::window
