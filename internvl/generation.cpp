// Batched generation with a KV cache (see generation.h).
#include "internvl/generation.h"

#include <algorithm>
#include <chrono>

#include "tensor/autograd.h"
#include "tensor/ops.h"

namespace ivl {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Row b's logits [V] of a [B, 1, V] tensor (bf16 ones widened to f32).
std::vector<float> row_logits(const Tensor& logits_in, int64_t b) {
  const Tensor logits = logits_in.dtype() == DType::f32 ? logits_in : contiguous(to_dtype(logits_in.narrow(0, b, 1), DType::f32));
  const int64_t V = logits.size(2), row = logits_in.dtype() == DType::f32 ? b : 0;
  const float* p = logits.data<float>() + row * V;
  return std::vector<float>(p, p + V);
}

}  // namespace

std::vector<std::vector<int64_t>> generate(const InternVLChat& model, int64_t image_context_id,
                                           const std::vector<GenerationPrompt>& prompts, const GenerationOptions& options,
                                           const TokenCallback& on_token, GenerationStats* stats) {
  if (prompts.empty()) return {};
  if (const std::string why = options.sampling.invalid(); !why.empty()) fail("generate: " + why);
  const Decoder& llm = model.llm();
  const int64_t B = static_cast<int64_t>(prompts.size()), vocab = llm.config().vocab_size;
  int64_t L = 0;
  for (size_t b = 0; b < prompts.size(); ++b) {
    if (prompts[b].ids.empty()) fail("generate: prompt " + std::to_string(b) + " is empty");
    for (const int64_t id : prompts[b].ids)
      if (id < 0 || id >= vocab)
        fail("generate: prompt " + std::to_string(b) + " holds token id " + std::to_string(id) + ", outside the vocabulary of " +
             std::to_string(vocab));
    L = std::max<int64_t>(L, static_cast<int64_t>(prompts[b].ids.size()));
  }
  const int64_t max_new = options.sampling.max_new_tokens, capacity = L + max_new;
  if (llm.config().max_position_embeddings > 0 && llm.config().dynamic_ntk_factor <= 0 &&
      capacity > llm.config().max_position_embeddings)
    fail("generate: " + std::to_string(L) + " prompt tokens + " + std::to_string(max_new) + " new ones exceed the model's " +
         std::to_string(llm.config().max_position_embeddings) + " positions");

  NoGrad no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  // Left padding (batch_chat's padding_side 'left'); positions count each row's real tokens, as HF's
  // cumsum(attention_mask) - 1.
  std::vector<int64_t> ids(static_cast<size_t>(B * L), options.pad_id), mask(static_cast<size_t>(B * L), 0),
      positions(static_cast<size_t>(B * L), 1), next_position(static_cast<size_t>(B), 0);
  std::vector<Tensor> pixels;
  std::vector<TileSpan> row_tiles;
  int64_t tiles = 0;
  for (int64_t b = 0; b < B; ++b) {
    const GenerationPrompt& prompt = prompts[static_cast<size_t>(b)];
    const int64_t n = static_cast<int64_t>(prompt.ids.size()), pad = L - n;
    for (int64_t t = 0; t < n; ++t) {
      const auto i = static_cast<size_t>(b * L + pad + t);
      ids[i] = prompt.ids[static_cast<size_t>(t)], mask[i] = 1, positions[i] = t;
    }
    next_position[static_cast<size_t>(b)] = n;
    const int64_t count = prompt.pixel_values.defined() ? prompt.pixel_values.size(0) : 0;
    if (count > 0) pixels.push_back(prompt.pixel_values);
    row_tiles.push_back({tiles, count});
    tiles += count;
  }
  const Tensor id_tensor = Tensor::from_vector<int64_t>(ids, {B, L});
  const Tensor image_tokens = pixels.empty() ? Tensor() : model.extract_feature(pixels.size() == 1 ? pixels[0] : cat(pixels, 0));
  const Tensor embeddings = model.splice_image_tokens(id_tensor, image_tokens, image_context_id, row_tiles);
  KvCache cache = KvCache::allocate(llm.config(), B, capacity, embeddings.dtype());
  std::vector<int64_t> full_mask = mask;  // [B, past + T], grown by one column a step
  int64_t width = L;
  Tensor hidden = llm.hidden(embeddings, Tensor::from_vector<int64_t>(full_mask, {B, L}),
                             Tensor::from_vector<int64_t>(positions, {B, L}), &cache);
  Tensor logits = llm.logits(hidden.narrow(1, L - 1, 1)).contiguous();  // the last position only
  if (stats) stats->prefill_seconds = seconds_since(t0), stats->prompt_tokens = B * L;

  const auto t1 = std::chrono::steady_clock::now();
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(B));
  std::vector<bool> done(static_cast<size_t>(B), false);
  int64_t steps = 0;
  for (int64_t step = 0; step < max_new; ++step) {
    std::vector<int64_t> next(static_cast<size_t>(B), options.pad_id);
    for (int64_t b = 0; b < B; ++b) {
      const auto r = static_cast<size_t>(b);
      if (done[r]) continue;
      const int64_t token =
          choose_token(row_logits(logits, b), out[r], options.eos_ids, options.sampling, prompts[r].sample_id, step);
      out[r].push_back(token), next[r] = token;
      const bool eos = std::find(options.eos_ids.begin(), options.eos_ids.end(), token) != options.eos_ids.end();
      const bool stop = on_token && on_token(r, token);
      done[r] = eos || stop || static_cast<int64_t>(out[r].size()) >= max_new;
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    // One more position per row: every row is fed (finished ones their pad, masked in as HF does).
    std::vector<int64_t> grown(static_cast<size_t>(B * (width + 1)));
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(full_mask.begin() + b * width, width, grown.begin() + b * (width + 1));
      grown[static_cast<size_t>(b * (width + 1) + width)] = 1;
    }
    full_mask.swap(grown), ++width;
    std::vector<int64_t> step_positions(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) step_positions[static_cast<size_t>(b)] = next_position[static_cast<size_t>(b)]++;
    const Tensor step_embeddings = llm.embed(Tensor::from_vector<int64_t>(next, {B, 1}));
    hidden = llm.hidden(step_embeddings, Tensor::from_vector<int64_t>(full_mask, {B, width}),
                        Tensor::from_vector<int64_t>(step_positions, {B, 1}), &cache);
    logits = llm.logits(hidden).contiguous();
    ++steps;
  }
  if (stats) {
    stats->decode_seconds = seconds_since(t1), stats->decode_steps = steps, stats->new_tokens = 0;
    for (const auto& row : out) stats->new_tokens += static_cast<int64_t>(row.size());
  }
  return out;
}

}  // namespace ivl
