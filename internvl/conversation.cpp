// The conversation builder (see conversation.h). Each template's label masking is a line-by-line
// port of its official preprocess function; the Python slices keep their semantics (clamped ends,
// negative indices from the back) through Labels::ignore, so the offsets behave exactly as there.
#include "internvl/conversation.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>

namespace ivl {

namespace {

// ---- Python string helpers ----

// str.split(sep): every non-overlapping occurrence, left to right; n occurrences give n + 1 pieces.
std::vector<std::string> split(const std::string& text, const std::string& sep) {
  std::vector<std::string> pieces;
  size_t from = 0;
  for (size_t at; (at = text.find(sep, from)) != std::string::npos; from = at + sep.size()) pieces.push_back(text.substr(from, at - from));
  pieces.push_back(text.substr(from));
  return pieces;
}

// sep.join(pieces[begin:end]) with Python's clamping of the range.
std::string join(const std::vector<std::string>& pieces, size_t begin, size_t end, const std::string& sep) {
  std::string out;
  end = std::min(end, pieces.size());
  for (size_t i = begin; i < end; ++i) out += (i == begin ? "" : sep) + pieces[i];
  return out;
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// The code point of the UTF-8 sequence starting at text[at] and its length (bad bytes: themselves).
std::pair<uint32_t, size_t> code_point_at(const std::string& text, size_t at) {
  const auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(text[i])); };
  const uint32_t first = byte(at);
  const size_t length = first < 0x80 ? 1 : (first >> 5) == 0x6 ? 2 : (first >> 4) == 0xE ? 3 : (first >> 3) == 0x1E ? 4 : 1;
  if (length == 1 || at + length > text.size()) return {first, 1};
  uint32_t value = first & (0x7Fu >> length);
  for (size_t i = 1; i < length; ++i) value = (value << 6) | (byte(at + i) & 0x3F);
  return {value, length};
}

// Python's str.isspace(): the characters of bidirectional class WS, B or S, or category Zs.
bool python_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// str.strip() with no argument, as preprocess_internlm applies it to every message.
std::string python_strip(const std::string& text) {
  size_t begin = 0;
  while (begin < text.size()) {
    const auto [c, length] = code_point_at(text, begin);
    if (!python_space(c)) break;
    begin += length;
  }
  size_t end = text.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    if (!python_space(code_point_at(text, start).first)) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

// ---- labels with Python slice assignment ----

struct Labels {
  std::vector<int64_t> values;
  // values[begin:end] = IGNORE_TOKEN_ID, with Python's rules: negative indices count from the back,
  // both ends are clamped to [0, size], and an empty or reversed range does nothing.
  void ignore(int64_t begin, int64_t end) {
    const int64_t size = static_cast<int64_t>(values.size());
    const auto wrap = [size](int64_t i) { return std::clamp(i < 0 ? i + size : i, int64_t{0}, size); };
    for (int64_t i = wrap(begin), stop = wrap(end); i < stop; ++i) values[static_cast<size_t>(i)] = kIgnoreLabel;
  }
  void ignore_from(int64_t begin) { ignore(begin, std::numeric_limits<int64_t>::max()); }
};

// len(tokenizer(text).input_ids): with the family's BOS, as the official code counts.
int64_t token_count(const Tokenizer& tokenizer, const std::string& text) {
  return static_cast<int64_t>(tokenizer.encode(text, true).size());
}

// ---- the text the official code tokenizes ----

struct Messages {
  std::string system;  // the system message in force
  std::vector<ChatTurn> turns;
};

// Conversation.get_prompt() of the MPT separator style: system + sep, then role + message + sep per
// message, or the role alone for an empty message (Python's `if message:`).
std::string mpt_prompt(const ChatTemplate& chat, const Messages& messages) {
  std::string system = chat.system_template;
  const std::string placeholder = "{system_message}";
  if (const size_t at = system.find(placeholder); at != std::string::npos) system.replace(at, placeholder.size(), messages.system);
  std::string prompt = system + chat.sep;
  for (const ChatTurn& turn : messages.turns) {
    prompt += turn.user.empty() ? chat.user_role : chat.user_role + turn.user + chat.sep;
    prompt += turn.assistant.empty() ? chat.assistant_role : chat.assistant_role + turn.assistant + chat.sep;
  }
  return prompt;
}

std::string image_tokens(int64_t tiles, int64_t num_image_token) {
  std::string out = kImageStart;
  for (int64_t i = 0; i < tiles * num_image_token; ++i) out += kImageContext;
  return out + kImageEnd;
}

// The messages with each "<image>" of the user texts replaced, in order, by the next image's tokens.
// With the tags only in user turns and one per image, this is what the official code does (the MPT
// preprocessors replace the first n tags of the whole prompt, internvl2_5 those of the user turns).
// Anything else is refused: there the official code keeps surplus tags as text, or gives fewer
// image tokens than tiles, and the model's splice fails or reads the wrong image tokens later.
Messages expand_images(Messages messages, const std::vector<int64_t>& tiles_per_image, const ConversationOptions& options) {
  if (options.text_only) {
    if (!tiles_per_image.empty())
      throw std::invalid_argument("encode_conversation: a text-only conversation takes no images, but " +
                                  std::to_string(tiles_per_image.size()) + " were given");
    return messages;
  }
  const std::string tag = kImageTag;
  if (count_of(messages.system, tag)) throw std::invalid_argument("encode_conversation: the system message holds an \"<image>\" tag; images belong in user turns");
  size_t tags = 0;
  for (size_t t = 0; t < messages.turns.size(); ++t) {
    if (count_of(messages.turns[t].assistant, tag))
      throw std::invalid_argument("encode_conversation: the answer of turn " + std::to_string(t + 1) +
                                  " holds an \"<image>\" tag; images belong in user turns");
    tags += count_of(messages.turns[t].user, tag);
  }
  if (tags != tiles_per_image.size())
    throw std::invalid_argument("encode_conversation: the user turns hold " + std::to_string(tags) + " \"<image>\" tag(s) but " +
                                std::to_string(tiles_per_image.size()) + " image(s) were given (expected one tag per image)");
  if (tags && options.num_image_token <= 0)
    throw std::invalid_argument("encode_conversation: num_image_token must be positive (InternVLChatConfig::num_image_token()), got " +
                                std::to_string(options.num_image_token));
  size_t next = 0;
  for (ChatTurn& turn : messages.turns) {
    std::string out;
    size_t from = 0;
    for (size_t at; (at = turn.user.find(tag, from)) != std::string::npos; from = at + tag.size()) {
      if (tiles_per_image[next] < 1)
        throw std::invalid_argument("encode_conversation: image " + std::to_string(next + 1) + " has " +
                                    std::to_string(tiles_per_image[next]) + " tiles (expected at least 1)");
      out.append(turn.user, from, at - from);
      out += image_tokens(tiles_per_image[next++], options.num_image_token);
    }
    turn.user = out + turn.user.substr(from);
  }
  return messages;
}

// ---- tokenizing the whole conversation: truncation=True, max_length, padding='max_length' ----

struct Sequence {
  std::vector<int64_t> ids;
  int64_t untruncated_length = 0;
  bool truncated = false;
};

void pad_right(std::vector<int64_t>& values, int64_t length, int64_t value) {
  if (static_cast<int64_t>(values.size()) < length) values.resize(static_cast<size_t>(length), value);
}

Sequence tokenize_whole(const Tokenizer& tokenizer, const std::string& text, const ConversationOptions& options) {
  Sequence sequence;
  sequence.ids = tokenizer.encode(text, true);
  sequence.untruncated_length = static_cast<int64_t>(sequence.ids.size());
  if (options.truncation && options.max_length > 0 && sequence.untruncated_length > options.max_length) {
    sequence.ids.resize(static_cast<size_t>(options.max_length));
    sequence.truncated = true;
  }
  if (options.pad_to_max_length) pad_right(sequence.ids, options.max_length, tokenizer.pad_id());
  return sequence;
}

// The closing rule of preprocess, preprocess_mpt, _phi3 and _internlm: if the walk over the turns
// ended short of the model_max_length and disagrees with the count of non-pad tokens, train on
// nothing. Truncated sequences (cur_len past the limit) are never checked.
void apply_mismatch_rule(EncodedConversation& out, Labels& labels, int64_t cur_len, const Tokenizer& tokenizer,
                         const ConversationOptions& options, const std::string& template_name) {
  const int64_t pad = tokenizer.pad_id();
  const int64_t total_len =
      static_cast<int64_t>(std::count_if(out.input_ids.begin(), out.input_ids.end(), [pad](int64_t id) { return id != pad; }));
  const int64_t model_max_length = options.max_length > 0 ? options.max_length : std::numeric_limits<int64_t>::max();
  if (cur_len < model_max_length && cur_len != total_len) {
    labels.ignore_from(0);
    out.mismatch = true;
    out.warning = "tokenization mismatch: " + std::to_string(cur_len) + " vs. " + std::to_string(total_len) + " (template " +
                  template_name + "); every label is -100, as the official code ignores the sample's loss";
  }
}

// preprocess_mpt (Hermes-2). The text is split at sep (<|im_end|>); the first re-turn is system +
// user + answer, each further one user + answer; a re-turn counts its tokens plus 1 for the sep
// that split() removed, and its instruction is everything up to sep + "<|im_start|>assistant\n".
void mask_mpt(const ChatTemplate& chat, const std::string& text, const Tokenizer& tokenizer, Labels& labels, int64_t& cur_len) {
  const std::vector<std::string> turns = split(text, chat.sep);
  std::vector<std::string> re_turns = {join(turns, 0, 3, chat.sep)};
  for (size_t index = 3; index < turns.size(); index += 2) re_turns.push_back(join(turns, index, index + 2, chat.sep));
  const std::string sep = chat.sep + chat.assistant_role;
  cur_len = 0;
  for (const std::string& turn : re_turns) {
    if (turn.empty()) break;
    const int64_t turn_len = token_count(tokenizer, turn) + 1;
    std::vector<std::string> parts = split(turn, sep);
    if (parts.size() != 2) break;
    parts[0] += sep;
    const int64_t instruction_len = token_count(tokenizer, parts[0]);
    labels.ignore(cur_len, cur_len + instruction_len);
    cur_len += turn_len;
  }
  labels.ignore_from(cur_len);
}

// preprocess_phi3 (phi3-chat): as mpt with sep <|end|>, but cur_len starts at 1 (BOS), every
// <|endoftext|> is masked first, and the -1/-2 offsets assume the Phi-3 tokenizer (which writes a
// "▁" before a special token that opens a text): the first re-turn counts its tokens as they are and
// its instruction minus 1, later ones their tokens minus 1 and their instruction minus 2.
void mask_phi3(const ChatTemplate& chat, const std::string& text, const Tokenizer& tokenizer, Labels& labels, int64_t& cur_len,
               const std::vector<int64_t>& ids) {
  const std::vector<std::string> turns = split(text, chat.sep);
  std::vector<std::string> re_turns = {join(turns, 0, 3, chat.sep)};
  for (size_t index = 3; index < turns.size(); index += 2) re_turns.push_back(join(turns, index, index + 2, chat.sep));
  cur_len = 1;
  labels.ignore(0, cur_len);
  // convert_tokens_to_ids gives the unknown token's id for a token the vocabulary lacks.
  int64_t endoftext_id = -1;
  for (const char* name : {"<|endoftext|>", "<unk>"}) {
    try {
      endoftext_id = tokenizer.token_id(name);
      break;
    } catch (const std::out_of_range&) {
    }
  }
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == endoftext_id) labels.values[i] = kIgnoreLabel;
  const std::string sep = chat.sep + chat.assistant_role;
  for (size_t i = 0; i < re_turns.size(); ++i) {
    const std::string& turn = re_turns[i];
    if (turn.empty()) break;
    const int64_t turn_len = token_count(tokenizer, turn) - (i == 0 ? 0 : 1);
    std::vector<std::string> parts = split(turn, sep);
    if (parts.size() != 2) break;
    parts[0] += sep;
    const int64_t instruction_len = token_count(tokenizer, parts[0]) - (i == 0 ? 1 : 2);
    labels.ignore(cur_len, cur_len + instruction_len);
    cur_len += turn_len;
  }
  labels.ignore_from(cur_len);
}

// preprocess_internlm (internlm2-chat): split at the assistant role; the part before the first
// answer is masked, then each middle part is "answer <|im_end|>" (labelled) followed by the next
// user turn (masked); every piece counts its tokens minus the BOS it was tokenized with.
void mask_internlm(const ChatTemplate& chat, const std::string& text, const Tokenizer& tokenizer, Labels& labels, int64_t& cur_len) {
  cur_len = 1;
  labels.ignore(0, cur_len);  // <s>
  const std::vector<std::string> parts = split(text, chat.assistant_role);
  int64_t temp_len = token_count(tokenizer, parts[0] + chat.assistant_role) - 1;
  labels.ignore(cur_len, cur_len + temp_len);
  cur_len += temp_len;
  for (size_t index = 1; index + 1 < parts.size(); ++index) {
    const std::vector<std::string> halves = split(parts[index], chat.user_role);
    // Python's `part1, part2 = info.split(roles[0])` raises here; the official dataset then logs
    // the error and draws another sample.
    if (halves.size() != 2)
      throw std::invalid_argument("encode_conversation (internlm2-chat): the text between two assistant roles holds " +
                                  std::to_string(halves.size() - 1) + " user roles instead of 1; does a message contain \"" +
                                  chat.user_role.substr(0, chat.user_role.size() - 1) + "\\n\" or \"" +
                                  chat.assistant_role.substr(0, chat.assistant_role.size() - 1) + "\\n\"?");
    cur_len += token_count(tokenizer, halves[0]) - 1;
    temp_len = token_count(tokenizer, chat.user_role + halves[1] + chat.assistant_role) - 1;
    labels.ignore(cur_len, cur_len + temp_len);
    cur_len += temp_len;
  }
  cur_len += token_count(tokenizer, parts.back()) - 1;
  labels.ignore_from(cur_len);
}

// preprocess_internvl2_5: each message is tokenized on its own ("<|im_start|>role\n...<|im_end|>\n");
// system and user pieces are masked whole, an answer piece loses its "<|im_start|>assistant\n" head
// and its final "\n". A BOS tokenizer gets the BOS text in front of the first piece and every piece
// drops its first id. Truncation is a plain cut; there is no mismatch rule.
void encode_internvl2_5(const Messages& messages, const Tokenizer& tokenizer, const ConversationOptions& options,
                        EncodedConversation& out) {
  std::vector<std::string> pieces = {"<|im_start|>system\n" + messages.system + "<|im_end|>\n"};
  std::vector<bool> answer = {false};
  for (const ChatTurn& turn : messages.turns) {
    pieces.push_back("<|im_start|>user\n" + turn.user + "<|im_end|>\n");
    answer.push_back(false);
    pieces.push_back("<|im_start|>assistant\n" + turn.assistant + "<|im_end|>\n");
    answer.push_back(true);
  }
  const bool add_bos = tokenizer.bos_id() >= 0;
  if (add_bos) pieces[0] = tokenizer.token(tokenizer.bos_id()) + pieces[0];
  const int64_t header = token_count(tokenizer, "<|im_start|>assistant\n");
  const int64_t ignore_len = add_bos ? header - 1 : header;
  Labels labels;
  for (size_t p = 0; p < pieces.size(); ++p) {
    std::vector<int64_t> ids = tokenizer.encode(pieces[p], true);
    if (add_bos && !ids.empty()) ids.erase(ids.begin());
    Labels target{answer[p] ? ids : std::vector<int64_t>(ids.size(), kIgnoreLabel)};
    if (answer[p]) {
      target.ignore(0, ignore_len);
      target.ignore_from(-1);
    }
    out.input_ids.insert(out.input_ids.end(), ids.begin(), ids.end());
    labels.values.insert(labels.values.end(), target.values.begin(), target.values.end());
  }
  out.untruncated_length = static_cast<int64_t>(out.input_ids.size());
  if (options.truncation && options.max_length > 0 && out.untruncated_length > options.max_length) {
    out.input_ids.resize(static_cast<size_t>(options.max_length));
    labels.values.resize(static_cast<size_t>(options.max_length));
    out.truncated = true;
  }
  if (options.pad_to_max_length) {
    pad_right(out.input_ids, options.max_length, tokenizer.pad_id());
    pad_right(labels.values, options.max_length, kIgnoreLabel);
  }
  out.labels = std::move(labels.values);
}

}  // namespace

