// `ivl bench gemm`: the engine's f32 matmul against a direct cblas_sgemm on the same buffers'
// shapes (large square and skinny), and the engine's fixed cost per op on tiny tensors.
// Timings are the median of repeated runs after a warm-up; the CPU and BLAS threads are printed.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <thread>

#include "tensor/autograd.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tools/commands.h"

extern "C" int openblas_get_num_threads(void);

namespace ivl::cli {

namespace {

// Median seconds per call of f, over enough calls to fill about `budget` seconds.
double median_seconds(const std::function<void()>& f, double budget = 1.0) {
  using clock = std::chrono::steady_clock;
  f();  // warm-up
  auto t0 = clock::now();
  f();
  const double once = std::max(std::chrono::duration<double>(clock::now() - t0).count(), 1e-9);
  const int reps = static_cast<int>(std::clamp(budget / once, 5.0, 2000.0));
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    t0 = clock::now();
    f();
    times.push_back(std::chrono::duration<double>(clock::now() - t0).count());
  }
  std::nth_element(times.begin(), times.begin() + reps / 2, times.end());
  return times[static_cast<size_t>(reps / 2)];
}

// Seconds per call when f is a tiny op: time a batch of calls, report per call.
double per_call_seconds(const std::function<void()>& f, int calls = 20000) {
  return median_seconds([&] {
    for (int i = 0; i < calls; ++i) f();
  }, 0.5) / calls;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

int bench_gemm() {
  std::printf("CPU: %s, %u hardware threads, OpenBLAS threads: %d\n\n", cpu_model().c_str(),
              std::thread::hardware_concurrency(), openblas_get_num_threads());
  std::printf("%-28s %12s %12s %8s\n", "f32 matmul (M x N x K)", "engine GF/s", "cblas GF/s", "ratio");
  Generator gen(1);
  struct Shape3 { int64_t m, n, k; };
  for (const Shape3 s : {Shape3{1024, 1024, 1024}, Shape3{4096, 64, 1024}, Shape3{64, 4096, 1024}}) {
    const Tensor a = Tensor::randn({s.m, s.k}, gen), b = Tensor::randn({s.k, s.n}, gen);
    Tensor c = Tensor::empty({s.m, s.n});
    NoGrad no_grad;
    const double engine = median_seconds([&] { c = matmul(a, b); });
    const double direct = median_seconds([&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(s.m), static_cast<int>(s.n),
                  static_cast<int>(s.k), 1.0f, a.data<float>(), static_cast<int>(s.k), b.data<float>(),
                  static_cast<int>(s.n), 0.0f, c.data<float>(), static_cast<int>(s.n));
    });
    const double flops = 2.0 * static_cast<double>(s.m * s.n * s.k);
    char label[64];
    std::snprintf(label, sizeof label, "%lld x %lld x %lld", static_cast<long long>(s.m), static_cast<long long>(s.n),
                  static_cast<long long>(s.k));
    std::printf("%-28s %12.1f %12.1f %8.3f\n", label, flops / engine * 1e-9, flops / direct * 1e-9, direct / engine);
  }

  std::printf("\n%-44s %10s\n", "per-op overhead on tiny tensors", "us / op");
  const Tensor x = Tensor::randn({4}, gen), y = Tensor::randn({4}, gen), m = Tensor::randn({4, 4}, gen);
  Tensor xg = x.clone(), out;
  xg.set_requires_grad(true);
  {
    NoGrad no_grad;
    std::printf("%-44s %10.3f\n", "add [4] + [4], no grad", per_call_seconds([&] { out = x + y; }) * 1e6);
    std::printf("%-44s %10.3f\n", "exp [4], no grad", per_call_seconds([&] { out = exp(x); }) * 1e6);
    std::printf("%-44s %10.3f\n", "matmul [4,4] @ [4,4], no grad", per_call_seconds([&] { out = matmul(m, m); }) * 1e6);
    std::printf("%-44s %10.3f\n", "transpose view [4,4]", per_call_seconds([&] { out = m.mT(); }) * 1e6);
  }
  std::printf("%-44s %10.3f\n", "add [4] + [4], recording the graph", per_call_seconds([&] { out = xg + y; }) * 1e6);
  std::printf("%-44s %10.3f\n", "add forward + backward", per_call_seconds([&] { (xg + y).backward(Tensor::ones({4})); }, 5000) * 1e6);
  return 0;
}

}  // namespace

int cmd_bench(const Args& args) {
  const std::string what = args.empty() ? "" : args[0];
  if (what == "gemm") return bench_gemm();
  throw std::invalid_argument("usage: ivl bench gemm   (unknown benchmark '" + what + "')");
}

}  // namespace ivl::cli
