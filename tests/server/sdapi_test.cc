// The AUTOMATIC1111 API (/sdapi/v1/*): the body parser in process (fields, warnings, 400s naming fields, LoRA
// tags), then the real `fluxcpp serve` on the golden tiny schnell weights with a LoRA folder: every endpoint, images
// equal to the native API's for the same seed, progress with a preview while a job runs, interrupt and skip, the
// queue's 429 (a batch that does not fit leaves nothing queued).
#include "server/sdapi.h"

#include <unistd.h>

#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>

#include "io/image.h"
#include "server/errors.h"
#include "server/sse.h"
#include "server_harness.h"
#include "test_util.h"

namespace flux::test {
namespace {

using nlohmann::json;
using server::HttpError;
using server::SdapiMode;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

json parse(const std::string& s) { return json::parse(s, nullptr, false); }
json with(json base, const json& extra) {
  base.update(extra);
  return base;
}

server::Limits test_limits() {
  server::Limits l;
  l.max_pixels = 512 * 512;
  l.max_steps = 50;
  l.max_n = 4;
  l.default_width = l.default_height = 512;
  return l;
}

server::SdapiRequest parse_body(const json& body, std::optional<Variant> variant = Variant::schnell,
                                SdapiMode mode = SdapiMode::txt2img, const server::Limits& limits = test_limits()) {
  return server::parse_sdapi_request(body.dump(), mode, limits, variant);
}

// The HttpError a body is refused with (status 0 when it is accepted).
HttpError refusal(const json& body, SdapiMode mode = SdapiMode::txt2img) {
  try {
    parse_body(body, Variant::schnell, mode);
  } catch (const HttpError& e) {
    return e;
  }
  return HttpError(0, "accepted");
}

bool has_warning(const std::vector<std::string>& warnings, const std::string& start) {
  for (const auto& w : warnings)
    if (w.rfind(start, 0) == 0) return true;
  return false;
}

TEST(SdapiRequestTest, MapsA1111FieldsOntoTheJob) {
  const auto r = parse_body({{"prompt", "a cat"},
                             {"width", 256},
                             {"height", 128.0},  // an integral float, as Python clients may send
                             {"steps", 6},
                             {"seed", 42},
                             {"batch_size", 2},
                             {"n_iter", 2},
                             {"cfg_scale", 5},
                             {"sampler_name", "Euler"},
                             {"scheduler", "Simple"},
                             {"enable_hr", false},
                             {"styles", json::array()}},
                            Variant::dev);
  const GenerateRequest& g = r.image.generate;
  EXPECT_EQ(g.prompt, "a cat");
  EXPECT_EQ(g.width, 256);
  EXPECT_EQ(g.height, 128);
  EXPECT_EQ(g.steps, 6);
  EXPECT_EQ(g.seed, 42u);
  EXPECT_FLOAT_EQ(g.guidance, 5.0f);  // dev: cfg_scale is the distilled guidance
  EXPECT_TRUE(g.preview);
  EXPECT_EQ(r.image.n, 4);
  EXPECT_TRUE(r.warnings.empty()) << r.warnings.front();
  EXPECT_EQ(parse(r.parameters)["batch_size"], 2);

  // Forge's distilled_cfg_scale wins over cfg_scale 1; schnell ignores both with a warning.
  EXPECT_FLOAT_EQ(parse_body({{"prompt", "x"}, {"cfg_scale", 1}, {"distilled_cfg_scale", 2.5}}, Variant::dev)
                      .image.generate.guidance,
                  2.5f);
  const auto schnell = parse_body({{"prompt", "x"}, {"cfg_scale", 7}}, Variant::schnell);
  EXPECT_FLOAT_EQ(schnell.image.generate.guidance, GenerateRequest{}.guidance);
  EXPECT_TRUE(has_warning(schnell.warnings, "cfg_scale")) << schnell.warnings.size();
  // seed -1 (or none) is random; defaults are the server's size and the model's steps.
  const auto random = parse_body({{"prompt", "x"}, {"seed", -1}});
  EXPECT_LT(random.image.generate.seed, uint64_t{1} << 32);
  EXPECT_EQ(random.image.generate.width, 512);
  EXPECT_EQ(random.image.generate.steps, 0);
}

TEST(SdapiRequestTest, UnsupportedFieldsAreIgnoredWithAWarning) {
  const auto r =
      parse_body({{"prompt", "x"},
                  {"negative_prompt", "blurry"},
                  {"restore_faces", true},
                  {"enable_hr", true},
                  {"tiling", false},
                  {"sampler_name", "DPM++ 2M"},
                  {"scheduler", "Karras"},
                  {"subseed", -1},
                  {"override_settings", {{"CLIP_stop_at_last_layers", 2}, {"sd_model_checkpoint", "sd_xl_base_1.0"}}},
                  {"made_up_field", {1, 2}},
                  {"send_images", true}});
  for (const char* w :
       {"negative_prompt", "restore_faces", "enable_hr", "sampler_name", "scheduler",
        "override_settings.CLIP_stop_at_last_layers", "override_settings.sd_model_checkpoint", "made_up_field"})
    EXPECT_TRUE(has_warning(r.warnings, w)) << w;
  for (const char* quiet : {"tiling", "subseed", "send_images"}) EXPECT_FALSE(has_warning(r.warnings, quiet)) << quiet;
  EXPECT_EQ(r.warnings.size(), 8u);
  // Our own model in override_settings (as the A1111 web UI sends it) is no warning.
  EXPECT_TRUE(parse_body({{"prompt", "x"}, {"override_settings", {{"sd_model_checkpoint", "flux.1-schnell [0a1b]"}}}})
                  .warnings.empty());
}

TEST(SdapiRequestTest, WrongTypesAreRefusedNamingTheField) {
  struct Case {
    json body;
    std::string param, message;
  };
  const std::vector<Case> cases = {
      {{{"width", 512}}, "prompt", "prompt: required"},
      {{{"prompt", 3}}, "prompt", "prompt: expected a string, got an integer"},
      {{{"prompt", "x"}, {"width", "512"}}, "width", "width: expected an integer, got a string"},
      {{{"prompt", "x"}, {"steps", 2.5}}, "steps", "steps: expected an integer, got 2.5"},
      {{{"prompt", "x"}, {"steps", 51}}, "steps", "steps: expected 1..50, got 51"},
      {{{"prompt", "x"}, {"cfg_scale", "7"}}, "cfg_scale", "cfg_scale: expected a number, got a string"},
      {{{"prompt", "x"}, {"seed", -2}}, "seed", "seed: expected -1.."},
      {{{"prompt", "x"}, {"batch_size", 3}, {"n_iter", 2}}, "batch_size", "batch_size x n_iter: at most 4 images"},
      {{{"prompt", "x"}, {"width", 500}, {"height", 512}}, "width", "width: width and height must be multiples of 16"},
      {{{"prompt", "x"}, {"override_settings", 1}}, "override_settings", "override_settings: expected an object"},
      {{{"prompt", "<lora:style:abc>"}}, "prompt", "prompt: <lora:style:abc>: expected a number for the weight"},
  };
  for (const auto& c : cases) {
    const HttpError e = refusal(c.body);
    EXPECT_EQ(e.status, 400) << c.body.dump();
    EXPECT_EQ(e.param, c.param) << c.body.dump();
    EXPECT_EQ(std::string(e.what()).rfind(c.message, 0), 0u) << e.what();
  }
  EXPECT_EQ(refusal({{"prompt", "x"}}, SdapiMode::img2img).param, "init_images");
  EXPECT_EQ(refusal({{"prompt", "x"}, {"init_images", "abc"}}, SdapiMode::img2img).param, "init_images");
  EXPECT_EQ(refusal({{"prompt", "x"}, {"init_images", json::array()}}, SdapiMode::img2img).param, "init_images");
  EXPECT_EQ(refusal({"not", "an object"}).status, 400);
}

TEST(SdapiRequestTest, LoraTagsLeaveThePrompt) {
  std::string prompt = "<lora:style_a:0.8> a cat, <lora:sub/b> <lora:c:0.5:0.2>";
  const auto tags = server::extract_lora_tags(prompt);
  EXPECT_EQ(prompt, "a cat");
  ASSERT_EQ(tags.size(), 3u);
  EXPECT_EQ(tags[0].name, "style_a");
  EXPECT_DOUBLE_EQ(tags[0].weight, 0.8);
  EXPECT_EQ(tags[1].name, "sub/b");
  EXPECT_DOUBLE_EQ(tags[1].weight, 1.0);
  EXPECT_TRUE(tags[2].extra_weights);
  std::string plain = "no tags <here>";
  EXPECT_TRUE(server::extract_lora_tags(plain).empty());
  EXPECT_EQ(plain, "no tags <here>");
  // Without a LoRA folder a tag is a warning, not an error; a prompt of tags only is refused.
  const auto r = parse_body({{"prompt", "a cat <lora:style_a:1>"}});
  EXPECT_TRUE(r.image.generate.loras.empty());
  EXPECT_TRUE(has_warning(r.warnings, "<lora:style_a>")) << (r.warnings.empty() ? "" : r.warnings.front());
  EXPECT_EQ(refusal({{"prompt", "<lora:style_a:1>"}}).param, "prompt");
}

// PNG signature and IHDR size.
bool is_png(const std::string& data, int width, int height) {
  if (data.size() < 24 || data.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return false;
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(data[at + i]);
    return v;
  };
  return be32(16) == static_cast<uint32_t>(width) && be32(20) == static_cast<uint32_t>(height);
}

Image decode(const std::string& png) {
  return decode_image(reinterpret_cast<const uint8_t*>(png.data()), png.size(), "png");
}

class SdapiServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string root = temp_dir("sdapi_server");
    fs::create_directories(root + "/loras");
    fs::copy_file(golden_dir() + "/lora/lora_a_kohya.safetensors", root + "/loras/style_a.safetensors");
    std::vector<std::string> args = golden_server_args();
    args.insert(args.end(),
                {"--lora-dir", root + "/loras", "--max-steps", "1000", "--queue-size", "2", "--max-n", "4"});
    server_ = new ServerProcess(args);
    ASSERT_GT(server_->port(), 0) << server_->log();
    ASSERT_TRUE(server_->wait_status("ready")) << server_->log();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->terminate(), 0);
    delete server_;
    server_ = nullptr;
  }
  void TearDown() override {
    EXPECT_TRUE(poll_until([] {
      const json h = parse(get("/health").body);
      return h.is_object() && h["queue_depth"] == 0 && h["running"] == false;
    })) << server_->log();
  }
  static HttpResponse get(const std::string& path) { return http_request(server_->port(), "GET", path); }
  static HttpResponse post(const std::string& path, const json& body) {
    return http_request(server_->port(), "POST", path, body.dump());
  }
  static json progress() { return parse(get("/sdapi/v1/progress").body); }
  // A txt2img that runs for many seconds (1000 steps at 128x128), answered on another thread.
  static std::future<HttpResponse> long_txt2img(int batch_size = 1) {
    const json body = {
        {"prompt", "long"}, {"width", 128}, {"height", 128}, {"steps", 1000}, {"batch_size", batch_size}};
    return std::async(std::launch::async, [body] { return post("/sdapi/v1/txt2img", body); });
  }
  // Native job's PNG for the same parameters (the reference the A1111 images must equal).
  static std::string native_png(json body) {
    const HttpResponse r = post("/v1/jobs", body);
    EXPECT_EQ(r.status, 202) << r.body;
    const std::string id = parse(r.body).value("id", "");
    EXPECT_TRUE(poll_until([&] { return parse(get("/v1/jobs/" + id).body)["status"] == "completed"; }, 120s));
    return get("/v1/jobs/" + id + "/image").body;
  }
  static ServerProcess* server_;
};
ServerProcess* SdapiServerTest::server_ = nullptr;