int64_t ConversationImages::tile_count() const { return tiles_u8.defined() ? tiles_u8.size(0) : 0; }

int64_t EncodedConversation::label_count() const {
  return static_cast<int64_t>(std::count_if(labels.begin(), labels.end(), [](int64_t label) { return label != kIgnoreLabel; }));
}

std::string conversation_text(const Conversation& conversation) {
  const ChatTemplate& chat = chat_template(conversation.template_name);
  return mpt_prompt(chat, {conversation.system_message.empty() ? chat.system_message : conversation.system_message, conversation.turns});
}

EncodedConversation encode_conversation(const Conversation& conversation, const Tokenizer& tokenizer,
                                        const std::vector<int64_t>& tiles_per_image, const ConversationOptions& options) {
  const ChatTemplate& chat = chat_template(conversation.template_name);
  if (conversation.turns.empty()) throw std::invalid_argument("encode_conversation: the conversation has no turns (expected at least one user/assistant turn)");
  if (options.pad_to_max_length && options.max_length <= 0)
    throw std::invalid_argument("encode_conversation: pad_to_max_length needs max_length > 0 (got " + std::to_string(options.max_length) + ")");
  if (options.pad_to_max_length && tokenizer.pad_id() < 0)
    throw std::invalid_argument("encode_conversation: pad_to_max_length, but the tokenizer has no pad token (" + tokenizer.describe() + ")");

  Messages messages{conversation.system_message.empty() ? chat.system_message : conversation.system_message, conversation.turns};
  if (chat.name == "internlm2-chat")  // preprocess_internlm strips every message before templating
    for (ChatTurn& turn : messages.turns) turn = {python_strip(turn.user), python_strip(turn.assistant)};
  messages = expand_images(std::move(messages), tiles_per_image, options);

  EncodedConversation out;
  out.tiles_per_image = options.text_only ? std::vector<int64_t>{} : tiles_per_image;
  if (chat.name == "internvl2_5") {
    encode_internvl2_5(messages, tokenizer, options, out);
    return out;
  }
  const std::string text = mpt_prompt(chat, messages);
  Sequence sequence = tokenize_whole(tokenizer, text, options);
  out.input_ids = std::move(sequence.ids);
  out.untruncated_length = sequence.untruncated_length;
  out.truncated = sequence.truncated;
  Labels labels{out.input_ids};
  int64_t cur_len = 0;
  if (chat.name == "Hermes-2")
    mask_mpt(chat, text, tokenizer, labels, cur_len);
  else if (chat.name == "phi3-chat")
    mask_phi3(chat, text, tokenizer, labels, cur_len, out.input_ids);
  else if (chat.name == "internlm2-chat")
    mask_internlm(chat, text, tokenizer, labels, cur_len);
  else
    throw std::invalid_argument("encode_conversation: no label masking is known for template '" + chat.name + "'");
  apply_mismatch_rule(out, labels, cur_len, tokenizer, options, chat.name);
  out.labels = std::move(labels.values);
  return out;
}

