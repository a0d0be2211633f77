#include "redis_server.h"

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "server_harness.h"
#include "test_util.h"

extern char** environ;

namespace flux::test {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

RedisServer::RedisServer(bool persistent) : persistent_(persistent), dir_(temp_dir("redis")) {
  port_ = free_port();
  start();
}

RedisServer::~RedisServer() { kill(); }

bool RedisServer::start() {
  if (::access("/usr/bin/redis-server", X_OK) != 0) {
    error_ = "redis-server not found at /usr/bin/redis-server: apt-get install redis-server (scripts/setup.sh)";
    return false;
  }
  std::vector<std::string> args = {"/usr/bin/redis-server",
                                   "--port",
                                   std::to_string(port_),
                                   "--bind",
                                   "127.0.0.1",
                                   "--dir",
                                   dir_,
                                   "--save",
                                   "",
                                   "--appendonly",
                                   persistent_ ? "yes" : "no",
                                   "--appendfsync",
                                   "always",
                                   "--logfile",
                                   dir_ + "/redis.log"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
    pid_ = -1;
    error_ = "cannot start redis-server";
    return false;
  }
  const bool up = poll_until(
      [this] {
        const int fd = connect_local(port_);
        if (fd < 0) return false;
        ::close(fd);
        return true;
      },
      std::chrono::seconds(10));
  if (!up)
    error_ =
        "redis-server did not answer on port " + std::to_string(port_) + " within 10 s (see " + dir_ + "/redis.log)";
  return up;
}

void RedisServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace flux::test
