#include "hub/hf_download.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "base/error.h"
#include "base/log.h"
#include "hub/hf_http.h"
#include "hub/hub_protocol.h"
#include "hub/sha256.h"

namespace flux::hub {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool env_true(const char* name) {
  const std::string v = env(name);
  return v == "1" || v == "ON" || v == "on" || v == "YES" || v == "yes" || v == "TRUE" || v == "true";
}

// What one resolve_model call shares across its requests.
struct Session {
  const HubRef& ref;
  const HubOptions& o;
  const DownloadSink& sink;
  std::stop_token stop;
  std::string repo_dir;
};

void check_stop(const Session& s) {
  if (s.stop.stop_requested()) throw Cancelled();
}

// During a listing or HEAD request: the stop token, and the sink with an empty file (the sink may throw to stop).
void poll_stop(const Session& s) {
  check_stop(s);
  if (s.sink) s.sink(DownloadProgress{});
}

std::vector<std::string> auth_headers(const Session& s, const std::string& url) {
  // The token goes to the hub only, never to the host a redirect names.
  if (s.o.token.empty() || url.rfind(s.o.endpoint, 0) != 0) return {};
  return {"Authorization: Bearer " + s.o.token};
}

// An HTTP error status as a message that says what to do.
[[noreturn]] void fail_status(const Session& s, const HttpResult& r, const std::string& file) {
  const int status = r.head.status;
  const std::string code = r.head.field("x-error-code").value_or("");
  const std::string what = s.ref.repo_id + "@" + s.ref.revision + (file.empty() ? "" : ": " + file);
  if (status == 401 || status == 403 || code == "GatedRepo")
    fail(what, ": the hub answered ", status, ": a gated or private repository; accept its conditions at ",
         s.o.endpoint, "/", s.ref.repo_id, " and set HF_TOKEN to an access token of that account",
         s.o.token.empty() ? " (HF_TOKEN is not set)" : " (the HF_TOKEN given was refused)");
  if (status == 404) {
    if (code == "RevisionNotFound") fail(what, ": revision \"", s.ref.revision, "\" not found on the hub (404)");
    if (code == "EntryNotFound" || !file.empty())
      fail(what, ": file \"", file, "\" not found in ", s.ref.repo_id, " at revision ", s.ref.revision, " (404)");
    fail(what, ": repository \"", s.ref.repo_id, "\" or revision \"", s.ref.revision, "\" not found on the hub ",
         s.o.endpoint, " (404)");
  }
  fail(what, ": the hub answered HTTP ", status, " (", s.o.endpoint, ")");
}

// A request to the hub with the session's credentials for `url`, timeouts, and its stop check on every tick; a
// total timeout for the small API/HEAD requests (`total`), none for a file's transfer (the stall timeout ends those).
HttpCall hub_call(const Session& s, const std::string& url, bool total) {
  HttpCall call;
  call.url = url;
  call.headers = auth_headers(s, url);
  call.connect_timeout_s = s.o.connect_timeout_s;
  call.stall_timeout_s = s.o.stall_timeout_s;
  if (total) call.total_timeout_s = s.o.request_timeout_s;
  call.on_tick = [&s] { poll_stop(s); };
  return call;
}

RepoListing fetch_listing(const Session& s) {
  const std::string url = url_join(s.o.endpoint, "/api/models/" + s.ref.repo_id + "/revision/" + s.ref.revision);
  const HttpResult r = http_perform(hub_call(s, url, true));
  FLUX_CHECK(r.ok, s.ref.str(), ": cannot reach the hub at ", url, ": ", r.error);
  if (r.head.status != 200) fail_status(s, r, "");
  return parse_repo_listing(r.body, s.ref.str());
}

FileMetadata fetch_metadata(const Session& s, const std::string& commit, const std::string& file) {
  const std::string url = url_join(s.o.endpoint, "/" + s.ref.repo_id + "/resolve/" + commit + "/" + file);
  HttpCall call = hub_call(s, url, true);
  call.head_only = true;
  const HttpResult r = http_perform(call);
  FLUX_CHECK(r.ok, s.ref.str(), ": ", file, ": cannot reach the hub at ", url, ": ", r.error);
  if (r.head.status >= 400 || r.head.status < 200) fail_status(s, r, file);
  FileMetadata m = file_metadata(r.head, s.ref.str() + ": " + file);
  if (m.location.empty())
    m.location = url;
  else if (m.location.front() == '/')
    m.location = url_join(s.o.endpoint, "") + m.location.substr(1);
  return m;
}

uint64_t file_size_or_zero(const fs::path& p) {
  std::error_code ec;
  const uint64_t n = fs::is_regular_file(p, ec) ? fs::file_size(p, ec) : 0;
  return ec ? 0 : n;
}

void check_free_space(const fs::path& dir, uint64_t needed) {
  struct statvfs v {};
  if (::statvfs(dir.c_str(), &v) != 0) return;
  const uint64_t available = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  FLUX_CHECK(available >= needed, dir.string(), ": not enough disk space: the download needs ", needed, " more bytes, ",
             available, " are free");
}

// snapshots/COMMIT/PATH -> ../../blobs/ETAG (one more ../ per folder in PATH), replacing what was there.
void link_snapshot(const fs::path& repo, const std::string& commit, const std::string& file, const std::string& etag) {
  const fs::path link = repo / "snapshots" / commit / file;
  fs::create_directories(link.parent_path());
  std::string target = "../../";
  for (char c : file)
    if (c == '/') target += "../";
  target += "blobs/" + etag;
  std::error_code ec;
  fs::remove(link, ec);
  fs::create_symlink(target, link, ec);
  FLUX_CHECK(!ec, link.string(), ": cannot create the link to ", target, ": ", ec.message());
}

void write_ref(const fs::path& repo, const std::string& revision, const std::string& commit) {
  if (revision == commit) return;
  const fs::path ref = repo / "refs" / revision;
  std::ifstream in(ref, std::ios::binary);
  std::string old;
  std::getline(in, old);
  if (old == commit) return;
  fs::create_directories(ref.parent_path());
  std::ofstream out(ref, std::ios::binary | std::ios::trunc);
  out << commit;  // no newline, as huggingface_hub writes it
  FLUX_CHECK(out.good(), ref.string(), ": cannot write the revision's commit");
}

class FileWriter {
 public:
  FileWriter(const fs::path& path, bool append) : path_(path), f_(std::fopen(path.c_str(), append ? "ab" : "wb")) {
    FLUX_CHECK(f_ != nullptr, path.string(), ": cannot open for writing: ", std::strerror(errno));
  }
  ~FileWriter() {
    if (f_) std::fclose(f_);
  }
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  void write(const char* p, size_t n, uint64_t remaining) {
    if (std::fwrite(p, 1, n, f_) != n) fail_write(remaining);
  }
  void restart() {  // the server ignored the Range: start over
    FLUX_CHECK(std::fflush(f_) == 0 && ::ftruncate(::fileno(f_), 0) == 0, path_.string(), ": cannot truncate");
  }
  void close(uint64_t remaining) {
    const bool flushed = std::fflush(f_) == 0;
    const int e = errno;
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!flushed || !closed) {
      errno = flushed ? errno : e;
      fail_write(remaining);
    }
  }

