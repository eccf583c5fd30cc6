// Tokenizers against every expected tokenization in ../shared/assets/tokenizer_tests/ (llama.cpp's
// Qwen2 cases, public id sequences, the transformers and SentencePiece oracle corpora), decoding
// back to the text, the two BPE merge loops, NFC, model directories with their own added tokens,
// clear errors for broken tokenizer files, and the `ivl tokenize` command.
#include <stdlib.h>
#include <sys/wait.h>
#include <utf8proc.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <tuple>
#include <string>
#include <vector>

#include "llm/bpe_tokenizer.h"
#include "llm/tokenizer.h"
#include "llm/unicode_text.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kAssets = std::string(IVL_SHARED_DIR) + "/assets";
const std::string kQwen2Dir = kAssets + "/tokenizers/qwen2";
const std::string kInternLM2Dir = kAssets + "/tokenizers/internlm2";
const std::string kTests = kAssets + "/tokenizer_tests";


json read_json(const std::string& path) { return json::parse(read_file(path)); }

std::string nfc(const std::string& text) {
  std::string storage;
  return std::string(nfc_normalize(text, storage));
}

std::vector<int64_t> ids_of(const json& array) { return array.get<std::vector<int64_t>>(); }

std::vector<int64_t> with_bos(std::vector<int64_t> ids) {
  ids.insert(ids.begin(), 1);
  return ids;
}

// llama.cpp's vocabulary tests: .inp holds the texts, each followed by "\n__ggml_vocab_test__\n";
// .out holds one line of space-separated ids per text.
struct LlamaCppCase {
  std::string text;
  std::vector<int64_t> ids;
};
std::vector<LlamaCppCase> llama_cpp_cases() {
  const std::string inputs = read_file(kTests + "/qwen2/ggml-vocab-qwen2.gguf.inp");
  const std::string outputs = read_file(kTests + "/qwen2/ggml-vocab-qwen2.gguf.out");
  const std::string marker = "\n__ggml_vocab_test__\n";
  std::vector<LlamaCppCase> cases;
  for (size_t start = 0; start < inputs.size();) {
    const size_t end = inputs.find(marker, start);
    REQUIRE(end != std::string::npos);
    cases.push_back({inputs.substr(start, end - start), {}});
    start = end + marker.size();
  }
  size_t line_start = 0;
  for (auto& c : cases) {
    const size_t line_end = outputs.find('\n', line_start);
    REQUIRE(line_end != std::string::npos);
    std::istringstream line(outputs.substr(line_start, line_end - line_start));
    for (int64_t id; line >> id;) c.ids.push_back(id);
    line_start = line_end + 1;
  }
  return cases;
}



