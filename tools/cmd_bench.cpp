// `ivl bench gemm`: the engine's f32 matmul against a direct cblas_sgemm on the same buffers'
// shapes (large square and skinny), and the engine's fixed cost per op on tiny tensors.
// `ivl bench model`: one InternVL2 forward. `ivl bench mpo-step`: one MPO training step. Timings are medians of repeated runs; the CPU and BLAS
// threads are printed; --json gives the numbers as tools/bench_report.h's one JSON object.
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <thread>

#include "internvl/generation.h"
#include "internvl/internvl_chat.h"
#include "mpo/step.h"
#include "nn/optimizer.h"
#include "tensor/autograd.h"
#include "tensor/cuda_backend.h"
#include "tensor/ops.h"
#include "tensor/parallel.h"
#include "tensor/random.h"
#include "tools/bench_report.h"
#include "tools/commands.h"

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

// f and g timed alternately, so that each pair sees the same machine state (frequency, neighbours
// on a shared host). Returns the median seconds of each and the median of the per-pair ratios
// time(g) / time(f): on a noisy machine that ratio is far steadier than the ratio of two medians.
// f_seconds_min is the fastest call of f (the reference script's seconds_min).
struct PairedTiming {
  double f_seconds, g_seconds, ratio, f_seconds_min;
};
PairedTiming paired_timing(const std::function<void()>& f, const std::function<void()>& g, double budget = 3.0) {
  using clock = std::chrono::steady_clock;
  f(), g();  // warm-up
  auto t0 = clock::now();
  f();
  const double once = std::max(std::chrono::duration<double>(clock::now() - t0).count(), 1e-9);
  const int reps = static_cast<int>(std::clamp(budget / (2 * once), 9.0, 2000.0));
  std::vector<double> tf, tg, ratios;
  for (int r = 0; r < reps; ++r) {
    t0 = clock::now();
    f();
    tf.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    t0 = clock::now();
    g();
    tg.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    ratios.push_back(tg.back() / tf.back());
  }
  auto median = [](std::vector<double>& v) {
    std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  const double f_min = *std::min_element(tf.begin(), tf.end());
  return {median(tf), median(tg), median(ratios), f_min};
}

// Seconds per call when f is a tiny op: time a batch of calls, report per call.
double per_call_seconds(const std::function<void()>& f, int calls = 20000) {
  return median_seconds([&] {
    for (int i = 0; i < calls; ++i) f();
  }, 0.5) / calls;
}

// The engine's f32 matmul on the GPU (cuBLAS, pedantic f32: no TF32) and its per-op launch cost.
void bench_gemm_cuda() {
  std::printf("\ncuda: %s\n%-28s %12s\n", cuda::device_summary().c_str(), "f32 matmul on the GPU", "engine GF/s");
  Generator gen(2);
  NoGrad no_grad;
  for (const int64_t n : {1024, 4096, 8192}) {
    const Tensor a = Tensor::randn({n, n}, gen).to(Device::cuda), b = Tensor::randn({n, n}, gen).to(Device::cuda);
    Tensor c;
    const double t = median_seconds([&] {
      c = matmul(a, b);
      cuda::synchronize();
    });
    char label[64];
    std::snprintf(label, sizeof label, "%lld x %lld x %lld", static_cast<long long>(n), static_cast<long long>(n),
                  static_cast<long long>(n));
    std::printf("%-28s %12.1f\n", label, 2.0 * static_cast<double>(n * n * n) / t * 1e-9);
  }
  const Tensor x = Tensor::randn({4}, gen).to(Device::cuda), y = Tensor::randn({4}, gen).to(Device::cuda);
  Tensor out;
  const double per_op = per_call_seconds([&] { out = x + y; }, 2000);
  cuda::synchronize();
  std::printf("%-44s %10.3f\n", "add [4] + [4] on the GPU, no grad (us / op)", per_op * 1e6);
}

void print_cpu() {
  std::printf("CPU: %s, %u hardware threads, OpenBLAS threads: %d, engine threads: %d\n", cpu_model().c_str(),
              std::thread::hardware_concurrency(), blas_threads(), parallel_threads());
}

int bench_gemm(const ParsedFlags& flags) {
  BenchReport report("gemm", flags.boolean("--json"));
  report["shapes"] = nlohmann::ordered_json::array();
  print_cpu();
  std::printf("\n");
  std::printf("%-28s %12s %12s %13s\n", "f32 matmul (M x N x K)", "engine GF/s", "cblas GF/s", "engine/cblas");
  Generator gen(1);
  struct Shape3 { int64_t m, n, k; };
  for (const Shape3 s : {Shape3{1024, 1024, 1024}, Shape3{4096, 64, 1024}, Shape3{64, 4096, 1024}}) {
    const Tensor a = Tensor::randn({s.m, s.k}, gen), b = Tensor::randn({s.k, s.n}, gen);
    Tensor c = Tensor::empty({s.m, s.n});
    NoGrad no_grad;
    const PairedTiming timing = paired_timing([&] { c = matmul(a, b); }, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(s.m), static_cast<int>(s.n),
                  static_cast<int>(s.k), 1.0f, a.data<float>(), static_cast<int>(s.k), b.data<float>(),
                  static_cast<int>(s.n), 0.0f, c.data<float>(), static_cast<int>(s.n));
    });
    const double flops = 2.0 * static_cast<double>(s.m * s.n * s.k);
    char label[64];
    std::snprintf(label, sizeof label, "%lld x %lld x %lld", static_cast<long long>(s.m), static_cast<long long>(s.n),
                  static_cast<long long>(s.k));
    std::printf("%-28s %12.1f %12.1f %13.3f\n", label, flops / timing.f_seconds * 1e-9, flops / timing.g_seconds * 1e-9,
                timing.ratio);
    // engine_over_cblas is the table's engine/cblas column: the median of time(cblas) / time(engine).
    report["shapes"].push_back({{"m", s.m}, {"n", s.n}, {"k", s.k},
                                {"engine_GF_per_s", rounded(flops / timing.f_seconds * 1e-9, 1)},
                                {"cblas_GF_per_s", rounded(flops / timing.g_seconds * 1e-9, 1)},
                                {"engine_over_cblas", rounded(timing.ratio, 3)}});
    if (report["shapes"].size() == 1) {  // the 1024^3 matmul stands for the benchmark's seconds
      report["seconds_min"] = rounded(timing.f_seconds_min, 6);
      report["seconds_median"] = rounded(timing.f_seconds, 6);
    }
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
  if (cuda::available()) bench_gemm_cuda();
  else std::printf("\ncuda: %s\n", cuda::device_summary().c_str());
  report.print();
  return 0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One inference forward of a model built from a config, with random weights: the vision tower on
// `tiles` 448-pixel tiles, then the decoder over the image tokens plus `text` text tokens.
int bench_model(const ParsedFlags& flags) {
  const std::string config_path = flags.text("--config");
  const int64_t tiles = flags.integer<int64_t>("--tiles", 1), text = flags.integer<int64_t>("--text", 1);
  const int runs = flags.integer("--runs", 1);
  BenchReport report("forward", flags.boolean("--json"));
  const InternVLChatConfig config = InternVLChatConfig::from_file(config_path);
  print_cpu();
  auto t0 = std::chrono::steady_clock::now();
  ParameterSet params;
  InternVLChat model(config, params);
  Generator gen(1);
  params.allocate_uniform(gen, 0.02);
  std::printf("model: %s (%s), %lld parameters in f32 (%.2f GiB), random weights in %.1f s\n", config_path.c_str(),
              config.llm.architecture.c_str(), static_cast<long long>(params.numel()),
              static_cast<double>(params.numel()) * 4 / (1 << 30), seconds_since(t0));

  const int64_t image_tokens = tiles * config.num_image_token(), context_id = config.llm.vocab_size - 1;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < text / 2; ++i) ids.push_back(1 + i % (config.llm.vocab_size - 2));
  for (int64_t i = 0; i < image_tokens; ++i) ids.push_back(context_id);
  while (static_cast<int64_t>(ids.size()) < image_tokens + text) ids.push_back(1 + static_cast<int64_t>(ids.size()) % (config.llm.vocab_size - 2));
  const int64_t T = static_cast<int64_t>(ids.size());
  const Tensor input_ids = Tensor::from_vector(ids, {1, T});
  const Tensor pixels = Tensor::randn({tiles, 3, config.image_size, config.image_size}, gen);
  std::printf("input: %lld tile(s) of %lld px -> %lld image tokens, + %lld text tokens = %lld positions\n\n",
              static_cast<long long>(tiles), static_cast<long long>(config.image_size), static_cast<long long>(image_tokens),
              static_cast<long long>(text), static_cast<long long>(T));

  NoGrad no_grad;
  std::vector<double> vision_seconds, decoder_seconds, total_seconds;
  std::printf("%-6s %12s %12s %12s\n", "run", "vision s", "decoder s", "total s");
  for (int r = 0; r < runs; ++r) {
    t0 = std::chrono::steady_clock::now();
    const Tensor image = model.extract_feature(pixels);
    const double vision = seconds_since(t0);
    const Tensor logits = model.llm().forward(model.splice_image_tokens(input_ids, image, context_id));
    const double total = seconds_since(t0);
    std::printf("%-6d %12.2f %12.2f %12.2f\n", r + 1, vision, total - vision, total);
    if (!std::isfinite(logits.narrow(1, T - 1, 1).to_doubles()[0])) throw std::runtime_error("non-finite logits");
    vision_seconds.push_back(vision), decoder_seconds.push_back(total - vision), total_seconds.push_back(total);
  }
  std::printf("\npeak resident memory: %.2f GiB (parameters %.2f GiB)\n", peak_rss_gib(),
              static_cast<double>(params.numel()) * 4 / (1 << 30));
  report["tiles"] = tiles;
  report["text"] = text;
  report["positions"] = T;
  report["runs"] = runs;
  report.set_seconds(total_seconds);
  report["vision_seconds_median"] = rounded(median(vision_seconds), 6);
  report["decoder_seconds_median"] = rounded(median(decoder_seconds), 6);
  report["parameters"] = params.numel();
  report["config"] = config_path;
  report.print();
  return 0;
}


