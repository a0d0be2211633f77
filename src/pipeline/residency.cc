// Residency plans: the working-set formulas and the choice of plan (see residency.h).
#include "pipeline/residency.h"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace flux {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kF32 = 4;
// Fixed overhead of the process in every stage: code and shared libraries (oneDNN alone maps ~30 MiB), the
// tokenizers' tables, thread stacks, the per-call weight panels of the kernel pool and the allocator's slack.
constexpr uint64_t kProcessBytes = 192 * kMiB;

uint64_t u(int64_t v) { return v > 0 ? static_cast<uint64_t>(v) : 0; }

}  // namespace

const char* plan_name(ResidencyPlan p) {
  switch (p) {
    case ResidencyPlan::all_resident:
      return "all_resident";
    case ResidencyPlan::drop_text_encoders:
      return "drop_text_encoders";
    case ResidencyPlan::drop_transformer:
      return "drop_transformer";
  }
  return "?";
}

const char* memory_stage_name(MemoryStage s) {
  switch (s) {
    case MemoryStage::encode_text:
      return "encode_text";
    case MemoryStage::denoise:
      return "denoise";
    case MemoryStage::decode:
      return "decode";
  }
  return "?";
}

const char* component_name(Component c) {
  switch (c) {
    case Component::clip:
      return "clip";
    case Component::t5:
      return "t5";
    case Component::transformer:
      return "transformer";
    case Component::vae:
      return "vae";
  }
  return "?";
}

// All activations are f32 (4 bytes); the attention kernel never materialises [L, L] scores (flash style),
// so attention costs its inputs and output only, except T5's relative position bias [heads, L, L].
//   prompt cache  = entries * 4 (t5_tokens * t5_d_model + vec_in_dim)            (held across jobs)
//   encode_text   = max(CLIP, T5) + cache, with
//     CLIP (77 tokens) = 4 (heads 77^2 + 77 (6 hidden + 2 intermediate))   x, norm, q, k, v, out; MLP in/out
//     T5 (L tokens)    = 4 (heads L^2 + L (3 d_model + 4 inner + 3 d_ff))   bias; x, norm, out; q, k, v, attn;
//                                                                             wi_0, wi_1, their product
//   denoise       = 4 N (10 D + 2 M) + 4 S (6 in_channels) + 4 L t5_d_model + cache, with S = (H/16)(W/16)
//                   image tokens, N = S + L: a single-stream block's linear1 output [N, 3D + M], q, k, v
//                   [N, D] each, attention [N, D], the concatenation [N, D + M], linear2's output and the
//                   residual [N, D] each; the latent, velocity and sampler buffers [S, in_channels]
//   decode        = 4 H W (3 C1 + 3 C0), C1 = ch ch_mult[1], C0 = ch ch_mult[0]: the last upsampling gives
//                   [C1, H, W], its group norm another, and the first full-resolution resnet [C0, H, W] three
//                   times (conv output, shortcut, sum); lower levels have a quarter of the pixels or less.
//                   Measured (VmHWM): the tiny test model's 1024x1024 generate peaks at 1180 MiB; the plan says 1378.
//                   Winograd convolutions add oneDNN's scratch of the largest layer, C1 -> C1 at H x W: both sides
//                   transformed, (C1 + C1) (H/4)(W/4) 6x6 floats = 9 H W 2 C1 bytes (1224 MB measured for 256
//                   channels at 512x512, 1208 by this count; 10 bytes counted).
// Each stage adds kProcessBytes.
StageWorkingSet working_set(const ModelShapes& m, int width, int height, int t5_tokens) {
  const uint64_t L = u(t5_tokens);
  const uint64_t cache = u(m.prompt_cache_entries) * kF32 * (L * u(m.t5_d_model) + u(m.vec_in_dim));
  const uint64_t clip_len = 77;
  const uint64_t clip =
      kF32 * (u(m.clip_heads) * clip_len * clip_len + clip_len * (6 * u(m.clip_hidden) + 2 * u(m.clip_intermediate)));
  const uint64_t t5 = kF32 * (u(m.t5_heads) * L * L + L * (3 * u(m.t5_d_model) + 4 * u(m.t5_inner) + 3 * u(m.t5_d_ff)));
  const uint64_t S = u(width / 16) * u(height / 16), N = S + L;
  const uint64_t denoise = kF32 * N * (10 * u(m.hidden) + 2 * u(m.mlp_hidden)) + kF32 * S * 6 * u(m.in_channels) +
                           kF32 * L * u(m.t5_d_model) + cache;
  const int64_t c0 = m.vae_ch * (m.vae_ch_mult.empty() ? 1 : m.vae_ch_mult[0]);
  const int64_t c1 =
      m.vae_ch * (m.vae_ch_mult.size() > 1 ? m.vae_ch_mult[1] : (m.vae_ch_mult.empty() ? 1 : m.vae_ch_mult[0]));
  const uint64_t winograd = m.vae_winograd ? 10 * u(width) * u(height) * 2 * u(c1) : 0;
  const uint64_t decode = kF32 * u(width) * u(height) * (3 * u(c1) + 3 * u(c0)) + winograd;
  StageWorkingSet ws;
  ws.encode_text = std::max(clip, t5) + cache + kProcessBytes;
  ws.denoise = denoise + kProcessBytes;
  ws.decode = decode + kProcessBytes;
  return ws;
}

