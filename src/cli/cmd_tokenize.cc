// `fluxcpp tokenize --tokenizers DIR [--max-length N] TEXT` prints the CLIP and T5 ids of TEXT as one JSON
// object; with `--jsonl FILE` it reads one {"text": ...} object per line and prints one result per line.
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "cli/command.h"
#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"

namespace flux::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizers;
  std::string jsonl;
  std::string text;
  bool have_text = false;  // TEXT was given (it may be the empty prompt)
  int max_length = 256;
};

nlohmann::json tokenize(const ClipTokenizer& clip, const T5Tokenizer& t5, const std::string& text, int max_length) {
  const ClipTokens c = clip.encode(text);
  const T5Tokens t = t5.encode(text, max_length);
  return {{"clip_ids", c.ids},
          {"t5_ids", t.ids},
          {"clip_untruncated_len", c.untruncated_len},
          {"t5_untruncated_len", t.untruncated_len},
          {"clip_pool_index", c.pool_index},
          {"truncated", c.truncated() || t.truncated()}};
}

int run(const TokenizeOptions& opt) {
  FLUX_CHECK(opt.jsonl.empty() == opt.have_text, "tokenize: expected either TEXT or --jsonl FILE",
             (opt.have_text ? " (got both)" : " (got neither)"));
  FLUX_CHECK(opt.max_length >= 1, "tokenize: --max-length: expected >= 1, got ", opt.max_length);
  const TokenizerDirs dirs = find_tokenizer_dirs(opt.tokenizers);
  const ClipTokenizer clip = ClipTokenizer::load(dirs.clip);
  const T5Tokenizer t5 = T5Tokenizer::load(dirs.t5);
  if (opt.have_text) {
    std::cout << tokenize(clip, t5, opt.text, opt.max_length).dump() << "\n";
    return 0;
  }
  std::ifstream in(opt.jsonl, std::ios::binary);
  FLUX_CHECK(in, "file ", opt.jsonl, ": cannot open");
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("file ", opt.jsonl, " line ", line_no,
           ": bad JSON (each line is one object {\"text\": \"...\"}): ", e.what());
    }
    FLUX_CHECK(row.is_object() && row.contains("text") && row["text"].is_string(), "file ", opt.jsonl, " line ",
               line_no, ": expected one object {\"text\": \"...\"} per line, got ", row.type_name(),
               row.is_object() ? (row.contains("text") ? " whose \"text\" is not a string" : " without \"text\"") : "");
    std::cout << tokenize(clip, t5, row["text"].get<std::string>(), opt.max_length).dump() << "\n";
  }
  return 0;
}

const CommandRegistrar reg(
    {"tokenize", "print the CLIP and T5 token ids of a prompt as JSON", [](CLI::App& sub) {
       auto opt = std::make_shared<TokenizeOptions>();
       sub.add_option("--tokenizers", opt->tokenizers,
                      "folder with tokenizer/ + tokenizer_2/ (diffusers) or clip-l/ + t5/")
           ->required();
       sub.add_option("--max-length", opt->max_length, "T5 length: 256 schnell, 512 dev")->capture_default_str();
       sub.add_option("--jsonl", opt->jsonl, "read {\"text\": ...} lines, print one result each");
       CLI::Option* text = sub.add_option("text", opt->text, "the prompt");
       return [opt, text] {
         opt->have_text = text->count() > 0;
         return run(*opt);
       };
     }});

}  // namespace
}  // namespace flux::cli
