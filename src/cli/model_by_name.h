// Models by name on the command line: a --model (or --diffusion-model, --vae, --clip-l, --t5xxl) value of the form
// ORG/NAME[@REVISION][:FILE] is looked up in the Hugging Face cache (hub/hf_cache.h) and, when allowed, downloaded
// (hub/hf_download.h), then replaced by the local snapshot folder or file.
#pragma once

#include <stop_token>
#include <string>

#include "hub/hf_download.h"
#include "pipeline/pipeline.h"

namespace flux::cli {

// True when any path of `paths` is a hub name rather than a local file or folder.
bool has_model_name(const ModelPaths& paths);

// Replaces each hub name in `paths` by its place in the cache: --model NAME -> the snapshot folder (a diffusers
// folder), --model NAME:FILE -> --diffusion-model FILE; the single-file options need NAME:FILE. Downloads what
// is missing when options.allow_download (and not offline). Errors name the option and the model.
void resolve_model_names(ModelPaths& paths, const hub::HubOptions& options, const hub::DownloadSink& progress,
                         std::stop_token stop = {});

// A progress bar per file on stderr (rewritten in place on a terminal; one line per file otherwise).
hub::DownloadSink download_progress_bar(bool quiet);

std::string human_size(uint64_t bytes);  // "1.5 GiB", "12.0 MiB", "512 B"

}  // namespace flux::cli