EncodedConversation encode_conversation_with_images(const Conversation& conversation, const Tokenizer& tokenizer,
                                                    const ConversationImages& images, const ConversationOptions& options) {
  EncodedConversation out = encode_conversation(conversation, tokenizer, images.tiles_per_image, options);
  out.tiles_u8 = images.tiles_u8;
  out.pixel_values = images.pixel_values;
  return out;
}

ConversationImages tile_images(const std::vector<Image>& images, const TileOptions& options) {
  ConversationImages out;
  if (images.empty()) return out;
  std::vector<PreprocessedImage> each;
  int64_t tiles = 0;
  for (const Image& image : images) {
    each.push_back(preprocess_image(image, options));
    out.tiles_per_image.push_back(each.back().tile_count());
    tiles += each.back().tile_count();
  }
  const int64_t size = options.image_size;
  out.tiles_u8 = Tensor::empty({tiles, size, size, 3}, DType::u8);
  uint8_t* to = out.tiles_u8.data<uint8_t>();
  for (const PreprocessedImage& image : each) {
    std::memcpy(to, image.tiles_u8.data<uint8_t>(), image.tiles_u8.nbytes());
    to += image.tiles_u8.nbytes();
  }
  out.pixel_values = normalize_tiles(out.tiles_u8);
  return out;
}