std::string load_error(const std::string& directory) {
  try {
    load_tokenizer(directory);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("qwen2: all 46 llama.cpp cases give the expected ids and decode to their NFC text", "[tokenizer]") {
  const auto cases = llama_cpp_cases();
  REQUIRE(cases.size() == 46);
  size_t passed = 0;
  for (const auto& c : cases) {
    INFO("text: " << json(c.text).dump());
    const auto ids = qwen2_tokenizer().encode(c.text);
    CHECK(ids == c.ids);
    CHECK(qwen2_tokenizer().decode(ids) == nfc(c.text));
    passed += ids == c.ids;
  }
  CHECK(passed == 46);
}

TEST_CASE("qwen2: the public and transformers-oracle cases", "[tokenizer]") {
  const json public_cases = read_json(kTests + "/qwen2/expected_ids_public.json")["cases"];
  REQUIRE(public_cases.size() == 1);
  for (const auto& c : public_cases) {
    INFO(c["text"].dump());
    CHECK(qwen2_tokenizer().encode(c["text"].get<std::string>()) == ids_of(c["ids"]));
  }
  const json oracle = read_json(kTests + "/qwen2/oracle_transformers_corpus.json");
  REQUIRE(oracle["cases"].size() == 20);
  for (const auto& [token, id] : oracle["special_ids"].items()) CHECK(qwen2_tokenizer().token_id(token) == id.get<int64_t>());
  for (const auto& c : oracle["cases"]) {
    const std::string text = c["text"].get<std::string>();
    INFO(c["text"].dump());
    const auto ids = qwen2_tokenizer().encode(text);
    CHECK(ids == ids_of(c["ids"]));
    CHECK(qwen2_tokenizer().encode(text, false) == ids);  // Qwen2 adds no BOS or EOS
    CHECK(qwen2_tokenizer().decode(ids) == nfc(text));
  }
}

TEST_CASE("internlm2: the public cases and chat sequences", "[tokenizer]") {
  const json expected = read_json(kTests + "/internlm2/expected_ids_public.json");
  REQUIRE(expected["cases"].size() == 8);
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"].get<std::string>();
    INFO(c["text"].dump());
    CHECK(internlm2_tokenizer().encode(text, false) == ids_of(c["ids_without_bos"]));
    CHECK(internlm2_tokenizer().encode(text) == with_bos(ids_of(c["ids_without_bos"])));
    CHECK(internlm2_tokenizer().decode(internlm2_tokenizer().encode(text), true) == text);
  }
  // The Android demo's prompt pieces name <s> in the text, so no BOS is added on top.
  const json demo = expected["chat_sequences"]["internvl_onnx_android_demo"];
  CHECK(internlm2_tokenizer().encode(demo["prompt_head_text"].get<std::string>(), false) == ids_of(demo["prompt_head_ids"]));
  CHECK(internlm2_tokenizer().encode(demo["prompt_tail_text"].get<std::string>(), false) == ids_of(demo["prompt_tail_ids"]));
  // xtuner puts -200 where "<image>" stands; the text around it is encoded piece by piece.
  const json xtuner = expected["chat_sequences"]["xtuner_llava_example"];
  const std::string input = xtuner["input"].get<std::string>();
  const size_t image = input.find("<image>");
  REQUIRE(image != std::string::npos);
  auto ids = internlm2_tokenizer().encode(input.substr(0, image), false);
  ids.push_back(-200);
  const auto after = internlm2_tokenizer().encode(input.substr(image + 7), false);
  ids.insert(ids.end(), after.begin(), after.end());
  CHECK(ids == ids_of(xtuner["input_ids"]));
}

TEST_CASE("internlm2: the SentencePiece oracles (llama.cpp strings and the corpus)", "[tokenizer]") {
  const json strings = read_json(kTests + "/internlm2/oracle_sentencepiece_0.1.97_llamacpp_strings.json")["cases"];
  REQUIRE(strings.size() == 46);
  size_t passed = 0;
  for (const auto& c : strings) {
    const std::string text = c["text"].get<std::string>();
    INFO(c["text"].dump());
    const auto ids = internlm2_tokenizer().encode(text, false);
    CHECK(ids == ids_of(c["ids_without_bos"]));
    passed += ids == ids_of(c["ids_without_bos"]);
    CHECK(internlm2_tokenizer().decode(ids) == text);
    CHECK(internlm2_tokenizer().decode(internlm2_tokenizer().encode(text), true) == text);
  }
  CHECK(passed == 46);

  const json corpus = read_json(kTests + "/internlm2/oracle_sentencepiece_corpus.json");
  REQUIRE(corpus["cases"].size() == 20);
  for (const auto& [token, id] : corpus["special_ids"].items()) CHECK(internlm2_tokenizer().token_id(token) == id.get<int64_t>());
  for (const auto& c : corpus["cases"]) {
    const std::string text = c["text"].get<std::string>();
    INFO(c["text"].dump());
    const auto ids = internlm2_tokenizer().encode(text, false);
    CHECK(ids == ids_of(c["ids"]));
    CHECK(internlm2_tokenizer().encode(text) == with_bos(ids_of(c["ids"])));
    CHECK(internlm2_tokenizer().decode(ids) == text);  // added tokens come back verbatim, with no spaces inserted
  }
}

TEST_CASE("tokenizers: ids, vocabulary sizes, special tokens and sequence policy", "[tokenizer]") {
  CHECK(qwen2_tokenizer().family() == TokenizerFamily::byte_level_bpe);
  CHECK(internlm2_tokenizer().family() == TokenizerFamily::sentencepiece);
  CHECK(qwen2_tokenizer().vocab_size() == 151655);
  CHECK(internlm2_tokenizer().vocab_size() == 92553);
  CHECK(qwen2_tokenizer().token_id("<IMG_CONTEXT>") == 151648);
  CHECK(internlm2_tokenizer().token_id("<IMG_CONTEXT>") == 92546);
  CHECK(qwen2_tokenizer().token_id("Hello") == 9707);
  CHECK(qwen2_tokenizer().token_id("ĠHello") == 21927);  // vocab.json spells the byte-level text
  CHECK(qwen2_tokenizer().token(21927) == "ĠHello");
  CHECK(qwen2_tokenizer().token(151654) == "</box>");
  CHECK(internlm2_tokenizer().token_id("<0x0A>") == 13);
  CHECK(internlm2_tokenizer().token(92542) == "<|im_end|>");  // renamed from [UNUSED_TOKEN_145]
  CHECK(internlm2_tokenizer().token_id("<unk>") == 0);
  CHECK(qwen2_tokenizer().bos_id() == -1);
  CHECK(qwen2_tokenizer().eos_id() == -1);
  CHECK(internlm2_tokenizer().bos_id() == 1);
  CHECK(internlm2_tokenizer().eos_id() == -1);
  CHECK(qwen2_tokenizer().pad_id() == 151643);    // tokenizer_config.json's pad_token <|endoftext|>
  CHECK(internlm2_tokenizer().pad_id() == 2);     // no config file: InternLM2Tokenizer's default </s>
  CHECK(internlm2_tokenizer().encode("user") == std::vector<int64_t>{1, 1008});
  CHECK(internlm2_tokenizer().encode("") == std::vector<int64_t>{1});
  CHECK(qwen2_tokenizer().encode("").empty());

  const std::vector<int64_t> chat = qwen2_tokenizer().encode("<|im_start|>user\n<img><IMG_CONTEXT></img>hi<|im_end|>");
  CHECK(qwen2_tokenizer().decode(chat, true) == "user\nhi");
  CHECK(qwen2_tokenizer().decode(chat) == "<|im_start|>user\n<img><IMG_CONTEXT></img>hi<|im_end|>");
  const std::vector<int64_t> internlm2_chat = internlm2_tokenizer().encode("<|im_start|>user\nhi<|im_end|>");
  CHECK(internlm2_tokenizer().decode(internlm2_chat, true) == "user\nhi");
  CHECK(internlm2_tokenizer().decode(internlm2_chat) == "<s><|im_start|>user\nhi<|im_end|>");
  // "<img>" inside "<<img>>" is found; a cut token is plain text. (Expected ids here and below
  // from a Python emulation of the slow Qwen2Tokenizer with the `regex` module.)
  CHECK(qwen2_tokenizer().encode("<<img>>") == std::vector<int64_t>{27, 151646, 29});
  CHECK(qwen2_tokenizer().encode("<img") == std::vector<int64_t>{20092});
}

TEST_CASE("qwen2: the pre-tokenizer's whitespace class is Unicode White_Space and (?i) folds ſ, as in Python regex", "[tokenizer]") {
  // U+180E is not White_Space (PCRE2's own \\s would take it); U+017F (ſ) folds to s.
  CHECK(byte_level_bpe_pretokenize(qwen2_tokenizer(), "a\u180Eb") == std::vector<std::string>{"a", "\u180Eb"});
  CHECK(qwen2_tokenizer().encode("a\u180Eb") == std::vector<int64_t>{64, 123970, 236, 65});
  CHECK(qwen2_tokenizer().encode("x  \u180E y") == std::vector<int64_t>{87, 220, 86089, 254, 236, 379});
  CHECK(byte_level_bpe_pretokenize(qwen2_tokenizer(), "'\u017F x") == std::vector<std::string>{"'\u017F", " x"});
  CHECK(qwen2_tokenizer().encode("'\u017F x") == std::vector<int64_t>{6, 144815, 856});
  CHECK(byte_level_bpe_pretokenize(qwen2_tokenizer(), "x\u3000\u2028 \u0085y  z") ==
        std::vector<std::string>{"x", "\u3000\u2028 ", "\u0085y", " ", " z"});
}

TEST_CASE("tokenizers: unknown tokens, bad ids and invalid UTF-8 are errors", "[tokenizer]") {
  CHECK_THROWS_WITH(qwen2_tokenizer().token_id("no such token"), HasSubstr("unknown token 'no such token'"));
  CHECK_THROWS_WITH(internlm2_tokenizer().token_id("▁no▁such▁piece▁at▁all"), HasSubstr("unknown token"));
  CHECK_THROWS_WITH(qwen2_tokenizer().token_id("hello world"), HasSubstr("unknown token"));  // a raw space is not byte-level text
  CHECK_THROWS_WITH(qwen2_tokenizer().decode({9707, 151655}), HasSubstr("id 151655 is outside the vocabulary"));
  CHECK_THROWS_WITH(internlm2_tokenizer().decode({-1}), HasSubstr("outside the vocabulary"));
  CHECK_THROWS_WITH(qwen2_tokenizer().token(200000), HasSubstr("outside the vocabulary"));
  CHECK_THROWS_WITH(qwen2_tokenizer().encode("abc\xff"), HasSubstr("not valid UTF-8 (byte 3)"));
  CHECK_THROWS_WITH(internlm2_tokenizer().encode("\xed\xa0\x80"), HasSubstr("not valid UTF-8 (byte 0)"));  // a surrogate
  // Byte tokens of 中 (E4 B8 AD): whole, it decodes to the character; cut, to U+FFFD as the slow
  // tokenizer's errors="replace" does.
  const int64_t e4 = qwen2_tokenizer().token_id("ä"), b8 = qwen2_tokenizer().token_id("¸"), ad = qwen2_tokenizer().token_id("Ń");
  CHECK(qwen2_tokenizer().decode({e4, b8, ad}) == "中");
  CHECK(qwen2_tokenizer().decode({e4, b8}) == "\xEF\xBF\xBD");
  CHECK(qwen2_tokenizer().decode({e4, 9707}) == "\xEF\xBF\xBDHello");
  CHECK(qwen2_tokenizer().decode({ad, ad}) == "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST_CASE("qwen2: the scan and heap merge loops agree, on the corpora and on long pieces", "[tokenizer]") {
  std::vector<std::string> texts;
  for (const auto& c : llama_cpp_cases()) texts.push_back(c.text);
  const json oracle = read_json(kTests + "/qwen2/oracle_transformers_corpus.json");
  for (const auto& c : oracle["cases"]) texts.push_back(c["text"]);
  std::string chinese, emoji;
  for (int i = 0; i < 700; ++i) chinese += i % 3 == 0 ? "模型" : i % 3 == 1 ? "视觉语言" : "书生万象";
  for (int i = 0; i < 300; ++i) emoji += i % 2 ? "😀" : "🚀";
  texts.push_back(chinese);
  texts.push_back(emoji);
  texts.push_back(std::string(3000, 'a'));
  texts.push_back(std::string(5000, ' ') + "x");
  texts.push_back(std::string(4000, '\n'));
  size_t pieces = 0, long_pieces = 0;
  for (const auto& text : texts) {
    for (const auto& piece : byte_level_bpe_pretokenize(qwen2_tokenizer(), text)) {
      INFO(json(piece).dump());
      const auto scan = byte_level_bpe_merge(qwen2_tokenizer(), piece, BpeMergeLoop::scan);
      CHECK(scan == byte_level_bpe_merge(qwen2_tokenizer(), piece, BpeMergeLoop::heap));
      CHECK(scan == byte_level_bpe_merge(qwen2_tokenizer(), piece, BpeMergeLoop::automatic));
      ++pieces;
      long_pieces += piece.size() > 256;
    }
    const auto ids = qwen2_tokenizer().encode(text);
    CHECK(qwen2_tokenizer().decode(ids) == nfc(text));
  }
  CHECK(pieces > 250);
  CHECK(long_pieces >= 5);
  // Long runs come out as the repeated tokens of their parts (a cached piece gives the same ids).
  CHECK(qwen2_tokenizer().encode(std::string(100000, ' ') + "a").size() < 10000);
  CHECK(qwen2_tokenizer().decode(qwen2_tokenizer().encode(std::string(100000, ' ') + "a")) == std::string(100000, ' ') + "a");
}

TEST_CASE("nfc_normalize: the fast path agrees with utf8proc's NFC and leaves NFC text uncopied", "[tokenizer]") {
  // Starters, combining marks of several classes, Hangul jamo and syllables, characters NFC maps to
  // others (singletons, exclusions), starters that are second halves of compositions, and '>' + U+0338.
  const std::vector<std::string> pieces = {
      "a", "e", ">", "=", " ", "\n", "A", "o", "\u0301", "\u0308", "\u0327", "\u0323", "\u0338", "\u0345", "\u05B0",
      "\u1100", "\u1161", "\u11A8", "\uAC00", "\uAC01", "\u0B47", "\u0B3E", "\u0B57", "\u212B", "\u2126", "\u0958",
      "\uF900", "\u1E0A", "\u0344", "\u00E9", "\u00C5", "\u4E2D", "\U0001F600", "\u200D", "\u0915", "\u093C", "\u3099",
      "\u304B", "\U0001D15E", "\U0001D165"};
  std::mt19937 random(7);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text;
    const int length = 1 + static_cast<int>(random() % 12);
    for (int i = 0; i < length; ++i) text += pieces[random() % pieces.size()];
    utf8proc_uint8_t* expected = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(text.c_str()));
    REQUIRE(expected != nullptr);
    INFO(json(text).dump());
    CHECK(nfc(text) == reinterpret_cast<const char*>(expected));
    std::free(expected);
  }
  const std::string already = "Hello, 世界! déjà vu 😀 한국어";
  std::string storage;
  CHECK(nfc_normalize(already, storage).data() == already.data());
  CHECK(qwen2_tokenizer().encode("e\u0301") == qwen2_tokenizer().encode("\u00E9"));
  CHECK(qwen2_tokenizer().decode(qwen2_tokenizer().encode("Cafe\u0301 \u212B")) == "Caf\u00E9 \u00C5");  // decode gives the NFC form
  // The slow tokenizer normalizes before it looks for added tokens: ">" + U+0338 becomes U+226F.
  CHECK(qwen2_tokenizer().encode("<img>\u0338") != qwen2_tokenizer().encode("<img>") );
}

