// LoRA over HTTP, end to end: the real `fluxcpp serve --lora-dir` on the golden tiny schnell weights. GET /v1/loras
// lists the folder; a job naming an adapter gives the reference image (shared/golden/lora, seed path); the next
// job without one gives the plain model's image exactly; names that leave the folder are refused with 400, unknown
// names with 404.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/image.h"
#include "io/safetensors.h"
#include "server_harness.h"
#include "test_util.h"

namespace flux::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json parse(const std::string& s) { return json::parse(s, nullptr, false); }

class LoraServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string root = temp_dir("lora_server");
    dir_ = root + "/loras";
    fs::create_directories(dir_ + "/styles");
    const std::string g = golden_dir() + "/lora/";
    fs::copy_file(g + "lora_a_kohya.safetensors", dir_ + "/style_a.safetensors");
    fs::copy_file(g + "lora_b_diffusers.safetensors", dir_ + "/styles/b.safetensors");
    fs::copy_file(g + "lora_c_xlabs.safetensors", root + "/secret.safetensors");
    fs::create_symlink(root + "/secret.safetensors", dir_ + "/link_out.safetensors");
    std::ofstream(dir_ + "/readme.txt") << "not an adapter";
    std::vector<std::string> args = golden_server_args();
    args.insert(args.end(), {"--lora-dir", dir_});
    server_ = new ServerProcess(args);
    ASSERT_GT(server_->port(), 0) << server_->log();
    ASSERT_TRUE(server_->wait_status("ready")) << server_->log();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->terminate(), 0);
    delete server_;
    server_ = nullptr;
  }

  // A 64x64 job of the golden e2e case (prompt 0, seed 1, 4 steps) with these adapters; its PNG decoded.
  static Image run_job(const json& loras) {
    json body = {{"prompt", "a photo of a cat"}, {"width", 64}, {"height", 64}, {"steps", 4}, {"seed", 1}};
    if (!loras.is_null()) body["loras"] = loras;
    const HttpResponse r = http_request(server_->port(), "POST", "/v1/jobs", body.dump());
    EXPECT_EQ(r.status, 202) << r.body;
    const std::string id = parse(r.body).value("id", "");
    json info;
    EXPECT_TRUE(poll_until([&] {
      info = parse(http_request(server_->port(), "GET", "/v1/jobs/" + id).body);
      return info.is_object() && info["status"] != "queued" && info["status"] != "running";
    }));
    EXPECT_EQ(info["status"], "completed") << info.dump() << server_->log();
    const HttpResponse png = http_request(server_->port(), "GET", "/v1/jobs/" + id + "/image");
    if (png.status != 200) return {};
    return decode_image(reinterpret_cast<const uint8_t*>(png.body.data()), png.body.size(), "job image");
  }

  static std::string dir_;
  static ServerProcess* server_;
};
std::string LoraServerTest::dir_;
ServerProcess* LoraServerTest::server_ = nullptr;

TEST_F(LoraServerTest, ListsTheFolder) {
  const HttpResponse r = http_request(server_->port(), "GET", "/v1/loras");
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = parse(r.body);
  std::vector<std::string> names;
  for (const json& d : j["data"]) names.push_back(d["name"].get<std::string>() + ":" + d["format"].get<std::string>());
  EXPECT_EQ(names, (std::vector<std::string>{"style_a:kohya", "styles/b:diffusers"})) << r.body;
  EXPECT_EQ(j["data"][0]["size"], fs::file_size(dir_ + "/style_a.safetensors"));
}

TEST_F(LoraServerTest, AdapterPerRequestThenWithoutGivesThePlainImage) {
  const Image plain = run_job(nullptr);
  expect_u8("plain", plain, SafetensorsFile::open(golden_dir() + "/e2e_schnell_64x64.safetensors").tensor("image_u8"));
  const Image with_a = run_job(json::array({{{"name", "style_a"}, {"strength", 1.0}}}));
  expect_u8("style_a at 1.0", with_a,
            SafetensorsFile::open(golden_dir() + "/lora/e2e_schnell_64x64_a1.0.safetensors").tensor("image_u8"));
  const Image with_ab =
      run_job(json::array({{{"name", "style_a"}}, {{"name", "styles/b.safetensors"}, {"strength", 0.6}}}));
  expect_u8("style_a + styles/b at 0.6", with_ab,
            SafetensorsFile::open(golden_dir() + "/lora/e2e_schnell_64x64_a1.0_b0.6.safetensors").tensor("image_u8"));
  const Image after = run_job(nullptr);
  EXPECT_EQ(after.pixels, plain.pixels) << "a job without adapters after jobs with them";
  // The OpenAI endpoint takes the same field.
  const json body = {
      {"prompt", "a photo of a cat"}, {"size", "64x64"}, {"steps", 2}, {"loras", json::array({{{"name", "style_a"}}})}};
  const HttpResponse r = http_request(server_->port(), "POST", "/v1/images/generations", body.dump());
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(LoraServerTest, NamesOutsideTheFolderAreRefused) {
  struct Case {
    std::string name;
    int status;
    std::string why;
  };
  const std::vector<Case> cases = {{"../secret", 400, "\"..\""},
                                   {"/etc/passwd", 400, "absolute"},
                                   {"link_out", 400, "outside --lora-dir"},
                                   {"styles/../../secret", 400, "\"..\""},
                                   {"readme.txt", 400, ".safetensors"},
                                   {"no_such_style", 404, "no_such_style"}};
  for (const Case& c : cases) {
    const json body = {{"prompt", "x"}, {"size", "64x64"}, {"loras", json::array({{{"name", c.name}}})}};
    for (const char* path : {"/v1/jobs", "/v1/images/generations"}) {
      const HttpResponse r = http_request(server_->port(), "POST", path, body.dump());
      EXPECT_EQ(r.status, c.status) << c.name << " " << path << " -> " << r.body;
      const json j = parse(r.body);
      ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
      const std::string message = j["error"]["message"].get<std::string>();
      EXPECT_NE(message.find(c.why), std::string::npos) << message;
      EXPECT_EQ(j["error"]["param"], "loras") << r.body;
      EXPECT_EQ(message.find(dir_), std::string::npos) << "the server's folder leaks: " << message;
    }
  }
  const json bad_strength = {{"prompt", "x"}, {"loras", json::array({{{"name", "style_a"}, {"strength", "high"}}})}};
  EXPECT_EQ(http_request(server_->port(), "POST", "/v1/jobs", bad_strength.dump()).status, 400);
}

}  // namespace
}  // namespace flux::test