ConversationImages load_and_tile_images(const std::vector<std::string>& paths, const TileOptions& options) {
  std::vector<Image> images;
  for (const std::string& path : paths) {
    if (!std::filesystem::is_regular_file(path)) throw std::runtime_error("image file '" + path + "' does not exist or is not a file");
    images.push_back(load_image(path));
  }
  return tile_images(images, options);
}

TileOptions sample_tile_options(SampleKind kind, size_t image_count, const TileOptions& dataset_options) {
  TileOptions options = dataset_options;
  if (kind == SampleKind::multi_image && image_count > 0)
    options.max_tiles = std::max(1, dataset_options.max_tiles / static_cast<int>(image_count));
  return options;
}

ConversationImages load_sample_images(SampleKind kind, const std::vector<std::string>& paths, const TileOptions& dataset_options) {
  const char* const names[] = {"text-only", "single-image", "multi-image"};
  const bool fits = kind == SampleKind::text_only ? paths.empty() : kind == SampleKind::single_image ? paths.size() == 1 : !paths.empty();
  if (!fits)
    throw std::invalid_argument(std::string("load_sample_images: a ") + names[static_cast<int>(kind)] + " sample with " +
                                std::to_string(paths.size()) + " image path(s) (expected " +
                                (kind == SampleKind::text_only ? "none" : kind == SampleKind::single_image ? "exactly 1" : "at least 1") + ")");
  return load_and_tile_images(paths, sample_tile_options(kind, paths.size(), dataset_options));
}