// One MPO optimizer step of the official benchmark's shape with random weights: P pairs of one image
// (`tiles` tiles each) + `prompt` text tokens + `response` scored tokens; the reference log-probs
// without grad (or read from a cache made once), then mpo_step: the policy forward (each pair's image
// encoded once for both responses), log-probs from the scored rows only, the MPO loss and its
// backward; then AdamW (lr 5e-6, weight decay 0.05, no clipping: the benchmark script's step).
int bench_mpo_step(const ParsedFlags& flags) {
  const std::string config_path = flags.text("--config");
  const int64_t pairs = flags.integer<int64_t>("--pairs", 1), tiles = flags.integer<int64_t>("--tiles", 1);
  const int64_t prompt = flags.integer<int64_t>("--prompt", 1), response = flags.integer<int64_t>("--response", 1);
  const int runs = flags.integer("--runs", 1);
  const std::string reference_mode = flags.text("--reference");
  if (reference_mode != "on-the-fly" && reference_mode != "cached") throw FlagError("--reference must be on-the-fly or cached, got \"" + reference_mode + "\"");
  const bool cached = reference_mode == "cached";
  BenchReport report("mpo-step", flags.boolean("--json"));
  const InternVLChatConfig config = InternVLChatConfig::from_file(config_path);
  auto t0 = std::chrono::steady_clock::now();
  ParameterSet policy_params;
  InternVLChat policy(config, policy_params);
  Generator gen(1);
  policy_params.allocate_uniform(gen, 0.02);
  // The reference: a second copy of the start weights, run every step; or, cached, run once before
  // the timed steps (what a precomputed cache costs per step: nothing) and then dropped.
  auto reference_params = std::make_unique<ParameterSet>();
  auto reference = std::make_unique<InternVLChat>(config, *reference_params);
  reference_params->allocate_zeros();
  copy_into(reference_params->flat(), policy_params.flat());
  policy_params.set_requires_grad(true);
  AdamWOptions adam_options;
  adam_options.weight_decay = 0.05;
  AdamW adam(policy_params, adam_options);
  const bool checkpointing = flags.boolean("--checkpoint");
  policy.set_checkpointing(checkpointing);
  std::printf("model: %s, %lld parameters (policy, its gradients, AdamW's two moments; reference %s) in %.1f s%s\n", config_path.c_str(),
              static_cast<long long>(policy_params.numel()), cached ? "cached" : "on the fly", seconds_since(t0),
              checkpointing ? ", activation checkpointing" : "");

  // The rows of the official benchmark: half the prompt, the image, the rest of the prompt and the response.
  const int64_t vocab = config.llm.vocab_size, context_id = vocab - 1, image_tokens = tiles * config.num_image_token();
  const int64_t T = prompt + image_tokens + response, rows = 2 * pairs;
  std::vector<int64_t> ids, labels;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < prompt / 2; ++i) ids.push_back(1 + i % (vocab - 2));
    for (int64_t i = 0; i < image_tokens; ++i) ids.push_back(context_id);
    for (int64_t i = 0; i < prompt - prompt / 2 + response; ++i) ids.push_back(1 + (i * 7 + r) % (vocab - 2));
    for (int64_t t = 0; t < T; ++t) labels.push_back(t < prompt + image_tokens ? -100 : ids[static_cast<size_t>(r * T + t)]);
  }
  MpoBatch batch;
  batch.pixel_values = Tensor::randn({pairs * tiles, 3, config.image_size, config.image_size}, gen);  // each pair's tiles once
  batch.input_ids = Tensor::from_vector(ids, {rows, T}), batch.labels = Tensor::from_vector(labels, {rows, T});
  batch.attention_mask = Tensor::ones({rows, T}, DType::i64);
  batch.image_context_id = context_id;
  for (int64_t p = 0; p < pairs; ++p) batch.chosen_rows.push_back(p), batch.rejected_rows.push_back(pairs + p);
  for (int64_t r = 0; r < rows; ++r) batch.row_tiles.push_back({(r % pairs) * tiles, tiles});  // both responses, one encoding
  std::printf("work: %lld pair(s), %lld tile(s) each, %lld rows of %lld positions (%lld prompt + %lld image + %lld response)\n",
               static_cast<long long>(pairs), static_cast<long long>(tiles), static_cast<long long>(rows),
               static_cast<long long>(T), static_cast<long long>(prompt), static_cast<long long>(image_tokens),
               static_cast<long long>(response));

  Tensor cached_reference;
  if (cached) {
    t0 = std::chrono::steady_clock::now();
    cached_reference = reference_logps(*reference, batch);
    std::printf("reference log-probs cached in %.1f s (not timed below)\n", seconds_since(t0));
    reference.reset(), reference_params.reset();
  }
  double loss_value = 0;
  auto step = [&] {
    RewardShift shift;  // a fresh shift per step: delta = this batch's mean reward, as the official benchmark
    policy_params.zero_grad();
    const MpoStepResult result = mpo_step(policy, batch, cached ? cached_reference : reference_logps(*reference, batch), shift);
    loss_value = result.loss.loss.item();
    adam.step(5e-6);
  };
  print_cpu();
  std::vector<double> times;
  std::printf("%-6s %12s %12s %12s\n", "run", "seconds", "tokens/s", "loss");
  for (int r = 0; r < runs; ++r) {
    t0 = std::chrono::steady_clock::now();
    step();
    times.push_back(seconds_since(t0));
    std::printf("%-6d %12.2f %12.1f %12.5f\n", r + 1, times.back(), static_cast<double>(rows * T) / times.back(), loss_value);
    if (!std::isfinite(loss_value)) throw std::runtime_error("non-finite loss");
  }
  std::printf("\npeak resident memory: %.2f GiB (parameters %.2f GiB each for the policy, its gradients, the two moments%s)\n",
              peak_rss_gib(), static_cast<double>(policy_params.numel()) * 4 / (1 << 30), cached ? "" : " and the reference");
  report["tiles"] = tiles;
  report.set_seconds(times);
  report["sequences"] = rows;
  report["seq_len"] = T;
  report["tokens"] = rows * T;
  report["tokens_per_s"] = rounded(static_cast<double>(rows * T) / median(times), 1);
  report["pairs"] = pairs;
  report["prompt"] = prompt;
  report["response"] = response;
  report["runs"] = runs;
  report["checkpointing"] = checkpointing;
  report["reference"] = reference_mode;
  report["optimizer"] = "adamw";
  report["parameters"] = policy_params.numel();
  report["config"] = config_path;
  report.print();
  return 0;
}

}  // namespace

