// InternVLChat assembly and loading (see internvl_chat.h).
#include "internvl/internvl_chat.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "nn/safetensors.h"

namespace ivl {

InternVLChatConfig InternVLChatConfig::from_file(const std::string& config_json) {
  return from(ConfigReader::from_file(config_json));
}

InternVLChatConfig InternVLChatConfig::from(const ConfigReader& c) {
  InternVLChatConfig cfg;
  cfg.vision = VisionConfig::from(c.child("vision_config"));
  cfg.llm = LlmConfig::from(c.child("llm_config"));
  cfg.downsample_ratio = c.number("downsample_ratio", 0.5);
  cfg.ps_version = parse_ps_version(c.string("ps_version", "v1"));
  cfg.select_layer = c.integer("select_layer", -1);
  cfg.template_name = c.string("template", "");
  cfg.image_size = c.integer("force_image_size", cfg.vision.image_size);
  const int64_t L = cfg.vision.num_layers;
  if (cfg.select_layer < -(L + 1) || cfg.select_layer > L)
    c.fail_at("select_layer", "must index the " + std::to_string(L + 1) + " hidden states of the vision model");
  const double per_side = static_cast<double>(cfg.image_size / cfg.vision.patch_size) * cfg.downsample_ratio;
  if (per_side != std::floor(per_side) || per_side < 1)
    c.fail_at("downsample_ratio", "must turn the " + std::to_string(cfg.image_size / cfg.vision.patch_size) +
                                      "-patch grid into a whole number of tokens per side");
  return cfg;
}

int64_t InternVLChatConfig::num_image_token() const {
  const double side = static_cast<double>(image_size / vision.patch_size) * downsample_ratio;
  return static_cast<int64_t>(side * side);
}

int64_t InternVLChatConfig::vit_layers_to_run() const {
  // hidden_states has num_layers + 1 entries: [0] the embeddings, [k] the output of layer k - 1.
  return select_layer < 0 ? vision.num_layers + 1 + select_layer : select_layer;
}

InternVLChat::InternVLChat(const InternVLChatConfig& config, ParameterSet& params)
    : config_(config), vision_(config.vision, params) {
  const auto merge = static_cast<int64_t>(std::lround(1.0 / (config.downsample_ratio * config.downsample_ratio)));
  projector_ = Projector(params, config.vision.hidden_size * merge, config.llm.hidden_size);
  llm_ = Decoder(config.llm, params);
}

Tensor InternVLChat::extract_feature(const Tensor& pixel_values, Generator* drop_path) const {
  const Tensor hidden = vision_.forward(pixel_values, config_.vit_layers_to_run(), drop_path);
  return vit_to_llm_tokens(hidden, config_.downsample_ratio, config_.ps_version, projector_);
}

Tensor InternVLChat::splice_image_tokens(const Tensor& input_ids, const Tensor& image_tokens, int64_t image_context_id,
                                        const std::vector<TileSpan>& row_tiles) const {
  if (input_ids.dim() != 2) fail("splice_image_tokens: input_ids must be [B, T], got " + input_ids.str());
  const int64_t B = input_ids.size(0), T = input_ids.size(1), H = config_.llm.hidden_size;
  const int64_t tiles = image_tokens.defined() ? image_tokens.size(0) : 0;
  const int64_t per_tile = image_tokens.defined() ? image_tokens.numel() / std::max<int64_t>(tiles * H, 1) : 0;
  if (!row_tiles.empty() && static_cast<int64_t>(row_tiles.size()) != B)
    fail("splice_image_tokens: " + std::to_string(row_tiles.size()) + " tile spans for " + std::to_string(B) + " rows");
  const Tensor text = llm_.embed(input_ids).reshape({B * T, H});
  const std::vector<double> ids = input_ids.to_doubles();
  std::vector<int64_t> source(ids.size(), 0);
  std::vector<uint8_t> is_image(ids.size(), 0);
  int64_t next = 0, found = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t in_row = 0;
    if (!row_tiles.empty()) {
      const TileSpan span = row_tiles[static_cast<size_t>(b)];
      if (span.first < 0 || span.count < 0 || span.first + span.count > tiles)
        fail("splice_image_tokens: row " + std::to_string(b) + " asks for tiles [" + std::to_string(span.first) + ", " +
             std::to_string(span.first + span.count) + ") of " + std::to_string(tiles));
      next = span.first * per_tile;
    }
    for (int64_t t = 0; t < T; ++t) {
      const auto i = static_cast<size_t>(b * T + t);
      if (static_cast<int64_t>(ids[i]) == image_context_id) is_image[i] = 1, source[i] = next++, ++in_row;
    }
    found += in_row;
    if (!row_tiles.empty() && in_row != row_tiles[static_cast<size_t>(b)].count * per_tile)
      fail("splice_image_tokens: row " + std::to_string(b) + " has " + std::to_string(in_row) + " image-context positions (id " +
           std::to_string(image_context_id) + ") but its " + std::to_string(row_tiles[static_cast<size_t>(b)].count) +
           " tile(s) give " + std::to_string(row_tiles[static_cast<size_t>(b)].count * per_tile) + " tokens");
  }
  const int64_t available = tiles * per_tile;
  if (row_tiles.empty() && found != available)
    fail("splice_image_tokens: the batch has " + std::to_string(found) + " image-context positions (id " +
         std::to_string(image_context_id) + ") but the images give " + std::to_string(available) + " tokens");
  if (found == 0) return text.reshape({B, T, H});
  const Tensor rows = index_select(image_tokens.reshape({available, H}), 0, Tensor::from_vector(source, {B * T}));
  const Tensor mask = Tensor::from_vector(is_image, {B * T, 1}).to(DType::boolean);
  return where(mask, rows, text).reshape({B, T, H});
}

