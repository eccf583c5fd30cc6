// C = A . B^T for a few rows of A: the products of decoding (a linear layer on one token per
// sequence, the scores of a query against its cached keys). Shapes: a [m, k] (rows lda apart),
// b [n, k] (rows ldb apart; a weight [out, in] or the keys), c [m, n] (rows ldc apart), m small.
//
// BLAS gemm first copies B into packed panels, which for m = 8 costs as much as the product; this
// kernel reads B once, straight from memory, each element feeding all m rows while it is in cache.
//
// Every c[i, j] is computed the same way whatever m, n, the tile or the thread that computes it:
// eight lanes accumulate a[i, p] * b[j, p] with fused multiply-adds over p = 8q + lane, the lanes
// are summed in a fixed tree, the k % 8 tail is added with scalar fused multiply-adds.
//
// Tiles: one row of A against eight rows of B, two against four (one pass: B streams from memory); three
// rows or more, four at a time, against three rows of B (twelve accumulators, seven loads per
// twelve multiply-adds), the last pass over those rows prefetching the next three, so that memory
// does not idle while A's later rows reuse B from cache. On 2 Zen 4 cores: 74 GF/s at m = 8,
// where OpenBLAS sgemm reaches 13-17 (it packs B first).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "tensor/cpu_helpers.h"
#include "tensor/dtype.h"
#include "tensor/parallel.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ivl::detail {
namespace {

constexpr int64_t to_i64(size_t v) { return static_cast<int64_t>(v); }

// The fixed lane tree: ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)) (what two horizontal adds
// of the folded halves give, so the AVX2 path can reduce four accumulators at once).
inline float sum_lanes(const float* l) { return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7])); }

// B's elements: f32, or bf16 bits (uint16_t), widened exactly to f32 as they are read.
inline float widen(float v) { return v; }
inline float widen(uint16_t bf16) { return bf16_to_f32(bf16); }

template <class BT>
struct Operands {
  int64_t k;
  const float* a;
  int64_t lda;
  const BT* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  bool accumulate;
  bool portable;
};

template <class BT>
inline void finish(const Operands<BT>& o, int64_t i, int64_t j, int64_t p, float lanes_sum) {
  float r = lanes_sum;
  const float* ai = o.a + i * o.lda;
  const BT* bj = o.b + j * o.ldb;
  for (; p < o.k; ++p) r = std::fma(ai[p], widen(bj[p]), r);
  float& out = o.c[i * o.ldc + j];
  out = o.accumulate ? out + r : r;
}

// Rows i0..i0+MR of A against rows j0..j0+NR of B.
template <size_t MR, size_t NR, class BT>
void tile_portable(const Operands<BT>& o, int64_t i0, int64_t j0) {
  float acc[MR][NR][8] = {};
  int64_t p = 0;
  for (; p + 8 <= o.k; p += 8)
    for (size_t i = 0; i < MR; ++i) {
      const float* ai = o.a + (i0 + to_i64(i)) * o.lda + p;
      for (size_t j = 0; j < NR; ++j) {
        const BT* bj = o.b + (j0 + to_i64(j)) * o.ldb + p;
        for (size_t l = 0; l < 8; ++l) acc[i][j][l] = std::fma(ai[l], widen(bj[l]), acc[i][j][l]);
      }
    }
  for (size_t i = 0; i < MR; ++i)
    for (size_t j = 0; j < NR; ++j) finish(o, i0 + to_i64(i), j0 + to_i64(j), p, sum_lanes(acc[i][j]));
}