TEST_F(SdapiServerTest, Txt2ImgAnswersImagesParametersAndInfo) {
  const json request = {{"prompt", "a photo of a cat"},
                        {"width", 64},
                        {"height", 64},
                        {"steps", 2},
                        {"seed", 7},
                        {"batch_size", 2},
                        {"n_iter", 1},
                        {"cfg_scale", 7},
                        {"negative_prompt", "dogs"},
                        {"restore_faces", true},
                        {"mystery", "x"}};
  const HttpResponse r = post("/sdapi/v1/txt2img", request);
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = parse(r.body);
  ASSERT_EQ(j["images"].size(), 2u);
  const std::string first = base64_decode(j["images"][0]), second = base64_decode(j["images"][1]);
  EXPECT_TRUE(is_png(first, 64, 64));
  EXPECT_TRUE(is_png(second, 64, 64));
  EXPECT_EQ(j["parameters"], request);
  ASSERT_TRUE(j["info"].is_string());  // A1111 sends info as JSON text
  const json info = parse(j["info"]);
  EXPECT_EQ(info["seed"], 7);
  EXPECT_EQ(info["all_seeds"], json({7, 8}));
  EXPECT_EQ(info["width"], 64);
  EXPECT_EQ(info["height"], 64);
  EXPECT_EQ(info["steps"], 2);
  EXPECT_EQ(info["sampler_name"], "Euler");
  EXPECT_EQ(info["sd_model_name"], "flux.1-schnell");
  EXPECT_EQ(info["infotexts"].size(), 2u);
  const json warnings = info["warnings"];
  auto warned = [&](const std::string& field) {
    for (const auto& w : warnings)
      if (w.get<std::string>().rfind(field, 0) == 0) return true;
    return false;
  };
  for (const char* field : {"negative_prompt", "restore_faces", "mystery", "cfg_scale"})
    EXPECT_TRUE(warned(field)) << field << " in " << warnings.dump();
  // The same pixels as native jobs with seeds 7 and 8 (consecutive seeds, as A1111 numbers a batch).
  const json native = {{"prompt", "a photo of a cat"}, {"width", 64}, {"height", 64}, {"steps", 2}};
  EXPECT_EQ(decode(first).pixels, decode(native_png(with(native, {{"seed", 7}}))).pixels);
  EXPECT_EQ(decode(second).pixels, decode(native_png(with(native, {{"seed", 8}}))).pixels);
  EXPECT_NE(decode(first).pixels, decode(second).pixels);

  // seed -1: a random first seed, the rest consecutive and reported.
  const json random =
      parse(parse(post("/sdapi/v1/txt2img",
                       {{"prompt", "x"}, {"width", 64}, {"height", 64}, {"steps", 1}, {"seed", -1}, {"n_iter", 2}})
                      .body)["info"]);
  ASSERT_EQ(random["all_seeds"].size(), 2u);
  EXPECT_EQ(random["all_seeds"][0], random["seed"]);
  EXPECT_EQ(random["all_seeds"][1].get<uint64_t>(), random["seed"].get<uint64_t>() + 1);
  EXPECT_EQ(random["steps"], 1);
}

