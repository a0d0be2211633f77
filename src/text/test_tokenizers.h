// Small tokenizers of our own making, so a fresh clone can run the whole pipeline without the real FLUX
// tokenizer files (`fluxcpp make-test-model` without --tokenizers, scripts/demo.sh). Both are learned from a
// short built-in English text (test_corpus.cc):
//   clip-l/  vocab.json + merges.txt: CLIP's byte-level BPE (the 512 byte tokens, merges learned by counting
//            pair frequencies, <|startoftext|> = 49406 and <|endoftext|> = 49407 as in CLIP-L);
//   t5/      spiece.model: a SentencePiece unigram model trained by libsentencepiece's trainer with T5's
//            special ids (<pad> 0, </s> 1, <unk> 2), fewer than T5's 32000 pieces.
// Each folder's tokenizer_config.json carries "fluxcpp_test_tokenizer": true (and a README says so): the real
// tokenizer classes accept the smaller T5 vocabulary only from a folder marked like that.
#pragma once

#include <string>
#include <string_view>

namespace flux {

// Writes `dir`/clip-l and `dir`/t5 (created if needed). Deterministic: the same files every time.
void write_test_tokenizers(const std::string& dir);
// One of them into `dir` (created if needed).
void write_test_clip_tokenizer(const std::string& dir);
void write_test_t5_tokenizer(const std::string& dir);

// True if the tokenizer folder `dir` is marked as made by write_test_tokenizers.
bool is_test_tokenizer_dir(const std::string& dir);

namespace text {
std::string_view test_corpus();  // the built-in training text
}  // namespace text

}  // namespace flux
