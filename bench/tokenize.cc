// Tokenizer speed: load time, a 2,000-character prompt through both tokenizers (CLIP with a cold and a warm
// BPE cache, T5), and 1 MB inputs. Target: < 1 ms per prompt for both tokenizers after loading.
// Usage: bench_tokenize [TOKENIZERS_DIR]   (default: FLUX_SHARED_DIR/tokenizers)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "text/clip_tokenizer.h"
#include "text/t5_tokenizer.h"

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median of `reps` runs of f(), in ms; `before` runs untimed before each.
template <typename F, typename B>
double median_ms(int reps, F f, B before) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    before();
    const double t0 = now_ms();
    f();
    t.push_back(now_ms() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace flux;
  const std::string root = argc > 1 ? argv[1] : std::string(FLUX_SHARED_DIR) + "/tokenizers";
  const TokenizerDirs dirs = find_tokenizer_dirs(root);

  double t0 = now_ms();
  const ClipTokenizer clip = ClipTokenizer::load(dirs.clip);
  const double clip_load = now_ms() - t0;
  t0 = now_ms();
  const T5Tokenizer t5 = T5Tokenizer::load(dirs.t5);
  const double t5_load = now_ms() - t0;
  std::printf("load: CLIP (vocab.json + merges.txt) %.1f ms, T5 (spiece.model) %.1f ms\n", clip_load, t5_load);

  const std::string sentence =
      "A highly detailed cinematic photograph of an ancient stone lighthouse on a rugged cliff, waves crashing, "
      "golden hour light, volumetric fog, 85mm lens, f/1.8, intricate textures, Zürich café, 4K HDR. ";
  std::string prompt;
  while (prompt.size() < 2000) prompt += sentence;
  prompt.resize(2000);
  // The same length in made-up words, so almost every word misses the BPE cache.
  std::mt19937 word_rng(3);
  std::string novel;
  while (novel.size() < 2000) {
    for (int i = 0, n = 3 + static_cast<int>(word_rng() % 7); i < n; ++i)
      novel.push_back(static_cast<char>('a' + word_rng() % 26));
    novel += word_rng() % 5 == 0 ? ", " : " ";
  }
  novel.resize(2000);

  auto nothing = [] {};
  auto clear = [&] { clip.clear_cache(); };
  const int reps = 51;
  const double clip_cold = median_ms(
      reps, [&] { clip.encode(prompt); }, clear);
  const double clip_warm = median_ms(
      reps, [&] { clip.encode(prompt); }, nothing);
  const double t5_256 = median_ms(
      reps, [&] { t5.encode(prompt, 256); }, nothing);
  const double t5_512 = median_ms(
      reps, [&] { t5.encode(prompt, 512); }, nothing);
  std::printf(
      "2000-char prompt (median of %d): CLIP cold cache %.3f ms, warm cache %.3f ms; T5-256 %.3f ms, "
      "T5-512 %.3f ms\n",
      reps, clip_cold, clip_warm, t5_256, t5_512);
  const double novel_cold = median_ms(
      reps, [&] { clip.encode(novel); }, clear);
  const double novel_t5 = median_ms(
      reps, [&] { t5.encode(novel, 512); }, nothing);
  std::printf("2000 chars of made-up words: CLIP cold cache %.3f ms, T5-512 %.3f ms\n", novel_cold, novel_t5);
  // Worst case of the two prompts: made-up words with a cold cache.
  const double worst = std::max(clip_cold, novel_cold) + std::max(t5_512, novel_t5);
  std::printf("both tokenizers, worst case: %.3f ms (target < 1 ms): %s\n", worst,
              worst < 1.0 ? "OK" : "SLOWER THAN TARGET");

  std::mt19937 rng(5);
  std::string random_bytes(1 << 20, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng() % 256);
  std::string prose;
  while (prose.size() < (1 << 20)) prose += sentence;
  std::string one_word(1 << 20, 'a');
  for (size_t i = 0; i < one_word.size(); i += 7) one_word[i] = static_cast<char>('a' + rng() % 26);
  for (const auto& [name, text] : {std::pair{"random bytes", &random_bytes}, std::pair{"prose", &prose},
                                   std::pair{"one word (letters, no space)", &one_word}}) {
    const double c = median_ms(
        3, [&] { clip.encode(*text); }, clear);
    const double t = median_ms(
        3, [&] { t5.encode(*text, 512); }, nothing);
    std::printf("1 MB of %s: CLIP %.1f ms, T5 %.1f ms\n", name, c, t);
  }
  return 0;
}
