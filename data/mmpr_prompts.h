// The question the official MMPR sampler (mmpr_data_pipeline_correctness.py) gives the model: the
// direct-answer suffixes stripped, the CoT instruction of the prompt version around it, the
// <image> rules. Strings exact (../shared/fixtures/mmpr/prompts.json).
#pragma once

#include <string>
#include <string_view>

#include "data/judge.h"

namespace ivl {

// The CoT instruction of a version, with "{question}" where the question goes.
const char* cot_template(PromptVersion version);

struct SamplingPrompt {
  // What the model is asked: image items keep "<image>" placeholders (one per image, or one in
  // front for all); a text-only item's "<image>" becomes the literal text "<IMAGE_TOKEN>", as
  // lmdeploy sees it.
  std::string model_input;
  std::string stored_question;  // the sampled record's "question", the pair builder's grouping key
};
// has_image: the item has a non-empty "image" (a path or a list).
SamplingPrompt sampling_prompt(std::string_view question, PromptVersion version, bool has_image);

// The official switch: a prompt file whose path holds "_zh_" asks in Chinese (en -> zh).
PromptVersion version_for_path(PromptVersion version, std::string_view prompt_path);

}  // namespace ivl
