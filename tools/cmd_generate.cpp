// `ivl chat` and `ivl generate`: the official chat() around internvl/generation.h. A model directory
// (config.json, weights, tokenizer files), its template, images tiled as the official pipeline does,
// the answer decoded without special tokens and cut at the template's separator.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "internvl/conversation.h"
#include "internvl/generation.h"
#include "llm/chat_template.h"
#include "llm/tokenizer.h"
#include "tools/commands.h"

namespace ivl::cli {

namespace {

namespace fs = std::filesystem;

// The sampling flags shared by chat and generate.
std::vector<Flag> sampling_flags(const char* max_new_tokens) {
  return {{"--max-new-tokens", "N", max_new_tokens, "the most tokens an answer may have"},
          {"--min-new-tokens", "N", "0", "the end-of-answer token is held back before this many"},
          {"--do-sample", "", "", "sample (default: greedy, as the official README's chat examples)"},
          {"--temperature", "T", "1.0", "divides the logits when sampling; 0 is greedy"},
          {"--top-k", "K", "50", "sample among the K most likely tokens (0: all)"},
          {"--top-p", "P", "1.0", "sample among the most likely tokens whose probability adds up to P"},
          {"--repetition-penalty", "R", "1.0", "HF's penalty on tokens already generated (1: none)"},
          {"--seed", "N", "0", "the draws' seed: the same seed gives the same text"},
          {"--stop", "TEXT", "", "a stop string: the answer ends before it (repeatable; the template's separator always stops)",
           Flag::optional, "", true}};
}

SamplingOptions sampling_from(const ParsedFlags& flags) {
  SamplingOptions s;
  s.max_new_tokens = flags.integer<int64_t>("--max-new-tokens", 1);
  s.min_new_tokens = flags.integer<int64_t>("--min-new-tokens", 0);
  s.do_sample = flags.boolean("--do-sample");
  s.temperature = flags.real("--temperature");
  s.top_k = flags.integer<int64_t>("--top-k", 0);
  s.top_p = flags.real("--top-p");
  s.repetition_penalty = flags.real("--repetition-penalty");
  s.seed = static_cast<uint64_t>(flags.integer<int64_t>("--seed", 0));
  if (const std::string why = s.invalid(); !why.empty()) throw FlagError(why);
  return s;
}

// A model directory ready to answer: weights, tokenizer, template.
struct ChatModel {
  LoadedModel loaded;
  std::unique_ptr<Tokenizer> tokenizer;
  const ChatTemplate* chat = nullptr;
  std::string system_message;
  std::vector<std::string> stops;  // the template's separator, then --stop's
  int64_t image_context_id = 0;
  GenerationOptions options;
  TileOptions tiles;

  ChatModel(const std::string& dir, const ParsedFlags& flags) {
    if (!fs::is_directory(dir)) throw std::invalid_argument("--model: '" + dir + "' is not a directory");
    const bool has_tokenizer = fs::exists(fs::path(dir) / "tokenizer.json") || fs::exists(fs::path(dir) / "vocab.json") ||
                               fs::exists(fs::path(dir) / "tokenizer.model");
    if (!has_tokenizer)
      throw std::invalid_argument("model directory '" + dir +
                                  "' has no tokenizer files (tokenizer.json, vocab.json + merges.txt, or tokenizer.model): "
                                  "copy those of the published checkpoint next to config.json");
    options.sampling = sampling_from(flags);  // flag mistakes before the minutes of loading
    tiles.max_tiles = flags.integer<int>("--max-tiles", 1, 40);
    for (const std::string& stop : flags.list("--stop")) {
      if (stop.empty()) throw FlagError("--stop: a stop string cannot be empty");
      stops.push_back(stop);
    }
    std::fprintf(stderr, "loading %s ...\n", dir.c_str());
    loaded = load_internvl(dir);
    tokenizer = load_tokenizer(dir);
    if (tokenizer->vocab_size() > loaded.config.llm.vocab_size)
      throw std::invalid_argument("the tokenizer of '" + dir + "' has " + std::to_string(tokenizer->vocab_size()) +
                                  " tokens, the model's vocabulary only " + std::to_string(loaded.config.llm.vocab_size) +
                                  ": the tokenizer files belong to another model");
    const std::string name = flags.text("--template", loaded.config.template_name);
    if (name.empty()) throw std::invalid_argument("config.json of '" + dir + "' names no template; pass --template NAME");
    chat = &chat_template(name);
    system_message = flags.text("--system");
    image_context_id = tokenizer->token_id(kImageContext);
    options.eos_ids = {tokenizer->token_id(chat->eos_token())};
    stops.insert(stops.begin(), chat->eos_token());
    options.pad_id = tokenizer->pad_id() >= 0 ? tokenizer->pad_id() : 0;
    tiles.image_size = static_cast<int>(loaded.config.image_size);
  }

