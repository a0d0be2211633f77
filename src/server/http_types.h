// Plain HTTP request/response values exchanged between the Beast connection code and the routes, so the
// routes (and their tests) never include Beast.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace flux::server {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // "/v1/jobs/abc" (no query)
  std::string query;   // after '?', may be empty
  std::string content_type;  // the Content-Type header ("" when absent)
  std::string authorization;  // the Authorization header ("" when absent; never logged)
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

}  // namespace flux::server
