// The conversation templates of InternVL2 (the official conversation.py, MPT separator style):
// Hermes-2 (InternVL2-1B), internlm2-chat (2B, 8B), phi3-chat (4B) and internvl2_5. A prompt is
//   system_template(system_message) + sep, then per turn: role + message + sep, ending with the
//   assistant role and no message,
// and each `<image>` becomes `<img>` + `<IMG_CONTEXT>` x (tokens per tile x tiles) + `</img>`.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace ivl {

struct ChatTemplate {
  std::string name;
  std::string system_template;  // holds "{system_message}"
  std::string system_message;   // the default one
  std::string user_role, assistant_role;
  std::string sep;
  std::string stop_str;  // an extra stop string ("" when none)
  // The token that ends an answer: sep without surrounding whitespace, as chat() uses it.
  std::string eos_token() const;
};

// Throws, listing the known names, for an unknown one.
const ChatTemplate& chat_template(const std::string& name);
std::vector<std::string> chat_template_names();

struct ChatTurn {
  std::string user, assistant;
};

// The prompt for `question` after `history`, ending with the assistant role (ready to generate).
// An empty system_message keeps the template's default.
std::string build_prompt(const ChatTemplate& chat, const std::vector<ChatTurn>& history, const std::string& question,
                         const std::string& system_message = "");

// As the official chat(): with images and no history, a question without "<image>" gets
// "<image>\n" in front.
std::string question_with_image(const std::string& question, bool has_images, bool has_history);

inline constexpr const char* kImageTag = "<image>";
inline constexpr const char* kImageStart = "<img>";
inline constexpr const char* kImageEnd = "</img>";
inline constexpr const char* kImageContext = "<IMG_CONTEXT>";

// Replaces the k-th "<image>" (in order) by <img> + <IMG_CONTEXT> x (tiles[k] * tokens_per_tile) + </img>.
// The number of "<image>" must equal tiles.size().
std::string expand_image_tags(const std::string& prompt, const std::vector<int64_t>& tiles, int64_t tokens_per_tile);

}  // namespace ivl