  int64_t context() const { return loaded.config.llm.max_position_embeddings; }

  // The prompt of `question` after `history` with `images` (tiled), as chat() builds it.
  GenerationPrompt prompt(const std::vector<ChatTurn>& history, const std::string& question, const ConversationImages& images,
                          uint64_t sample_id) const {
    if (question.find_first_not_of(" \t\r\n") == std::string::npos) throw std::invalid_argument("the question is empty");
    Conversation conversation{chat->name, system_message, history};
    const EncodedPrompt encoded =
        encode_prompt(conversation, question, *tokenizer, images.tiles_per_image, loaded.config.num_image_token());
    const auto length = static_cast<int64_t>(encoded.input_ids.size());
    if (context() > 0 && length + options.sampling.max_new_tokens > context())
      throw std::invalid_argument("the prompt has " + std::to_string(length) + " tokens; with --max-new-tokens " +
                                  std::to_string(options.sampling.max_new_tokens) + " that exceeds the model's " +
                                  std::to_string(context()) + " positions");
    return {encoded.input_ids, images.pixel_values, sample_id};
  }

  // Where the first stop string starts in `text` (npos: none).
  size_t first_stop(const std::string& text) const {
    size_t first = std::string::npos;
    for (const std::string& stop : stops) first = std::min(first, text.find(stop));
    return first;
  }