TEST_F(SdapiServerTest, BadFieldsAnswer400NamingThem) {
  for (const auto& [body, param] : std::vector<std::pair<json, std::string>>{
           {{{"prompt", "x"}, {"width", "64"}, {"height", 64}}, "width"},
           {{{"prompt", "x"}, {"steps", 1001}}, "steps"},
           {{{"prompt", "x"}, {"width", 512}, {"height", 512}}, "width"},  // above --max-pixels 65536
           {{{"prompt", "x"}, {"batch_size", 5}}, "batch_size"},
           {{{"prompt", "x"}, {"seed", "1"}}, "seed"}}) {
    const HttpResponse r = post("/sdapi/v1/txt2img", body);
    EXPECT_EQ(r.status, 400) << body.dump() << " -> " << r.body;
    EXPECT_EQ(parse(r.body)["error"]["param"], param) << r.body;
  }
  EXPECT_EQ(http_request(server_->port(), "POST", "/sdapi/v1/txt2img", "{not json").status, 400);
  EXPECT_EQ(get("/sdapi/v1/txt2img").status, 405);
  EXPECT_EQ(get("/sdapi/v1/no-such-endpoint").status, 404);
  const HttpResponse bad_image =
      post("/sdapi/v1/img2img", {{"prompt", "x"}, {"width", 64}, {"height", 64}, {"init_images", {"@@@@"}}});
  EXPECT_EQ(bad_image.status, 400) << bad_image.body;
  EXPECT_EQ(parse(bad_image.body)["error"]["param"], "init_images");
}

