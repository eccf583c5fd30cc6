// The conversation builder against the official dataset code: the 16 MPO pairs of the train-qwen2
// golden (ids, labels and tiles byte for byte), the label structure of the other three templates with
// the InternLM2 and Qwen2 tokenizers, the prompts of templates.json, the "tokenization mismatch"
// rule, padding and truncation, and the errors for bad input.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "internvl/conversation.h"
#include "internvl/internvl_chat.h"
#include "llm/tokenizer.h"
#include "nn/safetensors.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;
namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace {

const std::string kShared = IVL_SHARED_DIR;
const std::string kTrainDir = kShared + "/fixtures/train-qwen2";
const std::string kInternLM2Dir = kShared + "/assets/tokenizers/internlm2";


std::vector<int64_t> i64_values(const Tensor& tensor) {
  REQUIRE(tensor.dtype() == DType::i64);
  const Tensor dense = tensor.contiguous();
  return std::vector<int64_t>(dense.data<int64_t>(), dense.data<int64_t>() + dense.numel());
}

int64_t count_ignored(const std::vector<int64_t>& labels) {
  int64_t n = 0;
  for (const int64_t label : labels) n += label == kIgnoreLabel;
  return n;
}

// The runs of consecutive labelled positions, as [begin, end) pairs.
std::vector<std::pair<size_t, size_t>> labelled_runs(const std::vector<int64_t>& labels) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] == kIgnoreLabel) continue;
    if (runs.empty() || runs.back().second != i) runs.push_back({i, i});
    runs.back().second = i + 1;
  }
  return runs;
}

std::vector<int64_t> slice(const std::vector<int64_t>& ids, size_t begin, size_t end) {
  return std::vector<int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(begin), ids.begin() + static_cast<std::ptrdiff_t>(end));
}

}  // namespace

// ---- the train-qwen2 golden: what the official MPO dataset returned for each of its 16 pairs ----

