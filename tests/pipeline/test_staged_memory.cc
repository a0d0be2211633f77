// Staged memory on the tiny test model: budgets that force drop_text_encoders and drop_transformer give the same
// images as a fully resident pipeline over two consecutive jobs (the second re-binds what the first dropped),
// the dropped files are really unmapped (/proc/self/maps), and a job over the budget is refused by validate().
#include <fstream>
#include <set>

#include "io/weight_store.h"
#include "pipeline/model_discovery.h"
#include "pipeline/pipeline.h"
#include "pipeline/test_model.h"
#include "test_util.h"

namespace flux {
namespace {

const std::string& tiny_dir() {
  static const std::string dir = [] {
    std::string d = test::temp_dir("staged-memory-model");
    TestModelOptions o;
    o.tokenizers = test::tokenizer_dir();
    o.seed = 5;
    make_test_model(d, o);
    return d;
  }();
  return dir;
}

ModelPaths paths() {
  ModelPaths p;
  p.model_dir = tiny_dir();
  return p;
}

// Two different prompts, so the second job encodes again (the prompt cache would otherwise skip the encoders).
std::vector<GenerateRequest> jobs() {
  std::vector<GenerateRequest> out(2);
  out[0].prompt = "a red cube on a table";
  out[1].prompt = "a blue sphere in the sky";
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].width = 256;  // large enough that the decode's working set dominates the text encoders'
    out[i].height = 256;
    out[i].steps = 2;
    out[i].seed = 40 + i;
  }
  return out;
}

std::unique_ptr<Pipeline> load_with(uint64_t budget, bool low_memory = false) {
  LoadOptions o;
  o.memory_budget = budget;
  o.low_memory = low_memory;
  return Pipeline::load(paths(), o);
}

// The weight files of the T5 and transformer components, as mapped.
std::vector<std::string> files_of(const std::string& component) {
  const ModelFiles files = discover_model_files(paths());
  const std::string& w = component == "t5" ? files.t5.weights : files.transformer.weights;
  return WeightStore::open(w).files();  // the store (and its mappings) is gone when this returns
}

// Whether /proc/self/maps has a mapping of any of `files`.
bool mapped(const std::vector<std::string>& files) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    for (const std::string& f : files)
      if (line.size() >= f.size() && line.compare(line.size() - f.size(), f.size(), f) == 0) return true;
  return false;
}

std::set<std::string> resident(const Pipeline& p) {
  const auto r = p.memory_status().resident;
  return {r.begin(), r.end()};
}

TEST(StagedMemory, DropsGiveTheSameImagesAndReleaseTheMappings) {
  const std::vector<GenerateRequest> requests = jobs();
  std::vector<Image> expected;
  StagePlan peaks;
  {
    auto full = load_with(uint64_t{1} << 40);
    peaks = full->memory_plan(requests[0]);
    EXPECT_EQ(peaks.plan, ResidencyPlan::all_resident);
    for (const auto& r : requests) expected.push_back(full->run(r, {}, {}).image);
    EXPECT_EQ(full->memory_status().plan, "all_resident");
    EXPECT_EQ(resident(*full), (std::set<std::string>{"clip", "t5", "transformer", "vae"}));
  }
  const uint64_t all = peaks.peaks[0], text = peaks.peaks[1], transformer = peaks.peaks[2];
  ASSERT_GT(all, text) << "the tiny model at 256x256 should need less without its text encoders";
  ASSERT_GT(text, transformer) << "and still less without the transformer at decode";
  const std::vector<std::string> t5_files = files_of("t5"), flux_files = files_of("transformer");
  ASSERT_FALSE(mapped(t5_files));  // nothing left over from the fully resident pipeline
  ASSERT_FALSE(mapped(flux_files));

  struct Case {
    uint64_t budget;
    ResidencyPlan plan;
    std::set<std::string> after_job;
  };
  for (const Case& c : {Case{text, ResidencyPlan::drop_text_encoders, {"transformer", "vae"}},
                        Case{all - 1, ResidencyPlan::drop_text_encoders, {"transformer", "vae"}},
                        Case{transformer, ResidencyPlan::drop_transformer, {"vae"}},
                        Case{text - 1, ResidencyPlan::drop_transformer, {"vae"}}}) {
    SCOPED_TRACE(str_cat("budget ", c.budget, ", plan ", plan_name(c.plan)));
    auto p = load_with(c.budget);
    EXPECT_EQ(p->memory_plan(requests[0]).plan, c.plan);
    EXPECT_EQ(p->memory_status().budget, c.budget);
    // After load the plan for the default size (1024x1024) applies: at this budget it cannot even fit.
    EXPECT_EQ(p->memory_status().plan, "drop_transformer");
    EXPECT_FALSE(resident(*p).count("transformer"));
    EXPECT_TRUE(mapped(t5_files)) << "resident T5 weights are views of their mapped file";
    for (size_t i = 0; i < requests.size(); ++i) {
      const Image image = p->run(requests[i], {}, {}).image;
      EXPECT_TRUE(image.pixels == expected[i].pixels) << "job " << i << " differs from the fully resident run";
      const MemoryStatus m = p->memory_status();
      EXPECT_EQ(m.plan, plan_name(c.plan));
      EXPECT_EQ(resident(*p), c.after_job);
      EXPECT_FALSE(mapped(t5_files)) << "T5 dropped after encoding, its file unmapped";
      EXPECT_EQ(mapped(flux_files), c.plan == ResidencyPlan::drop_text_encoders);
    }
  }
}

