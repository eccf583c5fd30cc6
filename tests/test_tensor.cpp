// Tensor basics: dtype conversions (bf16/f16 against exact cases and the compiler's _Float16),
// creation, views and strides, the Philox generator, and the errors users see.
#include <bit>
#include <cmath>
#include <limits>

#include "tensor/cuda_backend.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tests/catch.h"

using namespace ivl;

TEST_CASE("bf16 conversion rounds to nearest even and keeps NaN", "[tensor]") {
  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  CHECK(f32_to_bf16(-2.0f) == 0xc000);
  CHECK(f32_to_bf16(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie, even stays
  CHECK(f32_to_bf16(std::bit_cast<float>(0x3f818000u)) == 0x3f82);  // tie, odd rounds up
  CHECK(f32_to_bf16(std::bit_cast<float>(0x3f808001u)) == 0x3f81);  // above the tie
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(f32_to_bf16(std::numeric_limits<float>::infinity()) == 0x7f80);
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every finite bf16 survives a round trip through f32
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) REQUIRE(f32_to_bf16(f) == h);
  }
}

TEST_CASE("f16 conversion: exact cases, subnormals, overflow, every value round trips", "[tensor]") {
  CHECK(f32_to_f16(1.0f) == 0x3c00);
  CHECK(f32_to_f16(65504.0f) == 0x7bff);
  CHECK(f32_to_f16(65519.0f) == 0x7bff);
  CHECK(f32_to_f16(65520.0f) == 0x7c00);  // the tie above the largest half goes to infinity
  CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);        // tie to even: zero
  CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);        // 1.5 units: tie to even: 2
  CHECK(f32_to_f16(-std::ldexp(1.0f, -14)) == 0x8400);       // smallest normal
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) REQUIRE(f32_to_f16(f) == h);
  }
#ifdef __FLT16_MAX__
  Generator gen(3);  // random bit patterns against the compiler's IEEE conversion
  for (uint64_t i = 0; i < 200000; ++i) {
    const auto words = philox4x32(gen.seed(), i);
    float f = std::bit_cast<float>(words[0]);
    if (std::isnan(f)) continue;
    if (i % 2) f = std::ldexp(std::bit_cast<float>((words[1] & 0x807fffffu) | 0x3f800000u), static_cast<int>(words[2] % 40) - 28);
    REQUIRE(f32_to_f16(f) == std::bit_cast<uint16_t>(static_cast<_Float16>(f)));
  }
#endif
}

TEST_CASE("Philox4x32-10 matches the Random123 known answers", "[tensor]") {
  // Random123 kat_vectors: philox4x32 10 rounds, counter 0 and key 0.
  const auto zero = philox4x32(0, 0);
  CHECK(zero == std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  Generator a(42), b(42);
  CHECK(Tensor::randn({100}, a).to_doubles() == Tensor::randn({100}, b).to_doubles());
  CHECK(a.offset() == 50);
  Generator c(5);
  const std::vector<double> v = Tensor::randn({20000}, c).to_doubles();
  double m = 0, s = 0;
  for (double x : v) m += x, s += x * x;
  m /= static_cast<double>(v.size()), s = std::sqrt(s / static_cast<double>(v.size()) - m * m);
  CHECK(std::abs(m) < 0.03);
  CHECK(std::abs(s - 1) < 0.03);
  const std::vector<double> u = Tensor::rand({1000}, c).to_doubles();
  CHECK(*std::min_element(u.begin(), u.end()) >= 0);
  CHECK(*std::max_element(u.begin(), u.end()) < 1);
}

TEST_CASE("creation, metadata and element access", "[tensor]") {
  const Tensor z = Tensor::zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.strides() == Shape{3, 1});
  CHECK(z.numel() == 6);
  CHECK(z.dtype() == DType::f32);
  CHECK(z.str() == "f32[2, 3] cpu");
  CHECK(Tensor::full({2}, 1.5, DType::bf16).to_doubles() == std::vector<double>{1.5, 1.5});
  CHECK(Tensor::arange(4).to_doubles() == std::vector<double>{0, 1, 2, 3});
  CHECK(Tensor::scalar(3, DType::i32).item() == 3);
  CHECK(Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2}).data<float>()[3] == 4);
  CHECK_THROWS_WITH(Tensor::from_vector<float>({1, 2, 3}, {2, 2}), HasSubstr("do not fill"));
  CHECK_THROWS_WITH(Tensor::zeros({2, -1}), HasSubstr("negative"));
  CHECK_THROWS_WITH(Tensor().shape(), HasSubstr("undefined"));
  CHECK_THROWS_WITH(z.size(2), HasSubstr("out of range"));
  CHECK_THROWS_WITH(z.data<double>(), HasSubstr("does not match"));
  CHECK_THROWS_WITH(z.item(), HasSubstr("exactly one"));
}

