// CUDA kernels against their CPU twins: storage and copies, fill, strided copy, the broadcasting
// elementwise kernel and cuBLAS GEMM (plain, transposed, batched, broadcast). Exits 77 (ctest:
// Skipped) with a message when this build has no CUDA or no device is present.
#define CATCH_CONFIG_RUNNER
#include <cmath>
#include <cstdio>

#include "tensor/autograd.h"
#include "tensor/cuda_backend.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;

TEST_CASE("cuda: host-device round trip keeps every dtype's bits", "[cuda]") {
  Generator gen(1);
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64}) {
    const Tensor cpu = Tensor::randn({3, 5, 7}, gen).to(dtype);
    const Tensor gpu = cpu.to(Device::cuda);
    REQUIRE(gpu.device() == Device::cuda);
    REQUIRE(gpu.dtype() == dtype);
    const Tensor back = gpu.to(Device::cpu);
    REQUIRE(std::memcmp(back.data_ptr(), cpu.data_ptr(), cpu.nbytes()) == 0);
  }
}

TEST_CASE("cuda: fill and strided copy match the CPU", "[cuda]") {
  REQUIRE(Tensor::full({4, 3}, 2.5, DType::f32, Device::cuda).to_doubles() == std::vector<double>(12, 2.5));
  REQUIRE(Tensor::full({5}, -3, DType::i64, Device::cuda).to_doubles() == std::vector<double>(5, -3));
  Generator gen(2);
  const Tensor x = Tensor::randn({4, 6, 5}, gen);
  const Tensor view = x.permute({2, 0, 1}).slice(1, 1, 4);
  const Tensor gpu_view = x.to(Device::cuda).permute({2, 0, 1}).slice(1, 1, 4);
  REQUIRE(max_rel_error(gpu_view.contiguous(), view.contiguous()) == 0);
}

TEST_CASE("cuda: broadcasting add/sub/mul/div match the CPU", "[cuda]") {
  Generator gen(3);
  const Tensor a = Tensor::randn({3, 1, 5}, gen), b = Tensor::randn({4, 1}, gen) + 3.0;
  const Tensor ga = a.to(Device::cuda), gb = b.to(Device::cuda);
  CHECK(max_rel_error(add(ga, gb), add(a, b)) == 0);
  CHECK(max_rel_error(sub(ga, gb), sub(a, b)) == 0);
  CHECK(max_rel_error(mul(ga, gb), mul(a, b)) == 0);
  CHECK(max_rel_error(div(ga, gb), div(a, b)) < 1e-7);  // GPU division may differ by one rounding
  CHECK(max_rel_error(ga.transpose(0, 2) * 2.0, a.transpose(0, 2) * 2.0) == 0);
}

TEST_CASE("cuda: cuBLAS matmul matches CBLAS", "[cuda]") {
  Generator gen(4);
  struct Case { Shape a, b; bool ta, tb; };
  const Case cases[] = {
      {{64, 32}, {32, 48}, false, false}, {{32, 64}, {32, 48}, true, false}, {{64, 32}, {48, 32}, false, true},
      {{5, 17, 9}, {5, 9, 13}, false, false}, {{5, 17, 9}, {9, 13}, false, false}, {{2, 3, 17, 9}, {3, 13, 9}, false, true},
      {{1024, 1024}, {1024, 1024}, false, false},
  };
  for (const Case& c : cases) {
    Tensor a = Tensor::randn(c.a, gen), b = Tensor::randn(c.b, gen);
    if (c.ta) a = a.mT();
    if (c.tb) b = b.mT();
    const Tensor want = matmul(a, b);
    const Tensor got = matmul(a.to(Device::cuda), b.to(Device::cuda));
    INFO(shape_str(a.shape()) << " @ " << shape_str(b.shape()));
    CHECK(max_rel_error(got, want) < 1e-5);  // summation order differs; f32 rounding only
  }
}

TEST_CASE("cuda: matmul backward runs on the GPU and matches the CPU", "[cuda]") {
  Generator gen(5);
  Tensor a = Tensor::randn({7, 5}, gen), b = Tensor::randn({5, 3}, gen);
  Tensor ga = a.to(Device::cuda), gb = b.to(Device::cuda);
  a.set_requires_grad(), b.set_requires_grad(), ga.set_requires_grad(), gb.set_requires_grad();
  matmul(a, b).backward(Tensor::ones({7, 3}));
  matmul(ga, gb).backward(Tensor::ones({7, 3}, DType::f32, Device::cuda));
  CHECK(max_rel_error(ga.grad(), a.grad()) < 1e-5);
  CHECK(max_rel_error(gb.grad(), b.grad()) < 1e-5);
}

int main(int argc, char** argv) {
  if (!cuda::available()) {
    std::printf("SKIPPED: CUDA parity tests need a GPU (%s)\n", cuda::device_summary().c_str());
    return 77;
  }
  std::printf("CUDA device: %s\n", cuda::device_summary().c_str());
  return Catch::Session().run(argc, argv);
}
