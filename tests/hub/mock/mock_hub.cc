#include "mock_hub.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "hub/sha256.h"

namespace flux::test {
namespace {

namespace fs = std::filesystem;

// SHA-1 (FIPS 180-4, 6.1), only for git's blob ids in the tests.
std::string sha1_hex(const std::string& msg) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string m = msg;
  const uint64_t bits = static_cast<uint64_t>(msg.size()) * 8;
  m += static_cast<char>(0x80);
  while (m.size() % 64 != 56) m += '\0';
  for (int i = 7; i >= 0; --i) m += static_cast<char>(bits >> (8 * i));
  auto rol = [](uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[80];
    for (int t = 0; t < 16; ++t) {
      const auto* p = reinterpret_cast<const unsigned char*>(m.data() + off + 4 * t);
      w[t] = uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
    }
    for (int t = 16; t < 80; ++t) w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; ++t) {
      uint32_t f, k;
      if (t < 20)
        f = (b & c) | (~b & d), k = 0x5A827999;
      else if (t < 40)
        f = b ^ c ^ d, k = 0x6ED9EBA1;
      else if (t < 60)
        f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      else
        f = b ^ c ^ d, k = 0xCA62C1D6;
      const uint32_t tmp = rol(a, 5) + f + e + k + w[t];
      e = d, d = c, c = rol(b, 30), b = a, a = tmp;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  char out[41];
  for (int i = 0; i < 5; ++i) std::snprintf(out + 8 * i, 9, "%08x", h[i]);
  return out;
}

char generated_byte(uint64_t i) { return static_cast<char>((i * 131 + i / 4096) % 251); }

bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0) return false;
    p += k, n -= static_cast<size_t>(k);
  }
  return true;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string git_blob_sha1(const std::string& content) {
  return sha1_hex("blob " + std::to_string(content.size()) + std::string(1, '\0') + content);
}

std::string sha256_hex(const std::string& content) {
  hub::Sha256 h;
  h.update(content.data(), content.size());
  return h.hex_digest();
}

void MockHub::File::read(uint64_t offset, char* out, size_t n) const {
  if (data) {
    std::memcpy(out, data->data() + offset, n);
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = generated_byte(offset + i);
  }
}

MockHub::MockHub() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 64) != 0)
    throw std::runtime_error("mock hub: cannot listen on loopback");
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

MockHub::~MockHub() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

std::string MockHub::endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::vector<std::string> MockHub::request_log() const {
  std::lock_guard lock(mutex_);
  return log_;
}

void MockHub::add_repo(const std::string& repo_id, const std::string& commit, const std::string& dir,
                       const std::string& token) {
  Repo repo;
  repo.commit = commit;
  repo.token = token;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    File f;
    f.path = fs::relative(e.path(), dir).string();
    f.data = std::make_shared<const std::string>(s.str());
    f.size = f.data->size();
    const std::string ext = e.path().extension().string();
    f.lfs = ext == ".safetensors" || ext == ".model" || f.size >= 100 * 1024;
    f.etag = f.lfs ? sha256_hex(*f.data) : git_blob_sha1(*f.data);
    repo.files[f.path] = f;
  }
  std::lock_guard lock(mutex_);
  repos_[repo_id] = std::move(repo);
}

void MockHub::add_generated_file(const std::string& repo_id, const std::string& path, uint64_t size) {
  File f;
  f.path = path;
  f.size = size;
  f.lfs = true;
  hub::Sha256 h;
  std::vector<char> buffer(1 << 20);
  for (uint64_t off = 0; off < size; off += buffer.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buffer.size(), size - off));
    f.read(off, buffer.data(), n);
    h.update(buffer.data(), n);
  }
  f.etag = h.hex_digest();
  std::lock_guard lock(mutex_);
  repos_.at(repo_id).files[path] = f;
}

void MockHub::announce_size(const std::string& repo_id, const std::string& path, uint64_t size) {
  std::lock_guard lock(mutex_);
  repos_.at(repo_id).files.at(path).announced = size;
}

void MockHub::accept_loop() {
  while (!stopping_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    std::lock_guard lock(mutex_);
    threads_.emplace_back([this, fd] {
      serve(fd);
      ::close(fd);
    });
  }
}

