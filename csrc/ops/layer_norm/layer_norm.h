// Layer normalisation over the last n values of each of `rows` rows, forward and backward in
// one pass over each row (the row stays in L1 between its sums and its writes):
//
//   mean = sum(x) / n, var = sum((x - mean)^2) / n (sums in double, then rounded to T),
//   rstd = 1 / sqrt(var + eps), y = (x - mean) * rstd * weight + bias
//
// weight and bias may each be null (no scale, no shift). The forward writes mean and rstd per
// row for the backward, which with xhat = (x - mean) * rstd and g = dy * weight gives
//
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
//   dweight = sum over rows of dy * xhat, dbias = sum over rows of dy (either may be null).
//
// With center = false it is RMS normalisation (RMSNorm): no mean is taken (mean may be null; it
// is neither written nor read), var = sum(x^2) / n, and the backward drops its mean(g) term.
//
// Rows are split across threads; the weight and bias gradients are summed per thread in double
// and added up at the end, in thread order, so the result does not depend on timing.
#pragma once

#include <cstdint>

namespace ember::layer_norm {

template <class T>
void layer_norm_fwd(const T* x, const T* weight, const T* bias, int64_t rows, int64_t n, double eps, T* y, T* mean,
                    T* rstd, int nthreads, bool center = true);

template <class T>
void layer_norm_bwd(const T* dy, const T* x, const T* weight, const T* mean, const T* rstd, int64_t rows, int64_t n,
                    T* dx, T* dweight, T* dbias, int nthreads, bool center = true);

}  // namespace ember::layer_norm
