// ResidentModels: bind, drop and re-bind the networks of a model set (see resident_models.h).
#include "pipeline/resident_models.h"

#include <chrono>

#include "base/log.h"

namespace flux {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

WeightModes weight_modes(Packing packing) {
  WeightModes m{};
  for (Component c : {Component::clip, Component::t5, Component::transformer, Component::vae})
    m[static_cast<size_t>(c)] = packed_under(packing, c) ? kernels::WeightMode::prepacked : kernels::WeightMode::per_call;
  return m;
}

ResidentModels::ResidentModels(Sources sources, ClipTextConfig clip, T5Config t5, FluxParams flux, AutoEncoderParams ae,
                               WeightModes modes)
    : sources_(std::move(sources)),
      clip_config_(std::move(clip)),
      t5_config_(std::move(t5)),
      flux_params_(std::move(flux)),
      ae_params_(std::move(ae)),
      modes_(modes) {}

const std::string& ResidentModels::source(Component c) const {
  switch (c) {
    case Component::clip:
      return sources_.clip;
    case Component::t5:
      return sources_.t5;
    case Component::transformer:
      return sources_.transformer;
    case Component::vae:
      break;
  }
  return sources_.vae;
}

void ResidentModels::bind(Component c, WeightStore& store) {
  files_[static_cast<size_t>(c)] = store.files();
  // The loaders other than Flux's take the process-wide mode: this component's for the time of its load.
  const kernels::WeightMode mode = modes_[static_cast<size_t>(c)], before = kernels::default_weight_mode();
  kernels::set_default_weight_mode(mode);
  struct Restore {
    kernels::WeightMode mode;
    ~Restore() { kernels::set_default_weight_mode(mode); }
  } restore{before};
  switch (c) {
    case Component::clip:
      clip_.emplace(ClipTextModel::load(store, clip_config_));
      break;
    case Component::t5:
      t5_.emplace(T5Encoder::load(store, t5_config_));
      break;
    case Component::transformer:
      flux_.emplace(Flux::load(store, flux_params_, mode, merged_loras_));
      break;
    case Component::vae:
      ae_.emplace(AutoEncoder::load(store, ae_params_));
      break;
  }
}

void ResidentModels::ensure(Component c) {
  if (resident(c)) return;
  const auto t0 = Clock::now();
  // The loaders take the process-wide precision: this model set's (the same in a real process, which loads one
  // model set; tests load several in turn).
  kernels::set_default_precision(precision_);
  WeightStore store = WeightStore::open(source(c));
  bind(c, store);
  log_info("memory: re-bound ", component_name(c), " (", mib(store.total_bytes()), " stored) in ", seconds_since(t0),
           " s");
}

void ResidentModels::release(Component c) {
  if (!resident(c)) return;
  switch (c) {
    case Component::clip:
      clip_.reset();
      break;
    case Component::t5:
      t5_.reset();
      break;
    case Component::transformer:
      flux_.reset();
      break;
    case Component::vae:
      ae_.reset();
      break;
  }
  log_info("memory: dropped ", component_name(c), " (packed copies freed, files unmapped)");
}

bool ResidentModels::resident(Component c) const {
  switch (c) {
    case Component::clip:
      return clip_.has_value();
    case Component::t5:
      return t5_.has_value();
    case Component::transformer:
      return flux_.has_value();
    case Component::vae:
      break;
  }
  return ae_.has_value();
}

std::vector<std::string> ResidentModels::resident_names() const {
  std::vector<std::string> out;
  for (Component c : {Component::clip, Component::t5, Component::transformer, Component::vae})
    if (resident(c)) out.push_back(component_name(c));
  return out;
}

const std::vector<std::string>& ResidentModels::files(Component c) const { return files_[static_cast<size_t>(c)]; }

const ClipTextModel& ResidentModels::clip() const {
  FLUX_CHECK(clip_.has_value(), "internal: CLIP used while dropped");
  return *clip_;
}
const T5Encoder& ResidentModels::t5() const {
  FLUX_CHECK(t5_.has_value(), "internal: T5 used while dropped");
  return *t5_;
}
const Flux& ResidentModels::transformer() const {
  FLUX_CHECK(flux_.has_value(), "internal: the transformer used while dropped");
  return *flux_;
}
const AutoEncoder& ResidentModels::vae() const {
  FLUX_CHECK(ae_.has_value(), "internal: the VAE used while dropped");
  return *ae_;
}

}  // namespace flux
