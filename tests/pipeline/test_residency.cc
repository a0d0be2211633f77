// The residency plan (pipeline/residency.h) with made-up sizes: every plan chosen at its exact boundary, the
// refusal naming the stage, --low-memory forcing every drop, the working-set formulas, byte-size parsing.
#include <gtest/gtest.h>

#include "pipeline/residency.h"

namespace flux {
namespace {

constexpr uint64_t M = uint64_t{1} << 20;

// clip 1, t5 10 (8 stored + 2 packed), transformer 20, vae 2 MiB; working sets 3 / 5 / 4 MiB.
//   all_resident:       encode 33+3 = 36, denoise 33+5 = 38, decode 33+4 = 37  -> peak 38 (denoise)
//   drop_text_encoders: encode 36,        denoise 22+5 = 27, decode 22+4 = 26  -> peak 36 (encode_text)
//   drop_transformer:   encode 13+3 = 16, denoise 27,        decode 2+4 = 6    -> peak 27 (denoise)
ModelBytes bytes() {
  ModelBytes b;
  b.clip = {1 * M, 0};
  b.t5 = {8 * M, 2 * M};
  b.transformer = {20 * M, 0};
  b.vae = {2 * M, 0};
  return b;
}
StageWorkingSet ws(uint64_t enc = 3, uint64_t den = 5, uint64_t dec = 4) { return {enc * M, den * M, dec * M}; }

TEST(Residency, ChoosesTheLeastDroppingPlanThatFits) {
  const StagePlan a = plan_residency(bytes(), ws(), 38 * M, false);
  EXPECT_TRUE(a.fits);
  EXPECT_EQ(a.plan, ResidencyPlan::all_resident);
  EXPECT_EQ(a.need, (std::array<uint64_t, 3>{36 * M, 38 * M, 37 * M}));
  EXPECT_EQ(a.peak_stage(), MemoryStage::denoise);
  EXPECT_EQ(a.peaks, (std::array<uint64_t, 3>{38 * M, 36 * M, 27 * M}));
  EXPECT_EQ(plan_residency(bytes(), ws(), 1000 * M, false).plan, ResidencyPlan::all_resident);

  for (uint64_t budget : {38 * M - 1, 36 * M}) {  // just below all_resident, exactly drop_text_encoders' peak
    const StagePlan b = plan_residency(bytes(), ws(), budget, false);
    EXPECT_TRUE(b.fits);
    EXPECT_EQ(b.plan, ResidencyPlan::drop_text_encoders);
    EXPECT_EQ(b.need, (std::array<uint64_t, 3>{36 * M, 27 * M, 26 * M}));
    EXPECT_EQ(b.peak_stage(), MemoryStage::encode_text);
    EXPECT_EQ(b.budget, budget);
  }
  for (uint64_t budget : {36 * M - 1, 27 * M}) {
    const StagePlan c = plan_residency(bytes(), ws(), budget, false);
    EXPECT_TRUE(c.fits);
    EXPECT_EQ(c.plan, ResidencyPlan::drop_transformer);
    EXPECT_EQ(c.need, (std::array<uint64_t, 3>{16 * M, 27 * M, 6 * M}));
    EXPECT_EQ(c.peak(), 27 * M);
  }
}

// Mapped weights beyond the budget are evictable file pages: the job runs under drop_transformer with them
// streamed, as long as private memory (packed copies + working set) fits.
TEST(Residency, WeightsBeyondTheBudgetAreStreamed) {
  const StagePlan p = plan_residency(bytes(), ws(), 27 * M - 1, false);
  EXPECT_TRUE(p.fits);
  EXPECT_TRUE(p.streams_weights);
  EXPECT_EQ(p.plan, ResidencyPlan::drop_transformer);
  EXPECT_EQ(p.peak(), 27 * M);  // what the stages touch, reported as before
  // Private memory at encode: t5's 2 MiB packed + 3 MiB working set = 5 MiB: the boundary.
  EXPECT_TRUE(plan_residency(bytes(), ws(), 5 * M, false).fits);
  EXPECT_FALSE(plan_residency(bytes(), ws(), 5 * M - 1, false).fits);
  EXPECT_FALSE(plan_residency(bytes(), ws(), 27 * M, false).streams_weights);  // fits outright
}

TEST(Residency, RefusesWhenPrivateMemoryCannotFit) {
  // A denoise working set of 30 MiB against 29: refused, naming the stage's whole need (20 + 2 + 30).
  const StagePlan p = plan_residency(bytes(), ws(3, 30, 4), 29 * M, false);
  EXPECT_FALSE(p.fits);
  EXPECT_FALSE(p.streams_weights);
  EXPECT_EQ(p.plan, ResidencyPlan::drop_transformer);
  EXPECT_EQ(p.peak_stage(), MemoryStage::denoise);
  EXPECT_EQ(p.peak(), 52 * M);
  const std::string msg = over_budget_message(p, 2048, 1024);
  EXPECT_NE(msg.find("2048x1024"), std::string::npos) << msg;
  EXPECT_NE(msg.find("denoise stage needs 52 MiB (54525952 bytes)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("budget is 29 MiB (30408704 bytes)"), std::string::npos) << msg;

  // A decode that dominates: the message names the decode stage.
  const StagePlan d = plan_residency(bytes(), ws(3, 5, 40), 30 * M, false);
  EXPECT_FALSE(d.fits);
  EXPECT_EQ(d.peak_stage(), MemoryStage::decode);
  EXPECT_EQ(d.peak(), 42 * M);
  EXPECT_NE(over_budget_message(d, 64, 64).find("decode stage needs 42 MiB"), std::string::npos);

  // Text encoders with a large private copy: the encode stage is what cannot fit.
  ModelBytes big_t5 = bytes();
  big_t5.t5.packed = 100 * M;
  const StagePlan e = plan_residency(big_t5, ws(), 50 * M, false);
  EXPECT_FALSE(e.fits);
  EXPECT_EQ(e.peak_stage(), MemoryStage::encode_text);
  EXPECT_EQ(e.peak(), (1 + 108 + 2 + 3) * M);
}

TEST(Residency, LowMemoryForcesEveryDrop) {
  const StagePlan p = plan_residency(bytes(), ws(), 1000 * M, true);
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.plan, ResidencyPlan::drop_transformer);
  EXPECT_FALSE(plan_residency(bytes(), ws(3, 30, 4), 29 * M, true).fits);
}

TEST(Residency, PackedCopiesCount) {
  ModelBytes b = bytes();
  b.transformer.packed = 20 * M;  // prepacked: the transformer now costs 40 MiB
  EXPECT_EQ(plan_residency(b, ws(), 47 * M, false).plan, ResidencyPlan::drop_transformer);
  EXPECT_EQ(plan_residency(b, ws(), 47 * M, false).peak(), 47 * M);
  EXPECT_FALSE(plan_residency(b, ws(), 47 * M, false).streams_weights);
  // Below that only streaming is left, and the packed copy is private: 20 + 5 MiB at denoise must fit.
  EXPECT_TRUE(plan_residency(b, ws(), 25 * M, false).streams_weights);
  EXPECT_FALSE(plan_residency(b, ws(), 25 * M - 1, false).fits);
}

// Packing: clip 1 stored / 1 packed, t5 10 / 9, transformer 40 / 38, vae 2 / 2 MiB; working sets 3 / 5 / 6 MiB.
//   all:            copies 50, all_resident peak 50 + 6 = 56           -> needs 0.85 budget >= 50: budget >= 58.9
//   skip_encoders:  copies 40, drop_text_encoders peak 51 + 3 = 54     -> budget >= 54 (all_resident 57)
ModelBytes packing_sizes() {
  ModelBytes b;
  b.clip = {1 * M, 1 * M};
  b.t5 = {10 * M, 9 * M};
  b.transformer = {40 * M, 38 * M};
  b.vae = {2 * M, 2 * M};
  return b;
}

TEST(Residency, BytesUnderAPackingCountFilesOrCopies) {
  const ModelBytes all = bytes_under(packing_sizes(), Packing::all);
  EXPECT_EQ(all.t5.stored, 0u);
  EXPECT_EQ(all.t5.packed, 9 * M);
  EXPECT_EQ(all.transformer.resident(), 38 * M);
  const ModelBytes skip = bytes_under(packing_sizes(), Packing::skip_encoders);
  EXPECT_EQ(skip.clip.stored, 1 * M);
  EXPECT_EQ(skip.clip.packed, 0u);
  EXPECT_EQ(skip.t5.stored, 10 * M);
  EXPECT_EQ(skip.t5.packed, 0u);
  EXPECT_EQ(skip.transformer.stored, 0u);
  EXPECT_EQ(skip.transformer.packed, 38 * M);
  EXPECT_EQ(skip.vae.packed, 2 * M);
  const ModelBytes none = bytes_under(packing_sizes(), Packing::none);
  EXPECT_EQ(none.transformer.stored, 40 * M);
  EXPECT_EQ(none.transformer.packed, 0u);
  EXPECT_STREQ(packing_name(Packing::skip_encoders), "prepacked; clip, t5 per_call");
  EXPECT_TRUE(packed_under(Packing::skip_encoders, Component::vae));
  EXPECT_FALSE(packed_under(Packing::skip_encoders, Component::t5));
  EXPECT_FALSE(packed_under(Packing::none, Component::transformer));
}

TEST(Residency, ChoosesTheFastestPackingThatFits) {
  const ModelBytes s = packing_sizes();
  EXPECT_EQ(choose_packing(s, ws(3, 5, 6), 59 * M, false), Packing::all);
  EXPECT_EQ(choose_packing(s, ws(3, 5, 6), 59 * M, true), Packing::none);            // --low-memory
  EXPECT_EQ(choose_packing(s, ws(3, 5, 6), 58 * M, false), Packing::skip_encoders);  // copies over 85% of it
  EXPECT_EQ(choose_packing(s, ws(3, 5, 6), 54 * M, false), Packing::skip_encoders);  // drop_text_encoders
  EXPECT_EQ(choose_packing(s, ws(3, 5, 6), 53 * M, false), Packing::none);           // it would drop the transformer
  // Copies within 85%, but the request fits only by dropping the transformer between jobs (its packed copy would be
  // made again for every job): read per call instead. skip_encoders: encode needs 51 + 30 = 81 with the
  // transformer, 13 + 30 = 43 without.
  EXPECT_EQ(plan_residency(bytes_under(s, Packing::skip_encoders), ws(30, 5, 6), 70 * M, false).plan,
            ResidencyPlan::drop_transformer);
  EXPECT_EQ(choose_packing(s, ws(30, 5, 6), 70 * M, false), Packing::none);
  // Nothing fits the request (a 200 MiB decode): packed, the fastest, since reading per call would not fit either.
  EXPECT_EQ(choose_packing(s, ws(3, 5, 200), 100 * M, false), Packing::all);
  // A transformer whose packed copy is twice its file (16-bit weights widened to f32), a 100 MiB denoise, budget
  // 150: packed it needs 80 + 2 + 100 = 182 even alone; read per call 40 + 2 + 100 = 142 fits.
  ModelBytes wide = s;
  wide.transformer = {40 * M, 80 * M};
  EXPECT_EQ(choose_packing(wide, ws(3, 100, 6), 150 * M, false), Packing::none);
  EXPECT_EQ(choose_packing(wide, ws(3, 5, 6), 150 * M, false), Packing::all);
}

// Files 53, copies 50 (all) or 40 (skip_encoders), working set at most 6: everything together needs 109 (all) or
// 99 (skip_encoders); under that budget the copied files leave the page cache.
TEST(Residency, CopiedFilesLeaveThePageCacheOnlyWhenEverythingCannotStay) {
  const ModelBytes s = packing_sizes();
  EXPECT_FALSE(evict_copied_files(s, Packing::all, ws(3, 5, 6), 109 * M));
  EXPECT_TRUE(evict_copied_files(s, Packing::all, ws(3, 5, 6), 108 * M));
  EXPECT_FALSE(evict_copied_files(s, Packing::skip_encoders, ws(3, 5, 6), 99 * M));
  EXPECT_TRUE(evict_copied_files(s, Packing::skip_encoders, ws(3, 6, 5), 98 * M));
  EXPECT_FALSE(evict_copied_files(s, Packing::none, ws(3, 5, 6), 10 * M)) << "nothing copied";
}

TEST(Residency, WhoIsResidentWhen) {
  using C = Component;
  using S = MemoryStage;
  for (S s : {S::encode_text, S::denoise, S::decode}) {
    for (C c : {C::clip, C::t5, C::transformer, C::vae})
      EXPECT_TRUE(resident_during(ResidencyPlan::all_resident, s, c));
    EXPECT_TRUE(resident_during(ResidencyPlan::drop_transformer, s, C::vae));
  }
  EXPECT_TRUE(resident_during(ResidencyPlan::drop_text_encoders, S::encode_text, C::t5));
  EXPECT_FALSE(resident_during(ResidencyPlan::drop_text_encoders, S::denoise, C::t5));
  EXPECT_FALSE(resident_during(ResidencyPlan::drop_text_encoders, S::decode, C::clip));
  EXPECT_TRUE(resident_during(ResidencyPlan::drop_text_encoders, S::decode, C::transformer));
  EXPECT_FALSE(resident_during(ResidencyPlan::drop_transformer, S::encode_text, C::transformer));
  EXPECT_TRUE(resident_during(ResidencyPlan::drop_transformer, S::denoise, C::transformer));
  EXPECT_FALSE(resident_during(ResidencyPlan::drop_transformer, S::decode, C::transformer));
  EXPECT_STREQ(plan_name(ResidencyPlan::drop_text_encoders), "drop_text_encoders");
  EXPECT_STREQ(component_name(C::transformer), "transformer");
}

TEST(Residency, WorkingSetFormulas) {
  ModelShapes m;  // the real FLUX.1 shapes
  const StageWorkingSet small = working_set(m, 512, 512, 256);
  const StageWorkingSet big = working_set(m, 1024, 1024, 256);
  // decode = 4 H W (3 ch ch_mult[1] + 3 ch ch_mult[0]) + a constant.
  EXPECT_EQ(big.decode - small.decode, uint64_t{4} * (1024 * 1024 - 512 * 512) * (3 * 256 + 3 * 128));
  // denoise: 4 (S1 - S0) (10 D + 2 M + 6 in_channels) with S = image tokens (H/16 W/16).
  EXPECT_EQ(big.denoise - small.denoise, uint64_t{4} * (4096 - 1024) * (10 * 3072 + 2 * 12288 + 6 * 64));
  EXPECT_EQ(big.encode_text, small.encode_text);  // the text does not depend on the image size
  EXPECT_GT(working_set(m, 512, 512, 512).encode_text, small.encode_text);  // dev's 512 T5 tokens
  // Order of magnitude at 1024x1024 (schnell): decode ~4.5 GiB, denoise ~1 GiB.
  EXPECT_GT(big.decode, uint64_t{4} << 30);
  EXPECT_LT(big.decode, uint64_t{5} << 30);
  EXPECT_GT(big.denoise, uint64_t{1} << 30);
  EXPECT_LT(big.denoise, uint64_t{2} << 30);
  // Winograd's scratch: 10 bytes x H W x 2 C1 more at decode (1.25 GiB at 512x512), nothing else.
  ModelShapes w = m;
  w.vae_winograd = true;
  const StageWorkingSet wino = working_set(w, 512, 512, 256);
  EXPECT_EQ(wino.decode - small.decode, uint64_t{10} * 512 * 512 * 2 * 256);
  EXPECT_EQ(wino.denoise, small.denoise);
  EXPECT_EQ(wino.encode_text, small.encode_text);
}

TEST(Residency, ParsesByteSizes) {
  EXPECT_EQ(parse_byte_size("--memory-budget", "8G"), uint64_t{8} << 30);
  EXPECT_EQ(parse_byte_size("--memory-budget", "8GiB"), uint64_t{8} << 30);
  EXPECT_EQ(parse_byte_size("--memory-budget", "8gb"), uint64_t{8} << 30);
  EXPECT_EQ(parse_byte_size("--memory-budget", "500M"), uint64_t{500} << 20);
  EXPECT_EQ(parse_byte_size("--memory-budget", "64K"), uint64_t{64} << 10);
  EXPECT_EQ(parse_byte_size("--memory-budget", "1T"), uint64_t{1} << 40);
  EXPECT_EQ(parse_byte_size("--memory-budget", "1.5G"), uint64_t{3} << 29);
  EXPECT_EQ(parse_byte_size("--memory-budget", "123"), 123u);
  EXPECT_EQ(parse_byte_size("--memory-budget", "123B"), 123u);
  for (const char* bad : {"8X", "8GX", "", "G", "-1", "1.2.3", "0", "0.5", "8 G", "99999999T"}) {
    try {
      parse_byte_size("--memory-budget", bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("--memory-budget"), std::string::npos) << msg;
      EXPECT_NE(msg.find(std::string("'") + bad + "'"), std::string::npos) << msg;
    }
  }
}

TEST(Residency, DefaultBudgetKeepsAMargin) {
  EXPECT_EQ(default_memory_budget(uint64_t{10} << 30), uint64_t{9} << 30);     // 10%
  EXPECT_EQ(default_memory_budget(uint64_t{2} << 30), (uint64_t{3} << 29));    // 512 MiB
  EXPECT_EQ(default_memory_budget(uint64_t{512} << 20), uint64_t{384} << 20);  // a quarter of a small amount
  EXPECT_EQ(default_memory_budget(uint64_t{300} << 20), uint64_t{225} << 20);
  EXPECT_EQ(default_memory_budget(0), 0u);
}

}  // namespace
}  // namespace flux
