// A synchronous Redis connection (hiredis) for the cluster roles: commands as argv (binary-safe), a small owned
// reply type, errors that name the command and carry Redis' message. Used on dedicated threads only (the server's
// I/O thread never calls it): connect and read timeouts bound every call, so a server that goes away gives an
// error, not a hang. The password comes from the environment (FLUX_REDIS_PASSWORD), never from a flag.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"

struct redisContext;

namespace flux::cluster {

// The connection failed, timed out, or Redis answered an error; the message names the command.
struct RedisError : Error {
  explicit RedisError(const std::string& message, bool connection_lost = false)
      : Error(message), lost(connection_lost) {}
  bool lost;  // the connection is unusable (reconnect); false for an error reply
};

// redis://HOST:PORT[/DB] (PORT defaults to 6379, DB to 0).
struct RedisUrl {
  std::string host;
  int port = 6379;
  int db = 0;
  // Throws Error naming `field` and the expected form.
  static RedisUrl parse(const std::string& url, const std::string& field = "--queue");
  std::string text() const;
};

struct Reply {
  enum class Type { nil, string, integer, array, status, error };
  Type type = Type::nil;
  std::string str;  // string, status, error
  int64_t integer = 0;
  std::vector<Reply> elements;  // array

  bool is_nil() const { return type == Type::nil; }
  bool is_array() const { return type == Type::array; }
  bool is_error() const { return type == Type::error; }
  size_t size() const { return elements.size(); }
  const Reply& operator[](size_t i) const;  // throws Error when out of range or not an array
  // Flat [field, value, field, value, ...] array -> the value of `field`, or "" when absent.
  std::string field(const std::string& name) const;
};

class RedisConnection {
 public:
  // Connects (timeout `connect_timeout`), then AUTH (FLUX_REDIS_PASSWORD, when set) and SELECT db. Throws RedisError
  // naming the address.
  RedisConnection(const RedisUrl& url, std::chrono::milliseconds connect_timeout,
                  std::chrono::milliseconds read_timeout);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Runs one command. Throws RedisError: lost = true when the connection failed (it is unusable afterwards),
  // false for an error reply ("XADD: ERR ...").
  Reply command(const std::vector<std::string>& argv);
  // As command(), but an error reply is returned (Type::error) rather than thrown.
  Reply command_unchecked(const std::vector<std::string>& argv);
  bool broken() const { return broken_; }
  const RedisUrl& url() const { return url_; }

 private:
  RedisUrl url_;
  redisContext* context_ = nullptr;
  bool broken_ = false;
};

}  // namespace flux::cluster