EncodedConversation encode_sample(SampleKind kind, const Conversation& conversation, const ConversationImages& images,
                                  const Tokenizer& tokenizer, const ConversationOptions& options, bool group_by_length) {
  Conversation sample = conversation;
  ConversationOptions sample_options = options;
  sample_options.text_only = kind == SampleKind::text_only;
  sample_options.pad_to_max_length = kind == SampleKind::multi_image && !group_by_length;
  if (kind == SampleKind::single_image && !sample.turns.empty() && sample.turns[0].user.find(kImageTag) == std::string::npos)
    sample.turns[0].user = std::string(kImageTag) + "\n" + sample.turns[0].user;
  return encode_conversation_with_images(sample, tokenizer, images, sample_options);
}

EncodedPrompt encode_prompt(const Conversation& history, const std::string& question, const Tokenizer& tokenizer,
                            const std::vector<int64_t>& tiles_per_image, int64_t num_image_token) {
  const ChatTemplate& chat = chat_template(history.template_name);
  const bool has_images = !tiles_per_image.empty();
  const std::string prompt =
      build_prompt(chat, history.turns, question_with_image(question, has_images, !history.turns.empty()), history.system_message);
  EncodedPrompt out;
  // Without images, chat() replaces nothing: an "<image>" stays text.
  if (has_images && num_image_token <= 0)
    throw std::invalid_argument("encode_prompt: num_image_token must be positive (InternVLChatConfig::num_image_token()), got " +
                                std::to_string(num_image_token));
  out.text = has_images ? expand_image_tags(prompt, tiles_per_image, num_image_token) : prompt;
  out.input_ids = tokenizer.encode(out.text, true);
  return out;
}

}  // namespace ivl