TEST_CASE("views share storage, contiguous and reshape copy only when needed", "[tensor]") {
  const Tensor x = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  const Tensor t = x.mT();
  CHECK(t.storage() == x.storage());
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.strides() == Shape{1, 3});
  CHECK(t.contiguous().to_doubles() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(t.contiguous().storage() != x.storage());
  CHECK(x.reshape({3, 2}).storage() == x.storage());
  CHECK(t.reshape({6}).to_doubles() == std::vector<double>{0, 3, 1, 4, 2, 5});
  const Tensor s = x.slice(1, 0, 3, 2);
  CHECK(s.shape() == Shape{2, 2});
  CHECK(s.to_doubles() == std::vector<double>{0, 2, 3, 5});
  CHECK(x.slice(1, -2, 100).to_doubles() == std::vector<double>{1, 2, 4, 5});
  CHECK(x.narrow(0, 1, 1).to_doubles() == std::vector<double>{3, 4, 5});
  CHECK_THROWS_WITH(x.narrow(0, 1, 2), HasSubstr("outside"));
  const Tensor e = Tensor::from_vector<float>({7, 8}, {2, 1}).expand({3, 2, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(sum(e).item() == 3 * 4 * 15);
  CHECK(x.unsqueeze(0).shape() == Shape{1, 2, 3});
  CHECK(x.unsqueeze(-1).shape() == Shape{2, 3, 1});
  CHECK(x.unsqueeze(1).squeeze(1).shape() == Shape{2, 3});
  CHECK(x.permute({1, 0}).to_doubles() == t.to_doubles());
  CHECK_THROWS_WITH(x.permute({0, 0}), HasSubstr("twice"));
  CHECK_THROWS_WITH(x.reshape({4, -1}), HasSubstr("cannot reshape"));
}

TEST_CASE("dtype conversion of every pair keeps values that fit", "[tensor]") {
  const std::vector<double> values{0, 1, 2, 3, 100, 7};
  const Tensor base = Tensor::from_vector<double>(values, {2, 3});
  for (DType from : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8})
    for (DType to : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8}) {
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      CHECK(base.to(from).to(to).to_doubles() == values);
      CHECK(base.to(from).mT().to(to).to_doubles() == base.mT().to_doubles());
    }
  CHECK(Tensor::from_vector<float>({0, 2, -1}, {3}).to(DType::boolean).to_doubles() == std::vector<double>{0, 1, 1});
  CHECK(Tensor::from_vector<float>({1.00390625f}, {1}).to(DType::bf16).to_doubles()[0] == 1.0);
}

TEST_CASE("tensors on an unavailable device fail with a clear message", "[tensor]") {
  if (cuda::available()) return;  // covered by tests/cuda on a GPU machine
  CHECK_THROWS_WITH(Tensor::zeros({2}).to(Device::cuda), HasSubstr("CUDA"));
}

TEST_CASE("large zero tensors are untouched pages, and release_into_zeros hands them back", "[tensor]") {
  const int64_t n = (int64_t{80} << 20) / 4;  // 80 MiB of f32: above the mapped-zeros threshold
  Tensor big = Tensor::zeros({n});
  CHECK(big.storage()->zero_mapped);
  CHECK_FALSE(Tensor::zeros({1000}).storage()->zero_mapped);
  float* p = big.data<float>();
  CHECK(p[0] == 0.0f);
  CHECK(p[n - 1] == 0.0f);
  p[0] = 3.0f, p[n / 2] = -1.0f, p[n - 1] = 7.0f;
  release_into_zeros(big);  // madvise: the written pages are dropped and read back as zeros
  CHECK(p[0] == 0.0f);
  CHECK(p[n / 2] == 0.0f);
  CHECK(p[n - 1] == 0.0f);
  // A range that starts and ends inside pages: its whole pages are dropped, its ends written; the
  // elements just outside it keep their values.
  for (int64_t i : {int64_t{99}, int64_t{100}, int64_t{5000}, int64_t{3000000}, int64_t{3000001}}) p[i] = 1.0f;
  release_into_zeros(big.narrow(0, 100, 3000001 - 100));
  CHECK(p[99] == 1.0f);
  CHECK(p[100] == 0.0f);
  CHECK(p[5000] == 0.0f);
  CHECK(p[3000000] == 0.0f);
  CHECK(p[3000001] == 1.0f);
  fill_into(big.narrow(0, 1, 2), 5.0);  // a part of it is written as any tensor
  CHECK(p[1] == 5.0f);
  CHECK(p[3] == 0.0f);
  Tensor small = Tensor::ones({10});  // not mapped: written
  release_into_zeros(small);
  CHECK(small.to_doubles() == std::vector<double>(10, 0.0));
  CHECK(Tensor::zeros({3}, DType::bf16).to_doubles() == std::vector<double>{0, 0, 0});
}