TEST_CASE("tokenizers: a model directory's own added tokens and config override the defaults", "[tokenizer]") {
  TemporaryDirectory qwen;
  qwen.link("vocab.json", kQwen2Dir + "/vocab.json");
  qwen.link("merges.txt", kQwen2Dir + "/merges.txt");
  // <tool> takes <img>'s id, which moves <img> to a new id; the other defaults stay.
  qwen.write("added_tokens.json", R"({"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                                      "<tool>": 151646, "<img>": 151660})");
  qwen.write("tokenizer_config.json", R"({"tokenizer_class": "Qwen2Tokenizer", "bos_token": null,
      "added_tokens_decoder": {"151661": {"content": "<keep>", "special": false}}})");
  const auto tokenizer = load_tokenizer(qwen.str());
  CHECK(tokenizer->encode("<tool><img><keep>") == std::vector<int64_t>{151646, 151660, 151661});
  CHECK(tokenizer->token_id("<IMG_CONTEXT>") == 151648);
  CHECK(tokenizer->vocab_size() == 151662);
  CHECK(tokenizer->decode({151646, 9707, 151661}, true) == "Hello<keep>");  // <keep> is not special
  CHECK(tokenizer->added_tokens().list().size() == 14);

  TemporaryDirectory intern;
  intern.link("tokenizer.model", kInternLM2Dir + "/tokenizer.model");
  intern.write("added_tokens.json", R"({"<video>": 92553})");
  intern.write("tokenizer_config.json", R"({"tokenizer_class": "InternLM2Tokenizer", "add_bos_token": false, "add_eos_token": true})");
  const auto internlm = load_tokenizer(intern.str());
  CHECK(internlm->family() == TokenizerFamily::sentencepiece);
  CHECK(internlm->encode("<video>user") == std::vector<int64_t>{92553, 1008, 2});  // no BOS, EOS </s>
  CHECK(internlm->vocab_size() == 92554);
  CHECK(internlm->pad_id() == 2);

  // The pad token: tokenizer_config.json's, else special_tokens_map.json's, else the family's.
  intern.write("special_tokens_map.json", R"({"pad_token": {"content": "<video>", "lstrip": false}})");
  CHECK(load_tokenizer(intern.str())->pad_id() == 92553);
  intern.write("tokenizer_config.json", R"({"tokenizer_class": "InternLM2Tokenizer", "pad_token": "<unk>"})");
  CHECK(load_tokenizer(intern.str())->pad_id() == 0);
  intern.write("tokenizer_config.json", R"({"tokenizer_class": "InternLM2Tokenizer", "pad_token": "<nothing>"})");
  CHECK_THROWS_WITH(load_tokenizer(intern.str()), HasSubstr(intern.str() + ": the pad_token '<nothing>'"));
  CHECK(tokenizer->pad_id() == 151643);  // the Qwen2 directory above names none
}

