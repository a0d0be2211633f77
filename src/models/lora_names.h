// LoRA key names -> BFL modules of the FLUX transformer (models/lora.h lists the formats). Internal to
// models/lora*.cc.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "models/flux.h"
#include "models/lora.h"

namespace flux::lora {

enum class Role { down, up, alpha };

// A tensor name split into its stem (the module's key) and role: "<stem>.lora_down.weight" / ".lora_A.weight" /
// ".down.weight" (down), ".lora_up.weight" / ".lora_B.weight" / ".up.weight" (up), ".alpha"; nullopt otherwise.
struct KeyParts {
  std::string stem;
  Role role = Role::down;
  LoraFormat format = LoraFormat::kohya;  // what the key's spelling says
};
std::optional<KeyParts> split_key(const std::string& name);

// Where a stem's update goes: rows [row_begin, row_begin + rows) of `module`'s weight (rows 0 = all of them), the
// up rows' halves swapped first when swap_halves (diffusers' norm_out.linear: (scale, shift) vs BFL's (shift, scale)).
struct Target {
  std::string module;
  int64_t row_begin = 0, rows = 0;
  bool swap_halves = false;
};
// The stem's target in a model of these params, or nullopt when it names no module of that model (an unknown name,
// a block index beyond the depth, guidance_in on schnell).
std::optional<Target> target_of(const KeyParts& key, const FluxParams& p);

// [out, in] of a BFL Linear module of a model of these params; nullopt when it has no such module.
std::optional<std::array<int64_t, 2>> linear_shape(const FluxParams& p, const std::string& module);

}  // namespace flux::lora
