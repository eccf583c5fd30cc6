// The MPO pair dataset and its collation (see pairs.h).
#include "mpo/pairs.h"

#include <algorithm>
#include <stdexcept>

namespace ivl {

PreferencePair encode_preference_pair(const PreferenceRecord& record, const MmprDatasetSpec& dataset, const Tokenizer& tokenizer,
                                      const PairEncoding& encoding) {
  const SampleKind kind = record.image_list ? SampleKind::multi_image
                          : record.images.empty() ? SampleKind::text_only
                                                  : SampleKind::single_image;
  TileOptions tiles = encoding.tiles;
  if (dataset.max_dynamic_patch > 0) tiles.max_tiles = static_cast<int>(dataset.max_dynamic_patch);
  PreferencePair pair;
  pair.where = record.where();
  ConversationImages images;
  try {
    images = load_sample_images(kind, record.images, tiles);
  } catch (const std::exception& e) {
    throw std::invalid_argument(pair.where + ": " + e.what());
  }
  ConversationOptions options;
  options.num_image_token = encoding.num_image_token;
  options.max_length = encoding.max_seq_length;
  const bool group_by_length = encoding.official_multi_image_padding ? encoding.group_by_length : true;
  for (const bool chosen : {true, false}) {
    Conversation conversation;
    conversation.template_name = encoding.template_name;
    conversation.turns = {{record.question, chosen ? record.chosen : record.rejected}};
    try {
      EncodedConversation encoded = encode_sample(kind, conversation, images, tokenizer, options, group_by_length);
      encoded.pixel_values = Tensor(), encoded.tiles_u8 = Tensor();  // the pair keeps one copy
      (chosen ? pair.chosen : pair.rejected) = std::move(encoded);
    } catch (const std::exception& e) {
      throw std::invalid_argument(pair.where + " (" + (chosen ? "chosen" : "rejected") + "): " + e.what());
    }
  }
  pair.pixel_values = images.pixel_values;
  return pair;
}

std::string untrainable_reason(const PreferencePair& pair) {
  for (const bool chosen : {true, false}) {
    const EncodedConversation& side = chosen ? pair.chosen : pair.rejected;
    if (side.label_count() > 0) continue;
    const std::string name = chosen ? "chosen" : "rejected";
    if (side.mismatch) return "the " + name + " conversation has no scored token (" + side.warning + ")";
    return "the " + name + " response has no scored token left after truncation to " + std::to_string(side.input_ids.size()) +
           " tokens";
  }
  return "";
}

MpoBatch collate_pairs(const std::vector<const PreferencePair*>& pairs, const CollateOptions& options) {
  if (pairs.empty()) fail("collate_pairs: no pairs");
  const auto P = static_cast<int64_t>(pairs.size());
  size_t chosen_length = 0, rejected_length = 0;
  for (const PreferencePair* pair : pairs) {
    chosen_length = std::max(chosen_length, pair->chosen.input_ids.size());
    rejected_length = std::max(rejected_length, pair->rejected.input_ids.size());
  }
  const size_t T = std::max(chosen_length, rejected_length);
  std::vector<int64_t> ids(static_cast<size_t>(2 * P) * T), labels(ids.size(), kIgnoreLabel);
  std::vector<int64_t> mask(ids.size(), 0);
  MpoBatch batch;
  batch.image_context_id = options.image_context_id;
  std::vector<Tensor> tiles;
  int64_t tile_count = 0;
  std::vector<TileSpan> pair_tiles;
  for (const PreferencePair* pair : pairs) {
    const int64_t n = pair->pixel_values.defined() ? pair->pixel_values.size(0) : 0;
    pair_tiles.push_back({tile_count, n});
    if (n > 0) tiles.push_back(pair->pixel_values);
    tile_count += n;
  }
  for (int64_t row = 0; row < 2 * P; ++row) {
    const bool chosen = row < P;
    const PreferencePair& pair = *pairs[static_cast<size_t>(chosen ? row : row - P)];
    const EncodedConversation& side = chosen ? pair.chosen : pair.rejected;
    const size_t half_length = chosen ? chosen_length : rejected_length;
    const size_t base = static_cast<size_t>(row) * T;
    for (size_t t = 0; t < T; ++t) {
      const bool real = t < side.input_ids.size();
      ids[base + t] = real ? side.input_ids[t] : t < half_length ? 0 : options.pad_id;
      labels[base + t] = real ? side.labels[t] : kIgnoreLabel;
      mask[base + t] = real;
    }
    batch.row_tiles.push_back(pair_tiles[static_cast<size_t>(chosen ? row : row - P)]);
    (chosen ? batch.chosen_rows : batch.rejected_rows).push_back(row);
  }
  const Shape shape{2 * P, static_cast<int64_t>(T)};
  batch.input_ids = Tensor::from_vector(ids, shape);
  batch.labels = Tensor::from_vector(labels, shape);
  batch.attention_mask = Tensor::from_vector(mask, shape);
  if (!tiles.empty()) batch.pixel_values = tiles.size() == 1 ? tiles[0] : cat(tiles, 0);
  return batch;
}

}  // namespace ivl