TEST_F(SdapiServerTest, Img2ImgTakesInitImagesAndDenoisingStrength) {
  Image picture{64, 64, {}};
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      picture.pixels.insert(picture.pixels.end(), {static_cast<uint8_t>(x * 4), static_cast<uint8_t>(y * 4), 90});
  const std::vector<uint8_t> png = encode_png(picture);
  const std::string b64 = server::base64_encode(png);
  const json request = {{"prompt", "a cat"},
                        {"width", 64},
                        {"height", 64},
                        {"steps", 4},
                        {"seed", 3},
                        {"denoising_strength", 0.5},
                        {"init_images", {"data:image/png;base64," + b64}}};
  const HttpResponse r = post("/sdapi/v1/img2img", request);
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = parse(r.body);
  ASSERT_EQ(j["images"].size(), 1u);
  const std::string out = base64_decode(j["images"][0]);
  EXPECT_TRUE(is_png(out, 64, 64));
  EXPECT_TRUE(j["parameters"]["init_images"].is_null());  // not echoed back (A1111's include_init_images)
  const json info = parse(j["info"]);
  EXPECT_DOUBLE_EQ(info["denoising_strength"].get<double>(), 0.5);
  // The native API with the same picture and strength gives the same pixels.
  const std::string native = native_png({{"prompt", "a cat"},
                                         {"width", 64},
                                         {"height", 64},
                                         {"steps", 4},
                                         {"seed", 3},
                                         {"strength", 0.5},
                                         {"image", b64}});
  EXPECT_EQ(decode(out).pixels, decode(native).pixels);
}

