// CPU memory for tensor storage: small blocks from malloc, large ones from a cache of anonymous
// mappings.
//
// A training step frees and allocates the same large activation buffers every time. From malloc each
// one would be a fresh mapping whose pages the kernel faults in (4 KiB at a time) and zeroes, and
// munmap would hand back again; on the 2-core VM that page traffic was 40% of a step's CPU time.
// Here a freed large block stays mapped in a cache and the next request of about its size takes it;
// large mappings are 2 MiB aligned and advised for transparent huge pages, so the first touch costs
// one fault per 2 MiB instead of 512.
//
// Bound on memory: a request the cache cannot serve first unmaps cached blocks of at least its size
// (when there are any), so the mapped total grows only while the cache is empty — it never exceeds the
// peak of live large blocks (each rounded up to whole pages, and a reused block at most 1/8 larger than
// its request).
//
// IVL_HOST_CACHE=0 in the environment turns the cache off (every large block is unmapped when freed);
// builds with AddressSanitizer have it off so that use-after-free stays visible.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ivl::host_memory {

// 64-byte aligned, contents unspecified; throws std::bad_alloc.
void* allocate(size_t nbytes);
// Gives back a block from allocate(nbytes) (the same nbytes).
void release(void* p, size_t nbytes);
// An anonymous mapping that reads as zeros and costs memory only where written (never from the cache);
// released with unmap_zeroed.
void* map_zeroed(size_t nbytes);
void unmap_zeroed(void* p, size_t nbytes);

// Unmaps every cached block.
void trim();
// Whether freed large blocks are cached (off under IVL_HOST_CACHE=0 and AddressSanitizer).
bool caching();

struct Stats {
  size_t mapped_bytes = 0;       // large blocks mapped now: live plus cached
  size_t cached_bytes = 0;       // of which in the cache
  size_t peak_mapped_bytes = 0;  // the most mapped at once
  uint64_t hits = 0;             // large requests served from the cache
  uint64_t misses = 0;           // large requests that mapped new memory
};
Stats stats();

// Blocks at least this large are mapped (and cached); smaller ones come from malloc.
inline constexpr size_t kLargeBytes = size_t{1} << 20;

}  // namespace ivl::host_memory
