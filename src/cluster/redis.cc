#include "cluster/redis.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <charconv>
#include <cstdlib>

namespace flux::cluster {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.type = Reply::Type::nil;
  }
  return out;
}

int parse_int(const std::string& text, const std::string& what, const std::string& field) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  FLUX_CHECK(ec == std::errc() && end == text.data() + text.size() && !text.empty() && value >= 0, field,
             ": expected redis://HOST:PORT[/DB] with a numeric ", what, ", got \"", text, "\"");
  return value;
}

}  // namespace

RedisUrl RedisUrl::parse(const std::string& url, const std::string& field) {
  const std::string scheme = "redis://";
  FLUX_CHECK(url.rfind(scheme, 0) == 0, field, ": expected redis://HOST:PORT[/DB], got \"", url, "\"");
  std::string rest = url.substr(scheme.size());
  RedisUrl out;
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    if (!db.empty()) out.db = parse_int(db, "database", field);
    rest.resize(slash);
  }
  FLUX_CHECK(rest.find('@') == std::string::npos, field,
             ": a password in the URL is refused (it would show in the process list); set FLUX_REDIS_PASSWORD");
  if (const size_t colon = rest.rfind(':'); colon != std::string::npos) {
    out.port = parse_int(rest.substr(colon + 1), "port", field);
    FLUX_CHECK(out.port >= 1 && out.port <= 65535, field, ": port expected in 1..65535, got ", out.port);
    rest.resize(colon);
  }
  FLUX_CHECK(!rest.empty(), field, ": expected redis://HOST:PORT[/DB], got \"", url, "\" (no host)");
  out.host = rest;
  return out;
}

std::string RedisUrl::text() const { return str_cat("redis://", host, ":", port, "/", db); }

const Reply& Reply::operator[](size_t i) const {
  FLUX_CHECK(type == Type::array && i < elements.size(), "redis reply: expected an array of more than ", i,
             " elements, got ", type == Type::array ? str_cat(elements.size(), " elements") : std::string("no array"));
  return elements[i];
}

std::string Reply::field(const std::string& name) const {
  if (type != Type::array) return "";
  for (size_t i = 0; i + 1 < elements.size(); i += 2)
    if (elements[i].str == name) return elements[i + 1].str;
  return "";
}

RedisConnection::RedisConnection(const RedisUrl& url, std::chrono::milliseconds connect_timeout,
                                 std::chrono::milliseconds read_timeout)
    : url_(url) {
  context_ = redisConnectWithTimeout(url.host.c_str(), url.port, to_timeval(connect_timeout));
  if (context_ == nullptr) throw RedisError(str_cat("redis ", url.text(), ": cannot allocate a connection"), true);
  if (context_->err) {
    const std::string why = context_->errstr;
    redisFree(context_);
    context_ = nullptr;
    throw RedisError(str_cat("redis ", url.text(), ": cannot connect: ", why), true);
  }
  if (redisSetTimeout(context_, to_timeval(read_timeout)) != REDIS_OK) {
    redisFree(context_);
    context_ = nullptr;
    throw RedisError(str_cat("redis ", url.text(), ": cannot set the read timeout"), true);
  }
  if (const char* password = std::getenv("FLUX_REDIS_PASSWORD"); password != nullptr && *password != '\0')
    command({"AUTH", password});
  if (url.db != 0) command({"SELECT", std::to_string(url.db)});
}

RedisConnection::~RedisConnection() {
  if (context_ != nullptr) redisFree(context_);
}

Reply RedisConnection::command_unchecked(const std::vector<std::string>& argv) {
  FLUX_CHECK(!argv.empty(), "redis: empty command");
  if (broken_) throw RedisError(str_cat(argv[0], ": the connection to ", url_.text(), " was lost"), true);
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  void* raw = redisCommandArgv(context_, static_cast<int>(args.size()), args.data(), lengths.data());
  if (raw == nullptr) {
    broken_ = true;
    const std::string why = context_->err ? context_->errstr : "no reply";
    throw RedisError(str_cat(argv[0], ": redis ", url_.text(), ": ", why.empty() ? "connection failed" : why), true);
  }
  Reply reply = convert(static_cast<redisReply*>(raw));
  freeReplyObject(raw);
  return reply;
}

Reply RedisConnection::command(const std::vector<std::string>& argv) {
  Reply reply = command_unchecked(argv);
  if (reply.is_error()) throw RedisError(str_cat(argv[0], ": ", reply.str));
  return reply;
}

}  // namespace flux::cluster
