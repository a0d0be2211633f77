// `fluxcpp pull ORG/NAME[@REVISION][:FILE]`: downloads a model into the Hugging Face cache without running it
// (the diffusers folder's needed files, or the one FILE), with a progress bar per file; prints the local path.
#include <cstdio>
#include <memory>

#include "base/error.h"
#include "cli/command.h"
#include "cli/model_by_name.h"
#include "hub/hf_cache.h"
#include "hub/hf_download.h"

namespace flux::cli {
namespace {

struct PullOptions {
  std::string name;
  bool quiet = false;
};

int pull(const PullOptions& o) {
  const hub::HubRef ref = hub::parse_hub_ref(o.name);
  hub::HubOptions options = hub::HubOptions::from_environment();
  FLUX_CHECK(!options.offline, "pull ", o.name, ": HF_HUB_OFFLINE is set: nothing can be downloaded");
  options.allow_download = true;
  const hub::ResolvedModel m = hub::resolve_model(ref, options, download_progress_bar(o.quiet));
  if (!o.quiet)
    std::fprintf(stderr, "%s: %zu file(s) downloaded (%s), commit %s\n", ref.str().c_str(), m.files_downloaded,
                 human_size(m.bytes_downloaded).c_str(), m.commit.c_str());
  std::printf("%s\n", (ref.file.empty() ? m.dir : m.file).c_str());
  return 0;
}

const CommandRegistrar reg({"pull",
                            "download a model by name into the Hugging Face cache (HF_HUB_CACHE, HF_HOME; "
                            "HF_ENDPOINT, HF_TOKEN) without running it",
                            [](CLI::App& sub) {
                              auto o = std::make_shared<PullOptions>();
                              sub.add_option("name", o->name, "ORG/NAME[@REVISION][:FILE]")->required();
                              sub.add_flag("-q,--quiet", o->quiet, "no progress output");
                              return [o] { return pull(*o); };
                            }});

}  // namespace
}  // namespace flux::cli