 private:
  [[noreturn]] void fail_write(uint64_t remaining) {
    if (errno == ENOSPC || errno == EDQUOT)
      fail(path_.string(), ": disk full: the download needs ", remaining, " more bytes (", std::strerror(errno), ")");
    fail(path_.string(), ": write error: ", std::strerror(errno));
  }
  fs::path path_;
  std::FILE* f_;
};

// Downloads one file into blobs/ETAG (resuming blobs/ETAG.incomplete), checks it, links it. Returns the bytes
// that came over the network.
uint64_t fetch_file(const Session& s, const std::string& commit, const std::string& file, const FileMetadata& m,
                    size_t index, size_t n_files) {
  const fs::path repo = s.repo_dir;
  const fs::path blob = repo / "blobs" / m.etag;
  std::error_code ec;
  if (file_size_or_zero(blob) == m.size && fs::is_regular_file(blob, ec)) {
    link_snapshot(repo, commit, file, m.etag);
    return 0;
  }
  fs::create_directories(blob.parent_path());
  const fs::path partial = blob.string() + ".incomplete";
  uint64_t have = file_size_or_zero(partial);
  if (have > m.size) {
    fs::remove(partial, ec);
    have = 0;
  }
  check_free_space(blob.parent_path(), m.size - have);
  Sha256 hash;
  if (m.lfs() && have > 0) {  // the resumed prefix is part of the checksum
    std::ifstream in(partial, std::ios::binary);
    std::vector<char> buffer(1 << 20);
    uint64_t left = have;
    while (left > 0 && in.read(buffer.data(), static_cast<std::streamsize>(std::min<uint64_t>(left, buffer.size())))) {
      hash.update(buffer.data(), static_cast<size_t>(in.gcount()));
      left -= static_cast<uint64_t>(in.gcount());
      check_stop(s);
    }
    FLUX_CHECK(left == 0, partial.string(), ": cannot read the partial download");
  }
  if (have > 0) log_info("hub: resuming ", file, " at byte ", have, " of ", m.size);

  FileWriter out(partial, /*append=*/true);
  const auto t0 = Clock::now();
  auto last_report = t0 - std::chrono::seconds(1);
  uint64_t done = have, received = 0;
  bool started = false;
  std::string error_body;
  // At most every 100 ms, and once at the end (finished: checked and linked).
  const auto report = [&](bool finished) {
    const auto now = Clock::now();
    if (!s.sink || (!finished && now - last_report < std::chrono::milliseconds(100))) return;
    last_report = now;
    const double seconds = std::chrono::duration<double>(now - t0).count();
    const double rate = seconds > 0 ? static_cast<double>(received) / seconds : 0;
    s.sink({file, done, m.size, rate, index, n_files, finished});
  };
  HttpCall call = hub_call(s, m.location, false);
  call.follow_redirects = true;
  call.range_from = have;
  call.on_tick = [&] {
    check_stop(s);
    report(false);
  };
  call.on_body = [&](const ResponseHead& head, const char* p, size_t n) {
    check_stop(s);
    if (head.status >= 300) {  // an error page: kept for the message, never written to the blob
      if (error_body.size() < 4096) error_body.append(p, std::min<size_t>(n, 4096));
      return;
    }
    if (!started) {
      started = true;
      if (have > 0 && head.status == 206) {
        const auto start = content_range_start(head.field("content-range").value_or(""));
        FLUX_CHECK(start == have, s.ref.str(), ": ", file, ": asked for bytes from ", have,
                   ", the server sent Content-Range \"", head.field("content-range").value_or(""), "\"");
      } else if (have > 0) {  // 200: the whole file again
        out.restart();
        hash = Sha256();
        done = 0;
      }
    }
    FLUX_CHECK(done + n <= m.size, s.ref.str(), ": ", file, ": the server sent more than the ", m.size,
               " bytes announced");
    out.write(p, n, m.size - done);
    if (m.lfs()) hash.update(p, n);
    done += n;
    received += n;
    report(false);
  };
  // A partial that is already whole (stopped between its last byte and the rename) needs no request.
  const HttpResult r = have < m.size ? http_perform(call) : HttpResult{{}, "", true, ""};
  out.close(m.size - done);
  if (r.ok && r.head.status >= 300) fail_status(s, r, file);
  FLUX_CHECK(r.ok && done == m.size, s.ref.str(), ": ", file, ": download stopped at ", done, " of ", m.size,
             " bytes (", r.ok ? "the answer ended early" : r.error, "); run again to resume from ", partial.string());
  if (m.lfs()) {
    const std::string got = hash.hex_digest();
    if (got != m.etag) {
      fs::remove(partial, ec);
      fail(s.ref.str(), ": ", file, ": checksum mismatch: expected sha256 ", m.etag, ", got ", got,
           "; the download was deleted, nothing was linked");
    }
  }
  fs::rename(partial, blob, ec);
  FLUX_CHECK(!ec, partial.string(), ": cannot rename to ", blob.string(), ": ", ec.message());
  link_snapshot(repo, commit, file, m.etag);
  report(true);
  return received;
}

