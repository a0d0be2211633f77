// `fluxcpp ls`: the FLUX models in the Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else
// ~/.cache/huggingface/hub) with their sizes, revisions and partial downloads; --all lists every repository.
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/model_by_name.h"
#include "hub/hf_cache.h"

namespace flux::cli {
namespace {

int list_models(bool all) {
  const std::string cache = hub::hub_cache_dir();
  size_t shown = 0;
  for (const hub::CachedRepo& r : hub::list_cache(cache)) {
    if (!all && !r.flux) continue;
    ++shown;
    std::printf("%-50s %10s", r.repo_id.c_str(), human_size(r.bytes).c_str());
    if (r.partial_bytes > 0) std::printf("  (+%s partial)", human_size(r.partial_bytes).c_str());
    std::printf("\n");
    for (const std::string& ref : r.refs) std::printf("    ref %s\n", ref.c_str());
  }
  if (shown == 0) std::fprintf(stderr, "no %smodels in %s\n", all ? "" : "FLUX ", cache.c_str());
  return 0;
}

const CommandRegistrar reg({"ls", "list the FLUX models in the Hugging Face cache with their sizes", [](CLI::App& sub) {
                              auto all = std::make_shared<bool>(false);
                              sub.add_flag("-a,--all", *all, "every repository of the cache, not only FLUX models");
                              return [all] { return list_models(*all); };
                            }});

}  // namespace
}  // namespace flux::cli
