// Sliding-window geometry shared by convolution and pooling, and by every front end that
// checks it (ember._C, ember._cuda, the C API).
//
// Every step (stride, padding, dilation) and every extent (a dilated window, the span of the
// output positions, the padded input) must be below 2^62, so that the kernels' unchecked index
// arithmetic cannot overflow: a tap's position i * stride - pad + p * dilation and any sum of
// two extents fit in an int64. Larger values are refused with std::invalid_argument naming them.
#pragma once

#include <cstdint>

namespace ember::window {

constexpr int64_t kMaxExtent = int64_t(1) << 62;

// One axis: kernel k with dilation d, stride s, leading padding p, input size n and output
// size o; checks every extent the kernels compute.
void check_axis(int64_t n, int64_t o, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis);

// The number of outputs along one axis of a window sliding over `size` inputs with padding
// `pad_a` before and `pad_b` after (PyTorch's convolution rule, floor): the parameters must be
// in range (k, stride, dil >= 1; pads >= 0; all below 2^62), and the padded input must hold one
// dilated window, else std::invalid_argument naming `axis`.
int64_t conv_output_size(int64_t size, int64_t k, int64_t pad_a, int64_t pad_b, int64_t stride, int64_t dil,
                         const char* axis);

}  // namespace ember::window