bool resident_during(ResidencyPlan plan, MemoryStage stage, Component c) {
  switch (c) {
    case Component::vae:
      return true;
    case Component::clip:
    case Component::t5:
      return plan == ResidencyPlan::all_resident || stage == MemoryStage::encode_text;
    case Component::transformer:
      return plan != ResidencyPlan::drop_transformer || stage == MemoryStage::denoise;
  }
  return true;
}

const char* packing_name(Packing p) {
  switch (p) {
    case Packing::all:
      return "prepacked";
    case Packing::skip_encoders:
      return "prepacked; clip, t5 per_call";
    case Packing::none:
      break;
  }
  return "per_call";
}

bool packed_under(Packing p, Component c) {
  return p == Packing::all || (p == Packing::skip_encoders && c != Component::clip && c != Component::t5);
}

ModelBytes bytes_under(const ModelBytes& sizes, Packing packing) {
  auto one = [&](const ComponentBytes& b, Component c) {
    return packed_under(packing, c) ? ComponentBytes{0, b.packed} : ComponentBytes{b.stored, 0};
  };
  return {one(sizes.clip, Component::clip), one(sizes.t5, Component::t5),
          one(sizes.transformer, Component::transformer), one(sizes.vae, Component::vae)};
}

Packing choose_packing(const ModelBytes& sizes, const StageWorkingSet& ws, uint64_t budget, bool low_memory) {
  if (low_memory) return Packing::none;
  // The copies are private memory nothing reclaims; 15% of the budget stays for what the estimates miss (the
  // plan below checks the files read per call and the working set).
  auto copies_fit = [&](const ModelBytes& b) {
    return b.clip.packed + b.t5.packed + b.transformer.packed + b.vae.packed <= budget / 20 * 17;
  };
  for (Packing p : {Packing::all, Packing::skip_encoders}) {
    const ModelBytes b = bytes_under(sizes, p);
    const StagePlan plan = plan_residency(b, ws, budget, false);
    if (copies_fit(b) && plan.fits && plan.plan != ResidencyPlan::drop_transformer) return p;
  }
  // No packing fits without dropping the transformer between jobs: per call when that fits (re-binding a per-call
  // component costs little: its files stay in the page cache); else every component packed if the copies fit
  // (the fastest for the smaller jobs that do fit), else per call.
  if (plan_residency(bytes_under(sizes, Packing::none), ws, budget, false).fits) return Packing::none;
  return copies_fit(bytes_under(sizes, Packing::all)) ? Packing::all : Packing::none;
}

bool evict_copied_files(const ModelBytes& sizes, Packing packing, const StageWorkingSet& ws, uint64_t budget) {
  if (packing == Packing::none) return false;
  const ModelBytes copies = bytes_under(sizes, packing);
  const uint64_t files = sizes.clip.stored + sizes.t5.stored + sizes.transformer.stored + sizes.vae.stored;
  const uint64_t packed = copies.clip.packed + copies.t5.packed + copies.transformer.packed + copies.vae.packed;
  return files + packed + std::max({ws.encode_text, ws.denoise, ws.decode}) > budget;
}

MemoryStage StagePlan::peak_stage() const {
  size_t best = 0;
  for (size_t i = 1; i < need.size(); ++i)
    if (need[i] > need[best]) best = i;
  return static_cast<MemoryStage>(best);
}