TEST_CASE("all 16 MPO pairs of train-qwen2 come out as the official dataset made them", "[conversation]") {
  const json golden = json::parse(read_file(kTrainDir + "/golden.json"));
  const SafetensorsFile tensors(kTrainDir + "/golden.safetensors");
  const json& flags = golden.at("flags");
  // The model directory gives the template, the image size and the image tokens per tile; the
  // command line (golden.json's flags) the tiling bounds and the sequence length.
  const InternVLChatConfig config = InternVLChatConfig::from_file(kTrainDir + "/model/config.json");
  const auto tokenizer = load_tokenizer(kTrainDir + "/model");
  CHECK(tokenizer->pad_id() == golden.at("tokenizer").at("pad_token_id").get<int64_t>());
  CHECK(config.num_image_token() == golden.at("num_image_token").get<int64_t>());

  ConversationOptions options;
  options.num_image_token = config.num_image_token();
  options.max_length = flags.at("--max_seq_length").get<int64_t>();
  const bool group_by_length = flags.at("--group_by_length").get<bool>();

  // Datasets in meta order (the file's order, hence ordered_json), lines in file order.
  const ordered_json meta = ordered_json::parse(read_file(kTrainDir + "/data/meta.json"));
  size_t pair = 0;
  std::vector<std::string> kinds_seen;
  for (const auto& [dataset, entry] : meta.items()) {
    TileOptions tiles;
    tiles.image_size = static_cast<int>(flags.at("--force_image_size").get<int64_t>());
    tiles.min_tiles = flags.at("--min_dynamic_patch").get<int>();
    tiles.max_tiles = entry.contains("max_dynamic_patch") ? entry.at("max_dynamic_patch").get<int>() : flags.at("--max_dynamic_patch").get<int>();
    tiles.use_thumbnail = flags.at("--use_thumbnail").get<bool>();
    const std::string root = kTrainDir + "/" + entry.at("root").get<std::string>();

    std::istringstream lines(read_file(kTrainDir + "/" + entry.at("annotation").get<std::string>()));
    std::string line_text;
    for (int64_t line = 0; std::getline(lines, line_text); ++line) {
      if (line_text.empty()) continue;
      const json record = json::parse(line_text);
      const json& expected = golden.at("pairs").at(pair);
      const std::string key = "pair." + std::string(pair < 10 ? "0" : "") + std::to_string(pair) + ".";
      INFO("pair " << pair << " (" << dataset << " line " << line << ")");
      REQUIRE(expected.at("dataset").get<std::string>() == dataset);
      REQUIRE(expected.at("line").get<int64_t>() == line);

      SampleKind kind = SampleKind::text_only;
      std::vector<std::string> paths;
      if (record.contains("image") && record["image"].is_array() && !record["image"].empty()) {
        kind = SampleKind::multi_image;
        for (const json& name : record["image"]) paths.push_back(root + "/" + name.get<std::string>());
      } else if (record.contains("image") && record["image"].is_string() && !record["image"].get<std::string>().empty()) {
        kind = SampleKind::single_image;
        paths.push_back(root + "/" + record["image"].get<std::string>());
      }
      const std::string kind_name = kind == SampleKind::multi_image ? "multi-image" : kind == SampleKind::single_image ? "single-image" : "text-only";
      CHECK(expected.at("kind").get<std::string>() == kind_name);
      kinds_seen.push_back(kind_name);

      // One set of tiles per pair, shared by the chosen and the rejected conversation.
      const ConversationImages images = load_sample_images(kind, paths, tiles);
      const std::vector<int64_t> flags_expected = i64_values(tensors.get(key + "image_flags"));
      const Tensor tiles_expected = tensors.get(key + "tiles_u8");
      if (kind == SampleKind::text_only) {
        // The official white placeholder tile carries flag 0 and is dropped by the model; we make none.
        CHECK(flags_expected == std::vector<int64_t>(flags_expected.size(), 0));
        CHECK(images.tile_count() == 0);
        CHECK(images.tiles_per_image.empty());
      } else {
        CHECK(flags_expected == std::vector<int64_t>(flags_expected.size(), 1));
        CHECK(images.tiles_per_image == expected.at("tiles_per_image").get<std::vector<int64_t>>());
        REQUIRE(images.tiles_u8.shape() == tiles_expected.shape());
        CHECK(std::memcmp(images.tiles_u8.data<uint8_t>(), tiles_expected.data<uint8_t>(), tiles_expected.nbytes()) == 0);
        CHECK(images.pixel_values.shape() == Shape{tiles_expected.size(0), 3, tiles_expected.size(1), tiles_expected.size(2)});
      }

      for (const std::string response : {"chosen", "rejected"}) {
        INFO(response);
        Conversation conversation;
        conversation.template_name = config.template_name;
        conversation.turns = {{record.at("question").get<std::string>(), record.at(response).get<std::string>()}};
        const EncodedConversation encoded = encode_sample(kind, conversation, images, *tokenizer, options, group_by_length);
        const std::vector<int64_t> ids = i64_values(tensors.get(key + response + "_input_ids"));
        const std::vector<int64_t> labels = i64_values(tensors.get(key + response + "_labels"));
        CHECK(encoded.input_ids == ids);
        CHECK(encoded.labels == labels);
        CHECK(encoded.label_count() == expected.at(response + "_label_tokens").get<int64_t>());
        CHECK(static_cast<int64_t>(encoded.input_ids.size()) == expected.at(response + "_len").get<int64_t>());
        CHECK(encoded.truncated == expected.at(response + "_truncated").get<bool>());
        CHECK_FALSE(encoded.mismatch);
        CHECK(encoded.tiles_per_image == images.tiles_per_image);
        if (expected.at("padded_to_max_length").get<bool>()) {
          // The multi-image path pads to --max_seq_length with <|endoftext|>, label -100.
          REQUIRE(encoded.untruncated_length < options.max_length);
          CHECK(static_cast<int64_t>(encoded.input_ids.size()) == options.max_length);
          for (size_t i = static_cast<size_t>(encoded.untruncated_length); i < encoded.input_ids.size(); ++i) {
            CHECK(encoded.input_ids[i] == 151643);
            CHECK(encoded.labels[i] == kIgnoreLabel);
          }
        }
      }
      ++pair;
    }
  }
  CHECK(pair == golden.at("pairs").size());
  // The cases the golden was built to hold, so that a changed fixture cannot quietly drop one.
  CHECK(std::count(kinds_seen.begin(), kinds_seen.end(), "multi-image") >= 1);
  CHECK(std::count(kinds_seen.begin(), kinds_seen.end(), "text-only") >= 1);
  bool some_truncated = false, some_padded = false;
  for (const json& p : golden.at("pairs")) {
    some_truncated |= p.at("rejected_truncated").get<bool>() || p.at("chosen_truncated").get<bool>();
    some_padded |= p.at("padded_to_max_length").get<bool>();
  }
  CHECK(some_truncated);
  CHECK(some_padded);
}

// ---- the prompts of templates.json (made with the official conversation.py) ----

