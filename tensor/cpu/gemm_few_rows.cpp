// C = A . B^T for a few rows of A: the products of decoding (a linear layer on one token per
// sequence, the scores of a query against its cached keys). Shapes: a [m, k] (rows lda apart),
// b [n, k] (rows ldb apart; a weight [out, in] or the keys), c [m, n] (rows ldc apart), m small.
//
// BLAS gemm first copies B into packed panels, which for m = 8 costs as much as the product; this
// kernel reads B once, straight from memory, each element feeding all m rows while it is in cache.
//
// Every c[i, j] is computed the same way whatever m, n, the tile or the thread that computes it:
// eight lanes accumulate a[i, p] * b[j, p] with fused multiply-adds over p = 8q + lane, the lanes
// are summed in a fixed tree, the k % 8 tail is added with scalar fused multiply-adds. So a row's
// result does not depend on the other rows it ran with (a sequence decodes alike alone or in a
// batch), and the portable path gives the same bits as the AVX2 one.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "tensor/cpu_helpers.h"
#include "tensor/parallel.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ivl::detail {
namespace {

constexpr int64_t to_i64(size_t v) { return static_cast<int64_t>(v); }

// The fixed lane tree: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
inline float sum_lanes(const float* l) { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }

struct Operands {
  int64_t k;
  const float* a;
  int64_t lda;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  bool accumulate;
  bool portable;
};

inline void finish(const Operands& o, int64_t i, int64_t j, int64_t p, float lanes_sum) {
  float r = lanes_sum;
  const float* ai = o.a + i * o.lda;
  const float* bj = o.b + j * o.ldb;
  for (; p < o.k; ++p) r = std::fma(ai[p], bj[p], r);
  float& out = o.c[i * o.ldc + j];
  out = o.accumulate ? out + r : r;
}

// Rows i0..i0+MR of A against rows j0..j0+NR of B.
template <size_t MR, size_t NR>
void tile_portable(const Operands& o, int64_t i0, int64_t j0) {
  float acc[MR][NR][8] = {};
  int64_t p = 0;
  for (; p + 8 <= o.k; p += 8)
    for (size_t i = 0; i < MR; ++i) {
      const float* ai = o.a + (i0 + to_i64(i)) * o.lda + p;
      for (size_t j = 0; j < NR; ++j) {
        const float* bj = o.b + (j0 + to_i64(j)) * o.ldb + p;
        for (size_t l = 0; l < 8; ++l) acc[i][j][l] = std::fma(ai[l], bj[l], acc[i][j][l]);
      }
    }
  for (size_t i = 0; i < MR; ++i)
    for (size_t j = 0; j < NR; ++j) finish(o, i0 + to_i64(i), j0 + to_i64(j), p, sum_lanes(acc[i][j]));
}

#if defined(__x86_64__)
template <size_t MR, size_t NR>
[[gnu::target("avx2,fma")]] void tile_avx2(const Operands& o, int64_t i0, int64_t j0) {
  __m256 acc[MR][NR];
  for (size_t i = 0; i < MR; ++i)
    for (size_t j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + 8 <= o.k; p += 8) {
    __m256 bv[NR];
    for (size_t j = 0; j < NR; ++j) bv[j] = _mm256_loadu_ps(o.b + (j0 + to_i64(j)) * o.ldb + p);
    for (size_t i = 0; i < MR; ++i) {
      const __m256 av = _mm256_loadu_ps(o.a + (i0 + to_i64(i)) * o.lda + p);
      for (size_t j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (size_t i = 0; i < MR; ++i)
    for (size_t j = 0; j < NR; ++j) {
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, acc[i][j]);
      finish(o, i0 + to_i64(i), j0 + to_i64(j), p, sum_lanes(lanes));
    }
}

bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

template <size_t MR, size_t NR>
void tile(const Operands& o, int64_t i0, int64_t j0) {
#if defined(__x86_64__)
  if (!o.portable && has_avx2()) return tile_avx2<MR, NR>(o, i0, j0);
#endif
  tile_portable<MR, NR>(o, i0, j0);
}

// Columns j0..j0+NR (NR = 4, or 1 at the end) for every row of A, in row groups that keep eight
// accumulators (the AVX2 register file holds them with the loads beside).
template <size_t NR>
void columns(const Operands& o, int64_t m, int64_t j0) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    if constexpr (NR == 4) tile<4, 2>(o, i, j0), tile<4, 2>(o, i, j0 + 2);
    else tile<4, 1>(o, i, j0);
  }
  switch (m - i) {
    case 1: tile<1, NR>(o, i, j0); break;
    case 2: tile<2, NR>(o, i, j0); break;
    case 3:
      if constexpr (NR == 4) tile<3, 2>(o, i, j0), tile<3, 2>(o, i, j0 + 2);
      else tile<3, 1>(o, i, j0);
      break;
    default: break;
  }
}

}  // namespace

void gemm_few_rows(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                   int64_t ldc, bool accumulate, bool portable) {
  if (m <= 0 || n <= 0) return;
  const Operands o{k, a, lda, b, ldb, c, ldc, accumulate, portable};
  const int64_t quads = n / 4;
  // A chunk of column quads worth about 64 K multiply-adds (a few hundred KB of B at m = 1).
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, 4 * m * k));
  parallel_for(quads, grain, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) columns<4>(o, m, 4 * q);
  });
  for (int64_t j = 4 * quads; j < n; ++j) columns<1>(o, m, j);
}

}  // namespace ivl::detail