Tensor InternVLChat::hidden(const Tensor& pixel_values, const Tensor& input_ids, const Tensor& attention_mask,
                            int64_t image_context_id, const std::vector<TileSpan>& row_tiles, Generator* drop_path) const {
  const Tensor image_tokens = pixel_values.defined() ? extract_feature(pixel_values, drop_path) : Tensor();
  return llm_.hidden(splice_image_tokens(input_ids, image_tokens, image_context_id, row_tiles), attention_mask);
}

Tensor InternVLChat::forward(const Tensor& pixel_values, const Tensor& input_ids, const Tensor& attention_mask,
                             int64_t image_context_id, const std::vector<TileSpan>& row_tiles, Generator* drop_path) const {
  return llm_.logits(hidden(pixel_values, input_ids, attention_mask, image_context_id, row_tiles, drop_path));
}

SharedTiles share_identical_tiles(const Tensor& pixel_values, const Tensor& ids, int64_t image_context_id,
                                  int64_t tokens_per_tile) {
  if (ids.dim() != 2) fail("share_identical_tiles: input_ids must be [B, T], got " + ids.str());
  const int64_t B = ids.size(0), T = ids.size(1), tiles = pixel_values.defined() ? pixel_values.size(0) : 0;
  const std::vector<double> id_values = ids.to_doubles();
  std::vector<TileSpan> batch_spans;
  int64_t next = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t count = 0;
    for (int64_t t = 0; t < T; ++t) count += static_cast<int64_t>(id_values[static_cast<size_t>(b * T + t)]) == image_context_id;
    if (count % tokens_per_tile != 0)
      fail("share_identical_tiles: row " + std::to_string(b) + " has " + std::to_string(count) +
           " image-context positions, not a multiple of " + std::to_string(tokens_per_tile));
    batch_spans.push_back({next, count / tokens_per_tile});
    next += count / tokens_per_tile;
  }
  if (next != tiles)
    fail("share_identical_tiles: the rows' image-context positions ask for " + std::to_string(next) + " tiles; the batch has " +
         std::to_string(tiles));
  auto pixels_of = [&](const TileSpan& s) { return pixel_values.narrow(0, s.first, s.count).to_doubles(); };
  SharedTiles out;
  std::vector<int64_t> keep, source(static_cast<size_t>(tiles), 0);
  for (int64_t b = 0; b < B; ++b) {
    const TileSpan span = batch_spans[static_cast<size_t>(b)];
    TileSpan shared{static_cast<int64_t>(keep.size()), span.count};
    for (int64_t earlier = 0; earlier < b; ++earlier) {
      const TileSpan other = batch_spans[static_cast<size_t>(earlier)];
      if (other.count == span.count && span.count > 0 && pixels_of(other) == pixels_of(span)) {
        shared.first = out.row_tiles[static_cast<size_t>(earlier)].first;
        break;
      }
    }
    if (shared.first == static_cast<int64_t>(keep.size()))
      for (int64_t i = 0; i < span.count; ++i) keep.push_back(span.first + i);
    for (int64_t i = 0; i < span.count; ++i) source[static_cast<size_t>(span.first + i)] = shared.first + i;
    out.row_tiles.push_back(shared);
  }
  if (!keep.empty()) out.pixel_values = index_select(pixel_values, 0, Tensor::from_vector(keep, {static_cast<int64_t>(keep.size())}));
  out.batch_tile_source = Tensor::from_vector(source, {tiles});
  return out;
}

void apply_freezing(const InternVLChatConfig& config, ParameterSet& params, const FreezeOptions& options) {
  if (options.freeze_backbone) params.freeze("vision_model.");
  if (options.freeze_llm) params.freeze("language_model.");
  if (options.freeze_mlp) params.freeze("mlp1.");
  if (options.unfreeze_vit_layers != 0) {  // layers[k:], Python's slice
    const int64_t L = config.vision.num_layers, k = options.unfreeze_vit_layers;
    for (int64_t i = std::clamp<int64_t>(k < 0 ? L + k : k, 0, L); i < L; ++i)
      params.unfreeze("vision_model.encoder.layers." + std::to_string(i) + ".");
  }
}

LoadedModel load_internvl(const std::string& model_dir, const std::string& weights) {
  return load_internvl(InternVLChatConfig::from_file((std::filesystem::path(model_dir) / "config.json").string()),
                       weights.empty() ? model_dir : weights);
}

LoadedModel load_internvl(const InternVLChatConfig& config, const std::string& weights) {
  LoadedModel loaded;
  loaded.config = config;
  loaded.params = std::make_unique<ParameterSet>();
  loaded.model = std::make_unique<InternVLChat>(loaded.config, *loaded.params);
  loaded.params->load(SafetensorsCheckpoint(weights));
  return loaded;
}

}  // namespace ivl