TEST_CASE("the prompt and the training text of every template equal the official conversation.py", "[conversation]") {
  const json expected = json::parse(read_file(kShared + "/fixtures/templates.json"));
  REQUIRE(expected.size() == 4);
  const std::string question = "<image>\nWhat is shown in the picture?";
  for (const auto& [name, e] : expected.items()) {
    INFO(name);
    const std::string single = e.at("prompt_single_turn").get<std::string>(), two = e.at("prompt_two_turns").get<std::string>();
    const std::string sep = e.at("sep").get<std::string>();
    // Without images chat() replaces nothing, so the tag stays as text, as in templates.json.
    CHECK(encode_prompt({name, "", {}}, question, internlm2_tokenizer(), {}, 0).text == single);
    CHECK(encode_prompt({name, "", {{question, "A red circle."}}}, "How many?", internlm2_tokenizer(), {}, 0).text == two);
    // With an image, a question without the tag gets "<image>\n" in front, and the tag becomes 3 x 4 tokens.
    std::string context;
    for (int i = 0; i < 12; ++i) context += "<IMG_CONTEXT>";
    std::string with_image = single;
    with_image.replace(with_image.find("<image>"), 7, "<img>" + context + "</img>");
    const EncodedPrompt prompt = encode_prompt({name, "", {}}, "What is shown in the picture?", internlm2_tokenizer(), {3}, 4);
    CHECK(prompt.text == with_image);
    CHECK(prompt.input_ids == internlm2_tokenizer().encode(with_image));
    CHECK(prompt.input_ids.front() == 1);  // chat() tokenizes with the BOS
    // The training text is the same prompt with every answer and its separator filled in.
    CHECK(conversation_text({name, "", {{question, "A red circle."}, {"How many?", "One."}}}) == two + "One." + sep);
    CHECK(conversation_text({name, "Be brief.", {{"Hi", "Hello"}}}).find("Be brief.") != std::string::npos);
  }
}

// ---- internlm2-chat with the InternLM2 tokenizer (InternVL2-2B, 8B) ----

TEST_CASE("internlm2-chat: the answer tokens and their <|im_end|> are the labels, BOS, system and user are -100", "[conversation]") {
  ConversationOptions options;
  options.num_image_token = 4;
  // preprocess_internlm strips every message: the spaces and newlines around both go.
  const Conversation conversation{"internlm2-chat", "", {{"<image>\n  What is in the picture? ", "\n A red circle.  "}}};
  const EncodedConversation encoded = encode_conversation(conversation, internlm2_tokenizer(), {2}, options);
  std::string context;
  for (int i = 0; i < 8; ++i) context += "<IMG_CONTEXT>";
  const std::string head = "<|im_start|>system\n" + chat_template("internlm2-chat").system_message +
                           "<|im_end|><|im_start|>user\n<img>" + context + "</img>\n  What is in the picture?<|im_end|><|im_start|>assistant\n";
  REQUIRE(encoded.input_ids == internlm2_tokenizer().encode(head + "A red circle.<|im_end|>"));
  CHECK(encoded.input_ids.front() == 1);
  CHECK_FALSE(encoded.mismatch);
  const auto runs = labelled_runs(encoded.labels);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].second == encoded.input_ids.size());  // the closing <|im_end|> is labelled
  CHECK(internlm2_tokenizer().decode(slice(encoded.input_ids, runs[0].first, runs[0].second)) == "A red circle.<|im_end|>");
  CHECK(internlm2_tokenizer().decode(slice(encoded.input_ids, 1, runs[0].first)) == head);
  CHECK(slice(encoded.labels, runs[0].first, runs[0].second) == slice(encoded.input_ids, runs[0].first, runs[0].second));
  CHECK(std::count(encoded.input_ids.begin(), encoded.input_ids.end(), internlm2_tokenizer().token_id("<IMG_CONTEXT>")) == 8);
}

TEST_CASE("internlm2-chat: every assistant turn of a multi-turn conversation is labelled, every user turn is not", "[conversation]") {
  const Conversation conversation{"internlm2-chat", "",
                                  {{"Name a colour.", "Red."}, {"Another one?", "Blue, or green."}, {"And a third?", "Yellow."}}};
  const EncodedConversation encoded = encode_conversation(conversation, internlm2_tokenizer(), {}, {});
  REQUIRE(encoded.input_ids == internlm2_tokenizer().encode(conversation_text(conversation)));
  const auto runs = labelled_runs(encoded.labels);
  REQUIRE(runs.size() == 3);
  const std::vector<std::string> answers = {"Red.<|im_end|>", "Blue, or green.<|im_end|>", "Yellow.<|im_end|>"};
  for (size_t r = 0; r < runs.size(); ++r) {
    INFO("turn " << r + 1);
    CHECK(internlm2_tokenizer().decode(slice(encoded.input_ids, runs[r].first, runs[r].second)) == answers[r]);
  }
  CHECK(internlm2_tokenizer().decode(slice(encoded.input_ids, runs[0].second, runs[1].first)) == "<|im_start|>user\nAnother one?<|im_end|><|im_start|>assistant\n");
  CHECK(runs[2].second == encoded.input_ids.size());
  CHECK(encoded.label_count() == static_cast<int64_t>(encoded.input_ids.size()) - count_ignored(encoded.labels));
}

