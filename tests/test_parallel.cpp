// The engine's CPU threads (parallel_for) and the large-block memory cache behind tensor storage.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "nn/optimizer.h"
#include "nn/parameters.h"
#include "tensor/host_memory.h"
#include "tensor/ops.h"
#include "tensor/parallel.h"
#include "tensor/random.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;

namespace {

// Restores the thread count when a test ends.
struct ThreadCount {
  int previous;
  explicit ThreadCount(int n) : previous(set_parallel_threads(n)) {}
  ~ThreadCount() { set_parallel_threads(previous); }
};

}  // namespace

TEST_CASE("parallel_for covers every index once, in chunks of at least the grain", "[parallel]") {
  ThreadCount three(3);
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{100003}}) {
    for (const int64_t grain : {int64_t{1}, int64_t{64}, int64_t{50000}}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      std::atomic<int64_t> smallest{n};
      std::atomic<int> chunks{0};
      parallel_for(n, grain, [&](int64_t begin, int64_t end) {
        ++chunks;
        if (end - begin < smallest) smallest = end - begin;
        for (int64_t i = begin; i < end; ++i) ++seen[static_cast<size_t>(i)];
      });
      for (int64_t i = 0; i < n; ++i) REQUIRE(seen[static_cast<size_t>(i)] == 1);
      CHECK(chunks <= parallel_threads());
      if (chunks > 1) CHECK(smallest >= grain);
    }
  }
}

TEST_CASE("parallel_for runs on other threads, inline when nested, and rethrows a body's exception", "[parallel]") {
  ThreadCount two(2);
  std::atomic<int> nested_chunks{0};
  std::atomic<bool> second_started{false}, waited_out{false};
  std::vector<std::thread::id> ids(2);
  std::vector<int64_t> sizes(2);
  parallel_for(2, 1, [&](int64_t begin, int64_t end) {
    ids[static_cast<size_t>(begin)] = std::this_thread::get_id();
    sizes[static_cast<size_t>(begin)] = end - begin;
    parallel_for(1000, 1, [&](int64_t, int64_t) { ++nested_chunks; });
    if (begin == 1) second_started = true;
    // The caller runs chunk 0; it waits here until a worker has taken chunk 1.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (begin == 0 && !second_started)
      if (std::chrono::steady_clock::now() > give_up) return void(waited_out = true);
  });
  CHECK_FALSE(waited_out);
  CHECK(ids[0] == std::this_thread::get_id());
  CHECK(ids[1] != ids[0]);
  CHECK(sizes == std::vector<int64_t>{1, 1});
  CHECK(nested_chunks == 2);  // one inline chunk per outer chunk
  CHECK_THROWS_WITH(parallel_for(100, 1, [](int64_t begin, int64_t) {
                      if (begin > 0) throw std::runtime_error("second chunk failed");
                    }),
                    "second chunk failed");
  std::atomic<int64_t> total{0};  // the pool still works after a failure
  parallel_for(100, 1, [&](int64_t begin, int64_t end) { total += end - begin; });
  CHECK(total == 100);
  {
    ThreadCount one(1);
    std::atomic<int> chunks{0};
    parallel_for(1000, 1, [&](int64_t, int64_t) { ++chunks; });
    CHECK(chunks == 1);
  }
}