void MockHub::serve(int fd) {
  // Reads the request head (bodies are never sent to the hub's GET/HEAD routes).
  std::string in;
  char buf[4096];
  while (in.find("\r\n\r\n") == std::string::npos && in.size() < 65536) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    in.append(buf, static_cast<size_t>(n));
  }
  std::istringstream lines(in.substr(0, in.find("\r\n\r\n")));
  std::string method, target, version, line;
  lines >> method >> target >> version;
  std::getline(lines, line);
  std::map<std::string, std::string> headers;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    headers[lower(line.substr(0, colon))] = value;
  }
  ++requests_;
  {
    std::lock_guard lock(mutex_);
    log_.push_back(method + " " + target);
  }
  const bool head = method == "HEAD";
  auto reply = [&](int status, const std::string& reason, const std::vector<std::string>& extra,
                   const std::string& body) {
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
    for (const std::string& h : extra) out += h + "\r\n";
    out += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    if (!head) out += body;
    send_all(fd, out.data(), out.size());
  };
  auto not_found = [&](const std::string& code) {
    reply(404, "Not Found", {"X-Error-Code: " + code, "Content-Type: application/json"},
          R"({"error":")" + code + R"("})");
  };

  // /lfs/SHA256
  if (target.rfind("/lfs/", 0) == 0) {
    const std::string sha = target.substr(5);
    std::optional<File> file;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [id, repo] : repos_)
        for (const auto& [path, f] : repo.files)
          if (f.lfs && f.etag == sha) file = f;
    }
    if (!file) return not_found("EntryNotFound");
    return send_file(fd, *file, head, headers.count("range") ? headers["range"] : "");
  }

  // The repository: /api/models/ORG/NAME/revision/REV or /ORG/NAME/resolve/REV/PATH.
  const bool api = target.rfind("/api/models/", 0) == 0;
  std::string rest = api ? target.substr(12) : target.substr(1);
  const size_t s1 = rest.find('/');
  const size_t s2 = s1 == std::string::npos ? s1 : rest.find('/', s1 + 1);
  if (s2 == std::string::npos) return not_found("RepoNotFound");
  const std::string repo_id = rest.substr(0, s2);
  rest = rest.substr(s2 + 1);
  Repo repo;
  {
    std::lock_guard lock(mutex_);
    const auto it = repos_.find(repo_id);
    if (it == repos_.end()) return not_found("RepoNotFound");
    repo = it->second;
  }
  if (!repo.token.empty() && headers["authorization"] != "Bearer " + repo.token)
    return reply(401, "Unauthorized", {"X-Error-Code: GatedRepo"},
                 R"({"error":"Access to model )" + repo_id + R"( is restricted."})");
  const std::string verb = api ? "revision/" : "resolve/";
  if (rest.rfind(verb, 0) != 0) return not_found("EntryNotFound");
  rest = rest.substr(verb.size());
  const size_t slash = rest.find('/');
  const std::string revision = api ? rest : rest.substr(0, slash);
  if (revision != "main" && revision != repo.commit) return not_found("RevisionNotFound");
  if (api) {
    while (hang_listing_ && !stopping_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    nlohmann::json siblings = nlohmann::json::array();
    for (const auto& [path, f] : repo.files) {
      nlohmann::json s = {{"rfilename", path}, {"size", f.size}};
      if (f.lfs) s["lfs"] = {{"sha256", f.etag}, {"size", f.size}};
      siblings.push_back(s);
    }
    return reply(200, "OK", {"Content-Type: application/json"},
                 nlohmann::json{{"id", repo_id}, {"sha", repo.commit}, {"siblings", siblings}}.dump());
  }
  if (slash == std::string::npos) return not_found("EntryNotFound");
  const auto it = repo.files.find(rest.substr(slash + 1));
  if (it == repo.files.end()) return not_found("EntryNotFound");
  const File& f = it->second;
  const std::string commit = "X-Repo-Commit: " + repo.commit;
  if (f.lfs)  // the pointer file's ETag, the content's sha256 as X-Linked-Etag
    return reply(302, "Found",
                 {commit, "ETag: \"" + git_blob_sha1("version lfs\noid sha256:" + f.etag) + "\"",
                  "X-Linked-Etag: \"" + f.etag + "\"",
                  "X-Linked-Size: " + std::to_string(f.announced ? f.announced : f.size), "Location: /lfs/" + f.etag},
                 "");
  std::string body(f.size, '\0');
  f.read(0, body.data(), body.size());
  reply(200, "OK", {commit, "ETag: \"" + f.etag + "\""}, body);
}

void MockHub::send_file(int fd, const File& file, bool head, const std::string& range) {
  uint64_t from = 0;
  if (range.rfind("bytes=", 0) == 0) from = std::stoull(range.substr(6));
  if (from > file.size) from = file.size;
  std::string out = from > 0 ? "HTTP/1.1 206 Partial Content\r\n" : "HTTP/1.1 200 OK\r\n";
  if (from > 0)
    out += "Content-Range: bytes " + std::to_string(from) + "-" + std::to_string(file.size - 1) + "/" +
           std::to_string(file.size) + "\r\n";
  out += "Content-Length: " + std::to_string(file.size - from) + "\r\nETag: \"" + file.etag +
         "\"\r\nConnection: close\r\n\r\n";
  if (!send_all(fd, out.data(), out.size()) || head) return;
  const uint64_t cut = cut_after_.exchange(0);
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t sent = 0;
  std::vector<char> chunk(64 * 1024);
  for (uint64_t off = from; off < file.size && !stopping_;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), file.size - off));
    if (cut > 0) n = static_cast<size_t>(std::min<uint64_t>(n, cut - sent));
    file.read(off, chunk.data(), n);
    const int64_t bad = corrupt_at_;
    if (bad >= 0 && static_cast<uint64_t>(bad) >= off && static_cast<uint64_t>(bad) < off + n)
      chunk[static_cast<size_t>(bad - static_cast<int64_t>(off))] ^= 0x5a;
    if (!send_all(fd, chunk.data(), n)) return;
    off += n, sent += n;
    lfs_bytes_ += n;
    if (cut > 0 && sent >= cut) return;           // the connection closes mid-body
    if (const uint64_t rate = rate_; rate > 0) {  // sleep until `sent` bytes are due at `rate`
      const auto due = t0 + std::chrono::microseconds(sent * 1000000 / rate);
      while (std::chrono::steady_clock::now() < due && !stopping_)
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            due - std::chrono::steady_clock::now(), std::chrono::milliseconds(20)));
    }
  }
}

}  // namespace flux::test
