// The engine's CPU threads for the work OpenBLAS does not do: elementwise kernels, the softmax rows
// of attention, the optimizer, zeroing.
//
// parallel_for(n, grain, body) cuts [0, n) into at most one chunk per thread, each at least `grain`
// long, runs body(begin, end) on them (the calling thread takes one) and returns when all are done.
// A body must only write what its own range owns; then the result is the same for every thread
// count, bit for bit. Work below 2 grains runs inline, as does a parallel_for from inside a body.
// The first exception a body throws is rethrown in the caller once every chunk has finished.
//
// Threads: IVL_NUM_THREADS, else OPENBLAS_NUM_THREADS, else the hardware's; they sleep when idle,
// so they leave the cores to OpenBLAS between calls.
#pragma once

#include <cstdint>
#include <functional>

namespace ivl {

int parallel_threads();  // the threads parallel_for uses now (the caller's included)
// Uses n threads from now on (1: everything inline), starting more workers when needed; returns the
// previous count.
int set_parallel_threads(int n);
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

// Elements per chunk below which splitting a memory-bound loop costs more than it saves.
inline constexpr int64_t kElementwiseGrain = int64_t{1} << 15;

}  // namespace ivl