TEST_CASE("qwen2: tokenizer.json gives the same tokenizer as vocab.json + merges.txt", "[tokenizer]") {
  json tokenizer_json;
  tokenizer_json["version"] = "1.0";
  tokenizer_json["added_tokens"] = json::array();
  for (const auto& [content, id] : {std::pair<std::string, int64_t>{"<|endoftext|>", 151643}, {"<|im_start|>", 151644}, {"<|im_end|>", 151645}})
    tokenizer_json["added_tokens"].push_back({{"id", id}, {"content", content}, {"special", true}, {"normalized", false}});
  tokenizer_json["normalizer"] = {{"type", "NFC"}};
  tokenizer_json["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", kQwen2PretokenizerPattern}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}};
  tokenizer_json["decoder"] = {{"type", "ByteLevel"}};
  json merges = json::array();
  std::istringstream lines(read_file(kQwen2Dir + "/merges.txt"));
  std::string line;
  std::getline(lines, line);  // #version
  for (size_t i = 0; std::getline(lines, line); ++i) {
    if (line.empty()) continue;
    const size_t space = line.find(' ');
    if (i % 2 == 0)  // both spellings: "left right" (tokenizers < 0.20) and ["left", "right"]
      merges.push_back(line);
    else
      merges.push_back({line.substr(0, space), line.substr(space + 1)});
  }
  tokenizer_json["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
                             {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false},
                             {"vocab", read_json(kQwen2Dir + "/vocab.json")}, {"merges", merges}};
  TemporaryDirectory directory;
  directory.write("tokenizer.json", tokenizer_json.dump());
  const auto tokenizer = load_tokenizer(directory.str());
  CHECK_THAT(tokenizer->describe(), HasSubstr("tokenizer.json"));
  CHECK(tokenizer->vocab_size() == 151655);
  for (const auto& c : llama_cpp_cases()) CHECK(tokenizer->encode(c.text) == c.ids);
  const json oracle = read_json(kTests + "/qwen2/oracle_transformers_corpus.json");
  for (const auto& c : oracle["cases"])
    CHECK(tokenizer->encode(c["text"].get<std::string>()) == ids_of(c["ids"]));

  // A tokenizer.json of another kind is refused rather than misread.
  tokenizer_json["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}};
  directory.write("tokenizer.json", tokenizer_json.dump());
  CHECK_THAT(load_error(directory.str()), HasSubstr("tokenizer.json: the pre-tokenizer is not Qwen2's"));
  tokenizer_json["model"]["type"] = "Unigram";
  directory.write("tokenizer.json", tokenizer_json.dump());
  CHECK_THAT(load_error(directory.str()), HasSubstr("tokenizer.json: model.type is \"Unigram\""));
}

