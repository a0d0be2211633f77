// The same HTTP API on an API node (issue 16): an img2img job with a LoRA (named in the request, resolved in the
// worker's --lora-dir; the API node has no folder of its own), a LoRA in a sub-folder, and a job with explicit
// noise cross Redis to a worker and give PNGs byte-equal to the single-process server's (`--role all`); a LoRA name
// the worker lacks fails the job with the single-process server's error text.
#include <gtest/gtest.h>

#include <filesystem>

#include "cluster/cluster_api.h"
#include "cluster/job_codec.h"
#include "cluster_harness.h"
#include "io/image.h"
#include "pipeline/sampling.h"
#include "test_util.h"

namespace flux::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string b64(const std::string& bytes) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += alphabet[(v >> k) & 63];
  }
  if (i < bytes.size()) {
    const bool two = i + 1 < bytes.size();
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (two ? uint8_t(bytes[i + 1]) << 8 : 0);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += two ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// A 80x48 picture (not the job's size: the worker fits it as the single-process server does).
std::string picture_png() {
  Image img{80, 48, {}};
  for (int y = 0; y < 48; ++y)
    for (int x = 0; x < 80; ++x)
      img.pixels.insert(img.pixels.end(), {static_cast<uint8_t>(x * 3), static_cast<uint8_t>(y * 5),
                                           static_cast<uint8_t>(x > 30 && y > 20 ? 255 : 40)});
  const std::vector<uint8_t> png = encode_png(img);
  return std::string(png.begin(), png.end());
}

// The golden tiny schnell weights (the LoRA fixtures are made for them).
std::vector<std::string> golden_args(const std::string& lora_dir) {
  std::vector<std::string> a = golden_server_args("flux1-schnell", 1);
  if (!lora_dir.empty()) a.insert(a.end(), {"--lora-dir", lora_dir});
  return a;
}

// Submits `body` and waits for the job's end: {status json, PNG bytes ("" unless completed)}.
std::pair<json, std::string> run_job(int port, const json& body) {
  int status = 0;
  const std::string id = submit_job(port, body.dump(), &status);
  EXPECT_EQ(status, 202) << body.dump();
  json info;
  EXPECT_TRUE(poll_until(
      [&] {
        info = get_json(port, "/v1/jobs/" + id);
        const std::string s = info.value("status", "");
        return s == "completed" || s == "failed" || s == "cancelled";
      },
      120s));
  std::string png;
  if (info.value("status", "") == "completed")
    png = http_request(port, "GET", "/v1/jobs/" + id + "/image", "", 30s).body;
  return {info, png};
}

TEST(ClusterSameApiTest, Img2ImgLorasAndNoiseGiveTheSingleProcessImages) {
  const std::string root = temp_dir("cluster_lora");
  const std::string dir = root + "/loras";
  fs::create_directories(dir + "/styles");
  fs::copy_file(golden_dir() + "/lora/lora_a_kohya.safetensors", dir + "/style_a.safetensors");
  fs::copy_file(golden_dir() + "/lora/lora_b_diffusers.safetensors", dir + "/styles/b.safetensors");

  RedisServer redis;
  ASSERT_TRUE(redis.ok()) << redis.error();
  auto worker_a = golden_args(dir);
  worker_a.insert(worker_a.end(), {"--role", "worker", "--queue", redis.url(), "--node-name", "w1"});
  ServerProcess worker(worker_a);
  ServerProcess api(api_args(redis.url(), 8));  // no --lora-dir: names pass on to the worker
  ServerProcess single(golden_args(dir));
  ASSERT_TRUE(worker.wait_status("ready")) << worker.log();
  ASSERT_TRUE(api.wait_status("ready", 60s)) << api.log();
  ASSERT_TRUE(single.wait_status("ready")) << single.log();

  // The API node has no folder: it lists what its worker offers, and says LoRAs are accepted.
  EXPECT_TRUE(poll_until(
      [&] {
        std::vector<std::string> names;
        const json listed = get_json(api.port(), "/v1/loras");
        for (const json& d : listed["data"]) names.push_back(d.value("name", ""));
        return names == std::vector<std::string>{"style_a", "styles/b"};
      },
      20s))
      << get_json(api.port(), "/v1/loras").dump();
  EXPECT_EQ(get_json(api.port(), "/sdapi/v1/loras").size(), 2u);
  EXPECT_EQ(get_json(api.port(), "/v1/config").value("loras", false), true);
  const json img2img = {{"prompt", "a photo of a cat"},
                        {"size", "64x64"},
                        {"steps", 4},
                        {"seed", 5},
                        {"image", b64(picture_png())},
                        {"strength", 0.6},
                        {"loras", json::array({{{"name", "style_a"}, {"strength", 0.8}}})}};
  const json sub_folder = {{"prompt", "a red bicycle"},
                           {"size", "64x64"},
                           {"steps", 3},
                           {"seed", 9},
                           {"loras", json::array({{{"name", "styles/b"}, {"strength", 1.2}}})}};
  for (const json& body : {img2img, sub_folder}) {
    const auto [cluster_info, cluster_png] = run_job(api.port(), body);
    const auto [single_info, single_png] = run_job(single.port(), body);
    ASSERT_EQ(cluster_info.value("status", ""), "completed") << cluster_info.dump() << api.log() << worker.log();
    ASSERT_EQ(single_info.value("status", ""), "completed") << single_info.dump();
    EXPECT_GT(cluster_png.size(), 8u);
    EXPECT_TRUE(cluster_png == single_png)
        << "the cluster's PNG differs from the single process's for " << body.value("prompt", "");
  }
  {  // A1111's <lora:NAME:WEIGHT> tags cross the same way
    const json body = {
        {"prompt", "a cat <lora:style_a:0.8>"}, {"width", 64}, {"height", 64}, {"steps", 3}, {"seed", 5}};
    const HttpResponse on_cluster = http_request(api.port(), "POST", "/sdapi/v1/txt2img", body.dump(), 120s);
    const HttpResponse on_single = http_request(single.port(), "POST", "/sdapi/v1/txt2img", body.dump(), 120s);
    ASSERT_EQ(on_cluster.status, 200) << on_cluster.body;
    ASSERT_EQ(on_single.status, 200) << on_single.body;
    const json a = json::parse(on_cluster.body, nullptr, false), b = json::parse(on_single.body, nullptr, false);
    ASSERT_EQ(a["images"].size(), 1u);
    EXPECT_GT(a["images"][0].get<std::string>().size(), 100u);
    EXPECT_EQ(a["images"], b["images"]);
  }
  {  // the LoRA changes the image (so the names did cross): the same img2img job without it differs
    json plain = img2img;
    plain.erase("loras");
    const auto [plain_info, plain_png] = run_job(api.port(), plain);
    const auto [lora_info, lora_png] = run_job(api.port(), img2img);
    ASSERT_EQ(plain_info.value("status", ""), "completed");
    EXPECT_FALSE(plain_png == lora_png);
  }
  {  // a name the worker lacks: the job fails with the single-process server's text (there: a 404 at submit)
    const json body = {{"prompt", "x"}, {"size", "64x64"}, {"steps", 2}, {"loras", json::array({{{"name", "nope"}}})}};
    const auto [info, png] = run_job(api.port(), body);
    EXPECT_EQ(info.value("status", ""), "failed");
    const std::string error = info.value("error", "");
    EXPECT_EQ(error, "loras[0]: lora \"nope\" not found in the LoRA folder (GET /v1/loras lists them)");
    const HttpResponse refused = http_request(single.port(), "POST", "/v1/jobs", body.dump(), 10s);
    EXPECT_EQ(refused.status, 404);
    EXPECT_NE(refused.body.find(json(error).dump()), std::string::npos) << refused.body;
    // A name that leaves the folder is refused by the API node itself, as by the single process.
    const json escape = {{"prompt", "x"}, {"size", "64x64"}, {"loras", json::array({{{"name", "../secret"}}})}};
    EXPECT_EQ(http_request(api.port(), "POST", "/v1/jobs", escape.dump(), 10s).status, 400);
  }
  {  // explicit noise (no HTTP field: through the JobService of an in-process API node): the noise of seed 7 with
     // seed 1 gives the single process's seed-7 image
    cluster::ClusterOptions o;
    o.url = cluster::RedisUrl::parse(redis.url());
    o.name = "in-process";
    cluster::ClusterApi node(o, nullptr);
    ASSERT_TRUE(poll_until([&] { return node.load_status().state == LoadState::ready; }, 30s));
    GenerateRequest r;
    r.prompt = "a lighthouse at dusk";
    r.width = r.height = 64;
    r.steps = 3;
    r.seed = 1;
    r.noise = get_noise(64, 64, 7).reshape(Shape{1, 16, 8, 8});
    const std::string id = node.submit(r);
    ASSERT_TRUE(poll_until([&] { return node.info(id) && is_terminal(node.info(id)->status); }, 120s));
    ASSERT_EQ(node.info(id)->status, JobStatus::completed) << node.info(id)->error << worker.log();
    const auto& encoded = node.result(id)->encoded;
    const std::string cluster_png(encoded.begin(), encoded.end());
    const auto [seed7_info, seed7_png] =
        run_job(single.port(), {{"prompt", r.prompt}, {"size", "64x64"}, {"steps", 3}, {"seed", 7}});
    const auto [seed1_info, seed1_png] =
        run_job(single.port(), {{"prompt", r.prompt}, {"size", "64x64"}, {"steps", 3}, {"seed", 1}});
    EXPECT_TRUE(cluster_png == seed7_png) << "explicit noise did not give the seed-7 image";
    EXPECT_FALSE(cluster_png == seed1_png);
    node.shutdown();
  }
}

}  // namespace
}  // namespace flux::test