// The sum of p[begin, end) in 32 independent lanes (so that the adds never wait on each other),
// with AVX2 where the CPU has it: fast enough that memory, not arithmetic, sets the pace.
template <size_t Lanes>
[[gnu::always_inline]] inline float lane_sum(const float* p, int64_t begin, int64_t end) {
  float sum[Lanes] = {};
  for (int64_t i = begin; i + static_cast<int64_t>(Lanes) <= end; i += static_cast<int64_t>(Lanes))
    for (size_t k = 0; k < Lanes; ++k) sum[k] += p[i + static_cast<int64_t>(k)];
  float total = 0;
  for (size_t k = 0; k < Lanes; ++k) total += sum[k];
  return total;
}
#if defined(__x86_64__) && defined(__GNUC__)
[[gnu::target("avx2")]] float lane_sum_avx2(const float* p, int64_t begin, int64_t end) { return lane_sum<32>(p, begin, end); }
#endif
float fast_sum(const float* p, int64_t begin, int64_t end) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx2")) return lane_sum_avx2(p, begin, end);
#endif
  return lane_sum<32>(p, begin, end);
}

// The machine's memory read bandwidth in bytes/s: the best of several passes summing a buffer far
// larger than the caches on every engine thread.
double read_bandwidth() {
  const int64_t n = int64_t{1} << 28;  // 1 GiB of f32
  Tensor buffer = Tensor::full({n}, 1.0);
  const float* p = buffer.data<float>();
  double best = 0;
  for (int pass = 0; pass < 4; ++pass) {
    std::vector<float> partial(static_cast<size_t>(parallel_threads()) * 16, 0.0f);
    std::atomic<int> slot{0};
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(n, n / parallel_threads(), [&](int64_t begin, int64_t end) {
      partial[static_cast<size_t>(slot++) * 16] = fast_sum(p, begin, end);
    });
    const double seconds = seconds_since(t0);
    double total = 0;
    for (const float v : partial) total += v;
    if (total != static_cast<double>(n)) throw std::runtime_error("bandwidth probe: wrong sum");
    best = std::max(best, static_cast<double>(n) * 4 / seconds);
  }
  return best;
}