TEST_CASE("tokenizers: missing and corrupt files are errors that name the file", "[tokenizer]") {
  CHECK_THAT(load_error("/nonexistent/tokenizer"), HasSubstr("'/nonexistent/tokenizer' does not exist"));
  {
    TemporaryDirectory empty;
    CHECK_THAT(load_error(empty.str()), HasSubstr("no tokenizer in"));
    empty.link("vocab.json", kQwen2Dir + "/vocab.json");
    CHECK_THAT(load_error(empty.str()), HasSubstr("merges.txt: missing"));
  }
  {
    TemporaryDirectory truncated;
    truncated.write("vocab.json", read_file(kQwen2Dir + "/vocab.json").substr(0, 100000));
    truncated.link("merges.txt", kQwen2Dir + "/merges.txt");
    CHECK_THAT(load_error(truncated.str()), HasSubstr(truncated.str() + "/vocab.json: not valid JSON"));
  }
  {
    TemporaryDirectory bad;
    bad.link("vocab.json", kQwen2Dir + "/vocab.json");
    bad.write("merges.txt", "#version: 0.2\nĠ Ġ\nĠĠ\n");
    CHECK_THAT(load_error(bad.str()), HasSubstr(bad.str() + "/merges.txt line 3: expected two tokens separated by one space, found 'ĠĠ'"));
    bad.write("merges.txt", "#version: 0.2\nĠ Ġ\nqqqqqqzzzzzz x\n");
    CHECK_THAT(load_error(bad.str()), HasSubstr("merges.txt line 3: 'qqqqqqzzzzzz' is not in the vocabulary"));
    bad.write("merges.txt", "#version: 0.2\nĠ Ġ\nx ĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠ\n");
    CHECK_THAT(load_error(bad.str()), HasSubstr("merges.txt line 3:"));
  }
  {
    TemporaryDirectory bad;
    bad.write("vocab.json", R"({"a": "zero"})");
    bad.write("merges.txt", "");
    CHECK_THAT(load_error(bad.str()), HasSubstr("vocab.json: token 'a': expected a non-negative integer id"));
    bad.write("vocab.json", R"({"a": 0, "b": 1})");
    CHECK_THAT(load_error(bad.str()), HasSubstr("vocab.json: byte 0"));
    bad.write("vocab.json", R"({"a b": 0})");
    CHECK_THAT(load_error(bad.str()), HasSubstr("vocab.json: token 'a b' (id 0) is not byte-level text"));
  }
  {
    TemporaryDirectory bad;
    bad.link("vocab.json", kQwen2Dir + "/vocab.json");
    bad.link("merges.txt", kQwen2Dir + "/merges.txt");
    bad.write("added_tokens.json", R"({"<img>": 151646,)");
    CHECK_THAT(load_error(bad.str()), HasSubstr("added_tokens.json: not valid JSON"));
    bad.write("added_tokens.json", R"({"<img>": -4})");
    CHECK_THAT(load_error(bad.str()), HasSubstr("added_tokens.json: \"<img>\": expected a non-negative integer id"));
  }
  {
    TemporaryDirectory bad;
    bad.write("tokenizer.model", "this is a text file, not a SentencePiece model\n");
    CHECK_THAT(load_error(bad.str()), HasSubstr(bad.str() + "/tokenizer.model: not a SentencePiece model"));
    bad.write("tokenizer.model", read_file(kInternLM2Dir + "/tokenizer.model").substr(0, 5000));
    CHECK_THAT(load_error(bad.str()), HasSubstr("tokenizer.model: not a SentencePiece model"));
    bad.write("tokenizer_config.json", "{\"tokenizer_class\": ");
    CHECK_THAT(load_error(bad.str()), HasSubstr("tokenizer_config.json: not valid JSON"));
    bad.write("tokenizer_config.json", "{\"tokenizer_class\": \"LlamaTokenizer\"}");
    CHECK_THAT(load_error(bad.str()), HasSubstr("tokenizer_config.json: tokenizer_class 'LlamaTokenizer' is not supported"));
  }
}

