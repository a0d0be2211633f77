// A throwaway redis-server for the cluster tests: a free loopback port, a temp dir, no RDB snapshots. `persistent`
// turns on the append-only file (fsync always), so a kill + restart on the same port keeps the streams (what a
// production Redis does; tests of a Redis restart use it). Fails the test clearly when redis-server is missing.
#pragma once

#include <sys/types.h>

#include <string>

namespace flux::test {

class RedisServer {
 public:
  explicit RedisServer(bool persistent = false);
  ~RedisServer();  // SIGKILL
  bool ok() const { return pid_ > 0; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  const std::string& error() const { return error_; }
  // SIGKILL and reap (the port stops answering at once).
  void kill();
  // Starts it again on the same port and dir; false (with error()) when it does not answer within 10 s.
  bool start();

 private:
  bool persistent_;
  std::string dir_;
  std::string error_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// A free TCP port on 127.0.0.1 (bound then released).
int free_port();

}  // namespace flux::test