TEST_F(SdapiServerTest, LoraTagsApplyTheFoldersAdapters) {
  const json base = {{"width", 64}, {"height", 64}, {"steps", 2}, {"seed", 1}};
  const HttpResponse tagged = post("/sdapi/v1/txt2img", with(base, {{"prompt", "a cat <lora:style_a:0.8>"}}));
  ASSERT_EQ(tagged.status, 200) << tagged.body;
  const std::string with_tag = base64_decode(parse(tagged.body)["images"][0]);
  const std::string native =
      native_png(with(base, {{"prompt", "a cat"}, {"loras", {{{"name", "style_a"}, {"strength", 0.8}}}}}));
  const std::string plain = native_png(with(base, {{"prompt", "a cat"}}));
  EXPECT_EQ(decode(with_tag).pixels, decode(native).pixels);
  EXPECT_NE(decode(with_tag).pixels, decode(plain).pixels);
  const json info =
      parse(parse(post("/sdapi/v1/txt2img", with(base, {{"prompt", "a cat <lora:nope:1>"}})).body)["info"]);
  EXPECT_EQ(info["warnings"][0], "<lora:nope>: no such adapter in the LoRA folder; ignored");
  EXPECT_EQ(post("/sdapi/v1/txt2img", with(base, {{"prompt", "a cat <lora:../x:1>"}})).status, 400);
}