// Under drop_transformer the transformer and the text encoders are never bound together, not even while
// loading: the transformer is bound (checked, measured) and dropped before the encoders are.
TEST(StagedMemory, LoadNeverHoldsTheTransformerWithTheTextEncoders) {
  const std::vector<std::string> t5_files = files_of("t5"), flux_files = files_of("transformer");
  LoadOptions o;
  o.low_memory = true;
  o.first_width = o.first_height = 256;
  std::vector<std::string> order;
  int encoder_reports = 0, flux_mapped = 0;
  auto p = Pipeline::load(paths(), o, [&](const std::string& component, uint64_t, uint64_t) {
    if (order.empty() || order.back() != component) order.push_back(component);
    if (component != "t5" && component != "clip") return;
    ++encoder_reports;
    if (mapped(flux_files)) ++flux_mapped;
  });
  EXPECT_EQ(order, (std::vector<std::string>{"transformer", "t5", "clip", "vae", "done"}));
  EXPECT_GE(encoder_reports, 4);
  EXPECT_EQ(flux_mapped, 0) << "the transformer's files were still mapped while the text encoders were bound";
  EXPECT_FALSE(mapped(flux_files));
  EXPECT_TRUE(mapped(t5_files));
  EXPECT_EQ(resident(*p), (std::set<std::string>{"clip", "t5", "vae"}));
  const Image image = p->run(jobs()[0], {}, {}).image;
  EXPECT_EQ(image.width, 256);
}

// A first job that cannot fit is refused from the estimates before any weight is bound (generate knows its
// size at load): no progress report at all, the OverBudget message names the size.
TEST(StagedMemory, FirstJobOverTheBudgetIsRefusedBeforeBinding) {
  LoadOptions o;
  o.memory_budget = uint64_t{64} << 20;
  o.first_width = o.first_height = 1024;
  int reports = 0;
  try {
    Pipeline::load(paths(), o, [&](const std::string&, uint64_t, uint64_t) { ++reports; });
    ADD_FAILURE() << "load accepted a first job over the budget";
  } catch (const OverBudget& e) {
    EXPECT_NE(std::string(e.what()).find("1024x1024"), std::string::npos) << e.what();
  }
  EXPECT_EQ(reports, 0);
  o.first_width = 0;  // no first job given: the load succeeds, jobs are refused one by one
  o.first_height = 0;
  EXPECT_NO_THROW(Pipeline::load(paths(), o));
}

TEST(StagedMemory, LowMemoryDropsEverythingEvenWithRoom) {
  auto p = load_with(uint64_t{1} << 40, /*low_memory=*/true);
  const GenerateRequest r = jobs()[0];
  EXPECT_EQ(p->memory_plan(r).plan, ResidencyPlan::drop_transformer);
  p->run(r, {}, {});
  const MemoryStatus m = p->memory_status();
  EXPECT_EQ(m.plan, "drop_transformer");
  EXPECT_EQ(m.weights, "per_call");
  EXPECT_EQ(m.resident, std::vector<std::string>{"vae"});
}

TEST(StagedMemory, RefusesAJobOverTheBudget) {
  uint64_t need = 0;
  {
    auto probe = load_with(1, true);  // nothing fits: memory_plan reports what drop_transformer needs
    const StagePlan plan = probe->memory_plan(jobs()[0]);
    EXPECT_FALSE(plan.fits);
    need = plan.peak();
  }
  // 8 MiB below it: below the decode's private memory (its working set; the tiny VAE's mapped weights are less
  // than 8 MiB), so not even streaming the weights helps. (1 byte below, they would be streamed instead.)
  const uint64_t budget = need - (uint64_t{8} << 20);
  auto p = load_with(budget, true);
  GenerateRequest r = jobs()[0];
  try {
    p->validate(r);
    ADD_FAILURE() << "validate accepted a job over the budget";
  } catch (const OverBudget& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("256x256"), std::string::npos) << msg;
    EXPECT_NE(msg.find(str_cat("needs ", mib(need), " (", need, " bytes)")), std::string::npos) << msg;
    EXPECT_NE(msg.find(str_cat("budget is ", mib(budget), " (", budget, " bytes)")), std::string::npos) << msg;
    EXPECT_NE(msg.find("decode stage"), std::string::npos) << msg;  // 256x256 on the tiny model: the VAE
  }
  EXPECT_THROW(p->run(r, {}, {}), OverBudget);
  r.width = r.height = 64;  // a smaller image fits
  EXPECT_NO_THROW(p->validate(r));
}

}  // namespace
}  // namespace flux