  // chat()'s answer: the text without special tokens, up to the separator (or a stop string), stripped.
  std::string answer(const std::vector<int64_t>& ids) const {
    std::string text = tokenizer->decode(ids, true);
    if (const size_t at = first_stop(text); at != std::string::npos) text.resize(at);
    const size_t first = text.find_first_not_of(" \t\r\n"), last = text.find_last_not_of(" \t\r\n");
    return first == std::string::npos ? "" : text.substr(first, last - first + 1);
  }
};

// Whether `text` ends inside a UTF-8 character or with a replacement character (an incomplete
// byte sequence decoded so far): then the streamed text waits for the next token.
bool ends_mid_character(const std::string& text) {
  if (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0) return true;
  size_t i = text.size(), continuation = 0;
  while (i > 0 && (static_cast<unsigned char>(text[i - 1]) & 0xC0) == 0x80 && continuation < 4) --i, ++continuation;
  if (i == 0) return continuation > 0;
  const auto lead = static_cast<unsigned char>(text[i - 1]);
  const size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
  return continuation < need;
}

// One turn of a conversation, the answer streamed to stdout as it is produced.
std::string chat_turn(const ChatModel& model, std::vector<ChatTurn>& history, const std::string& question,
                      const ConversationImages& images, uint64_t turn) {
  const GenerationPrompt prompt = model.prompt(history, question, images, turn);
  std::vector<int64_t> ids;
  std::string shown;
  GenerationStats stats;
  generate(*model.loaded.model, model.image_context_id, {prompt}, model.options,
           [&](size_t, int64_t token) {
             ids.push_back(token);
             const std::string text = model.tokenizer->decode(ids, true);
             const size_t cut = model.first_stop(text);
             const std::string visible = cut == std::string::npos ? text : text.substr(0, cut);
             if (!ends_mid_character(visible) && visible.size() > shown.size() && visible.compare(0, shown.size(), shown) == 0) {
               std::fwrite(visible.data() + shown.size(), 1, visible.size() - shown.size(), stdout);
               std::fflush(stdout);
               shown = visible;
             }
             return cut != std::string::npos;
           },
           &stats);
  const std::string answer = model.answer(ids);
  if (answer.size() > shown.size() && answer.compare(0, shown.size(), shown) == 0) std::fputs(answer.c_str() + shown.size(), stdout);
  std::printf("\n");
  std::fprintf(stderr, "[%lld prompt tokens in %.2f s, %lld new at %.1f tokens/s]\n", static_cast<long long>(stats.prompt_tokens),
               stats.prefill_seconds, static_cast<long long>(stats.new_tokens),
               stats.decode_seconds > 0 ? static_cast<double>(stats.decode_steps) / stats.decode_seconds : 0.0);
  history.push_back({question_with_image(question, images.tile_count() > 0, !history.empty()), answer});
  return answer;
}

int cmd_chat(const ParsedFlags& flags) {
  ChatModel model(flags.text("--model"), flags);
  std::vector<std::string> image_paths;
  for (const std::string& path : flags.list("--image")) image_paths.push_back(path);
  ConversationImages images = load_and_tile_images(image_paths, model.tiles);
  std::vector<ChatTurn> history;
  uint64_t turn = 0;
  if (flags.given("--prompt")) {
    chat_turn(model, history, flags.text("--prompt"), images, turn);
    return 0;
  }
  std::fprintf(stderr, "%s, template %s%s. One line a turn; /reset starts over, /image FILE starts over about FILE, /quit ends.\n",
               model.loaded.config.llm.architecture.c_str(), model.chat->name.c_str(),
               image_paths.empty() ? "" : (", " + std::to_string(image_paths.size()) + " image(s)").c_str());
  std::string line;
  while (std::fprintf(stderr, "> "), std::getline(std::cin, line)) {
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") {
      history.clear();
      std::fprintf(stderr, "(a new conversation)\n");
      continue;
    }
    if (line.rfind("/image ", 0) == 0) {
      try {
        images = load_and_tile_images({line.substr(7)}, model.tiles);
        history.clear();
        std::fprintf(stderr, "(a new conversation about %s: %lld tiles)\n", line.substr(7).c_str(),
                     static_cast<long long>(images.tile_count()));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
      }
      continue;
    }
    try {
      chat_turn(model, history, line, images, ++turn);
    } catch (const std::invalid_argument& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
    }
  }
  return 0;
}

// ---- generate: records in, responses out ----

// The image paths of a record: "image" as a string or a list of strings (absent or empty: none),
// relative to `root`.
std::vector<std::string> record_images(const nlohmann::json& record, const std::string& root, const std::string& where) {
  std::vector<std::string> paths;
  if (!record.contains("image") || record.at("image").is_null()) return paths;
  const nlohmann::json& image = record.at("image");
  auto add = [&](const nlohmann::json& value) {
    if (!value.is_string()) throw std::invalid_argument(where + ": \"image\" must be a string or a list of strings");
    const std::string path = value.get<std::string>();
    if (!path.empty()) paths.push_back(root.empty() || fs::path(path).is_absolute() ? path : (fs::path(root) / path).string());
  };
  if (image.is_array()) for (const nlohmann::json& v : image) add(v);
  else add(image);
  return paths;
}

// Complete lines already in `path` (a torn last line from an interrupted run is cut off).
size_t complete_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return 0;
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t end = content.rfind('\n');
  const size_t keep = end == std::string::npos ? 0 : end + 1;
  if (keep < content.size()) fs::resize_file(path, keep);
  size_t lines = 0;
  for (size_t i = 0; i < keep; ++i) lines += content[i] == '\n';
  return lines;
}

