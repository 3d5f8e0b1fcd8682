// Element types the kernels understand. Kernels receive the dtype as data
// (never as a C++ template parameter visible outside csrc/ops), so the Python
// layer and the registry stay dtype-agnostic as bf16 and int8 paths arrive.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ember {

enum class DType : uint8_t { f32, f64, bf16, f16, i8, u8, i32, i64, boolean };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::bf16: case DType::f16: return 2;
    case DType::i8: case DType::u8: case DType::boolean: return 1;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
    case DType::i8: return "int8";
    case DType::u8: return "uint8";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::boolean: return "bool";
  }
  return "?";
}

enum class Device : uint8_t { cpu, cuda };

}  // namespace ember