ResolvedModel from_cache(const Session& s) {
  const std::string commit = cached_commit(s.o.cache, s.ref);
  const std::string how = s.o.offline
                              ? " (HF_HUB_OFFLINE=1: nothing is downloaded)"
                              : str_cat("; add --download (serve: --allow-download) to fetch it from ", s.o.endpoint);
  FLUX_CHECK(!commit.empty(), s.ref.str(), ": no such local file or folder, and revision \"", s.ref.revision,
             "\" of that model is not in the Hugging Face cache ", s.repo_dir, how);
  ResolvedModel r;
  r.commit = commit;
  r.dir = snapshot_dir(s.o.cache, s.ref.repo_id, commit);
  const std::string needed = s.ref.file.empty() ? "model_index.json" : s.ref.file;
  std::error_code ec;
  FLUX_CHECK(fs::is_regular_file(fs::path(r.dir) / needed, ec), s.ref.str(), ": ", needed,
             " is not in the cache's snapshot ", r.dir, how);
  if (!s.ref.file.empty()) r.file = (fs::path(r.dir) / s.ref.file).string();
  return r;
}

}  // namespace

HubOptions HubOptions::from_environment() {
  HubOptions o;
  if (const std::string e = env("HF_ENDPOINT"); !e.empty()) o.endpoint = e;
  while (!o.endpoint.empty() && o.endpoint.back() == '/') o.endpoint.pop_back();
  o.token = env("HF_TOKEN");
  if (o.token.empty()) o.token = env("HUGGING_FACE_HUB_TOKEN");
  o.offline = env_true("HF_HUB_OFFLINE");
  o.cache = hub_cache_dir();
  return o;
}

