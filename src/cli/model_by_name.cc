#include "cli/model_by_name.h"

#include <unistd.h>

#include <cstdio>
#include <memory>

#include "base/error.h"
#include "hub/hf_cache.h"

namespace flux::cli {
namespace {

struct Field {
  const char* option;
  std::string ModelPaths::*member;
};
constexpr Field kFields[] = {{"--model", &ModelPaths::model_dir},
                             {"--diffusion-model", &ModelPaths::diffusion_model},
                             {"--vae", &ModelPaths::vae},
                             {"--clip-l", &ModelPaths::clip_l},
                             {"--t5xxl", &ModelPaths::t5xxl}};

}  // namespace

std::string human_size(uint64_t b) {
  char buf[32];
  if (b >= (uint64_t{1} << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(uint64_t{1} << 30));
  else if (b >= (uint64_t{1} << 20))
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(1 << 20));
  else if (b >= 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

bool has_model_name(const ModelPaths& paths) {
  for (const Field& f : kFields)
    if (hub::is_hub_ref(paths.*f.member)) return true;
  return false;
}

void resolve_model_names(ModelPaths& paths, const hub::HubOptions& options, const hub::DownloadSink& progress,
                         std::stop_token stop) {
  for (const Field& f : kFields) {
    std::string& value = paths.*f.member;
    if (!hub::is_hub_ref(value)) continue;
    const hub::HubRef ref = hub::parse_hub_ref(value);
    const bool folder = f.member == &ModelPaths::model_dir;
    FLUX_CHECK(folder || !ref.file.empty(), f.option, " ", value,
               ": name one file of the repository: ORG/NAME:FILE (only --model takes a whole diffusers folder)");
    const hub::ResolvedModel m = hub::resolve_model(ref, options, progress, stop);
    if (!folder) {
      value = m.file;
    } else if (ref.file.empty()) {
      value = m.dir;
    } else {  // --model ORG/NAME:FILE: one checkpoint (a GGUF, a single-file transformer)
      FLUX_CHECK(paths.diffusion_model.empty(), "--model ", value,
                 " names one file, and --diffusion-model is given too");
      value.clear();
      paths.diffusion_model = m.file;
    }
  }
}

hub::DownloadSink download_progress_bar(bool quiet) {
  if (quiet) return {};
  const bool tty = isatty(2) != 0;
  return [tty](const hub::DownloadProgress& p) {
    if (p.file.empty()) return;  // a metadata request under way
    const int pct = p.bytes_total ? static_cast<int>(100.0 * static_cast<double>(p.bytes_done) / p.bytes_total) : 100;
    std::string bar = "[";
    for (int i = 0; i < 20; ++i) bar += i < pct / 5 ? '#' : '.';
    bar += "]";
    const std::string line = str_cat("download ", p.file_index + 1, "/", p.n_files, " ", p.file, " ", bar, " ", pct,
                                     "% ", human_size(p.bytes_done), " / ", human_size(p.bytes_total), "  ",
                                     human_size(static_cast<uint64_t>(p.bytes_per_s)), "/s");
    if (tty) {
      std::fprintf(stderr, "\r%-100s", line.c_str());
      if (p.finished) std::fprintf(stderr, "\n");
      std::fflush(stderr);
    } else if (p.finished) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  };
}

}  // namespace flux::cli
