// The Redis wrapper (src/cluster/redis.h, redis_link.h) against a real redis-server on a free loopback port.
#include "cluster/redis.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "cluster/redis_link.h"
#include "redis_server.h"
#include "server_harness.h"

namespace flux::test {
namespace {

using cluster::RedisConnection;
using cluster::RedisError;
using cluster::RedisUrl;
using cluster::Reply;
using namespace std::chrono_literals;

RedisUrl url_of(const RedisServer& s) { return RedisUrl::parse(s.url()); }

TEST(RedisUrlTest, ParsesHostPortAndDb) {
  const RedisUrl u = RedisUrl::parse("redis://10.0.0.5:6380/2");
  EXPECT_EQ(u.host, "10.0.0.5");
  EXPECT_EQ(u.port, 6380);
  EXPECT_EQ(u.db, 2);
  const RedisUrl d = RedisUrl::parse("redis://cache");
  EXPECT_EQ(d.host, "cache");
  EXPECT_EQ(d.port, 6379);
  EXPECT_EQ(d.db, 0);
}

TEST(RedisUrlTest, RejectsBadUrlsNamingTheFlag) {
  for (const char* bad : {"http://x:1", "redis://:6379", "redis://h:port", "redis://h:70000", "redis://u:p@h:1"}) {
    try {
      RedisUrl::parse(bad, "--queue");
      FAIL() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--queue"), std::string::npos) << e.what();
    }
  }
}

TEST(RedisTest, CommandsRoundTripBinarySafe) {
  RedisServer server;
  ASSERT_TRUE(server.ok()) << server.error();
  RedisConnection r(url_of(server), 1s, 2s);
  const std::string value("a\0b\xff", 4);
  EXPECT_EQ(r.command({"SET", "k", value}).str, "OK");
  const Reply got = r.command({"GET", "k"});
  EXPECT_EQ(got.type, Reply::Type::string);
  EXPECT_EQ(got.str, value);
  EXPECT_TRUE(r.command({"GET", "missing"}).is_nil());
  EXPECT_EQ(r.command({"INCRBY", "n", "41"}).integer, 41);
  const Reply id = r.command({"XADD", "s", "*", "job", "j1", "request", "{}"});
  const Reply range = r.command({"XRANGE", "s", "-", "+"});
  ASSERT_EQ(range.size(), 1u);
  EXPECT_EQ(range[0][0].str, id.str);
  EXPECT_EQ(range[0][1].field("job"), "j1");
  EXPECT_EQ(range[0][1].field("absent"), "");
}

TEST(RedisTest, ErrorReplyNamesTheCommandAndKeepsTheConnection) {
  RedisServer server;
  ASSERT_TRUE(server.ok()) << server.error();
  RedisConnection r(url_of(server), 1s, 2s);
  r.command({"SET", "str", "x"});
  try {
    r.command({"XADD", "str", "*", "a", "b"});  // WRONGTYPE
    FAIL() << "no error";
  } catch (const RedisError& e) {
    EXPECT_FALSE(e.lost);
    EXPECT_EQ(std::string(e.what()).rfind("XADD: WRONGTYPE", 0), 0u) << e.what();
  }
  EXPECT_FALSE(r.broken());
  EXPECT_EQ(r.command({"GET", "str"}).str, "x");
  EXPECT_TRUE(r.command_unchecked({"NOSUCHCOMMAND"}).is_error());
}

TEST(RedisTest, ConnectFailureNamesTheAddress) {
  const int port = free_port();
  try {
    RedisConnection r(RedisUrl::parse("redis://127.0.0.1:" + std::to_string(port)), 500ms, 500ms);
    FAIL() << "connected to a closed port";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.lost);
    const std::string m = e.what();
    EXPECT_NE(m.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << m;
    EXPECT_NE(m.find("cannot connect"), std::string::npos) << m;
  }
}

TEST(RedisTest, ServerGoingAwayMidCommandIsAnErrorNotAHang) {
  RedisServer server;
  ASSERT_TRUE(server.ok()) << server.error();
  RedisConnection r(url_of(server), 1s, 5s);
  auto killer = std::async(std::launch::async, [&server] {
    std::this_thread::sleep_for(300ms);
    server.kill();
  });
  const auto t0 = std::chrono::steady_clock::now();
  try {
    r.command({"BLPOP", "never", "0"});  // blocks until the server dies
    FAIL() << "no error";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.lost);
    EXPECT_EQ(std::string(e.what()).rfind("BLPOP:", 0), 0u) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  EXPECT_TRUE(r.broken());
  EXPECT_THROW(r.command({"PING"}), RedisError);
}

TEST(RedisTest, StalledServerHitsTheReadTimeout) {
  RedisServer server;
  ASSERT_TRUE(server.ok()) << server.error();
  RedisConnection r(url_of(server), 1s, 400ms);
  ::kill(server.pid(), SIGSTOP);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(r.command({"PING"}), RedisError);
  const auto waited = std::chrono::steady_clock::now() - t0;
  ::kill(server.pid(), SIGCONT);
  EXPECT_GE(waited, 300ms);
  EXPECT_LT(waited, 3s);
}

TEST(RedisLinkTest, RunsTasksInOrderAndReportsDownAndUp) {
  RedisServer server;
  ASSERT_TRUE(server.ok()) << server.error();
  cluster::RedisLink::Options o;
  o.url = url_of(server);
  o.name = "test";
  o.read_timeout = 1s;
  cluster::RedisLink link(o);
  std::promise<std::vector<int64_t>> done;
  auto results = std::make_shared<std::vector<int64_t>>();
  for (int i = 0; i < 5; ++i)
    link.post([results, i, &done](RedisConnection* r) {
      results->push_back(r ? r->command({"RPUSH", "order", std::to_string(i)}).integer : -1);
      if (i == 4) done.set_value(*results);
    });
  auto f = done.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get(), (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(link.status().up);

  server.kill();
  link.post([](RedisConnection* r) {
    if (r) r->command({"PING"});  // fails: the link notices
  });
  ASSERT_TRUE(poll_until([&] { return !link.status().up; }, 10s));
  EXPECT_FALSE(link.status().last_error.empty());
  std::promise<bool> down_task;
  link.post([&down_task](RedisConnection* r) { down_task.set_value(r == nullptr); });
  auto d = down_task.get_future();
  ASSERT_EQ(d.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(d.get());  // told at once that Redis is down

  ASSERT_TRUE(server.start()) << server.error();
  ASSERT_TRUE(poll_until([&] { return link.status().up; }, 10s));
  EXPECT_EQ(link.status().connects, 2u);
}

}  // namespace
}  // namespace flux::test
