// CPython's Mersenne Twister, random.seed(0) and random.sample, against the draws the official pair
// builder made (../shared/fixtures/mmpr/pairs_case.json).
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/python_random.h"
#include "tests/catch.h"

using namespace ivl;

TEST_CASE("python random: seed(0), getrandbits and the pair builder's random.sample calls", "[judge]") {
  std::ifstream in(std::string(IVL_SHARED_DIR) + "/fixtures/mmpr/pairs_case.json");
  REQUIRE(in);
  const nlohmann::json pairs = nlohmann::json::parse(in);
  py::Random first(0);
  for (const nlohmann::json& v : pairs.at("rng").at("first_8_getrandbits32_after_seed0")) CHECK(first.getrandbits(32) == v.get<uint32_t>());
  // One generator across every sample call, in the official order (correctness rule, then format).
  py::Random rng(0);
  int calls = 0;
  for (const nlohmann::json& rule : pairs.at("rules"))
    for (const nlohmann::json& key : rule.at("per_key")) {
      if (!key.contains("sampled_population_positions")) continue;
      INFO(rule.at("rule").get<std::string>() << " key " << key.at("key_index").get<int>());
      const size_t n = key.at("candidates_in_order").size(), k = key.at("k").get<size_t>();
      CHECK(rng.sample(n, k) == key.at("sampled_population_positions").get<std::vector<size_t>>());
      ++calls;
    }
  CHECK(calls == 4);
  // Both algorithms: the pool (n <= 21 for k <= 5) and the set (larger n); k = 0 draws nothing.
  py::Random a(0), b(0);
  CHECK(a.sample(30, 0).empty());
  CHECK(a.genrand_uint32() == b.genrand_uint32());
}
