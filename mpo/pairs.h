// The MPO pair dataset: an MMPR record (data/mmpr.h) made into what the official MPO dataset returns
// for it (chosen and rejected ids and labels, the pair's tiles), and micro-batches of pairs made into
// one MpoBatch, each pair's image encoded once for both of its responses.
// Shapes: P pairs -> 2P rows [chosen_0 .. chosen_{P-1}, rejected_0 .. rejected_{P-1}] of T positions.
#pragma once
#include <string>
#include <vector>

#include "data/mmpr.h"
#include "internvl/conversation.h"
#include "mpo/step.h"

namespace ivl {

struct PairEncoding {
  std::string template_name;     // --conv_style, else the model's config.json "template"
  int64_t num_image_token = 0;   // per tile, InternVLChatConfig::num_image_token()
  int64_t max_seq_length = 0;    // tokenizer truncation (0: none)
  TileOptions tiles;             // the flags' tiling; a dataset's meta max_dynamic_patch overrides max_tiles
  // The official multi-image path pads its sequences to max_seq_length (it passes group_by_length
  // to the tokenizer; every other path passes True). Padding changes no number of the loss, only T
  // and the time, so by default no path pads; true reproduces the official sequences.
  bool official_multi_image_padding = false;
  bool group_by_length = false;  // the official flag, read only with official_multi_image_padding
};

struct PreferencePair {
  EncodedConversation chosen, rejected;  // ids and labels (tiles are in pixel_values)
  Tensor pixel_values;                   // [tiles, 3, S, S] f32, undefined for a text-only record
  std::string where;                     // "annotation.jsonl:line"
};

// Encodes one record as the official dataset does for the template. A missing or unreadable image
// throws std::invalid_argument naming the record (file:line) and the image.
PreferencePair encode_preference_pair(const PreferenceRecord& record, const MmprDatasetSpec& dataset, const Tokenizer& tokenizer,
                                      const PairEncoding& encoding);

// Why a pair cannot be trained on, or "" when it can: a side without a single scored token (the
// official code turns such a batch's NLL into 0/0 = NaN).
std::string untrainable_reason(const PreferencePair& pair);

struct CollateOptions {
  int64_t pad_id = 0;            // the tokenizer's pad token: pads between the chosen and the rejected half
  int64_t image_context_id = -1;
};

// One micro-batch. Padding is on the right with label -100, and the attention mask comes from the
// lengths (the official collator derives it from id != 0, which would also mask a real token 0).
// The pad ids are the official ones, 0 within each half and pad_id up to the common length: they are
// masked and never scored, so only the logits/* metrics (means over every position) see them.
MpoBatch collate_pairs(const std::vector<const PreferencePair*>& pairs, const CollateOptions& options);

}  // namespace ivl
