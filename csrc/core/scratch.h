// Per-thread working memory for kernels: packing buffers and column blocks.
//
// A Scratch is a 64-byte aligned, grow-only buffer meant to be thread_local:
// a kernel's first call on a thread allocates, later calls reuse, so a warm
// kernel allocates nothing. Contents do not survive between uses.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace ember {

class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(ptr_); }

  // At least n floats; throws std::bad_alloc when they cannot be had.
  float* get(size_t n) {
    if (n > cap_) {
      std::free(ptr_);
      const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      ptr_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (ptr_ == nullptr) {
        cap_ = 0;
        throw std::bad_alloc();
      }
      cap_ = n;
    }
    return ptr_;
  }

 private:
  float* ptr_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace ember
