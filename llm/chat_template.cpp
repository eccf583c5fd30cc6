// The four InternVL2 conversation templates and prompt assembly (see chat_template.h).
#include "llm/chat_template.h"

#include <stdexcept>

namespace ivl {

namespace {

// The default system message of Hermes-2, internlm2-chat and phi3-chat (note the full-width comma
// after 大模型, the ASCII ", " after InternVL and the final full stop U+3002).
const char* kInternVL2System =
    "\u4f60\u662f\u7531\u4e0a\u6d77\u4eba\u5de5\u667a\u80fd\u5b9e\u9a8c\u5ba4\u8054\u5408\u5546\u6c64\u79d1\u6280"
    "\u5f00\u53d1\u7684\u4e66\u751f\u591a\u6a21\u6001\u5927\u6a21\u578b\uff0c\u82f1\u6587\u540d\u53eb"
    "InternVL, \u662f\u4e00\u4e2a\u6709\u7528\u65e0\u5bb3\u7684\u4eba\u5de5\u667a\u80fd\u52a9\u624b\u3002";
const char* kInternVL25System =
    "\u4f60\u662f\u4e66\u751f\u00b7\u4e07\u8c61\uff0c\u82f1\u6587\u540d\u662fInternVL\uff0c\u662f\u7531\u4e0a\u6d77"
    "\u4eba\u5de5\u667a\u80fd\u5b9e\u9a8c\u5ba4\u3001\u6e05\u534e\u5927\u5b66\u53ca\u591a\u5bb6\u5408\u4f5c\u5355"
    "\u4f4d\u8054\u5408\u5f00\u53d1\u7684\u591a\u6a21\u6001\u5927\u8bed\u8a00\u6a21\u578b\u3002";

const std::vector<ChatTemplate>& templates() {
  static const std::vector<ChatTemplate> all = {
      {"Hermes-2", "<|im_start|>system\n{system_message}", kInternVL2System, "<|im_start|>user\n", "<|im_start|>assistant\n",
       "<|im_end|>", "<|endoftext|>"},
      {"internlm2-chat", "<|im_start|>system\n{system_message}", kInternVL2System, "<|im_start|>user\n",
       "<|im_start|>assistant\n", "<|im_end|>", ""},
      {"phi3-chat", "<|system|>\n{system_message}", kInternVL2System, "<|user|>\n", "<|assistant|>\n", "<|end|>", ""},
      {"internvl2_5", "<|im_start|>system\n{system_message}", kInternVL25System, "<|im_start|>user\n",
       "<|im_start|>assistant\n", "<|im_end|>\n", ""},
  };
  return all;
}

void replace_first(std::string& text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  if (at != std::string::npos) text.replace(at, from.size(), to);
}

}  // namespace

std::string ChatTemplate::eos_token() const {
  const size_t first = sep.find_first_not_of(" \t\r\n"), last = sep.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? "" : sep.substr(first, last - first + 1);
}

std::vector<std::string> chat_template_names() {
  std::vector<std::string> names;
  for (const ChatTemplate& t : templates()) names.push_back(t.name);
  return names;
}

const ChatTemplate& chat_template(const std::string& name) {
  for (const ChatTemplate& t : templates())
    if (t.name == name) return t;
  std::string known;
  for (const std::string& n : chat_template_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown chat template '" + name + "' (known: " + known + ")");
}

std::string build_prompt(const ChatTemplate& chat, const std::vector<ChatTurn>& history, const std::string& question,
                         const std::string& system_message) {
  std::string system = chat.system_template;
  replace_first(system, "{system_message}", system_message.empty() ? chat.system_message : system_message);
  std::string prompt = system + chat.sep;
  for (const ChatTurn& turn : history)
    prompt += chat.user_role + turn.user + chat.sep + chat.assistant_role + turn.assistant + chat.sep;
  return prompt + chat.user_role + question + chat.sep + chat.assistant_role;
}

std::string question_with_image(const std::string& question, bool has_images, bool has_history) {
  if (has_images && !has_history && question.find(kImageTag) == std::string::npos) return std::string(kImageTag) + "\n" + question;
  return question;
}

std::string expand_image_tags(const std::string& prompt, const std::vector<int64_t>& tiles, int64_t tokens_per_tile) {
  std::string out;
  size_t from = 0, used = 0;
  const std::string tag = kImageTag;
  for (size_t at; (at = prompt.find(tag, from)) != std::string::npos; from = at + tag.size()) {
    if (used == tiles.size())
      throw std::invalid_argument("expand_image_tags: the prompt has more \"<image>\" tags than the " + std::to_string(tiles.size()) +
                                  " images given");
    out.append(prompt, from, at - from);
    out += kImageStart;
    for (int64_t i = 0; i < tiles[used] * tokens_per_tile; ++i) out += kImageContext;
    out += kImageEnd;
    ++used;
  }
  if (used != tiles.size())
    throw std::invalid_argument("expand_image_tags: " + std::to_string(tiles.size()) + " images but " + std::to_string(used) +
                                " \"<image>\" tags in the prompt");
  out.append(prompt, from, std::string::npos);
  return out;
}

}  // namespace ivl
