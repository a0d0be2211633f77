// Engine against a scripted Pipeline: background loading with progress, job events in order, bounded queue,
// cancellation of queued and running jobs, late subscribers, result TTL, load failure, warm-up, shutdown.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "scripted_pipeline.h"

namespace flux::test {
namespace {

using namespace std::chrono_literals;

// Polls `pred` until it holds or the deadline passes.
bool poll(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

struct Fixture {
  std::shared_ptr<Gate> load_gate = std::make_shared<Gate>();
  std::shared_ptr<Gate> steps = std::make_shared<Gate>();
  ScriptedPipeline* pipeline = nullptr;  // owned by the engine
  TestExecutor executor;                 // outlives the engine, which posts to it
  std::unique_ptr<Engine> engine;

  explicit Fixture(EngineOptions options = {}, bool loaded = true) {
    if (loaded) load_gate->open();
    engine = std::make_unique<Engine>(
        [this](const LoadProgress& progress) -> std::unique_ptr<Pipeline> {
          progress("clip", 10, 100);
          progress("t5", 50, 100);
          if (!load_gate->acquire(std::stop_token{})) return nullptr;
          progress("transformer", 100, 100);
          auto p = std::make_unique<ScriptedPipeline>(steps);
          pipeline = p.get();
          return p;
        },
        std::move(options));
    if (loaded) {
      EXPECT_TRUE(poll([&] { return engine->load_status().state == LoadState::ready; }));
    }
  }
  ~Fixture() {
    steps->open();
    load_gate->open();
    engine.reset();  // joins the engine's threads before the executor goes
  }
};

GenerateRequest request(uint64_t seed = 1, int steps = 4) {
  GenerateRequest r;
  r.prompt = "a cat";
  r.width = 64;
  r.height = 32;
  r.steps = steps;
  r.seed = seed;
  return r;
}

TEST(Engine, MemoryStatusIsASnapshotTakenAtLoadAndAtEachStage) {
  Fixture f({}, /*loaded=*/false);
  EXPECT_TRUE(f.engine->memory_status().plan.empty());  // nothing loaded yet
  f.load_gate->release();
  ASSERT_TRUE(poll([&] { return f.engine->load_status().state == LoadState::ready; }));
  MemoryStatus m = f.engine->memory_status();
  EXPECT_EQ(m.plan, "scripted");
  EXPECT_EQ(m.budget, 12345u);
  EXPECT_EQ(m.resident, std::vector<std::string>{"idle"});
  const std::string id = f.engine->submit(request(1, 2));
  // While the job waits for its first step, the snapshot is the one its compute thread took at encode_text
  // (the engine reads the pipeline on that thread only; /health reads the copy).
  ASSERT_TRUE(poll([&] { return f.engine->memory_status().resident == std::vector<std::string>{"encode_text"}; }));
  f.steps->open();
  ASSERT_TRUE(poll([&] { return f.engine->info(id)->status == JobStatus::completed; }));
  EXPECT_EQ(f.engine->memory_status().resident, std::vector<std::string>{"done"});
}

TEST(Engine, LoadsInBackgroundAndReportsProgress) {
  Fixture f({}, /*loaded=*/false);
  ASSERT_TRUE(poll([&] { return f.engine->load_status().component == "t5"; }));
  LoadStatus s = f.engine->load_status();
  EXPECT_EQ(s.state, LoadState::loading);
  EXPECT_DOUBLE_EQ(s.progress(), 0.5);
  EXPECT_THROW(f.engine->submit(request()), NotReady);
  f.load_gate->release();
  ASSERT_TRUE(poll([&] { return f.engine->load_status().state == LoadState::ready; }));
  s = f.engine->load_status();
  EXPECT_EQ(s.model, "scripted test pipeline");
  EXPECT_DOUBLE_EQ(s.progress(), 1.0);
  ASSERT_TRUE(s.variant.has_value());
}

TEST(Engine, QueueWhileLoadingRunsAfterLoad) {
  EngineOptions o;
  o.queue_while_loading = true;
  Fixture f(o, /*loaded=*/false);
  const std::string id = f.engine->submit(request());
  EventRecorder rec;
  ASSERT_NE(f.engine->subscribe(id, f.executor.post(), rec.handler()), 0u);
  f.steps->open();
  f.load_gate->release();
  ASSERT_TRUE(f.executor.run_until([&] { return rec.has(JobEventKind::completed); }));
  EXPECT_EQ(rec.events.front()->kind, JobEventKind::queued);
}

TEST(Engine, EventsArriveInOrderWithResult) {
  Fixture f;
  GenerateRequest r = request(7, 3);
  r.preview = true;
  const std::string id = f.engine->submit(r);
  EventRecorder rec;
  f.engine->subscribe(id, f.executor.post(), rec.handler());
  f.steps->open();
  ASSERT_TRUE(f.executor.run_until([&] { return rec.has(JobEventKind::completed); }));
  // queued (maybe, if subscribed before the worker took it), started, stage encode_text, stage denoise, steps
  // 1, 2, 3 (exactly `total` step events, numbered from 1), stage decode, completed.
  std::vector<std::shared_ptr<const JobEvent>> events = rec.events;
  if (events.front()->kind == JobEventKind::queued) events.erase(events.begin());
  using K = JobEventKind;
  std::vector<JobEventKind> kinds;
  for (const auto& e : events) kinds.push_back(e->kind);
  ASSERT_EQ(kinds, (std::vector<K>{K::started, K::stage, K::stage, K::step, K::step, K::step, K::stage, K::completed}));
  EXPECT_EQ(events[1]->stage, Stage::encode_text);
  EXPECT_EQ(events[2]->stage, Stage::denoise);
  EXPECT_EQ(events[6]->stage, Stage::decode);
  for (int i = 0; i < 3; ++i) {
    const auto& e = events[3 + static_cast<size_t>(i)];
    EXPECT_EQ(e->step, i + 1);
    EXPECT_EQ(e->total, 3);
    EXPECT_TRUE(e->preview != nullptr);
  }
  const auto& done = rec.events.back();
  ASSERT_EQ(done->kind, JobEventKind::completed);
  ASSERT_TRUE(done->result);
  EXPECT_EQ(done->result->result.image.width, 64);
  EXPECT_EQ(done->result->result.seed, 7u);
  auto info = f.engine->info(id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->status, JobStatus::completed);
  EXPECT_EQ(info->step, 3);
  EXPECT_TRUE(f.engine->result(id) != nullptr);
  const EngineStats stats = f.engine->stats();
  EXPECT_EQ(stats.jobs_completed, 1u);
  EXPECT_EQ(stats.steps, 2u);  // step times are measured between consecutive denoising steps
}

TEST(Engine, BoundedQueueRefusesWhenFull) {
  EngineOptions o;
  o.queue_size = 2;
  Fixture f(o);
  const std::string first = f.engine->submit(request(1));
  EventRecorder rec;
  f.engine->subscribe(first, f.executor.post(), rec.handler());
  ASSERT_TRUE(f.executor.run_until([&] { return rec.has(JobEventKind::started); }));
  f.engine->submit(request(2));
  const std::string third = f.engine->submit(request(3));
  EXPECT_THROW(f.engine->submit(request(4)), QueueFull);
  EXPECT_EQ(f.engine->stats().queue_depth, 2);
  EXPECT_EQ(f.engine->info(third)->position, 2);  // 1 = next to run
  EXPECT_EQ(f.engine->info(first)->position, 0);  // running: no position
}

TEST(Engine, CancelQueuedJobUpdatesPositions) {
  Fixture f;
  const std::string running = f.engine->submit(request(1));
  EventRecorder r0, r1, r2;
  f.engine->subscribe(running, f.executor.post(), r0.handler());
  ASSERT_TRUE(f.executor.run_until([&] { return r0.has(JobEventKind::started); }));
  const std::string a = f.engine->submit(request(2));
  const std::string b = f.engine->submit(request(3));
  f.engine->subscribe(a, f.executor.post(), r1.handler());
  f.engine->subscribe(b, f.executor.post(), r2.handler());
  ASSERT_TRUE(f.executor.run_until([&] { return !r2.events.empty(); }));
  EXPECT_EQ(r1.events.back()->position, 1);
  EXPECT_EQ(r2.events.back()->position, 2);
  EXPECT_TRUE(f.engine->cancel(a));
  ASSERT_TRUE(f.executor.run_until([&] { return r1.has(JobEventKind::cancelled) && r2.events.size() >= 2; }));
  EXPECT_EQ(r2.events.back()->kind, JobEventKind::queued);
  EXPECT_EQ(r2.events.back()->position, 1);
  EXPECT_EQ(r1.events.back()->reason, "user");
  EXPECT_EQ(f.engine->info(a)->status, JobStatus::cancelled);
  EXPECT_FALSE(f.engine->cancel(a));  // already finished
  EXPECT_FALSE(f.engine->cancel("job_unknown"));
}

TEST(Engine, CancelRunningJobStopsAtNextCheck) {
  Fixture f;
  const std::string id = f.engine->submit(request(1, 10));
  EventRecorder rec;
  f.engine->subscribe(id, f.executor.post(), rec.handler());
  f.steps->release(2);
  ASSERT_TRUE(f.executor.run_until([&] { return !rec.events.empty() && rec.events.back()->step == 2; }));
  EXPECT_TRUE(f.engine->cancel(id));
  ASSERT_TRUE(f.executor.run_until([&] { return rec.has(JobEventKind::cancelled); }));
  EXPECT_EQ(f.engine->info(id)->status, JobStatus::cancelled);
  EXPECT_EQ(f.engine->result(id), nullptr);
  // The worker moves on to the next job.
  f.steps->open();
  const std::string next = f.engine->submit(request(2, 1));
  EventRecorder rec2;
  f.engine->subscribe(next, f.executor.post(), rec2.handler());
  ASSERT_TRUE(f.executor.run_until([&] { return rec2.has(JobEventKind::completed); }));
}

TEST(Engine, LateSubscriberGetsCurrentStateFirst) {
  Fixture f;
  const std::string id = f.engine->submit(request(1, 4));
  EventRecorder early;
  f.engine->subscribe(id, f.executor.post(), early.handler());
  f.steps->release(2);
  ASSERT_TRUE(f.executor.run_until([&] { return !early.events.empty() && early.events.back()->step == 2; }));
  EventRecorder late;
  f.engine->subscribe(id, f.executor.post(), late.handler());
  ASSERT_TRUE(f.executor.run_until([&] { return late.events.size() >= 2; }));
  ASSERT_TRUE(f.executor.run_until([&] { return late.events.size() >= 3; }));
  EXPECT_EQ(late.events[0]->kind, JobEventKind::started);
  EXPECT_EQ(late.events[1]->kind, JobEventKind::stage);
  EXPECT_EQ(late.events[1]->stage, Stage::denoise);
  EXPECT_EQ(late.events[2]->kind, JobEventKind::step);
  EXPECT_EQ(late.events[2]->step, 2);
  f.steps->open();
  ASSERT_TRUE(f.executor.run_until([&] { return late.has(JobEventKind::completed); }));
  EventRecorder after;
  f.engine->subscribe(id, f.executor.post(), after.handler());
  ASSERT_TRUE(f.executor.run_until([&] { return !after.events.empty(); }));
  EXPECT_EQ(after.kinds(), std::vector<JobEventKind>{JobEventKind::completed});
  EXPECT_EQ(f.engine->subscribe("job_unknown", f.executor.post(), after.handler()), 0u);
}

TEST(Engine, FinishedJobsAreDroppedAfterTtl) {
  EngineOptions o;
  o.result_ttl_s = 0.05;
  Fixture f(o);
  f.steps->open();
  const std::string id = f.engine->submit(request(1, 1));
  ASSERT_TRUE(poll([&] {
    auto info = f.engine->info(id);
    return info && info->status == JobStatus::completed;
  }));
  EXPECT_TRUE(poll([&] { return !f.engine->info(id).has_value(); }));
  EXPECT_EQ(f.engine->result(id), nullptr);
}

TEST(Engine, LoadFailureFailsQueuedJobsAndRefusesNewOnes) {
  EngineOptions o;
  o.queue_while_loading = true;
  auto gate = std::make_shared<Gate>();
  TestExecutor executor;
  Engine engine(
      [gate](const LoadProgress&) -> std::unique_ptr<Pipeline> {
        gate->acquire(std::stop_token{});
        fail("file model.safetensors: tensor x: expected [2], got [3]");
      },
      o);
  const std::string id = engine.submit(request());
  EventRecorder rec;
  engine.subscribe(id, executor.post(), rec.handler());
  gate->release();
  ASSERT_TRUE(executor.run_until([&] { return rec.has(JobEventKind::failed); }));
  EXPECT_NE(rec.events.back()->error.find("model.safetensors"), std::string::npos);
  EXPECT_EQ(engine.load_status().state, LoadState::error);
  EXPECT_NE(engine.load_status().error.find("tensor x"), std::string::npos);
  EXPECT_THROW(engine.submit(request()), NotReady);
}

TEST(Engine, ValidationErrorsAreThrownAtSubmit) {
  Fixture f;
  GenerateRequest r = request();
  r.width = 40;
  EXPECT_THROW(f.engine->submit(r), Error);
  EXPECT_EQ(f.engine->stats().jobs_submitted, 0u);
}

TEST(Engine, WarmupRunsBeforeReady) {
  EngineOptions o;
  o.warmup = true;
  Fixture f(o, /*loaded=*/false);
  f.load_gate->release();
  ASSERT_TRUE(poll([&] { return f.engine->load_status().component == "warmup"; }));
  EXPECT_EQ(f.engine->load_status().state, LoadState::loading);
  f.steps->release(1);  // the warm-up request has one step
  ASSERT_TRUE(poll([&] { return f.engine->load_status().state == LoadState::ready; }));
  EXPECT_EQ(f.pipeline->runs(), 1);
  EXPECT_EQ(f.pipeline->last_width(), 256);
}

TEST(Engine, EncoderRunsOnResultsAndPreviews) {
  EngineOptions o;
  o.encoder = [](const Image& image) { return std::vector<uint8_t>{'I', static_cast<uint8_t>(image.width)}; };
  Fixture f(o);
  f.steps->open();
  GenerateRequest r = request(1, 2);
  r.preview = true;
  const std::string id = f.engine->submit(r);
  EventRecorder rec;
  f.engine->subscribe(id, f.executor.post(), rec.handler());
  ASSERT_TRUE(f.executor.run_until([&] { return rec.has(JobEventKind::completed); }));
  bool saw_preview = false;
  for (const auto& e : rec.events)
    if (e->preview_encoded) saw_preview = (*e->preview_encoded == std::vector<uint8_t>{'I', 2});
  EXPECT_TRUE(saw_preview);
  EXPECT_EQ(rec.events.back()->result->encoded, (std::vector<uint8_t>{'I', 64}));
}

TEST(Engine, ShutdownCancelsRunningAndQueuedJobs) {
  Fixture f;
  const std::string running = f.engine->submit(request(1, 10));
  const std::string queued = f.engine->submit(request(2));
  EventRecorder r1, r2;
  f.engine->subscribe(running, f.executor.post(), r1.handler());
  f.engine->subscribe(queued, f.executor.post(), r2.handler());
  ASSERT_TRUE(f.executor.run_until([&] { return r1.has(JobEventKind::started); }));
  f.engine->shutdown();  // returns once the threads are joined
  ASSERT_TRUE(f.executor.run_until([&] { return r1.has(JobEventKind::cancelled) && r2.has(JobEventKind::cancelled); }));
  // Not the users' own cancel: clients tell them apart by the reason.
  EXPECT_EQ(r1.events.back()->reason, "server_stopping");
  EXPECT_EQ(r2.events.back()->reason, "server_stopping");
  EXPECT_THROW(f.engine->submit(request()), NotReady);
}

TEST(Engine, ShutdownDuringLoadingAbandonsIt) {
  Fixture f({}, /*loaded=*/false);
  ASSERT_TRUE(poll([&] { return f.engine->load_status().component == "t5"; }));
  // The factory is blocked on the gate: once shutdown() has begun (submit says so), release it; its next
  // progress report throws and the loader ends without a pipeline.
  std::thread release([&] {
    poll([&] {
      try {
        f.engine->submit(request());
      } catch (const NotReady& e) {
        return std::string(e.what()).find("shutting down") != std::string::npos;
      }
      return false;
    });
    f.load_gate->release();
  });
  f.engine->shutdown();
  release.join();
  EXPECT_NE(f.engine->load_status().state, LoadState::ready);
}

// A waiting job hears its position again only when it changes: a job behind it leaving does not move it.
TEST(Engine, QueuedPositionIsSentOnlyWhenItChanges) {
  Fixture f;
  const std::string running = f.engine->submit(request(1));
  EventRecorder r0, ra;
  f.engine->subscribe(running, f.executor.post(), r0.handler());
  ASSERT_TRUE(f.executor.run_until([&] { return r0.has(JobEventKind::started); }));
  const std::string a = f.engine->submit(request(2));
  const std::string b = f.engine->submit(request(3));
  f.engine->subscribe(a, f.executor.post(), ra.handler());
  ASSERT_TRUE(f.executor.run_until([&] { return !ra.events.empty(); }));
  EXPECT_TRUE(f.engine->cancel(b));
  EXPECT_TRUE(f.engine->cancel(running));
  ASSERT_TRUE(f.executor.run_until([&] { return ra.has(JobEventKind::started); }));
  const std::vector<JobEventKind> kinds = ra.kinds();
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), JobEventKind::queued), 1);
  EXPECT_EQ(kinds[0], JobEventKind::queued);
  EXPECT_EQ(kinds[1], JobEventKind::started);
  EXPECT_EQ(ra.events.front()->position, 1);
}