#if defined(__x86_64__)
[[gnu::target("avx2,fma")]] inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
[[gnu::target("avx2,fma")]] inline __m256 load8(const uint16_t* p) {  // bf16 bits to f32: shift into the high half
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

template <size_t MR, size_t NR, class BT>
[[gnu::target("avx2,fma")]] void tile_avx2(const Operands<BT>& o, int64_t i0, int64_t j0, int64_t prefetch_j) {
  __m256 acc[MR][NR];
  for (size_t i = 0; i < MR; ++i)
    for (size_t j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + 8 <= o.k; p += 8) {
    if (prefetch_j >= 0 && (p & 15) == 0)  // the next rows of B, while these are in cache
      for (size_t j = 0; j < NR; ++j)
        _mm_prefetch(reinterpret_cast<const char*>(o.b + (prefetch_j + to_i64(j)) * o.ldb + p), _MM_HINT_T0);
    if constexpr (MR == 1) {  // each row of B used once: load and consume (no spilled accumulator)
      const __m256 av = _mm256_loadu_ps(o.a + i0 * o.lda + p);
      for (size_t j = 0; j < NR; ++j) acc[0][j] = _mm256_fmadd_ps(av, load8(o.b + (j0 + to_i64(j)) * o.ldb + p), acc[0][j]);
      continue;
    }
    __m256 bv[NR];
    for (size_t j = 0; j < NR; ++j) bv[j] = load8(o.b + (j0 + to_i64(j)) * o.ldb + p);
    for (size_t i = 0; i < MR; ++i) {
      const __m256 av = _mm256_loadu_ps(o.a + (i0 + to_i64(i)) * o.lda + p);
      for (size_t j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (size_t i = 0; i < MR; ++i) {
    if constexpr (NR == 4) {  // the tree of sum_lanes for four accumulators at once
      __m128 folded[4];
      for (size_t j = 0; j < 4; ++j) folded[j] = _mm_add_ps(_mm256_castps256_ps128(acc[i][j]), _mm256_extractf128_ps(acc[i][j], 1));
      alignas(16) float sums[4];
      _mm_store_ps(sums, _mm_hadd_ps(_mm_hadd_ps(folded[0], folded[1]), _mm_hadd_ps(folded[2], folded[3])));
      for (size_t j = 0; j < 4; ++j) finish(o, i0 + to_i64(i), j0 + to_i64(j), p, sums[j]);
    } else {
      for (size_t j = 0; j < NR; ++j) {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, acc[i][j]);
        finish(o, i0 + to_i64(i), j0 + to_i64(j), p, sum_lanes(lanes));
      }
    }
  }
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

// prefetch_j >= 0: also fetch rows prefetch_j.. of B (NR of them) into cache.
template <size_t MR, size_t NR, class BT>
void tile(const Operands<BT>& o, int64_t i0, int64_t j0, int64_t prefetch_j = -1) {
#if defined(__x86_64__)
  if (!o.portable && has_avx2()) return tile_avx2<MR, NR, BT>(o, i0, j0, prefetch_j);
#else
  (void)prefetch_j;
#endif
  tile_portable<MR, NR, BT>(o, i0, j0);
}

// Rows i0..i0+r of A (r <= 4) against rows j..j+NR of B.
template <size_t NR, class BT>
void rows_against(const Operands<BT>& o, int64_t i0, int64_t r, int64_t j, int64_t prefetch_j) {
  switch (r) {
    case 1: return tile<1, NR>(o, i0, j, prefetch_j);
    case 2: return tile<2, NR>(o, i0, j, prefetch_j);
    case 3: return tile<3, NR>(o, i0, j, prefetch_j);
    default: return tile<4, NR>(o, i0, j, prefetch_j);
  }
}

// Columns [j0, j1) of C for every row of A.
template <class BT>
void columns(const Operands<BT>& o, int64_t m, int64_t j0, int64_t j1) {
  if (m <= 2) {
    int64_t j = j0;
    if (m == 1)  // eight rows of B in flight (measured: 8-14% faster than four, 25% than one)
      for (; j + 8 <= j1; j += 8) tile<1, 8>(o, 0, j);
    for (; j + 4 <= j1; j += 4) {  // fetching the rows two tiles ahead: DRAM latency is longer than a tile
      const int64_t ahead = j + 12 <= j1 ? j + 8 : -1;
      m == 1 ? tile<1, 4>(o, 0, j, ahead) : tile<2, 4>(o, 0, j, ahead);
    }
    for (; j < j1; ++j) m == 1 ? tile<1, 1>(o, 0, j) : tile<2, 1>(o, 0, j);
    return;
  }
  int64_t j = j0;
  for (; j + 3 <= j1; j += 3)
    for (int64_t i = 0; i < m; i += 4) {
      const bool last = i + 4 >= m;  // the last pass over these rows of B fetches the next ones
      rows_against<3>(o, i, std::min<int64_t>(4, m - i), j, last && j + 6 <= j1 ? j + 3 : -1);
    }
  for (; j < j1; ++j)
    for (int64_t i = 0; i < m; i += 4) rows_against<1>(o, i, std::min<int64_t>(4, m - i), j, -1);
}

template <class BT>
void run(int64_t m, int64_t n, const Operands<BT>& o) {
  if (m <= 0 || n <= 0) return;
  // Chunks of columns (multiples of twelve) worth about 64 K multiply-adds each.
  const int64_t groups = (n + 11) / 12;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, 12 * m * o.k));
  parallel_for(groups, grain, [&](int64_t begin, int64_t end) { columns(o, m, 12 * begin, std::min(n, 12 * end)); });
}

}  // namespace

void gemm_few_rows(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                   int64_t ldc, bool accumulate, bool portable) {
  run(m, n, Operands<float>{k, a, lda, b, ldb, c, ldc, accumulate, portable});
}

void gemm_few_rows_bf16(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const uint16_t* b, int64_t ldb, float* c,
                        int64_t ldc, bool accumulate, bool portable) {
  run(m, n, Operands<uint16_t>{k, a, lda, b, ldb, c, ldc, accumulate, portable});
}

}  // namespace ivl::detail