TEST_CASE("ivl tokenize: encode, decode, JSON lines and errors", "[tokenizer]") {
  const std::string binary = IVL_BINARY;
  const std::string qwen = " --tokenizer '" + kQwen2Dir + "'", intern = " --tokenizer '" + kInternLM2Dir + "'";
  auto [ids, code] = run_command("'" + binary + "' tokenize" + qwen + " --text 'Hello world'");
  CHECK(code == 0);
  CHECK(ids == "9707 1879\n");
  std::tie(ids, code) = run_command("'" + binary + "' tokenize" + intern + " --text 'Hello world'");
  CHECK(ids == "1 9843 2028\n");
  std::tie(ids, code) = run_command("'" + binary + "' tokenize" + intern + " --no-special --text 'Hello world'");
  CHECK(ids == "9843 2028\n");

  TemporaryDirectory directory;
  directory.write("lines.txt", "Hello world\n<img><IMG_CONTEXT></img>\n\n你好\n");
  std::tie(ids, code) = run_command("'" + binary + "' tokenize" + qwen + " --json --file '" + directory.str() + "/lines.txt'");
  CHECK(code == 0);
  CHECK(ids == "[9707,1879]\n[151646,151648,151647]\n[]\n[108386]\n");
  directory.write("ids.jsonl", ids);
  auto [text, decode_code] = run_command("'" + binary + "' tokenize" + qwen + " --decode --json --file '" + directory.str() + "/ids.jsonl'");
  CHECK(decode_code == 0);
  CHECK(text == "\"Hello world\"\n\"<img><IMG_CONTEXT></img>\"\n\"\"\n\"你好\"\n");
  std::tie(text, decode_code) = run_command("'" + binary + "' tokenize" + qwen + " --decode --text '[151644, 9707, 1879, 151645]'");
  CHECK(text == "<|im_start|>Hello world<|im_end|>\n");
  std::tie(text, decode_code) = run_command("'" + binary + "' tokenize" + qwen + " --decode --skip-special --text '151644 9707 1879 151645'");
  CHECK(text == "Hello world\n");

  std::tie(text, decode_code) = run_command("'" + binary + "' tokenize" + qwen + " --file '" + directory.str() + "/lines.txt' --bench --repeat 1");
  CHECK(decode_code == 0);
  CHECK_THAT(text, HasSubstr("tokens/s"));

  std::tie(text, decode_code) = run_command("'" + binary + "' tokenize --tokenizer /nonexistent --text x");
  CHECK(decode_code == 1);
  CHECK_THAT(text, HasSubstr("'/nonexistent' does not exist"));
  std::tie(text, decode_code) = run_command("'" + binary + "' tokenize" + qwen + " --decode --text '9707 x'");
  CHECK(decode_code == 1);
  CHECK_THAT(text, HasSubstr("'x' is not a token id"));
}
