// A cache of large host memory blocks for the arrays kernels write.
//
// Training allocates and frees the same large arrays every step (activations,
// their gradients, weight gradients). Fresh memory from the operating system
// costs a page fault and a zeroing pass per 4 KiB page, which for a
// memory-bound op (ReLU, pooling, an optimizer step) costs more than the op
// itself. Blocks freed here are kept, up to a limit, and handed out again to
// requests of the same size class, so their pages stay mapped.
//
// Sizes are rounded up to a class (4 classes per power of two, at least a page),
// so a block wastes at most a quarter of its size. Blocks of 2 MiB and more are
// 2 MiB aligned and offered to transparent huge pages. Thread-safe; a forked
// child keeps the parent's cached blocks (they are its copy-on-write memory).
#pragma once

#include <cstddef>

namespace ember::host_cache {

// Requests below this many bytes are left to the ordinary allocator.
constexpr size_t kMinBytes = size_t{1} << 18;

struct Block {
  void* ptr;
  size_t bytes;  // the rounded size: pass the block back unchanged
};

// A block of at least `bytes` bytes, 64-byte aligned, contents undefined.
// Throws std::bad_alloc.
Block allocate(size_t bytes);
// Returns a block to the cache, or to the system when the cache is full.
void release(Block block) noexcept;

struct Stats {
  size_t cached_bytes;   // idle, ready to be handed out
  size_t cached_blocks;
  size_t limit_bytes;    // cached_bytes never exceeds this
  size_t hits;           // allocations served from the cache
  size_t misses;         // allocations that went to the system
};
Stats stats();
// Frees every idle block.
void clear() noexcept;
// Sets the most idle bytes kept (0 disables caching); frees idle blocks beyond it.
void set_limit(size_t bytes) noexcept;

}  // namespace ember::host_cache