TEST_CASE("internlm2-chat: no text tokenizes differently piece by piece, since no piece starts with a newline and a non-space", "[conversation]") {
  // The algorithm's only cut inside ordinary text is "assistant\n" | answer, and the answer is
  // stripped; a SentencePiece merge could only cross that cut with a piece "\n" + non-space.
  int64_t crossing = 0;
  for (int64_t id = 3; id < internlm2_tokenizer().vocab_size(); ++id) {
    const std::string text = internlm2_tokenizer().decode({id});
    crossing += text.size() > 1 && text[0] == '\n' && text.find_first_not_of("\n\r\t ") != std::string::npos;
  }
  CHECK(crossing == 0);
}

// ---- internvl2_5 (InternVL2.5: Qwen2.5 without BOS, InternLM2.5 with BOS) ----

TEST_CASE("internvl2_5: answers and <|im_end|> are labelled, the header and the trailing newline are not", "[conversation]") {
  const Conversation conversation{"internvl2_5", "", {{"<image>\nWhat is it?", "A cat."}, {"Its colour?", "Grey."}}};
  ConversationOptions options;
  options.num_image_token = 4;
  for (const Tokenizer* tokenizer : {&qwen2_tokenizer(), &internlm2_tokenizer()}) {
    INFO(tokenizer->describe());
    const EncodedConversation encoded = encode_conversation(conversation, *tokenizer, {1}, options);
    std::string text = conversation_text(conversation);
    text.replace(text.find("<image>"), 7, "<img><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT></img>");
    // The pieces meet at special tokens, so piecewise ids are the whole text's ids (one BOS at most).
    CHECK(encoded.input_ids == tokenizer->encode(text));
    CHECK(std::count(encoded.input_ids.begin(), encoded.input_ids.end(), tokenizer->bos_id()) == (tokenizer->bos_id() >= 0 ? 1 : 0));
    const auto runs = labelled_runs(encoded.labels);
    REQUIRE(runs.size() == 2);
    CHECK(tokenizer->decode(slice(encoded.input_ids, runs[0].first, runs[0].second)) == "A cat.<|im_end|>");
    CHECK(tokenizer->decode(slice(encoded.input_ids, runs[1].first, runs[1].second)) == "Grey.<|im_end|>");
    CHECK(tokenizer->decode(slice(encoded.input_ids, runs[1].second, encoded.input_ids.size())) == "\n");  // masked
    CHECK(tokenizer->decode(slice(encoded.input_ids, runs[0].second, runs[1].first)) ==
          "\n<|im_start|>user\nIts colour?<|im_end|>\n<|im_start|>assistant\n");
    CHECK_FALSE(encoded.mismatch);
  }
}

TEST_CASE("internvl2_5 has no mismatch rule: a pad token inside an answer is labelled", "[conversation]") {
  const Conversation conversation{"internvl2_5", "", {{"Q", "x<|endoftext|>y"}}};
  const EncodedConversation encoded = encode_conversation(conversation, qwen2_tokenizer(), {}, {});
  CHECK_FALSE(encoded.mismatch);
  CHECK(std::count(encoded.labels.begin(), encoded.labels.end(), 151643) == 1);
}

// ---- phi3-chat (InternVL2-4B). Its Llama tokenizer is not supported, so these use InternLM2's
// SentencePiece model with the phi3 tokens added. ----

namespace {

// InternLM2's tokenizer with the phi3-chat specials as added tokens, in a directory of its own.
std::unique_ptr<Tokenizer> phi3_like_tokenizer(const TemporaryDirectory& directory) {
  directory.link("tokenizer.model", kInternLM2Dir + "/tokenizer.model");
  directory.write("added_tokens.json", R"({"<|system|>": 92553, "<|end|>": 92554, "<|user|>": 92555, "<|assistant|>": 92556,
                                           "<|endoftext|>": 92557})");
  return load_tokenizer(directory.str());
}

