// Generation with the assembled model, as the official InternVLChatModel.generate() runs it: the
// image tokens spliced into the prompt's embeddings, a batch left-padded (batch_chat), one prefill
// pass over the whole prompt into a KV cache (logits of the last position only), then one token per
// step, each row stopping on its own.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "internvl/internvl_chat.h"
#include "llm/sampling.h"

namespace ivl {

struct GenerationPrompt {
  std::vector<int64_t> ids;  // the tokenized prompt, its <IMG_CONTEXT> positions included
  Tensor pixel_values;       // [tiles, 3, S, S] for those positions; undefined for a text-only prompt
  uint64_t sample_id = 0;    // the sample's own stream of draws (see sampling.h)
};

struct GenerationOptions {
  SamplingOptions sampling;
  std::vector<int64_t> eos_ids;  // a row stops after generating one of these (it is kept in the output)
  int64_t pad_id = 0;            // the id left padding and finished rows are fed (masked)
};

// Called with each new token of each row as it is chosen; returning true stops that row there (the
// token is kept): stop strings, streaming output.
using TokenCallback = std::function<bool(size_t row, int64_t token)>;

struct GenerationStats {
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t prompt_tokens = 0, decode_steps = 0, new_tokens = 0;
};

// The new ids of each prompt (the prompt is not echoed, as the official generate with
// inputs_embeds): up to max_new_tokens each, ending at the first eos id when one comes.
std::vector<std::vector<int64_t>> generate(const InternVLChat& model, int64_t image_context_id,
                                           const std::vector<GenerationPrompt>& prompts, const GenerationOptions& options,
                                           const TokenCallback& on_token = {}, GenerationStats* stats = nullptr);

}  // namespace ivl