TEST_CASE("the threaded kernels give the same bits on one thread and on several", "[parallel]") {
  Generator gen(11);
  // Sizes above the elementwise grain so that the kernels split; views and broadcasting included.
  const Tensor x = Tensor::randn({3, 200, 333}, gen), y = Tensor::randn({200, 1}, gen);
  const Tensor q = Tensor::randn({1, 2, 300, 16}, gen), k = Tensor::randn({1, 2, 300, 16}, gen), v = Tensor::randn({1, 2, 300, 16}, gen);
  const Tensor tokens = Tensor::randn({8, 200}, gen), weight = Tensor::randn({1000, 200}, gen);  // a decoding step's linear
  auto run = [&] {
    std::vector<std::vector<float>> out;
    Tensor xg = x.detach();
    xg.set_requires_grad(true);
    const Tensor a = gelu(xg), b = mul(add(a, y), x.permute({0, 2, 1}).contiguous().permute({0, 2, 1}));
    sum(b).backward();
    out.push_back(floats(a)), out.push_back(floats(b)), out.push_back(floats(xg.grad()));
    out.push_back(floats(x.permute({2, 0, 1}).contiguous()));
    out.push_back(floats(linear(tokens, weight)));
    Tensor qg = q.detach(), kg = k.detach(), vg = v.detach();
    qg.set_requires_grad(true), kg.set_requires_grad(true), vg.set_requires_grad(true);
    const Tensor o = scaled_dot_product_attention(qg, kg, vg, {.causal = true});
    sum(mul(o, o)).backward();
    for (const Tensor& t : {o, qg.grad(), kg.grad(), vg.grad()}) out.push_back(floats(t));
    Tensor filled = Tensor::empty({300000});
    fill_into(filled, 2.5);
    out.push_back(floats(filled));
    // AdamW over a parameter set larger than the grain, with weight decay.
    ParameterSet params;
    params.declare("w", {500, 300}, false, ParameterModule::linear);
    params.declare("b", {300}, false, ParameterModule::linear);
    Generator g1(3);
    params.allocate_uniform(g1, 0.1);
    params.set_requires_grad(true);
    Generator g2(5);
    copy_into(params.flat_grad(), Tensor::randn(params.flat_grad().shape(), g2));
    AdamW adam(params, {.weight_decay = 0.1});
    adam.step(1e-3), adam.step(1e-3);
    out.push_back(floats(params.flat()));
    out.push_back(std::vector<float>{static_cast<float>(gradient_norm(params))});
    return out;
  };
  std::vector<std::vector<float>> serial;
  {
    ThreadCount one(1);
    serial = run();
  }
  std::vector<std::vector<float>> threaded;
  {
    ThreadCount three(3);
    threaded = run();
  }
  REQUIRE(serial.size() == threaded.size());
  for (size_t i = 0; i < serial.size(); ++i) {
    INFO("output " << i);
    CHECK(serial[i] == threaded[i]);
  }
}

TEST_CASE("freed large blocks are reused, and the mapped total never grows while the cache holds memory", "[parallel]") {
  host_memory::trim();
  const size_t mib = size_t{1} << 20;
  const host_memory::Stats before = host_memory::stats();
  if (!host_memory::caching()) {  // IVL_HOST_CACHE=0 or AddressSanitizer: every block is unmapped when freed
    void* a = host_memory::allocate(8 * mib);
    CHECK(host_memory::stats().mapped_bytes == before.mapped_bytes + 8 * mib);
    host_memory::release(a, 8 * mib);
    CHECK(host_memory::stats().mapped_bytes == before.mapped_bytes);
    CHECK(host_memory::stats().hits == before.hits);
    return;
  }
  void* a = host_memory::allocate(8 * mib + 3);
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  static_cast<char*>(a)[8 * mib + 2] = 1;  // every requested byte is usable
  host_memory::release(a, 8 * mib + 3);
  CHECK(host_memory::stats().cached_bytes >= 8 * mib);
  void* b = host_memory::allocate(8 * mib - 4096);  // a little smaller: the same block again
  CHECK(b == a);
  CHECK(host_memory::stats().hits == before.hits + 1);
  host_memory::release(b, 8 * mib - 4096);
  // Much smaller or larger requests do not take it; making room unmaps it, so the mapped total stays
  // at the live blocks.
  void* c = host_memory::allocate(2 * mib);
  CHECK(host_memory::stats().cached_bytes == 0);
  void* d = host_memory::allocate(20 * mib);
  const host_memory::Stats during = host_memory::stats();
  CHECK(during.mapped_bytes == 22 * mib);
  host_memory::release(c, 2 * mib), host_memory::release(d, 20 * mib);
  CHECK(host_memory::stats().cached_bytes == 22 * mib);
  host_memory::trim();
  CHECK(host_memory::stats().mapped_bytes == before.mapped_bytes);
  // Small blocks come from malloc and are never counted.
  void* small = host_memory::allocate(1000);
  CHECK(reinterpret_cast<uintptr_t>(small) % 64 == 0);
  host_memory::release(small, 1000);
  CHECK(host_memory::stats().mapped_bytes == before.mapped_bytes);
}
