// InternVLChat: the vision tower, pixel shuffle + mlp1, and the decoder, assembled as the official
// modeling_internvl_chat.py does: each <IMG_CONTEXT> position of the text takes, in order, the next
// image token (or those of the row's own tiles: one encoding can serve several rows); padding is on
// the right; hidden states come out [B, T, H] and logits [B, T, V].
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "llm/decoder.h"
#include "nn/parameters.h"
#include "vit/intern_vit.h"
#include "vit/projector.h"

namespace ivl {

struct InternVLChatConfig {
  VisionConfig vision;
  LlmConfig llm;
  double downsample_ratio = 0.5;
  PixelShuffleVersion ps_version = PixelShuffleVersion::v1;
  int64_t select_layer = -1;
  int64_t image_size = 0;  // force_image_size, else the vision config's
  std::string template_name;
  static InternVLChatConfig from_file(const std::string& config_json);
  static InternVLChatConfig from(const ConfigReader& config);
  int64_t num_image_token() const;  // per tile: (image_size / patch)^2 * downsample_ratio^2
  int64_t vit_layers_to_run() const;  // select_layer as a layer count (hidden_states[select_layer])
};

// Which image tiles fill the <IMG_CONTEXT> positions of one row: tiles [first, first + count) of the
// encoded batch, in order. Rows may share tiles: the chosen and the rejected response of a pair are
// two rows over one encoding of its image, and the tape adds both rows' gradients into it.
struct TileSpan {
  int64_t first = 0, count = 0;
};

// A batch in the official layout (each row's <IMG_CONTEXT> positions take the next tiles in order,
// so a pair's tiles appear once per response) reduced to its distinct tile sequences: rows whose tiles
// hold the same pixels share one copy. For comparing with the official trainer's batches.
struct SharedTiles {
  Tensor pixel_values;              // [distinct tiles, 3, S, S]; undefined when no row has an image
  std::vector<TileSpan> row_tiles;  // per row, into pixel_values
  Tensor batch_tile_source;         // [batch tiles] i64: the distinct tile that each tile of the batch is
};
SharedTiles share_identical_tiles(const Tensor& pixel_values, const Tensor& input_ids, int64_t image_context_id,
                                  int64_t tokens_per_tile);

class InternVLChat {
 public:
  // Declares every parameter (official names) in `params`; fill them with params.load / allocate.
  InternVLChat(const InternVLChatConfig& config, ParameterSet& params);

  // pixel_values [N, 3, S, S] -> image tokens [N, num_image_token, H_llm].
  Tensor extract_feature(const Tensor& pixel_values, Generator* drop_path = nullptr) const;
  // Token embeddings of input_ids [B, T] with every position holding `image_context_id` replaced by
  // a row of image_tokens [N, tokens, H]. Without `row_tiles`, the positions take the image tokens in
  // row-major order, as the official forward does (the counts must agree). With it (one span per
  // row), row b's positions take, in order, the tokens of its own tiles, which other rows may share.
  Tensor splice_image_tokens(const Tensor& input_ids, const Tensor& image_tokens, int64_t image_context_id,
                             const std::vector<TileSpan>& row_tiles = {}) const;
  // The final hidden states [B, T, H] of the whole model; logits are llm().logits(hidden).
  Tensor hidden(const Tensor& pixel_values, const Tensor& input_ids, const Tensor& attention_mask, int64_t image_context_id,
                const std::vector<TileSpan>& row_tiles = {}, Generator* drop_path = nullptr) const;
  // The whole forward: logits [B, T, V] in f32.
  Tensor forward(const Tensor& pixel_values, const Tensor& input_ids, const Tensor& attention_mask, int64_t image_context_id,
                 const std::vector<TileSpan>& row_tiles = {}, Generator* drop_path = nullptr) const;

  const InternVLChatConfig& config() const { return config_; }
  // Activation checkpointing of every ViT layer and decoder block while recording a graph (memory
  // for one layer's activations instead of all; one more forward). Numbers do not change.
  void set_checkpointing(bool on) { vision_.set_checkpointing(on), llm_.set_checkpointing(on); }
  const InternViT& vision() const { return vision_; }
  const Projector& projector() const { return projector_; }
  const Decoder& llm() const { return llm_; }

 private:
  InternVLChatConfig config_;
  InternViT vision_;
  Projector projector_;
  Decoder llm_;
};

// The official freezing flags (internvl_chat_finetune.py / _mpo.py), applied in their order:
// --freeze_backbone freezes vision_model.*, --freeze_llm language_model.*, --freeze_mlp mlp1.*, then
// --unfreeze_vit_layers k makes vision_model.encoder.layers[k:] trainable again (a Python slice: k < 0
// counts from the end; 0 means none). --unfreeze_lm_head has no counterpart: the official code sets
// `lm_head.requires_grad = True` on the nn.Linear module object, a plain attribute that changes no
// parameter, so the flag does nothing there and nothing here. (Not done here either: ViT layers past
// select_layer get no gradient officially, grad None, which plain torch's AdamW skips, while ours
// sees zeros and decays them; every published config has select_layer -1. A caller matching a run
// with another select_layer without DeepSpeed would freeze them.)
struct FreezeOptions {
  bool freeze_backbone = false, freeze_llm = false, freeze_mlp = false;
  int64_t unfreeze_vit_layers = 0;
};
void apply_freezing(const InternVLChatConfig& config, ParameterSet& params, const FreezeOptions& options);

// A model directory as published: config.json plus model.safetensors (or shards with an index).
struct LoadedModel {
  InternVLChatConfig config;
  std::unique_ptr<ParameterSet> params;
  std::unique_ptr<InternVLChat> model;
};
// Loads `weights` (a .safetensors file or a directory; default: the model directory itself).
LoadedModel load_internvl(const std::string& model_dir, const std::string& weights = "");
// The model of `config` (a config.json read and then changed, as the trainer's flags do) with the
// weights of `weights` (a .safetensors file or a model directory).
LoadedModel load_internvl(const InternVLChatConfig& config, const std::string& weights);

}  // namespace ivl
