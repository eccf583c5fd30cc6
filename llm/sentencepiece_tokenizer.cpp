// SentencePiece through libsentencepiece (0.1.97 on Debian 12, the version that still loads
// InternLM2's model with its literal NUL piece). The model's own normalizer runs as is: for InternLM2
// it is the identity without a dummy prefix, so " hi" encodes as "▁hi" and "hi" as "hi".
#include "llm/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <stdexcept>

#include "llm/tokenizer_files.h"

namespace ivl {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& model_path, const AddedTokens& added)
      : Tokenizer(TokenizerFamily::sentencepiece, added) {
    // Read the file here so that a missing file says so; then let SentencePiece parse it.
    const std::string serialized = read_text_file(model_path);
    const auto status = processor_.LoadFromSerializedProto(serialized);
    if (!status.ok()) fail_in_file(model_path, "not a SentencePiece model (" + status.ToString() + ")");
    if (processor_.GetPieceSize() <= 0) fail_in_file(model_path, "not a SentencePiece model (it has no pieces)");
    description_ = model_path + ": " + std::to_string(processor_.GetPieceSize()) + " pieces, " +
                   std::to_string(added.list().size()) + " added tokens";
  }

  std::string describe() const override { return "SentencePiece (" + description_ + ")"; }

 protected:
  void encode_ordinary(std::string_view text, std::vector<int64_t>& ids) const override {
    std::vector<int> pieces;
    const auto status = processor_.Encode(text, &pieces);
    if (!status.ok()) throw std::runtime_error("SentencePiece encode: " + status.ToString());
    ids.insert(ids.end(), pieces.begin(), pieces.end());
  }

  // SentencePiece turns "▁" back into spaces, joins byte-fallback pieces into characters (U+FFFD for
  // invalid bytes) and, with add_dummy_prefix false as in InternLM2, keeps a leading space.
  void decode_ordinary(const int64_t* ids, size_t count, std::string& text) const override {
    const std::vector<int> pieces(ids, ids + count);
    std::string decoded;
    const auto status = processor_.Decode(pieces, &decoded);
    if (!status.ok()) throw std::runtime_error("SentencePiece decode: " + status.ToString());
    text += decoded;
  }

  int64_t model_token_id(std::string_view token) const override {
    const int id = processor_.PieceToId(token);
    // Unknown pieces come back as the <unk> id; only "<unk>" itself really is that id.
    if (id == processor_.unk_id() && token != processor_.IdToPiece(id)) return -1;
    return id;
  }
  std::string model_token(int64_t id) const override { return processor_.IdToPiece(static_cast<int>(id)); }
  int64_t model_size() const override { return processor_.GetPieceSize(); }

 private:
  sentencepiece::SentencePieceProcessor processor_;
  std::string description_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path, const AddedTokens& added) {
  return std::make_unique<SentencePieceTokenizer>(model_path, added);
}

}  // namespace ivl
