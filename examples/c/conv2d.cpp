// A convolution from C++ with the RAII wrappers of ember.hpp: failures are exceptions.
//
//     conv2d OUT      a 2 x 3 x 32 x 32 input, 16 3x3 filters, padding 1, bias, ReLU; OUT: the
//                     output as raw float32 (inputs from the generator gemm.c uses, seeds 3 to 5)
#include <cstdio>
#include <vector>

#include "ember/ember.hpp"

static std::vector<float> filled(size_t count, unsigned seed) {
  std::vector<float> x(count);
  unsigned state = seed;
  for (float& v : x) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(state >> 8) / 16777216.0f - 0.5f;
  }
  return x;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT\n", argv[0]);
    return 2;
  }
  try {
    ember_conv2d_shape shape{2, 3, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    int64_t oh = 0, ow = 0;
    ember::check(ember_conv2d_output_size(&shape, &oh, &ow));
    const std::vector<float> x = filled(2 * 3 * 32 * 32, 3), w = filled(16 * 3 * 3 * 3, 4), bias = filled(16, 5);
    std::vector<float> y(static_cast<size_t>(2 * 16 * oh * ow));
    {
      ember::ThreadsScope one(1);
      ember::conv2d_forward(shape, x.data(), w.data(), bias.data(), true, y.data());
    }
    ember_conv2d_shape bad = shape;
    bad.groups = 2;  // does not divide 3 channels: reported, not a crash
    try {
      ember::conv2d_forward(bad, x.data(), w.data(), nullptr, false, y.data());
      return 1;
    } catch (const ember::Error& e) {
      std::printf("rejected as expected: %s\n", e.what());
    }
    std::FILE* out = std::fopen(argv[1], "wb");
    if (!out || std::fwrite(y.data(), sizeof(float), y.size(), out) != y.size() || std::fclose(out) != 0) {
      std::fprintf(stderr, "cannot write %s\n", argv[1]);
      return 1;
    }
    std::printf("conv2d %ldx%ld output written\n", static_cast<long>(oh), static_cast<long>(ow));
  } catch (const ember::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