// Greedy generation as ../shared/bench/official_cpu.py generate: `batch` rows of one image (`tiles`
// tiles each) + `text` text tokens, `new_tokens` new tokens each (no end token), random weights.
int bench_generate(const ParsedFlags& flags) {
  const std::string config_path = flags.text("--config");
  const int64_t tiles = flags.integer<int64_t>("--tiles", 0), text = flags.integer<int64_t>("--text", tiles == 0 ? 1 : 0);
  const int64_t batch = flags.integer<int64_t>("--batch", 1), new_tokens = flags.integer<int64_t>("--new-tokens", 2);
  const int runs = flags.integer("--runs", 1);
  BenchReport report("generate", flags.boolean("--json"));
  const std::string dtype_name = flags.text("--dtype");
  if (dtype_name != "f32" && dtype_name != "bf16") throw FlagError("--dtype must be f32 or bf16, got '" + dtype_name + "'");
  const DType dtype = dtype_name == "bf16" ? DType::bf16 : DType::f32;
  const double element_bytes = dtype == DType::bf16 ? 2.0 : 4.0;
  const InternVLChatConfig config = InternVLChatConfig::from_file(config_path);
  print_cpu();
  auto t0 = std::chrono::steady_clock::now();
  ParameterSet params(dtype);
  InternVLChat model(config, params);
  Generator gen(1);
  params.allocate_uniform(gen, 0.02);
  std::printf("model: %s (%s), %lld parameters in %s, random weights in %.1f s\n", config_path.c_str(),
              config.llm.architecture.c_str(), static_cast<long long>(params.numel()), dtype_name.c_str(), seconds_since(t0));
  const int64_t vocab = config.llm.vocab_size, context_id = vocab - 1, image_tokens = tiles * config.num_image_token();
  std::vector<int64_t> ids;  // the official script's prompt: half the text, the image, the other half
  for (int64_t i = 0; i < text / 2; ++i) ids.push_back(1 + i % (vocab - 2));
  for (int64_t i = 0; i < image_tokens; ++i) ids.push_back(context_id);
  for (int64_t i = 0; i < text - text / 2; ++i) ids.push_back(1 + i % (vocab - 2));
  std::vector<GenerationPrompt> prompts;
  for (int64_t b = 0; b < batch; ++b)
    prompts.push_back({ids, tiles == 0 ? Tensor() : to_dtype(Tensor::randn({tiles, 3, config.image_size, config.image_size}, gen), dtype),
                       static_cast<uint64_t>(b)});
  GenerationOptions options;
  options.sampling.max_new_tokens = options.sampling.min_new_tokens = new_tokens;
  const auto prompt_length = static_cast<int64_t>(ids.size());

  // The floor: every decoded step reads the decoder's weights once (the embedding only a row; a
  // tied head the whole matrix) and each row's keys and values so far.
  const LlmConfig& llm = config.llm;
  const int64_t llm_params = params.numel("language_model.");
  const int64_t embedding = llm.vocab_size * llm.hidden_size;
  const double weight_bytes = element_bytes * static_cast<double>(llm_params - (llm.tie_word_embeddings ? 0 : embedding) + llm.hidden_size);
  const double kv_bytes_per_position = element_bytes * 2 * static_cast<double>(llm.num_layers * llm.num_kv_heads * llm.head_dim);
  const double mean_positions = static_cast<double>(prompt_length) + static_cast<double>(new_tokens) / 2;
  const double step_bytes = weight_bytes + static_cast<double>(batch) * kv_bytes_per_position * mean_positions;
  const double bandwidth = read_bandwidth();
  const double floor_tokens_per_s = static_cast<double>(batch) * bandwidth / step_bytes;
  std::printf("work: batch %lld, %lld prompt tokens each (%lld text + %lld image), %lld new tokens each, greedy\n",
              static_cast<long long>(batch), static_cast<long long>(prompt_length), static_cast<long long>(text),
              static_cast<long long>(image_tokens), static_cast<long long>(new_tokens));
  std::printf("memory read bandwidth %.1f GB/s; a decode step reads %.2f GB -> floor %.1f tokens/s\n\n", bandwidth / 1e9,
              step_bytes / 1e9, floor_tokens_per_s);

  std::vector<double> prefill, decode_rate, total;
  std::printf("%-6s %12s %16s %12s\n", "run", "prefill s", "decode tok/s", "total s");
  generate(model, context_id, prompts, options);  // warm-up (the block cache, the pages)
  for (int r = 0; r < runs; ++r) {
    GenerationStats stats;
    t0 = std::chrono::steady_clock::now();
    const auto out = generate(model, context_id, prompts, options, {}, &stats);
    const double seconds = seconds_since(t0);
    if (static_cast<int64_t>(out[0].size()) != new_tokens) throw std::runtime_error("generation stopped early");
    const double rate = static_cast<double>(batch * stats.decode_steps) / stats.decode_seconds;
    std::printf("%-6d %12.2f %16.2f %12.2f\n", r + 1, stats.prefill_seconds, rate, seconds);
    prefill.push_back(stats.prefill_seconds), decode_rate.push_back(rate), total.push_back(seconds);
  }
  const double rate = median(decode_rate);
  std::printf("\ndecode %.2f tokens/s = %.0f%% of the floor; peak resident memory %.2f GiB\n", rate, 100 * rate / floor_tokens_per_s,
              peak_rss_gib());
  report["dtype"] = dtype_name;
  report["tiles"] = tiles;
  report.set_seconds(total);
  report["prompt"] = prompt_length;
  report["new_tokens"] = new_tokens;
  report["batch"] = batch;
  report["prefill_seconds_min"] = rounded(*std::min_element(prefill.begin(), prefill.end()), 4);
  report["decode_tokens_per_s"] = rounded(rate, 2);
  report["new_tokens_per_s_incl_prefill"] = rounded(static_cast<double>(batch * new_tokens) / median(total), 1);
  report["read_bandwidth_GBps"] = rounded(bandwidth / 1e9, 2);
  report["floor_tokens_per_s"] = rounded(floor_tokens_per_s, 2);
  report["fraction_of_floor"] = rounded(rate / floor_tokens_per_s, 3);
  report["runs"] = runs;
  report["config"] = config_path;
  report.print();
  return 0;
}

