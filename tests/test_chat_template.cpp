// The conversation templates against templates.json (made with the official conversation.py).
#include <fstream>
#include <nlohmann/json.hpp>

#include "llm/chat_template.h"
#include "tests/catch.h"

using namespace ivl;

TEST_CASE("every template reproduces the official prompts string for string", "[chat]") {
  std::ifstream in(std::string(IVL_SHARED_DIR) + "/fixtures/templates.json");
  REQUIRE(in);
  const nlohmann::json expected = nlohmann::json::parse(in);
  REQUIRE(expected.size() == 4);
  for (const auto& [name, e] : expected.items()) {
    INFO(name);
    const ChatTemplate& chat = chat_template(name);
    CHECK(chat.system_message == e.at("system_message").get<std::string>());
    CHECK(chat.user_role == e.at("roles")[0].get<std::string>());
    CHECK(chat.assistant_role == e.at("roles")[1].get<std::string>());
    CHECK(chat.sep == e.at("sep").get<std::string>());
    CHECK(chat.stop_str == (e.at("stop_str").is_null() ? "" : e.at("stop_str").get<std::string>()));
    CHECK(chat.eos_token() == e.at("eos_token").get<std::string>());
    const std::string question = "<image>\nWhat is shown in the picture?";
    CHECK(build_prompt(chat, {}, question) == e.at("prompt_single_turn").get<std::string>());
    CHECK(build_prompt(chat, {{question, "A red circle."}}, "How many?") == e.at("prompt_two_turns").get<std::string>());
  }
  CHECK_THROWS_WITH(chat_template("vicuna"), HasSubstr("known: Hermes-2, internlm2-chat, phi3-chat, internvl2_5"));
}

TEST_CASE("image tags expand to <img>, the image-context tokens and </img>", "[chat]") {
  CHECK(question_with_image("Describe.", true, false) == "<image>\nDescribe.");
  CHECK(question_with_image("Describe.", true, true) == "Describe.");
  CHECK(question_with_image("<image> and text", true, false) == "<image> and text");
  CHECK(question_with_image("Describe.", false, false) == "Describe.");
  const std::string two = expand_image_tags("a<image>b<image>c", {1, 2}, 2);
  CHECK(two == "a<img><IMG_CONTEXT><IMG_CONTEXT></img>b<img><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT></img>c");
  const std::string one = expand_image_tags(build_prompt(chat_template("Hermes-2"), {}, question_with_image("Hi", true, false)), {3}, 256);
  size_t count = 0;
  for (size_t at = one.find("<IMG_CONTEXT>"); at != std::string::npos; at = one.find("<IMG_CONTEXT>", at + 1)) ++count;
  CHECK(count == 768);
  CHECK_THROWS_WITH(expand_image_tags("<image>", {1, 1}, 256), HasSubstr("2 images but 1"));
  CHECK_THROWS_WITH(expand_image_tags("<image><image>", {1}, 256), HasSubstr("more \"<image>\" tags"));
}