// What the -1/-2 offsets of preprocess_phi3 assume of Phi-3's LlamaTokenizer (legacy=False, dummy
// prefix): a text that opens with a special token gets a "▁" token in front of it (the prefix
// space is dropped only before the few tokens it lists as special). This wrapper adds that.
class PrefixSpaceTokenizer final : public Tokenizer {
 public:
  explicit PrefixSpaceTokenizer(std::unique_ptr<Tokenizer> inner)
      : Tokenizer(inner->family(), inner->added_tokens()), inner_(std::move(inner)) {
    set_sequence_policy(inner_->bos_id(), inner_->eos_id());
    set_pad_id(inner_->pad_id());
  }
  std::string describe() const override { return "prefix-space " + inner_->describe(); }

 protected:
  std::string_view normalize(std::string_view text, std::string& storage) const override {
    if (text.substr(0, 2) != "<|") return text;
    storage.assign(1, ' ');
    storage.append(text);
    return storage;
  }
  void encode_ordinary(std::string_view text, std::vector<int64_t>& ids) const override {
    const std::vector<int64_t> more = inner_->encode(text, false);
    ids.insert(ids.end(), more.begin(), more.end());
  }
  void decode_ordinary(const int64_t* ids, size_t count, std::string& text) const override {
    text += inner_->decode(std::vector<int64_t>(ids, ids + count));
  }
  int64_t model_token_id(std::string_view token) const override {
    try {
      return inner_->token_id(token);
    } catch (const std::out_of_range&) {
      return -1;
    }
  }
  std::string model_token(int64_t id) const override { return inner_->token(id); }
  int64_t model_size() const override { return inner_->vocab_size(); }

 private:
  std::unique_ptr<Tokenizer> inner_;
};

}  // namespace

TEST_CASE("phi3-chat: one turn labels the answer and <|end|>, BOS, header and <|endoftext|> are -100", "[conversation]") {
  TemporaryDirectory directory;
  const auto tokenizer = phi3_like_tokenizer(directory);
  const Conversation conversation{"phi3-chat", "", {{"What is 2 + 2?", "It is 4.<|endoftext|>"}}};
  const EncodedConversation encoded = encode_conversation(conversation, *tokenizer, {}, {});
  REQUIRE(encoded.input_ids == tokenizer->encode(conversation_text(conversation)));
  CHECK_FALSE(encoded.mismatch);
  const auto runs = labelled_runs(encoded.labels);
  REQUIRE(runs.size() == 2);  // <|endoftext|> (92557) cuts the answer's labels in two
  CHECK(tokenizer->decode(slice(encoded.input_ids, runs[0].first, runs[0].second)) == "It is 4.");
  CHECK(encoded.input_ids[runs[0].second] == 92557);
  CHECK(tokenizer->decode(slice(encoded.input_ids, runs[1].first, runs[1].second)) == "<|end|>");
  CHECK(runs[1].second == encoded.input_ids.size());
  CHECK(tokenizer->decode(slice(encoded.input_ids, 1, runs[0].first)) ==
        "<|system|>\n" + chat_template("phi3-chat").system_message + "<|end|><|user|>\nWhat is 2 + 2?<|end|><|assistant|>\n");
}

TEST_CASE("phi3-chat: later turns are counted right only by a tokenizer that writes a prefix space, as Phi-3's does", "[conversation]") {
  TemporaryDirectory directory, other_directory;
  const Conversation conversation{"phi3-chat", "", {{"Name a colour.", "Red."}, {"Another?", "Blue."}}};
  // Without the prefix space each further turn counts one token short: the mismatch rule fires.
  const auto plain = phi3_like_tokenizer(directory);
  const EncodedConversation short_count = encode_conversation(conversation, *plain, {}, {});
  CHECK(short_count.mismatch);
  CHECK(count_ignored(short_count.labels) == static_cast<int64_t>(short_count.labels.size()));
  CHECK_THAT(short_count.warning, HasSubstr("tokenization mismatch"));
  // With it, both answers and their <|end|> are labelled.
  const PrefixSpaceTokenizer prefixed(phi3_like_tokenizer(other_directory));
  const EncodedConversation encoded = encode_conversation(conversation, prefixed, {}, {});
  CHECK_FALSE(encoded.mismatch);
  CHECK(encoded.input_ids[1] == internlm2_tokenizer().encode(" ", false).at(0));  // the "▁" after BOS
  const auto runs = labelled_runs(encoded.labels);
  REQUIRE(runs.size() == 2);
  CHECK(prefixed.decode(slice(encoded.input_ids, runs[0].first, runs[0].second)) == "Red.<|end|>");
  CHECK(prefixed.decode(slice(encoded.input_ids, runs[1].first, runs[1].second)) == "Blue.<|end|>");
  CHECK(prefixed.decode(slice(encoded.input_ids, runs[0].second, runs[1].first)) == "<|user|>\nAnother?<|end|><|assistant|>\n");
}

