// A small Hugging Face hub on loopback for the tests (and bench/hub_download): plain sockets, a thread per
// connection, Connection: close. It serves repositories in the hub's URL layout with the headers
// huggingface_hub relies on:
//   GET  /api/models/ORG/NAME/revision/REV  {"id", "sha", "siblings": [{"rfilename", "size", "lfs"}]}
//   HEAD|GET /ORG/NAME/resolve/REV/PATH     small files: 200, ETag "<git blob sha1>", X-Repo-Commit;
//                                           LFS files (*.safetensors, *.model, >= 100 KB): 302 to /lfs/SHA256
//                                           with X-Linked-Etag "<sha256>", X-Linked-Size, X-Repo-Commit
//   HEAD|GET /lfs/SHA256                    the content; "Range: bytes=N-" answers 206 with Content-Range
// A gated repository answers 401 (X-Error-Code: GatedRepo) without "Authorization: Bearer TOKEN"; unknown
// repositories, revisions and files 404 (X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound).
// Faults for the tests: cut a body after N bytes (once), a byte rate limit, one corrupted byte; counters of
// requests and body bytes served.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace flux::test {

// The git blob sha1 of `content` (what the hub sends as the ETag of a small file).
std::string git_blob_sha1(const std::string& content);
std::string sha256_hex(const std::string& content);

class MockHub {
 public:
  MockHub();  // listens on 127.0.0.1, any free port
  ~MockHub();
  MockHub(const MockHub&) = delete;
  MockHub& operator=(const MockHub&) = delete;

  std::string endpoint() const;  // "http://127.0.0.1:PORT"
  // Serves every file under `dir` as repository `repo_id` at `commit` (revision "main" points at it). With a
  // token, the repository is gated.
  void add_repo(const std::string& repo_id, const std::string& commit, const std::string& dir,
                const std::string& token = "");
  // Adds one generated LFS file of `size` bytes (byte i = (i * 131 + i / 4096) mod 251) to a repository
  // (for large downloads without a file on disk). Its sha256 is computed here.
  void add_generated_file(const std::string& repo_id, const std::string& path, uint64_t size);

  // The size HEAD announces for one file (X-Linked-Size), e.g. more than the disk holds; the content is unchanged.
  void announce_size(const std::string& repo_id, const std::string& path, uint64_t size);

  void hang_listing(bool hang) { hang_listing_ = hang; }        // the listing answers only once this is false again
  void cut_after(uint64_t bytes) { cut_after_ = bytes; }        // the next LFS body is closed after N bytes
  void set_rate(uint64_t bytes_per_s) { rate_ = bytes_per_s; }  // 0: as fast as possible
  void corrupt_at(int64_t offset) { corrupt_at_ = offset; }     // LFS bodies flip this byte (-1: none)
  uint64_t requests() const { return requests_; }
  uint64_t lfs_bytes_served() const { return lfs_bytes_; }  // body bytes of /lfs/ answers
  std::vector<std::string> request_log() const;             // "METHOD PATH" of each request

 private:
  struct File {
    std::string path;
    uint64_t size = 0;
    std::shared_ptr<const std::string> data;  // null for a generated file
    std::string etag;                         // git sha1 (small) or sha256 (LFS)
    bool lfs = false;
    uint64_t announced = 0;  // X-Linked-Size when not 0
    void read(uint64_t offset, char* out, size_t n) const;
  };
  struct Repo {
    std::string commit;
    std::string token;
    std::map<std::string, File> files;
  };
  void accept_loop();
  void serve(int fd);
  void send_file(int fd, const File& file, bool head, const std::string& range);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mutex_;  // repos_, threads_, log_
  std::map<std::string, Repo> repos_;
  std::vector<std::thread> threads_;
  std::vector<std::string> log_;
  std::atomic<bool> hang_listing_{false};
  std::atomic<uint64_t> cut_after_{0};
  std::atomic<uint64_t> rate_{0};
  std::atomic<int64_t> corrupt_at_{-1};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> lfs_bytes_{0};
};

}  // namespace flux::test