StagePlan plan_residency(const ModelBytes& bytes, const StageWorkingSet& ws, uint64_t budget, bool force_drops) {
  const std::array<uint64_t, 3> stage_ws = {ws.encode_text, ws.denoise, ws.decode};
  auto plan_needs = [&](ResidencyPlan plan) {
    StagePlan p;
    p.plan = plan;
    p.budget = budget;
    for (size_t s = 0; s < 3; ++s) {
      const auto stage = static_cast<MemoryStage>(s);
      uint64_t n = stage_ws[s];
      if (resident_during(plan, stage, Component::clip)) n += bytes.clip.resident();
      if (resident_during(plan, stage, Component::t5)) n += bytes.t5.resident();
      if (resident_during(plan, stage, Component::transformer)) n += bytes.transformer.resident();
      if (resident_during(plan, stage, Component::vae)) n += bytes.vae.resident();
      p.need[s] = n;
    }
    p.fits = p.peak() <= budget;
    return p;
  };
  const std::array<StagePlan, 3> plans = {plan_needs(ResidencyPlan::all_resident),
                                          plan_needs(ResidencyPlan::drop_text_encoders),
                                          plan_needs(ResidencyPlan::drop_transformer)};
  StagePlan chosen = plans[2];
  if (!force_drops) {
    for (const StagePlan& p : plans) {
      if (!p.fits) continue;
      chosen = p;
      break;
    }
  }
  for (size_t i = 0; i < plans.size(); ++i) chosen.peaks[i] = plans[i].peak();
  if (!chosen.fits) {
    // The mapped weights are file pages the kernel can evict and read again: weights larger than the budget
    // make a job slower (each stage streams them from the page cache or the disk), not impossible. What must
    // fit is private memory: packed copies and the working set, under the most dropping plan.
    uint64_t private_peak = 0;
    for (size_t s = 0; s < 3; ++s) {
      const auto stage = static_cast<MemoryStage>(s);
      uint64_t n = stage_ws[s];
      if (resident_during(chosen.plan, stage, Component::clip)) n += bytes.clip.packed;
      if (resident_during(chosen.plan, stage, Component::t5)) n += bytes.t5.packed;
      if (resident_during(chosen.plan, stage, Component::transformer)) n += bytes.transformer.packed;
      if (resident_during(chosen.plan, stage, Component::vae)) n += bytes.vae.packed;
      private_peak = std::max(private_peak, n);
    }
    chosen.streams_weights = private_peak <= budget;
    chosen.fits = chosen.streams_weights;
  }
  return chosen;
}

std::string mib(uint64_t bytes) { return str_cat((bytes + kMiB / 2) / kMiB, " MiB"); }

std::string over_budget_message(const StagePlan& p, int width, int height) {
  const MemoryStage s = p.peak_stage();
  return str_cat("a ", width, "x", height, " image does not fit the memory budget even with every drop: its ",
                 memory_stage_name(s), " stage needs ", mib(p.peak()), " (", p.peak(), " bytes) but the budget is ",
                 mib(p.budget), " (", p.budget,
                 " bytes); use a smaller size, a quantized model, or a larger --memory-budget");
}

uint64_t parse_byte_size(const std::string& flag, const std::string& value) {
  auto bad = [&](const char* why) -> uint64_t {
    fail(flag, ": expected a byte count like 8G, 8GiB, 500M or 1073741824, got '", value, "' (", why, ")");
  };
  size_t i = 0;
  while (i < value.size() && (std::isdigit(static_cast<unsigned char>(value[i])) || value[i] == '.')) ++i;
  const std::string number = value.substr(0, i);
  std::string suffix = value.substr(i);
  if (number.empty() || std::count(number.begin(), number.end(), '.') > 1 || number == ".") return bad("no number");
  for (char& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  int shift = 0;
  if (suffix.empty() || suffix == "B") {
    shift = 0;
  } else {
    static const std::string units = "KMGT";
    const size_t unit = units.find(suffix[0]);
    const std::string rest = suffix.substr(1);
    if (unit == std::string::npos || !(rest.empty() || rest == "B" || rest == "IB"))
      return bad("unknown suffix; use K, M, G or T, optionally followed by B or iB");
    shift = 10 * static_cast<int>(unit + 1);
  }
  const double v = std::stod(number) * std::ldexp(1.0, shift);
  if (!(v >= 1) || v >= 1.8e19) return bad(v < 1 ? "must be at least 1 byte" : "too large");
  return static_cast<uint64_t>(v);
}

uint64_t default_memory_budget(uint64_t mem_available) {
  const uint64_t margin = std::max(std::min(512 * kMiB, mem_available / 4), mem_available / 10);
  return mem_available > margin ? mem_available - margin : 0;
}

}  // namespace flux