TEST_F(SdapiServerTest, ListsAndOptions) {
  const json models = parse(get("/sdapi/v1/sd-models").body);
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0]["title"], "flux.1-schnell");
  EXPECT_EQ(models[0]["model_name"], "flux.1-schnell");
  for (const char* key : {"hash", "sha256", "filename", "config"}) EXPECT_TRUE(models[0].contains(key)) << key;
  json options = parse(get("/sdapi/v1/options").body);
  EXPECT_EQ(options["sd_model_checkpoint"], models[0]["title"]);
  // Open WebUI posts back the whole object it read, with the checkpoint set.
  options["sd_model_checkpoint"] = "flux.1-schnell";
  const HttpResponse same = post("/sdapi/v1/options", options);
  EXPECT_EQ(same.status, 200) << same.body;
  EXPECT_EQ(parse(same.body)["ignored"].size(), options.size() - 1);
  EXPECT_EQ(post("/sdapi/v1/options", {{"sd_model_checkpoint", "flux.1-schnell [abc123]"}}).status, 200);
  const HttpResponse other = post("/sdapi/v1/options", {{"sd_model_checkpoint", "sd_xl_base_1.0.safetensors"}});
  EXPECT_EQ(other.status, 400);
  EXPECT_EQ(parse(other.body)["error"]["param"], "sd_model_checkpoint");
  EXPECT_EQ(post("/sdapi/v1/options", {{"sd_model_checkpoint", 3}}).status, 400);
  EXPECT_EQ(http_request(server_->port(), "POST", "/sdapi/v1/options", "[]").status, 400);
  EXPECT_EQ(http_request(server_->port(), "DELETE", "/sdapi/v1/options").status, 405);

  const json samplers = parse(get("/sdapi/v1/samplers").body);
  ASSERT_EQ(samplers.size(), 1u);
  EXPECT_EQ(samplers[0]["name"], "Euler");
  const json schedulers = parse(get("/sdapi/v1/schedulers").body);
  ASSERT_EQ(schedulers.size(), 1u);
  EXPECT_EQ(schedulers[0]["name"], "simple");
  const json loras = parse(get("/sdapi/v1/loras").body);
  ASSERT_EQ(loras.size(), 1u);
  EXPECT_EQ(loras[0]["name"], "style_a");
  EXPECT_EQ(loras[0]["path"], "style_a.safetensors");
  EXPECT_EQ(parse(get("/sdapi/v1/upscalers").body), json::array());

  const json idle = progress();
  EXPECT_EQ(idle["progress"], 0.0);
  EXPECT_EQ(idle["state"]["job_count"], 0);
  EXPECT_TRUE(idle["current_image"].is_null());
}

TEST_F(SdapiServerTest, ProgressShowsStepsAndAPreviewAndInterruptCancels) {
  auto reply = long_txt2img();
  json p;
  ASSERT_TRUE(poll_until(
      [&] {
        p = progress();
        return p["state"]["sampling_step"].get<int>() >= 2 && p["current_image"].is_string();
      },
      60s))
      << p.dump();
  EXPECT_EQ(p["state"]["job_count"], 1);
  EXPECT_EQ(p["state"]["job_no"], 0);
  EXPECT_EQ(p["state"]["sampling_steps"], 1000);
  EXPECT_EQ(p["state"]["job"], "txt2img");
  EXPECT_GT(p["progress"].get<double>(), 0.0);
  EXPECT_LT(p["progress"].get<double>(), 1.0);
  EXPECT_GT(p["eta_relative"].get<double>(), 0.0);
  const std::string preview = base64_decode(p["current_image"]);
  EXPECT_EQ(preview.compare(0, 8, "\x89PNG\r\n\x1a\n"), 0);
  EXPECT_TRUE(parse(get("/sdapi/v1/progress?skip_current_image=true").body)["current_image"].is_null());

  const HttpResponse interrupted = post("/sdapi/v1/interrupt", json::object());
  EXPECT_EQ(interrupted.status, 200);
  EXPECT_EQ(parse(interrupted.body)["cancelled"].size(), 1u);
  ASSERT_EQ(reply.wait_for(60s), std::future_status::ready);
  const HttpResponse r = reply.get();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(parse(r.body)["images"].empty());
  const std::string info = parse(r.body)["info"];
  EXPECT_NE(info.find("interrupted: 1 of 1 images cancelled"), std::string::npos) << info;
  EXPECT_EQ(progress()["state"]["job_count"], 0);
}