// ---- Hermes-2 with the Qwen2 tokenizer (InternVL2-1B) beyond the golden ----

TEST_CASE("Hermes-2: multi-turn labels, and an answer opening with a newline loses it into the header", "[conversation]") {
  const Conversation conversation{"Hermes-2", "", {{"Name a colour.", "Red."}, {"Another?", "Blue."}}};
  const EncodedConversation encoded = encode_conversation(conversation, qwen2_tokenizer(), {}, {});
  REQUIRE(encoded.input_ids == qwen2_tokenizer().encode(conversation_text(conversation)));
  const auto runs = labelled_runs(encoded.labels);
  REQUIRE(runs.size() == 2);
  CHECK(qwen2_tokenizer().decode(slice(encoded.input_ids, runs[0].first, runs[0].second)) == "Red.<|im_end|>");
  CHECK(qwen2_tokenizer().decode(slice(encoded.input_ids, runs[1].first, runs[1].second)) == "Blue.<|im_end|>");

  // "assistant\n" + "\nHello" tokenizes "\n\n" as one token, which the instruction length (counted
  // on "assistant\n" alone) covers: the official labels start at "Hello". No mismatch is reported.
  const EncodedConversation newline = encode_conversation({"Hermes-2", "", {{"Hi", "\nHello there"}}}, qwen2_tokenizer(), {}, {});
  CHECK_FALSE(newline.mismatch);
  const auto newline_runs = labelled_runs(newline.labels);
  REQUIRE(newline_runs.size() == 1);
  CHECK(qwen2_tokenizer().decode(slice(newline.input_ids, newline_runs[0].first, newline_runs[0].second)) == "Hello there<|im_end|>");
  CHECK(qwen2_tokenizer().decode({newline.input_ids[newline_runs[0].first - 1]}) == "\n\n");
}

// ---- the "tokenization mismatch" rule ----

TEST_CASE("a tokenization mismatch sets every label to -100, unless the sequence reached max_length", "[conversation]") {
  // Hermes-2: turns are cut at special tokens, so their tokens always add up; the rule still fires
  // when a message holds the pad token (total_len counts ids != pad id) or the separator itself.
  for (const std::string answer : {"A document ends with <|endoftext|> here.", "one<|im_end|>two"}) {
    INFO(answer);
    const EncodedConversation encoded = encode_conversation({"Hermes-2", "", {{"Q?", answer}}}, qwen2_tokenizer(), {}, {});
    CHECK(encoded.mismatch);
    CHECK(encoded.label_count() == 0);
    CHECK_THAT(encoded.warning, HasSubstr("tokenization mismatch: "));
    // Truncated below the end: cur_len >= model_max_length, the rule is not applied.
    ConversationOptions truncating;
    truncating.max_length = 10;
    const EncodedConversation truncated = encode_conversation({"Hermes-2", "", {{"Q?", answer}}}, qwen2_tokenizer(), {}, truncating);
    CHECK(truncated.truncated);
    CHECK_FALSE(truncated.mismatch);
    CHECK(truncated.input_ids.size() == 10);
  }
  // internlm2-chat: InternLM2's pad token is </s> (id 2).
  const EncodedConversation internlm = encode_conversation({"internlm2-chat", "", {{"Q?", "It ends</s>"}}}, internlm2_tokenizer(), {}, {});
  CHECK(internlm.mismatch);
  CHECK(internlm.label_count() == 0);
  const EncodedConversation clean = encode_conversation({"internlm2-chat", "", {{"Q?", "It ends"}}}, internlm2_tokenizer(), {}, {});
  CHECK_FALSE(clean.mismatch);
  CHECK(clean.label_count() == static_cast<int64_t>(internlm2_tokenizer().encode("It ends<|im_end|>", false).size()));
}

// ---- truncation and padding ----

