// Access to the API (issue 14, "Exposure beyond loopback"): --api-key / FLUX_API_KEY (Bearer), --api-auth
// (Basic), the open routes, --metrics-auth, --cors-origin with its preflight, the warning for a non-loopback
// address without a key, and the key never written to the log.
#include "server/auth.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "server/errors.h"
#include "server/sse.h"
#include "server_harness.h"
#include "test_util.h"

namespace flux::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const char* kKey = "sk-test-5f1c0e";

// One request with extra header lines ("Name: value\r\n" each); the status line and body as http_request gives.
HttpResponse request_with(int port, const std::string& method, const std::string& path, const std::string& headers,
                          const std::string& body = "") {
  const int fd = connect_local(port);
  if (fd < 0) return {};
  send_all(fd, str_cat(method, " ", path, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", headers,
                       "Content-Length: ", body.size(), "\r\n\r\n", body));
  std::string data;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) data.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  HttpResponse r;
  if (data.size() < 12) return r;
  r.status = std::atoi(data.substr(9, 3).c_str());
  const size_t end = data.find("\r\n\r\n");
  std::istringstream lines(data.substr(0, end));
  std::string line;
  std::getline(lines, line);
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    r.headers[name] = line.substr(colon + 2);
  }
  if (end != std::string::npos) r.body = data.substr(end + 4);
  return r;
}

std::string basic(const std::string& user_pass) {
  return "Basic " + server::base64_encode(reinterpret_cast<const uint8_t*>(user_pass.data()), user_pass.size());
}

TEST(Access, ConstantTimeCompareAndHeaderParsing) {
  EXPECT_TRUE(server::constant_time_equal("abc", "abc"));
  EXPECT_FALSE(server::constant_time_equal("abd", "abc"));
  EXPECT_FALSE(server::constant_time_equal("ab", "abc"));
  EXPECT_FALSE(server::constant_time_equal("abcd", "abc"));
  EXPECT_FALSE(server::constant_time_equal("", "abc"));
  server::AccessOptions a;
  a.api_key = "k1";
  a.basic = "user:pass";
  EXPECT_TRUE(server::is_authorized("Bearer k1", a));
  EXPECT_TRUE(server::is_authorized("bearer k1", a));  // the scheme is case-insensitive
  EXPECT_FALSE(server::is_authorized("Bearer k2", a));
  EXPECT_FALSE(server::is_authorized("Bearer", a));
  EXPECT_FALSE(server::is_authorized("k1", a));
  EXPECT_TRUE(server::is_authorized(basic("user:pass"), a));
  EXPECT_FALSE(server::is_authorized(basic("user:wrong"), a));
  EXPECT_FALSE(server::is_authorized("Basic k1", a));
  server::AccessOptions open;
  EXPECT_FALSE(open.enabled());
  server::Request r{"GET", "/v1/jobs", "", "", "", ""};
  EXPECT_NO_THROW(server::check_access(r, open));
  try {
    server::check_access(r, a);
    FAIL() << "no 401";
  } catch (const server::HttpError& e) {
    EXPECT_EQ(e.status, 401);
    EXPECT_EQ(e.param, "authorization");
    ASSERT_FALSE(e.headers.empty());
    EXPECT_EQ(e.headers[0].first, "WWW-Authenticate");
  }
}

class AuthServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::setenv("FLUX_API_KEY", kKey, 1);  // the key from the environment, as a service manager would pass it
    server_ = new ServerProcess({"--model", tiny_model_dir(), "--threads", "2", "--max-pixels", "262144", "--api-auth",
                                 "webui:s3cret", "--cors-origin", "https://app.example"});
    ::unsetenv("FLUX_API_KEY");
    ASSERT_GT(server_->port(), 0) << server_->log();
    ASSERT_TRUE(server_->wait_status("ready")) << server_->log();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->terminate(), 0);
    delete server_;
    server_ = nullptr;
  }
  static int port() { return server_->port(); }
  static ServerProcess* server_;
};
ServerProcess* AuthServerTest::server_ = nullptr;

TEST_F(AuthServerTest, ApiRoutesNeedTheKeyOrTheBasicCredentials) {
  for (const char* path : {"/v1/models", "/v1/config", "/v1/jobs", "/openapi.json", "/sdapi/v1/sd-models"}) {
    const HttpResponse none = request_with(port(), "GET", path, "");
    EXPECT_EQ(none.status, 401) << path;
    EXPECT_EQ(none.header("www-authenticate"), "Bearer realm=\"fluxcpp\"") << path;
    const json error = json::parse(none.body, nullptr, false);
    ASSERT_TRUE(error.is_object()) << none.body;
    EXPECT_EQ(error["error"]["code"], "missing_credentials");
    EXPECT_EQ(request_with(port(), "GET", path, "Authorization: Bearer wrong\r\n").status, 401) << path;
    EXPECT_EQ(request_with(port(), "GET", path, str_cat("Authorization: Bearer ", kKey, "\r\n")).status, 200) << path;
    EXPECT_EQ(request_with(port(), "GET", path, str_cat("Authorization: ", basic("webui:s3cret"), "\r\n")).status, 200)
        << path;
    EXPECT_EQ(request_with(port(), "GET", path, str_cat("Authorization: ", basic("webui:nope"), "\r\n")).status, 401)
        << path;
  }
  const HttpResponse generation =
      request_with(port(), "POST", "/v1/images/generations", "Content-Type: application/json\r\n",
                   R"({"prompt": "x", "size": "64x64", "steps": 1})");
  EXPECT_EQ(generation.status, 401);
  const HttpResponse authorized =
      request_with(port(), "POST", "/v1/images/generations",
                   str_cat("Content-Type: application/json\r\nAuthorization: Bearer ", kKey, "\r\n"),
                   R"({"prompt": "x", "size": "64x64", "steps": 1})");
  EXPECT_EQ(authorized.status, 200) << authorized.body.substr(0, 200);
  EXPECT_EQ(authorized.header("access-control-allow-origin"), "https://app.example");
}