TEST_F(SdapiServerTest, SkipCancelsOneImageOfTheBatch) {
  auto reply = long_txt2img(2);
  ASSERT_TRUE(poll_until([] { return progress()["state"]["sampling_step"].get<int>() >= 1; }, 60s));
  EXPECT_EQ(parse(post("/sdapi/v1/skip", json::object()).body)["cancelled"].size(), 1u);
  json p;
  ASSERT_TRUE(poll_until(
      [&] {
        p = progress();
        return p["state"]["job_no"] == 1 && p["state"]["sampling_step"].get<int>() >= 1;
      },
      60s))
      << p.dump();
  EXPECT_TRUE(p["state"]["skipped"].get<bool>());
  EXPECT_EQ(p["state"]["job_count"], 2);
  EXPECT_GE(p["progress"].get<double>(), 0.5);  // one image of two is done with
  EXPECT_EQ(parse(post("/sdapi/v1/interrupt", json::object()).body)["cancelled"].size(), 1u);
  ASSERT_EQ(reply.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(reply.get().status, 200);
}

TEST_F(SdapiServerTest, AClientThatLeavesCancelsItsImages) {
  const int fd = connect_local(server_->port());
  ASSERT_GE(fd, 0);
  const std::string body = R"({"prompt": "long", "width": 128, "height": 128, "steps": 1000, "n_iter": 2})";
  ASSERT_TRUE(send_all(fd,
                       "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: " +
                           std::to_string(body.size()) + "\r\n\r\n" + body));
  ASSERT_TRUE(poll_until([] { return progress()["state"]["sampling_step"].get<int>() >= 1; }, 60s));
  EXPECT_EQ(progress()["state"]["job_count"], 2);
  ::close(fd);  // the client gives up: both images are cancelled, the run is forgotten
  EXPECT_TRUE(poll_until([] {
    const json h = parse(get("/health").body);
    return h["queue_depth"] == 0 && h["running"] == false && progress()["state"]["job_count"] == 0;
  }));
}

TEST_F(SdapiServerTest, FullQueueAnswers429AndABatchIsAllOrNothing) {
  auto running = long_txt2img();  // runs
  ASSERT_TRUE(poll_until([] { return progress()["state"]["sampling_step"].get<int>() >= 1; }, 60s));
  const HttpResponse queued = post("/v1/jobs", {{"prompt", "wait"}, {"size", "128x128"}, {"steps", 1000}});
  ASSERT_EQ(queued.status, 202) << queued.body;
  // One free place in the queue, two images asked: refused, and the first image is not left behind.
  const HttpResponse batch =
      post("/sdapi/v1/txt2img", {{"prompt", "x"}, {"width", 64}, {"height", 64}, {"batch_size", 2}});
  EXPECT_EQ(batch.status, 429) << batch.body;
  EXPECT_FALSE(batch.header("retry-after").empty());
  EXPECT_EQ(parse(batch.body)["error"]["code"], "queue_full");
  EXPECT_TRUE(poll_until([] { return parse(get("/health").body)["queue_depth"] == 1; }));
  EXPECT_EQ(http_request(server_->port(), "DELETE", "/v1/jobs/" + parse(queued.body).value("id", "")).status, 200);
  post("/sdapi/v1/interrupt", json::object());
  ASSERT_EQ(running.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(running.get().status, 200);
}

// FLUX.1-dev: cfg_scale is the distilled guidance (the same pixels as a native job with that guidance).
TEST(SdapiDevServerTest, CfgScaleIsTheGuidance) {
  ServerProcess server(golden_server_args("flux1-dev"));
  ASSERT_GT(server.port(), 0) << server.log();
  ASSERT_TRUE(server.wait_status("ready")) << server.log();
  const json base = {{"prompt", "a cat"}, {"width", 64}, {"height", 64}, {"steps", 2}, {"seed", 5}};
  auto a1111 = [&](const json& extra) {
    const HttpResponse r = http_request(server.port(), "POST", "/sdapi/v1/txt2img", with(base, extra).dump());
    EXPECT_EQ(r.status, 200) << r.body;
    const json j = parse(r.body);
    EXPECT_EQ(parse(j["info"])["sd_model_name"], "flux.1-dev");
    return decode(base64_decode(j["images"][0])).pixels;
  };
  auto native = [&](double guidance) {
    const HttpResponse r = http_request(
        server.port(), "POST", "/v1/images/generations",
        json({{"prompt", "a cat"}, {"size", "64x64"}, {"steps", 2}, {"seed", 5}, {"guidance", guidance}}).dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return decode(base64_decode(parse(r.body)["data"][0]["b64_json"])).pixels;
  };
  const auto cfg5 = a1111({{"cfg_scale", 5}});
  EXPECT_EQ(cfg5, native(5));
  EXPECT_NE(cfg5, native(3.5));
  EXPECT_EQ(a1111({{"cfg_scale", 1}, {"distilled_cfg_scale", 5}}), cfg5);  // Forge's way of saying the same
  EXPECT_EQ(server.terminate(), 0);
}

}  // namespace
}  // namespace flux::test
