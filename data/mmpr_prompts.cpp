#include "data/mmpr_prompts.h"

#include "data/python_text.h"

namespace ivl {

const char* cot_template(PromptVersion version) {
  switch (version) {
    case PromptVersion::en:
      return "Your task is to answer the question below. Give step by step reasoning before you answer, and when you're ready to answer, please use the format \"Final answer: ..\"\n\nQuestion:\n\n{question}";
    case PromptVersion::zh:
      return "你的任务是回答以下问题。在回答之前，请逐步推理说明您的思路。当你准备好给出答案时，请使用以下格式：\"答案: ...\"\n\n问题:\n\n{question}";
    case PromptVersion::en_v2:
      return "{question}\nAnswer the preceding question. The last line of your response should follow this format: 'Answer: \\boxed{$FINAL_ANSWER}' (without quotes), where 'FINAL_ANSWER' is your conclusion based on the reasoning provided. If you are uncertain or the problem is too complex, make a reasoned guess based on the information provided. Avoid repeating steps indefinitely—provide your best guess even if unsure. Think step by step logically, considering all relevant information before answering.";
    case PromptVersion::zh_v2:
      return "{question}\n请回答上述问题。你的回答最后一行应遵循以下格式：“答案：\\boxed{$FINAL_ANSWER}”（不包含引号），其中“FINAL_ANSWER”是你根据推理得出的最终结论。如果你不确定答案或问题过于复杂，请基于已有信息做出有理有据的猜测。避免无限重复推理步骤——即使不完全确定，也请给出你认为最合理的答案。请一步一步进行逻辑思考，充分考虑所有相关信息后再作答。";
    case PromptVersion::en_r1:
      return "You are an AI assistant that rigorously follows this response protocol:\n\n1. First, conduct a detailed analysis of the question. Consider different angles, potential solutions, and reason through the problem step-by-step. Enclose this entire thinking process within <think> and </think> tags.\n\n2. After the thinking section, provide a clear, concise, and direct answer to the user's question. Separate the answer from the think section with a newline.\n\nEnsure that the thinking process is thorough but remains focused on the query. The final answer should be standalone and not reference the thinking section.\n{question}\nPlease answer the question and put the final answer within \\boxed{}.";
    case PromptVersion::zh_r1:
      return "You are an AI assistant that rigorously follows this response protocol:\n\n1. First, conduct a detailed analysis of the question. Consider different angles, potential solutions, and reason through the problem step-by-step. Enclose this entire thinking process within <think> and </think> tags.\n\n2. After the thinking section, provide a clear, concise, and direct answer to the user's question. Separate the answer from the think section with a newline.\n\nEnsure that the thinking process is thorough but remains focused on the query. The final answer should be standalone and not reference the thinking section.\n{question}\n请详细回答这个问题并将最终答案用\\boxed{}包住。";
  }
  return "{question}";
}

namespace {

// VALID_INSTRUCTIONS. The official code keeps them in a Python set and strips each once, in hash
// order, so a question ending with two of them loses one or both depending on PYTHONHASHSEED; we
// strip until none is left at the end (what half of the seeds give).
const char* const kDirectAnswerSuffixes[] = {
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
    "Please answer Yes or No.",
    "Please answer the question and put the final answer within \\boxed{}."};

bool ends_with(std::string_view s, std::string_view p) { return s.size() >= p.size() && s.substr(s.size() - p.size()) == p; }

}  // namespace

SamplingPrompt sampling_prompt(std::string_view question_in, PromptVersion version, bool has_image) {
  std::string question(question_in);
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (const char* suffix : kDirectAnswerSuffixes)
      if (ends_with(question, suffix)) {
        question = py::strip(std::string_view(question).substr(0, question.size() - std::string_view(suffix).size()));
        stripped = true;
      }
  }
  question = py::replace(cot_template(version), "{question}", question);
  SamplingPrompt out;
  if (has_image) {
    const size_t placeholders = py::count(question, "<image>");
    if (placeholders == 1) question = py::replace(py::replace(question, "<image>\n", ""), "<image>", "");
    if (placeholders <= 1) question = "<image>\n" + question;
    out.model_input = out.stored_question = question;
  } else {
    out.model_input = out.stored_question = py::replace(question, "<image>", "<IMAGE_TOKEN>");
  }
  return out;
}

PromptVersion version_for_path(PromptVersion version, std::string_view prompt_path) {
  if (prompt_path.find("_zh_") == std::string_view::npos) return version;
  switch (version) {
    case PromptVersion::en: return PromptVersion::zh;
    case PromptVersion::en_v2: return PromptVersion::zh_v2;
    case PromptVersion::en_r1: return PromptVersion::zh_r1;
    default: return version;
  }
}

}  // namespace ivl