TEST_CASE("truncation cuts ids and labels at max_length, padding adds the pad id with label -100", "[conversation]") {
  const Conversation conversation{"internlm2-chat", "", {{"Count to ten.", "One two three four five six seven eight nine ten."}}};
  const EncodedConversation full = encode_conversation(conversation, internlm2_tokenizer(), {}, {});
  const int64_t length = static_cast<int64_t>(full.input_ids.size());
  CHECK(full.untruncated_length == length);
  CHECK_FALSE(full.truncated);

  ConversationOptions cut;
  cut.max_length = length - 4;
  const EncodedConversation truncated = encode_conversation(conversation, internlm2_tokenizer(), {}, cut);
  CHECK(truncated.truncated);
  CHECK(truncated.untruncated_length == length);
  CHECK(truncated.input_ids == slice(full.input_ids, 0, static_cast<size_t>(length - 4)));
  CHECK(truncated.labels == slice(full.labels, 0, static_cast<size_t>(length - 4)));
  CHECK_FALSE(truncated.mismatch);

  ConversationOptions padded;
  padded.max_length = length + 7;
  padded.pad_to_max_length = true;
  for (const std::string name : {"internlm2-chat", "internvl2_5"}) {
    INFO(name);
    const Conversation named{name, "", conversation.turns};
    const EncodedConversation plain = encode_conversation(named, internlm2_tokenizer(), {}, {});
    const EncodedConversation encoded = encode_conversation(named, internlm2_tokenizer(), {}, padded);
    REQUIRE(static_cast<int64_t>(encoded.input_ids.size()) == length + 7);
    CHECK(slice(encoded.input_ids, 0, plain.input_ids.size()) == plain.input_ids);
    CHECK(slice(encoded.labels, 0, plain.labels.size()) == plain.labels);
    for (size_t i = plain.input_ids.size(); i < encoded.input_ids.size(); ++i) {
      CHECK(encoded.input_ids[i] == 2);
      CHECK(encoded.labels[i] == kIgnoreLabel);
    }
    CHECK_FALSE(encoded.mismatch);
    CHECK(encoded.label_count() == plain.label_count());
  }
  // internvl2_5 cuts the concatenated pieces the same way.
  ConversationOptions cut_internvl = cut;
  const EncodedConversation internvl = encode_conversation({"internvl2_5", "", conversation.turns}, qwen2_tokenizer(), {}, {});
  cut_internvl.max_length = static_cast<int64_t>(internvl.input_ids.size()) - 3;
  const EncodedConversation internvl_cut = encode_conversation({"internvl2_5", "", conversation.turns}, qwen2_tokenizer(), {}, cut_internvl);
  CHECK(internvl_cut.truncated);
  CHECK(internvl_cut.labels == slice(internvl.labels, 0, internvl.labels.size() - 3));
}

// ---- the samples of the official datasets ----

TEST_CASE("sample rules: <image> and a newline in front for one image, shared tile budget for several, text stays text", "[conversation]") {
  TileOptions dataset;
  dataset.max_tiles = 4;
  CHECK(sample_tile_options(SampleKind::single_image, 1, dataset).max_tiles == 4);
  CHECK(sample_tile_options(SampleKind::multi_image, 1, dataset).max_tiles == 4);
  CHECK(sample_tile_options(SampleKind::multi_image, 2, dataset).max_tiles == 2);
  CHECK(sample_tile_options(SampleKind::multi_image, 3, dataset).max_tiles == 1);
  CHECK(sample_tile_options(SampleKind::multi_image, 9, dataset).max_tiles == 1);  // max(1, 4 // 9)

  ConversationOptions options;
  options.num_image_token = 4;
  options.max_length = 200;
  ConversationImages one;
  one.tiles_per_image = {2};
  const Conversation plain{"Hermes-2", "", {{"Describe.", "A cat."}}};
  const EncodedConversation single = encode_sample(SampleKind::single_image, plain, one, qwen2_tokenizer(), options);
  const Conversation tagged{"Hermes-2", "", {{"<image>\nDescribe.", "A cat."}}};
  CHECK(single.input_ids == encode_conversation(tagged, qwen2_tokenizer(), {2}, options).input_ids);
  CHECK(single.input_ids.size() < 200);  // never padded

  ConversationImages two;
  two.tiles_per_image = {1, 3};
  const Conversation pair{"Hermes-2", "", {{"Image-1: <image>\nImage-2: <image>\nSame?", "No."}}};
  const EncodedConversation multi = encode_sample(SampleKind::multi_image, pair, two, qwen2_tokenizer(), options);
  CHECK(multi.input_ids.size() == 200);  // group_by_length False: padded to max_length
  CHECK(std::count(multi.input_ids.begin(), multi.input_ids.end(), 151648) == 16);
  CHECK(encode_sample(SampleKind::multi_image, pair, two, qwen2_tokenizer(), options, true).input_ids.size() < 200);
  CHECK_THROWS_WITH(encode_sample(SampleKind::multi_image, plain, two, qwen2_tokenizer(), options), HasSubstr("0 \"<image>\" tag(s) but 2 image(s)"));

  const Conversation text{"Hermes-2", "", {{"What does <image> mean?", "A tag."}}};
  const EncodedConversation text_only = encode_sample(SampleKind::text_only, text, {}, qwen2_tokenizer(), options);
  CHECK(text_only.input_ids == qwen2_tokenizer().encode(conversation_text(text)));
  CHECK(std::count(text_only.input_ids.begin(), text_only.input_ids.end(), 151648) == 0);
  CHECK(text_only.tiles_per_image.empty());
}

