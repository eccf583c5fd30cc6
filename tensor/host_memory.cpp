// The large-block cache behind CPU tensor storage (see host_memory.h).
#include "tensor/host_memory.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>

#if defined(__SANITIZE_ADDRESS__)
#define IVL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IVL_ASAN 1
#endif
#endif

namespace ivl::host_memory {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHugePage = size_t{2} << 20;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// A mapping of `bytes` (whole pages); 2 MiB aligned and advised for huge pages when it spans one.
// nullptr when the kernel refuses.
void* map_pages(size_t bytes) {
  if (bytes < kHugePage) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  // Over-map by one huge page, then cut the unaligned head and the tail off.
  const size_t span = bytes + kHugePage;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = round_up(start, kHugePage);
  if (aligned > start) ::munmap(raw, aligned - start);
  const uintptr_t end = aligned + bytes;
  if (start + span > end) ::munmap(reinterpret_cast<void*>(end), start + span - end);
  void* p = reinterpret_cast<void*>(aligned);
  ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: without THP the mapping works the same
  return p;
}

bool cache_enabled() {
#ifdef IVL_ASAN
  return false;
#else
  const char* value = std::getenv("IVL_HOST_CACHE");
  return !(value && std::strcmp(value, "0") == 0);
#endif
}

class Cache {
 public:
  void* allocate(size_t nbytes) {
    const size_t want = round_up(nbytes, kPage);
    std::lock_guard<std::mutex> lock(mutex_);
    auto fit = free_.lower_bound(want);
    if (fit != free_.end() && fit->first <= want + want / 8) {
      const size_t bytes = fit->first;
      void* p = fit->second;
      free_.erase(fit);
      stats_.cached_bytes -= bytes;
      live_.emplace(p, bytes);
      ++stats_.hits;
      return p;
    }
    // Make room first: one cached block at least as large when there is one, else the largest ones
    // until `want` bytes are unmapped or the cache is empty.
    if (fit != free_.end()) {
      unmap_cached(fit);
    } else {
      size_t freed = 0;
      while (freed < want && !free_.empty()) {
        auto largest = std::prev(free_.end());
        freed += largest->first;
        unmap_cached(largest);
      }
    }
    void* p = map_pages(want);
    if (!p) {
      unmap_all();
      p = map_pages(want);
      if (!p) throw std::bad_alloc();
    }
    live_.emplace(p, want);
    stats_.mapped_bytes += want;
    if (stats_.mapped_bytes > stats_.peak_mapped_bytes) stats_.peak_mapped_bytes = stats_.mapped_bytes;
    ++stats_.misses;
    return p;
  }

  void release(void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) std::abort();  // not from allocate: memory corruption, nothing sane to do
    const size_t bytes = it->second;
    live_.erase(it);
    if (!enabled_) {
      ::munmap(p, bytes);
      stats_.mapped_bytes -= bytes;
      return;
    }
    free_.emplace(bytes, p);
    stats_.cached_bytes += bytes;
  }

  void trim() {
    std::lock_guard<std::mutex> lock(mutex_);
    unmap_all();
  }

  Stats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  bool enabled() const { return enabled_; }

 private:
  void unmap_cached(std::multimap<size_t, void*>::iterator it) {
    ::munmap(it->second, it->first);
    stats_.cached_bytes -= it->first;
    stats_.mapped_bytes -= it->first;
    free_.erase(it);
  }
  void unmap_all() {
    while (!free_.empty()) unmap_cached(free_.begin());
  }

  std::mutex mutex_;
  const bool enabled_ = cache_enabled();
  std::multimap<size_t, void*> free_;       // mapped size -> block, cached
  std::unordered_map<void*, size_t> live_;  // block -> mapped size, in use
  Stats stats_;
};

// Never destroyed: storage freed by static destructors after main still finds it.
Cache& cache() {
  static Cache* instance = new Cache();
  return *instance;
}

}  // namespace

void* allocate(size_t nbytes) {
  if (nbytes >= kLargeBytes) return cache().allocate(nbytes);
  void* p = std::aligned_alloc(64, round_up(nbytes == 0 ? 1 : nbytes, 64));
  if (!p) throw std::bad_alloc();
  return p;
}

void release(void* p, size_t nbytes) {
  if (!p) return;
  if (nbytes >= kLargeBytes) return cache().release(p);
  std::free(p);
}

void* map_zeroed(size_t nbytes) {
  void* p = map_pages(round_up(nbytes == 0 ? 1 : nbytes, kPage));
  if (!p) {
    cache().trim();
    p = map_pages(round_up(nbytes == 0 ? 1 : nbytes, kPage));
    if (!p) throw std::bad_alloc();
  }
  return p;
}

void unmap_zeroed(void* p, size_t nbytes) {
  if (p) ::munmap(p, round_up(nbytes == 0 ? 1 : nbytes, kPage));
}

void trim() { cache().trim(); }
bool caching() { return cache().enabled(); }
Stats stats() { return cache().stats(); }

}  // namespace ivl::host_memory
