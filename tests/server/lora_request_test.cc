// The request field `loras` without sockets: names resolved inside Limits::lora_dir into the pipeline's LoRA specs,
// every refusal a 400 (404 for an unknown name) whose param is "loras" and whose message names the entry.
#include <gtest/gtest.h>

#include <filesystem>

#include "server/errors.h"
#include "server/request.h"
#include "test_util.h"

namespace flux::server {
namespace {

namespace fs = std::filesystem;

Limits lora_limits() {
  static const std::string dir = [] {
    const std::string d = test::temp_dir("lora_request");
    fs::copy_file(test::golden_dir() + "/lora/lora_a_kohya.safetensors", d + "/a.safetensors");
    return d;
  }();
  Limits l;
  l.max_pixels = 512 * 512;
  l.default_width = l.default_height = 512;
  l.lora_dir = dir;
  l.max_loras = 2;
  return l;
}

HttpError refusal(const std::string& body, const Limits& limits) {
  try {
    parse_image_request(body, Endpoint::jobs, limits);
  } catch (const HttpError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body;
  return HttpError(0, "");
}

TEST(LoraRequest, NamesResolveInsideTheFolder) {
  const ImageRequest r =
      parse_image_request(R"({"prompt": "x", "loras": [{"name": "a", "strength": 0.5}, {"name": "a.safetensors"}]})",
                          Endpoint::openai, lora_limits());
  ASSERT_EQ(r.generate.loras.size(), 2u);
  EXPECT_EQ(r.generate.loras[0].path, fs::canonical(lora_limits().lora_dir + "/a.safetensors").string());
  EXPECT_FLOAT_EQ(r.generate.loras[0].strength, 0.5f);
  EXPECT_FLOAT_EQ(r.generate.loras[1].strength, 1.0f);
  EXPECT_TRUE(parse_image_request(R"({"prompt": "x", "loras": []})", Endpoint::jobs, Limits{}).generate.loras.empty());
}

TEST(LoraRequest, RefusalsNameTheEntry) {
  struct Case {
    const char* body;
    int status;
    const char* words;
  };
  const Case cases[] = {
      {R"({"prompt": "x", "loras": {"name": "a"}})", 400, "expected an array"},
      {R"({"prompt": "x", "loras": ["a"]})", 400, "loras[0]: expected {"},
      {R"({"prompt": "x", "loras": [{"strength": 1}]})", 400, "loras[0].name: required"},
      {R"({"prompt": "x", "loras": [{"name": "a", "strength": "1"}]})", 400, "loras[0].strength: expected a number"},
      {R"({"prompt": "x", "loras": [{"name": "a", "strength": 11}]})", 400, "-10..10"},
      {R"({"prompt": "x", "loras": [{"name": "a", "weight": 1}]})", 400, "unknown field \"weight\""},
      {R"({"prompt": "x", "loras": [{"name": "a"}, {"name": "a"}, {"name": "a"}]})", 400, "at most 2"},
      {R"({"prompt": "x", "loras": [{"name": "a"}, {"name": "../a"}]})", 400, "loras[1]: lora name \"../a\""},
      {R"({"prompt": "x", "loras": [{"name": "/etc/passwd"}]})", 400, "absolute"},
      {R"({"prompt": "x", "loras": [{"name": "b"}]})", 404, "lora \"b\" not found"},
  };
  for (const Case& c : cases) {
    const HttpError e = refusal(c.body, lora_limits());
    EXPECT_EQ(e.status, c.status) << c.body;
    EXPECT_EQ(e.param, "loras") << c.body;
    EXPECT_NE(std::string(e.what()).find(c.words), std::string::npos) << c.body << " -> " << e.what();
  }
  const HttpError no_dir = refusal(R"({"prompt": "x", "loras": [{"name": "a"}]})", Limits{});
  EXPECT_EQ(no_dir.status, 400);
  EXPECT_NE(std::string(no_dir.what()).find("--lora-dir"), std::string::npos) << no_dir.what();
}

}  // namespace
}  // namespace flux::server