// ---- bad input ----

TEST_CASE("bad conversations and images are errors that say what is wrong", "[conversation]") {
  ConversationOptions options;
  options.num_image_token = 4;
  const auto error_of = [&](const Conversation& conversation, const std::vector<int64_t>& tiles, const ConversationOptions& with) {
    try {
      encode_conversation(conversation, qwen2_tokenizer(), tiles, with);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ConversationOptions text_only = options;
  text_only.text_only = true;
  ConversationOptions no_tokens = options;
  no_tokens.num_image_token = 0;
  ConversationOptions pad_without_length = options;
  pad_without_length.pad_to_max_length = true;
  const struct {
    Conversation conversation;
    std::vector<int64_t> tiles;
    ConversationOptions options;
    std::string message;
  } cases[] = {
      {{"Hermes-2", "", {{"<image><image>", "A."}}}, {1}, options, "the user turns hold 2 \"<image>\" tag(s) but 1 image(s)"},
      {{"Hermes-2", "", {{"Describe.", "A."}}}, {1}, options, "hold 0 \"<image>\" tag(s) but 1 image(s)"},
      {{"Hermes-2", "", {{"<image>", "It shows <image>."}}}, {1}, options, "the answer of turn 1 holds an \"<image>\" tag"},
      {{"Hermes-2", "See <image>", {{"<image>", "A."}}}, {1}, options, "the system message holds an \"<image>\" tag"},
      {{"Hermes-2", "", {{"<image>", "A."}}}, {1}, text_only, "a text-only conversation takes no images, but 1 were given"},
      {{"Hermes-2", "", {{"<image>", "A."}}}, {1}, no_tokens, "num_image_token must be positive"},
      {{"Hermes-2", "", {{"<image>", "A."}}}, {0}, options, "image 1 has 0 tiles"},
      {{"vicuna", "", {{"Hi", "A."}}}, {}, options, "unknown chat template 'vicuna'"},
      {{"Hermes-2", "", {}}, {}, options, "the conversation has no turns"},
      {{"Hermes-2", "", {{"Hi", "A."}}}, {}, pad_without_length, "pad_to_max_length needs max_length > 0"},
  };
  for (const auto& c : cases) {
    INFO(c.message);
    CHECK_THAT(error_of(c.conversation, c.tiles, c.options), HasSubstr(c.message));
  }
  // Where Python's `part1, part2 = info.split(roles[0])` raises, so do we.
  CHECK_THROWS_WITH(encode_conversation({"internlm2-chat", "", {{"Q", "A<|im_start|>assistant\nB"}}}, internlm2_tokenizer(), {}, {}),
                    HasSubstr("user roles instead of 1"));
  CHECK_THROWS_WITH(encode_prompt({"Hermes-2", "", {}}, "<image> and <image>", qwen2_tokenizer(), {1}, 4), HasSubstr("more \"<image>\" tags"));

  // Image files: a missing one is named; the sample kinds take their number of paths.
  const std::string missing = kTrainDir + "/data/images/mathv/no_such_image.jpg";
  CHECK_THROWS_WITH(load_and_tile_images({missing}), HasSubstr("image file '" + missing + "' does not exist"));
  CHECK_THROWS_WITH(load_sample_images(SampleKind::single_image, {}, {}), HasSubstr("single-image sample with 0 image path(s) (expected exactly 1)"));
  CHECK_THROWS_WITH(load_sample_images(SampleKind::text_only, {missing}, {}), HasSubstr("expected none"));
  CHECK_THROWS_WITH(load_sample_images(SampleKind::multi_image, {kTrainDir + "/data/images/mathv/4.jpg", missing}, {}),
                    HasSubstr(missing));
  TemporaryDirectory directory;
  directory.write("broken.jpg", "\xff\xd8\xff not really a JPEG");
  CHECK_THROWS_WITH(load_and_tile_images({directory.file("broken.jpg")}), HasSubstr(directory.file("broken.jpg")));
}
