// The conversation builder shared by the trainers and chat: a conversation (template, system message,
// user/assistant turns) and its images -> exactly the token ids, labels and tiles of the official
// training code (internvl/train/dataset.py preprocess_*, internvl_chat_mpo.py *_get_item), and the
// generation prompt of chat (the prompt ending with the assistant role, no labels).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "llm/chat_template.h"
#include "llm/tokenizer.h"
#include "tensor/tensor.h"
#include "vit/image.h"
#include "vit/tiles.h"

namespace ivl {

// The label of a position that carries no loss (PyTorch's CrossEntropyLoss ignore_index).
inline constexpr int64_t kIgnoreLabel = -100;

struct Conversation {
  std::string template_name;    // Hermes-2, internlm2-chat, phi3-chat or internvl2_5
  std::string system_message;   // "" keeps the template's default (as the training data always does)
  std::vector<ChatTurn> turns;  // user text, assistant text; every assistant text is a label target
};

struct ConversationOptions {
  int64_t num_image_token = 0;     // image tokens per tile: InternVLChatConfig::num_image_token()
  int64_t max_length = 0;          // tokenizer.model_max_length, which the trainer sets to --max_seq_length; 0: none
  bool truncation = true;          // cut ids and labels at max_length (the official truncation=True)
  bool pad_to_max_length = false;  // padding='max_length': the tokenizer's pad id, label -100, right side
  // A pure-text sample: no image tokens, and an "<image>" in the text stays text (the official
  // text_only=True).
  bool text_only = false;
};

// The tiles of a conversation's images, image after image, each image's thumbnail last.
struct ConversationImages {
  std::vector<int64_t> tiles_per_image;
  Tensor tiles_u8;      // u8 [n, S, S, 3], n = the sum of tiles_per_image; undefined when there are no images
  Tensor pixel_values;  // f32 [n, 3, S, S], ImageNet-normalised as the official transform does
  int64_t tile_count() const;
};

struct EncodedConversation {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;  // as long as input_ids; kIgnoreLabel where no loss is taken
  std::vector<int64_t> tiles_per_image;
  Tensor pixel_values, tiles_u8;  // as in ConversationImages (undefined for text-level encodings)
  // The official "tokenization mismatch": the turn-by-turn token count disagreed with the whole
  // sequence's, so every label is kIgnoreLabel (the official code prints a warning and trains on it).
  bool mismatch = false;
  std::string warning;  // the official warning when mismatch ("tokenization mismatch: 120 vs. 121 ..."), else ""
  bool truncated = false;       // the sequence was cut at max_length
  int64_t untruncated_length = 0;  // tokens before truncation and padding
  int64_t label_count() const;  // positions whose label is not kIgnoreLabel
};

// The whole conversation as the template's get_prompt() writes it with every answer filled in (what
// the trainer tokenizes, before image tags are expanded). An empty message gets its role only, as
// get_prompt() does; internvl2_5 builds the same string from its per-message pieces.
std::string conversation_text(const Conversation& conversation);

// Token ids and labels of `conversation` for training, with the label-masking algorithm of the
// template's official preprocess function reproduced step by step (Hermes-2: preprocess_mpt,
// internlm2-chat: preprocess_internlm, phi3-chat: preprocess_phi3, internvl2_5:
// preprocess_internvl2_5): turn lengths come from re-tokenizing the pieces of the text split at the
// separators, so the labels are what the official code computes even where its offsets are off.
// Image tags: each "<image>" of the user texts takes the next image, in order, and becomes <img> +
// <IMG_CONTEXT> x (num_image_token x tiles) + </img>. Throws std::invalid_argument when the number of
// tags differs from tiles_per_image.size(), when a tag sits in the system message or an answer, for
// an unknown template, an empty conversation, padding without max_length or without a pad token, and
// for text that the official internlm2-chat algorithm cannot split (it raises there).
EncodedConversation encode_conversation(const Conversation& conversation, const Tokenizer& tokenizer,
                                        const std::vector<int64_t>& tiles_per_image, const ConversationOptions& options = {});
// The same, taking the tile counts from `images` and attaching their tiles to the result.
EncodedConversation encode_conversation_with_images(const Conversation& conversation, const Tokenizer& tokenizer,
                                                    const ConversationImages& images, const ConversationOptions& options);

// Tiles every image with the same options (dynamic tiles, thumbnail, normalisation; vit/tiles.h).
ConversationImages tile_images(const std::vector<Image>& images, const TileOptions& options);
// Loads (vit/image.h) and tiles the files in order; a missing or unreadable file throws, naming it.
ConversationImages load_and_tile_images(const std::vector<std::string>& paths, const TileOptions& options = {});

// ---- the samples of the official datasets (internvl_chat_mpo.py; internvl_chat_finetune.py agrees) ----

// The path __getitem__ takes for a record: its "image" is a non-empty JSON list (multi_image, even
// with one element), a non-empty string (single_image), or absent/empty (text_only).
enum class SampleKind { text_only, single_image, multi_image };

// The tile options of each image of a sample: the dataset's (its meta max_dynamic_patch overriding
// the flag), except that in a multi-image sample each image gets max(1, max_tiles / image_count).
TileOptions sample_tile_options(SampleKind kind, size_t image_count, const TileOptions& dataset_options);

// The sample's images, tiled as the official get_item does. text_only gives no tiles: the official
// code tiles a white 224x224 image with image_flags 0, which the model then drops from the vision
// tokens (vit_embeds[image_flags == 1]), so leaving it out changes no number; a trainer that batches
// such a sample simply contributes no tiles.
ConversationImages load_sample_images(SampleKind kind, const std::vector<std::string>& paths, const TileOptions& dataset_options);

// Encodes one conversation of a sample (the chosen or the rejected one of an MPO pair), applying
// the rules of the sample's path on top of `options`:
//   single_image: "<image>\n" goes in front of the first question when it has no "<image>";
//   multi_image:  nothing is prepended (the question must hold one "<image>" per image), and the
//                 official code tokenizes with group_by_length passed through, so unless
//                 group_by_length the sequence is padded to max_length (the MPO scripts set it False);
//   text_only:    no image tokens; an "<image>" in the text stays text.
// The single-image and text-only paths never pad (they pass group_by_length=True). The kind sets
// options.text_only and options.pad_to_max_length; the caller's values of those two are ignored.
EncodedConversation encode_sample(SampleKind kind, const Conversation& conversation, const ConversationImages& images,
                                  const Tokenizer& tokenizer, const ConversationOptions& options, bool group_by_length = false);

// ---- generation ----

struct EncodedPrompt {
  std::string text;                // the prompt with image tags expanded
  std::vector<int64_t> input_ids;  // with the tokenizer's BOS (InternLM2) as chat() tokenizes it
};

// The official chat(): `question` after the turns of `history` (history.turns are complete turns;
// history.template_name and system_message choose the prompt), ending with the assistant role.
// With images and no history, "<image>\n" goes in front of a question that has none; each "<image>"
// then takes the next image's tiles. Throws as encode_conversation for mismatched tags and images.
EncodedPrompt encode_prompt(const Conversation& history, const std::string& question, const Tokenizer& tokenizer,
                            const std::vector<int64_t>& tiles_per_image, int64_t num_image_token);

}  // namespace ivl
