// ResidentModels: the four networks of a loaded model set, each either resident (bound: its files mapped, its
// Linear packed copies allocated) or dropped (the model object destroyed, so the packed copies are freed and,
// once no tensor views them, the files are unmapped). ensure() re-binds a dropped component from its files
// through the model's own load() (the page cache usually still holds them); the models know nothing of this.
// Used by one thread at a time (the pipeline's compute thread).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "io/weight_store.h"
#include "kernels/matmul.h"
#include "models/autoencoder.h"
#include "models/clip_text.h"
#include "models/flux.h"
#include "models/t5_encoder.h"
#include "pipeline/residency.h"

namespace flux {

// The weight mode of each component, indexed by Component (residency.h), under a packing.
using WeightModes = std::array<kernels::WeightMode, 4>;
WeightModes weight_modes(Packing packing);

class ResidentModels {
 public:
  struct Sources {
    std::string clip, t5, transformer, vae;  // weights, as WeightStore::open takes them
  };
  ResidentModels(Sources sources, ClipTextConfig clip, T5Config t5, FluxParams flux, AutoEncoderParams ae,
                 WeightModes modes);

  // LoRA adapters merged into the transformer's weights whenever it is bound (at load and when re-bound).
  void set_merged_loras(LoraStack stack) { merged_loras_ = std::move(stack); }
  // Binds `c` from an opened store in its weight mode (at load: the caller reports byte progress around it).
  void bind(Component c, WeightStore& store);
  // Re-binds `c` from its files if it was dropped; logs what it took.
  void ensure(Component c);
  // Drops `c` (no-op if not resident); logs it.
  void release(Component c);
  bool resident(Component c) const;
  std::vector<std::string> resident_names() const;           // in the order clip, t5, transformer, vae
  const std::vector<std::string>& files(Component c) const;  // the files `c` was bound from

  // The models (each must be resident).
  const ClipTextModel& clip() const;
  const T5Encoder& t5() const;
  const Flux& transformer() const;
  const AutoEncoder& vae() const;

  // Configurations (known whether resident or not).
  const ClipTextConfig& clip_config() const { return clip_config_; }
  const T5Config& t5_config() const { return t5_config_; }
  const FluxParams& flux_params() const { return flux_params_; }
  const AutoEncoderParams& ae_params() const { return ae_params_; }

 private:
  const std::string& source(Component c) const;

  Sources sources_;
  ClipTextConfig clip_config_;
  T5Config t5_config_;
  FluxParams flux_params_;
  AutoEncoderParams ae_params_;
  WeightModes modes_;
  kernels::Precision precision_ = kernels::default_precision();  // the process-wide one when made
  std::optional<ClipTextModel> clip_;
  std::optional<T5Encoder> t5_;
  std::optional<Flux> flux_;
  LoraStack merged_loras_;
  std::optional<AutoEncoder> ae_;
  std::array<std::vector<std::string>, 4> files_;  // by Component
};

}  // namespace flux
