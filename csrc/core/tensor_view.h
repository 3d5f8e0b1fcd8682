// Non-owning views that kernels receive. Memory always belongs to the caller
// (NumPy on the CPU, CuPy on the GPU); a kernel never allocates a tensor and
// never keeps a pointer after it returns.
#pragma once

#include <cstdint>

namespace ember {

// A strided 2-D float32 matrix: element (i, j) is at data[i * rs + j * cs].
// Strides are in elements and may be zero or negative for inputs.
struct MatrixF32 {
  const float* data;
  int64_t rows, cols;
  int64_t rs, cs;
  float at(int64_t i, int64_t j) const { return data[i * rs + j * cs]; }
};

// A writable matrix with unit column stride (rows may be padded: ld >= cols).
struct MutMatrixF32 {
  float* data;
  int64_t rows, cols;
  int64_t ld;
};

}  // namespace ember