int cmd_generate(const ParsedFlags& flags) {
  const std::string input = flags.text("--input"), output = flags.text("--output");
  const auto n = flags.integer<int64_t>("--num-return-sequences", 1, 256);
  std::ifstream in(input);
  if (!in) throw std::invalid_argument("--input: cannot open '" + input + "'");
  std::vector<nlohmann::json> records;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(input + ":" + std::to_string(number) + ": not JSON (" + e.what() + ")");
    }
    if (!record.is_object() || !record.contains("question") || !record.at("question").is_string())
      throw std::invalid_argument(input + ":" + std::to_string(number) + ": a record needs a \"question\" string");
    record["_line"] = number;
    records.push_back(std::move(record));
  }
  const size_t done = complete_lines(output);
  if (done > records.size())
    throw std::invalid_argument("--output '" + output + "' has " + std::to_string(done) + " records, more than the " +
                                std::to_string(records.size()) + " of '" + input + "': another run's output?");
  ChatModel model(flags.text("--model"), flags);
  const std::string root = flags.text("--image-root", "");
  std::ofstream out(output, std::ios::app | std::ios::binary);
  if (!out) throw std::invalid_argument("--output: cannot write '" + output + "'");
  if (done > 0) std::fprintf(stderr, "resuming: %zu of %zu records already in %s\n", done, records.size(), output.c_str());
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens = 0;
  for (size_t i = done; i < records.size(); ++i) {
    nlohmann::json record = records[i];
    const std::string where = input + ":" + std::to_string(record.at("_line").get<size_t>());
    record.erase("_line");
    ConversationImages images;
    try {
      images = load_and_tile_images(record_images(record, root, where), model.tiles);
    } catch (const std::exception& e) {
      throw std::invalid_argument(where + ": " + e.what());
    }
    std::vector<GenerationPrompt> prompts;
    for (int64_t j = 0; j < n; ++j)  // sample ids from the record's index: a rerun draws the same
      prompts.push_back(model.prompt({}, record.at("question").get<std::string>(), images, static_cast<uint64_t>(i) * 256 + static_cast<uint64_t>(j)));
    // Rows stop on the end token; with --stop strings also once their text so far holds one.
    std::vector<std::vector<int64_t>> so_far(prompts.size());
    TokenCallback on_token;
    if (model.stops.size() > 1)
      on_token = [&](size_t row, int64_t token) {
        so_far[row].push_back(token);
        return model.first_stop(model.tokenizer->decode(so_far[row], true)) != std::string::npos;
      };
    const auto ids = generate(*model.loaded.model, model.image_context_id, prompts, model.options, on_token);
    nlohmann::json responses = nlohmann::json::array();
    for (const auto& row : ids) responses.push_back(model.answer(row)), tokens += static_cast<int64_t>(row.size());
    record["responses"] = responses;
    // A response cut inside a character (the token budget ran out there) gets U+FFFD, not an error.
    const std::string text = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) throw std::runtime_error("writing '" + output + "' failed");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double per_record = seconds / static_cast<double>(i + 1 - done);
    std::fprintf(stderr, "\r[%zu/%zu records] %.1f tokens/s, ETA %.0f s   ", i + 1, records.size(),
                 static_cast<double>(tokens) / seconds, per_record * static_cast<double>(records.size() - i - 1));
  }
  std::fprintf(stderr, "\n%zu records in %s\n", records.size(), output.c_str());
  return 0;
}

std::vector<Flag> model_flags() {
  return {{"--model", "DIR", "", "a model directory: config.json, weights, tokenizer files", Flag::required},
          {"--max-tiles", "N", "12", "the most tiles per image (max_num of the official chat examples)"},
          {"--system", "TEXT", "", "the system message (default: the template's)"},
          {"--template", "NAME", "", "the conversation template (default: config.json's)"}};
}

}  // namespace

std::vector<Command> generate_commands() {
  std::vector<Flag> chat_flags = model_flags();
  Flag image{"--image", "FILE", "", "an image (repeat for several; each takes its own tiles)"};
  image.repeatable = true;
  chat_flags.push_back(image);
  chat_flags.push_back({"--prompt", "TEXT", "", "one question, answered and done (default: an interactive session)"});
  std::vector<Flag> generate_flags = model_flags();
  generate_flags.push_back({"--input", "FILE", "", "JSONL records {\"image\": path or [paths], \"question\": ...}", Flag::required});
  generate_flags.push_back({"--output", "FILE", "", "JSONL: each record with \"responses\"; a rerun skips those written", Flag::required});
  generate_flags.push_back({"--num-return-sequences", "N", "1", "responses per record"});
  generate_flags.push_back({"--image-root", "DIR", "", "where relative image paths start (default: the working directory)"});
  for (const Flag& f : sampling_flags("512")) chat_flags.push_back(f);
  for (const Flag& f : sampling_flags("512")) generate_flags.push_back(f);
  return {{{"chat", "talk with a model about images, as the official chat(); streamed answers", {}, chat_flags,
            "Without --prompt: one line a turn, the answer streamed; /reset, /image FILE, /quit."},
           cmd_chat},
          {{"generate", "responses to JSONL records {image, question}, resumable", {}, generate_flags, ""}, cmd_generate}};
}

}  // namespace ivl::cli
