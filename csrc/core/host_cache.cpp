#include "core/host_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

namespace ember::host_cache {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHuge = size_t{2} << 20;
constexpr size_t kDefaultLimit = size_t{1} << 30;

size_t size_class(size_t bytes) {
  size_t top = kPage;
  while (top * 2 <= bytes) top *= 2;
  const size_t step = top / 4 > kPage ? top / 4 : kPage;
  return (bytes + step - 1) / step * step;
}

struct Cache {
  std::mutex mutex;
  std::map<size_t, std::vector<void*>> idle;  // size class -> blocks
  size_t cached_bytes = 0;
  size_t cached_blocks = 0;
  size_t limit = kDefaultLimit;
  size_t hits = 0;
  size_t misses = 0;
};

Cache& cache() {
  static Cache* c = [] {
    auto* created = new Cache();  // never destroyed: blocks may be released during interpreter exit
    pthread_atfork([] { cache().mutex.lock(); }, [] { cache().mutex.unlock(); },
                   [] { cache().mutex.unlock(); });
    return created;
  }();
  return *c;
}

void* system_allocate(size_t bytes) {
  const size_t align = bytes >= kHuge ? kHuge : 64;
  void* p = nullptr;  // posix_memalign, unlike aligned_alloc, takes sizes that are no multiple of the alignment
  if (posix_memalign(&p, align, bytes) != 0 || p == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (align == kHuge) madvise(p, bytes, MADV_HUGEPAGE);  // a hint: failure changes nothing
#endif
  return p;
}

// Frees idle blocks, largest first, until at most `keep` bytes stay. Caller holds the mutex.
void trim_locked(Cache& c, size_t keep) {
  while (c.cached_bytes > keep) {
    auto it = std::prev(c.idle.end());
    std::free(it->second.back());
    it->second.pop_back();
    c.cached_bytes -= it->first;
    --c.cached_blocks;
    if (it->second.empty()) c.idle.erase(it);
  }
}

}  // namespace

Block allocate(size_t bytes) {
  const size_t rounded = size_class(bytes == 0 ? 1 : bytes);
  if (rounded < bytes) throw std::bad_alloc();  // overflowed
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.idle.find(rounded);
    if (it != c.idle.end()) {
      void* p = it->second.back();
      it->second.pop_back();
      if (it->second.empty()) c.idle.erase(it);
      c.cached_bytes -= rounded;
      --c.cached_blocks;
      ++c.hits;
      return {p, rounded};
    }
    ++c.misses;
  }
  return {system_allocate(rounded), rounded};
}

void release(Block block) noexcept {
  if (block.ptr == nullptr) return;
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (block.bytes <= c.limit) {
      try {
        c.idle[block.bytes].push_back(block.ptr);
        c.cached_bytes += block.bytes;
        ++c.cached_blocks;
        trim_locked(c, c.limit);
        return;
      } catch (const std::bad_alloc&) {
        // no room for the bookkeeping: free the block instead
      }
    }
  }
  std::free(block.ptr);
}

Stats stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return {c.cached_bytes, c.cached_blocks, c.limit, c.hits, c.misses};
}

void clear() noexcept {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  trim_locked(c, 0);
}

void set_limit(size_t bytes) noexcept {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.limit = bytes;
  trim_locked(c, bytes);
}

}  // namespace ember::host_cache