ResolvedModel resolve_model(const HubRef& ref, const HubOptions& options, const DownloadSink& progress,
                            std::stop_token stop) {
  Session s{ref, options, progress, stop, repo_cache_dir(options.cache, ref.repo_id)};
  if (options.offline || !options.allow_download) return from_cache(s);

  const RepoListing listing = fetch_listing(s);
  const std::vector<RepoFile> files = files_for_pipeline(listing, ref.file, ref.str());
  ResolvedModel r;
  r.commit = listing.commit;
  r.dir = snapshot_dir(options.cache, ref.repo_id, r.commit);
  if (!ref.file.empty()) r.file = (fs::path(r.dir) / ref.file).string();
  std::vector<std::string> missing;
  std::error_code ec;
  for (const RepoFile& f : files)
    if (!fs::is_regular_file(fs::path(r.dir) / f.path, ec)) missing.push_back(f.path);
  if (!missing.empty())
    log_info("hub: ", ref.str(), " at ", r.commit.substr(0, 12), ": ", missing.size(), " of ", files.size(),
             " files to download into ", s.repo_dir);
  for (size_t i = 0; i < missing.size(); ++i) {
    check_stop(s);
    const FileMetadata m = fetch_metadata(s, r.commit, missing[i]);
    const uint64_t n = fetch_file(s, r.commit, missing[i], m, i, missing.size());
    r.bytes_downloaded += n;
    ++r.files_downloaded;
  }
  if (!missing.empty() || !fs::exists(fs::path(s.repo_dir) / "refs" / ref.revision, ec))
    write_ref(s.repo_dir, ref.revision, r.commit);
  return r;
}

}  // namespace flux::hub
