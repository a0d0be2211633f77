// What a job entry carries across Redis (cluster/job_codec.h), without a Redis: the init image as PNG bytes, the
// explicit noise as F32 bytes with its shape, LoRAs as names below the folder they were resolved in; a worker
// resolves the names in its own folder with the single-process server's errors; broken entries are refused
// naming the field.
#include "cluster/job_codec.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "pipeline/lora_dir.h"
#include "test_util.h"

namespace flux::test {
namespace {

namespace fs = std::filesystem;
using cluster::decode_request;
using cluster::encode_request;
using cluster::JobPayload;

TEST(JobCodecTest, ImageNoiseAndLorasCrossByValueAndName) {
  const std::string dir = temp_dir("codec_loras");
  fs::create_directories(dir + "/styles");
  fs::copy_file(golden_dir() + "/lora/lora_b_diffusers.safetensors", dir + "/styles/b.safetensors");
  GenerateRequest r;
  r.prompt = "a cat";
  r.width = 64;
  r.height = 48;
  r.steps = 3;
  r.seed = 99;
  r.strength = 0.35;
  Image picture{3, 2, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}};
  r.init_image = std::make_shared<const Image>(picture);
  std::vector<float> values(16 * 6 * 8);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.25f - 3.0f;
  r.noise = Tensor::from_f32(Shape{1, 16, 6, 8}, values);
  r.loras.push_back({resolve_lora_name(dir, "styles/b"), 0.7f});  // as the API node's request parser resolves it

  const JobPayload p = encode_request(r, dir);
  EXPECT_EQ(p.noise.size(), values.size() * 4);
  EXPECT_EQ(p.image.substr(1, 3), "PNG");
  const auto j = nlohmann::json::parse(p.request);
  EXPECT_EQ(j["loras"][0]["name"], "styles/b");  // a name, never the API node's path
  const GenerateRequest back = decode_request(p);
  EXPECT_EQ(back.prompt, "a cat");
  EXPECT_EQ(back.width, 64);
  EXPECT_EQ(back.height, 48);
  EXPECT_EQ(back.seed, 99u);
  EXPECT_DOUBLE_EQ(back.strength, 0.35);
  ASSERT_TRUE(back.init_image);
  EXPECT_EQ(back.init_image->width, 3);
  EXPECT_EQ(back.init_image->pixels, picture.pixels);
  ASSERT_TRUE(back.noise.defined());
  EXPECT_EQ(back.noise.shape(), (Shape{1, 16, 6, 8}));
  EXPECT_EQ(std::vector<float>(back.noise.data<float>(), back.noise.data<float>() + values.size()), values);
  ASSERT_EQ(back.loras.size(), 1u);
  EXPECT_EQ(back.loras[0].path, "styles/b");
  EXPECT_FLOAT_EQ(back.loras[0].strength, 0.7f);

  // The worker resolves the name in its own folder; a name it lacks fails with the single-process text.
  GenerateRequest worker = back;
  cluster::resolve_loras(worker, dir);
  EXPECT_EQ(worker.loras[0].path, resolve_lora_name(dir, "styles/b"));
  GenerateRequest missing = back;
  missing.loras[0].path = "nope";
  EXPECT_EQ(error_of([&] { cluster::resolve_loras(missing, dir); }),
            "loras[0]: lora \"nope\" not found in the LoRA folder (GET /v1/loras lists them)");
  EXPECT_EQ(error_of([&] { cluster::resolve_loras(worker = back, ""); }),
            "loras: this server has no LoRA folder (start it with serve --lora-dir DIR)");

  // Without a folder (an API node passing names on) the names cross as they are.
  GenerateRequest named;
  named.prompt = "x";
  named.loras.push_back({"styles/b", 1.0f});
  EXPECT_EQ(decode_request(encode_request(named, "")).loras[0].path, "styles/b");
  EXPECT_FALSE(decode_request(encode_request(named, "")).init_image);
  EXPECT_FALSE(decode_request(encode_request(named, "")).noise.defined());
}

TEST(JobCodecTest, BrokenEntriesAreRefusedNamingTheField) {
  GenerateRequest r;
  r.prompt = "x";
  r.width = r.height = 64;
  r.noise = Tensor::from_f32(Shape{1, 2}, std::vector<float>{1, 2});
  JobPayload p = encode_request(r, "");
  p.noise.pop_back();
  EXPECT_NE(error_of([&] { decode_request(p); }).find("noise: expected 8 bytes"), std::string::npos);
  p = encode_request(r, "");
  p.image = "not a png";
  EXPECT_NE(error_of([&] { decode_request(p); }), "");
  p = encode_request(r, "");
  auto j = nlohmann::json::parse(p.request);
  j["noise_shape"] = {1, -2};
  p.request = j.dump();
  EXPECT_NE(error_of([&] { decode_request(p); }).find("noise_shape"), std::string::npos);
  j.erase("noise_shape");
  p.request = j.dump();
  EXPECT_NE(error_of([&] { decode_request(p); }).find("\"noise_shape\" missing"), std::string::npos);
  EXPECT_NE(error_of([&] { decode_request({"[1]", "", ""}); }).find("expected a JSON object"), std::string::npos);
  EXPECT_NE(error_of([&] { decode_request({R"({"prompt": 1})", "", ""}); }).find("\"prompt\""), std::string::npos);
}

TEST(JobCodecTest, PrometheusLabelsAreEscaped) {
  EXPECT_EQ(cluster::prometheus_label("w1"), "w1");
  EXPECT_EQ(cluster::prometheus_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

}  // namespace
}  // namespace flux::test