// GET /v1/jobs/{id}'s `steps` is the count that runs: the model's default for a request that left it at 0.
TEST(Engine, InfoShowsTheEffectiveStepsPromptAndCreationTime) {
  Fixture f;
  const auto before =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string id = f.engine->submit(request(1, 0));
  const auto info = f.engine->info(id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->steps, default_steps(Variant::schnell));
  EXPECT_EQ(info->prompt, "a cat");
  EXPECT_GE(info->created_unix, before);
  EXPECT_LE(info->created_unix, before + 5);
  EXPECT_EQ(f.engine->info(f.engine->submit(request(1, 7)))->steps, 7);
  f.steps->open();
}

TEST(Engine, ListIsNewestFirstAndKeepsAtMostMaxFinishedJobs) {
  EngineOptions o;
  o.max_finished_jobs = 2;
  o.thumbnail_encoder = [](const Image& image) { return std::vector<uint8_t>{'T', static_cast<uint8_t>(image.width)}; };
  Fixture f(o);
  f.steps->open();
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(f.engine->submit(request(static_cast<uint64_t>(i), 1)));
    ASSERT_TRUE(poll([&] { return f.engine->info(ids.back())->status == JobStatus::completed; }));
  }
  const std::vector<JobInfo> list = f.engine->list();
  ASSERT_EQ(list.size(), 2u);  // the two oldest finished jobs were dropped
  EXPECT_EQ(list[0].id, ids[3]);
  EXPECT_EQ(list[1].id, ids[2]);
  EXPECT_FALSE(f.engine->info(ids[0]).has_value());
  EXPECT_TRUE(list[0].has_thumbnail);
  EXPECT_EQ(f.engine->result(ids[3])->thumbnail, (std::vector<uint8_t>{'T', 64}));
}

TEST(JobQueue, FifoWithPositionsAndCapacity) {
  JobQueue q(2);
  auto job = [](const std::string& id) {
    auto j = std::make_shared<Job>();
    j->id = id;
    return j;
  };
  EXPECT_TRUE(q.push(job("a")));
  EXPECT_TRUE(q.push(job("b")));
  EXPECT_FALSE(q.push(job("c")));
  EXPECT_EQ(q.position("b"), 1);
  EXPECT_EQ(q.position("c"), -1);
  EXPECT_TRUE(q.remove("a"));
  EXPECT_FALSE(q.remove("a"));
  EXPECT_EQ(q.position("b"), 0);
  EXPECT_EQ(q.pop()->id, "b");
  EXPECT_EQ(q.pop(), nullptr);
}

}  // namespace
}  // namespace flux::test