std::vector<Command> bench_commands() {
  const Flag json{"--json", "", "", "print one JSON object on stdout (keys as ../shared/bench/official_cpu.py); the table goes to stderr"};
  return {{{"bench gemm",
            "engine f32 matmul vs a direct cblas_sgemm, per-op overhead; the GPU matmul when there is one",
            {},
            {json},
            ""},
           bench_gemm},
          {{"bench model",
            "one InternVL2 forward with random weights (default: InternVL2-1B shapes): time and peak memory",
            {},
            {{"--config", "FILE", std::string(IVL_SOURCE_DIR) + "/tests/data/internvl2-1b/config.json", "the model's config.json"},
             {"--tiles", "N", "1", "image tiles (of the config's image size) for the vision tower"},
             {"--text", "N", "64", "text tokens around the image tokens"},
             {"--runs", "N", "2", "timed forwards"},
             json},
            ""},
           bench_model},
          {{"bench mpo-step",
            "one MPO training step with random weights (default: InternVL2-1B shapes): reference log-probs, policy forward and backward",
            {},
            {{"--config", "FILE", std::string(IVL_SOURCE_DIR) + "/tests/data/internvl2-1b/config.json", "the model's config.json"},
             {"--pairs", "N", "1", "preference pairs (a chosen and a rejected row each)"},
             {"--tiles", "N", "1", "image tiles per pair, encoded once for both of its rows"},
             {"--prompt", "N", "64", "prompt text tokens around the image tokens"},
             {"--response", "N", "128", "response tokens (the scored ones)"},
             {"--runs", "N", "2", "timed steps"},
             {"--checkpoint", "", "", "activation checkpointing: recompute each ViT layer and decoder block in backward"},
             {"--reference", "on-the-fly|cached", "on-the-fly", "run the reference model every step, or read log-probs cached once (no reference in memory)"},
             json},
            "The work of ../shared/bench/official_cpu.py mpo-step (reference forward, policy forward and\n"
            "backward, AdamW without clipping), with everything trainable."},
           bench_mpo_step},
          {{"bench generate",
            "greedy generation with random weights (default: InternVL2-1B shapes): prefill time, decode tokens/s, the bandwidth floor",
            {},
            {{"--config", "FILE", std::string(IVL_SOURCE_DIR) + "/tests/data/internvl2-1b/config.json", "the model's config.json"},
             {"--tiles", "N", "1", "image tiles per row (0: a text-only prompt)"},
             {"--text", "N", "64", "text tokens around the image tokens"},
             {"--batch", "N", "1", "rows generated together"},
             {"--new-tokens", "N", "128", "new tokens per row"},
             {"--runs", "N", "2", "timed generations (after one warm-up)"},
             {"--dtype", "TYPE", "f32", "the weights' type: f32, or bf16 (decoding reads half the bytes; ops run in f32)"},
             json},
            "The work of ../shared/bench/official_cpu.py generate. The floor is the memory-bandwidth bound\n"
            "of decoding: batch x (read bandwidth, measured here) / (bytes of weights and cached keys and\n"
            "values a step reads)."},
           bench_generate}};
}

}  // namespace ivl::cli