TEST_F(AuthServerTest, PageHealthReadyAndMetricsStayOpen) {
  for (const char* path : {"/", "/favicon.ico", "/health", "/ready", "/metrics"})
    EXPECT_EQ(request_with(port(), "GET", path, "").status, 200) << path;
  EXPECT_EQ(
      json::parse(
          request_with(port(), "GET", "/v1/config", str_cat("Authorization: Bearer ", kKey, "\r\n")).body)["auth"],
      true);
}

TEST_F(AuthServerTest, CorsPreflightAndHeaders) {
  const HttpResponse pre = request_with(port(), "OPTIONS", "/v1/jobs",
                                        "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
                                        "Access-Control-Request-Headers: authorization, content-type\r\n");
  EXPECT_EQ(pre.status, 204);
  EXPECT_EQ(pre.header("access-control-allow-origin"), "https://app.example");
  EXPECT_NE(pre.header("access-control-allow-headers").find("Authorization"), std::string::npos);
  EXPECT_NE(pre.header("access-control-allow-methods").find("POST"), std::string::npos);
  // Refusals carry the headers too, so a browser can read the 401.
  EXPECT_EQ(request_with(port(), "GET", "/v1/jobs", "").header("access-control-allow-origin"), "https://app.example");
  // So do the A1111 answers, written once the images are made, and their refusals.
  const std::string auth = str_cat("Content-Type: application/json\r\nAuthorization: Bearer ", kKey, "\r\n");
  const HttpResponse made = request_with(port(), "POST", "/sdapi/v1/txt2img", auth,
                                         R"({"prompt": "x", "width": 64, "height": 64, "steps": 1})");
  EXPECT_EQ(made.status, 200) << made.body.substr(0, 200);
  EXPECT_EQ(made.header("access-control-allow-origin"), "https://app.example");
  const HttpResponse refused = request_with(port(), "POST", "/sdapi/v1/txt2img", auth, R"({"prompt": "x", "width": 1})");
  EXPECT_EQ(refused.status, 400) << refused.body.substr(0, 200) << server_->log();
  EXPECT_EQ(refused.header("access-control-allow-origin"), "https://app.example");
}

TEST_F(AuthServerTest, TheKeyNeverReachesTheLog) {
  request_with(port(), "GET", "/v1/jobs", str_cat("Authorization: Bearer ", kKey, "\r\n"));
  request_with(port(), "GET", "/v1/jobs", "Authorization: Bearer sk-wrong-guess\r\n");
  const std::string log = server_->log();
  EXPECT_EQ(log.find(kKey), std::string::npos);
  EXPECT_EQ(log.find("s3cret"), std::string::npos);
  EXPECT_EQ(log.find("sk-wrong-guess"), std::string::npos);
}

TEST(AuthServer, MetricsAuthClosesMetrics) {
  ServerProcess server({"--model", tiny_model_dir(), "--threads", "1", "--api-key", kKey, "--metrics-auth"});
  ASSERT_GT(server.port(), 0) << server.log();
  EXPECT_EQ(request_with(server.port(), "GET", "/metrics", "").status, 401);
  EXPECT_EQ(request_with(server.port(), "GET", "/metrics", str_cat("Authorization: Bearer ", kKey, "\r\n")).status,
            200);
  EXPECT_EQ(request_with(server.port(), "GET", "/health", "").status, 200);
  EXPECT_EQ(server.log().find(kKey), std::string::npos);
}

// The server's stderr when it binds `host` for a moment (SIGINT after 3 s).
std::string log_of_a_short_run(const std::vector<std::string>& args) {
  const std::string dir = temp_dir("auth-warning");
  const std::string out = dir + "/log.txt";
  std::string command = str_cat("timeout -s INT 3 ", FLUX_CLI_PATH, " serve --port 0 --model ", dir);
  for (const auto& a : args) command += " " + a;
  command += " > " + out + " 2>&1";
  EXPECT_NE(std::system(command.c_str()), -1);
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(AuthServer, NonLoopbackWithoutAKeyWarns) {
  const std::string open = log_of_a_short_run({"--host", "0.0.0.0"});
  ASSERT_NE(open.find("listening on http://0.0.0.0:"), std::string::npos) << open;
  EXPECT_NE(open.find("without credentials"), std::string::npos) << open;
  const std::string keyed = log_of_a_short_run({"--host", "0.0.0.0", "--api-key", "k-9"});
  ASSERT_NE(keyed.find("listening on http://0.0.0.0:"), std::string::npos) << keyed;
  EXPECT_EQ(keyed.find("without credentials"), std::string::npos) << keyed;
  EXPECT_EQ(keyed.find("k-9"), std::string::npos) << keyed;
  const std::string loopback = log_of_a_short_run({});
  EXPECT_EQ(loopback.find("without credentials"), std::string::npos) << loopback;
}

}  // namespace
}  // namespace flux::test
