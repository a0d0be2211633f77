// Request bodies -> typed structs, without sockets (so they are unit-tested and fuzzed directly). Every
// refusal is an HttpError 400 whose message and `param` name the field, with expected vs got.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "pipeline/pipeline.h"

namespace flux::server {

struct Limits {
  int64_t max_pixels = 1024 * 1024;  // width * height
  int max_steps = 50;
  int max_n = 4;  // images per OpenAI request
  int default_width = 1024;
  int default_height = 1024;
  // Where a request's `loras` names resolve (serve --lora-dir; pipeline/lora_dir.h); empty = LoRAs refused
  // (unless lora_names_only).
  std::string lora_dir;
  // An API node of the cluster roles without a folder of its own: names pass the syntax checks only and stay names
  // (LoraSpec::path = the name); the worker that runs the job resolves them in its --lora-dir.
  bool lora_names_only = false;
  int max_loras = 8;                       // adapters per request
  int64_t max_image_pixels = 4096 * 4096;  // an uploaded init image (img2img), checked before it is decoded
};

// Seeds a client may send: 0..2^53 - 1, exact in every JSON parser (a double), so the page, the OpenAI and the
// A1111 endpoints agree. The noise generator (torch's) uses a seed's low 32 bits, so random seeds are drawn from
// those: every seed the server reports makes a different image and reproduces it.
inline constexpr uint64_t kMaxSeed = (uint64_t{1} << 53) - 1;
uint64_t random_seed();

// POST /v1/images/generations (OpenAI fields + seed, steps, guidance) or POST /v1/jobs (the same, with
// width + height as an alternative to size, plus preview).
struct ImageRequest {
  GenerateRequest generate;  // prompt, width, height, steps (0 = model default), guidance, seed, preview
  int n = 1;
  bool stream = false;     // OpenAI: answer with Server-Sent Events
  int partial_images = 0;  // OpenAI streaming: previews sent before the final image (0..3)
  std::string model;       // accepted, informative only (one model is served)
  // img2img: the init image as sent: base64 or a data: URL (JSON `image`), or the raw bytes of a multipart
  // upload (image_base64 false); decoded off the I/O thread into generate.init_image (image_upload.h).
  std::string image;
  bool image_base64 = true;
  bool has_strength = false;  // `strength` was given (generate.strength)
};

enum class Endpoint { openai, jobs };

ImageRequest parse_image_request(std::string_view body, Endpoint endpoint, const Limits& limits);
// "WxH" -> (W, H); throws HttpError naming `size`.
std::pair<int, int> parse_size(const std::string& size);
// Checks width/height against the limits (multiples of 16, at least 64, at most max_pixels).
void check_size(int width, int height, const Limits& limits, const std::string& param);

}  // namespace flux::server
