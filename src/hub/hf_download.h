// Fetching a model by name into the Hugging Face cache (hf_cache.h) with libcurl, as huggingface_hub does:
//   1. GET  ENDPOINT/api/models/ORG/NAME/revision/REV  -> the commit and the file list (only the files a FLUX
//      pipeline needs are fetched: hub_protocol.h, files_for_pipeline);
//   2. HEAD ENDPOINT/ORG/NAME/resolve/COMMIT/PATH      -> X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size,
//      and for large (LFS) files a redirect Location;
//   3. GET the file (or its redirect) into blobs/ETAG.incomplete, resuming with "Range: bytes=N-" when a partial
//      file is there; an LFS file's sha256 must equal its ETag before the .incomplete is renamed to blobs/ETAG and
//      linked from snapshots/COMMIT/PATH; refs/REV gets the commit.
// Nothing half-written is ever linked. HF_HUB_OFFLINE=1 (or no --download) never touches the network: the cache
// alone must hold the model. HF_TOKEN is sent as "Authorization: Bearer" (gated repositories such as FLUX.1-dev).
// Every request has a connect timeout and a stall timeout. Runs on the caller's thread (the engine's loader).
#pragma once

#include <cstdint>
#include <functional>
#include <stop_token>
#include <string>
#include <vector>

#include "hub/hf_cache.h"

namespace flux::hub {

struct HubOptions {
  std::string endpoint = "https://huggingface.co";  // HF_ENDPOINT
  std::string token;                                // HF_TOKEN
  std::string cache;                                // hub_cache_dir()
  bool offline = false;                             // HF_HUB_OFFLINE=1: never connect
  bool allow_download = false;                      // --download / --allow-download
  double connect_timeout_s = 10;                    // per connection
  double stall_timeout_s = 30;                      // a transfer with no byte for this long fails
  double request_timeout_s = 60;                    // a listing or HEAD request in all
  // From HF_ENDPOINT, HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), HF_HUB_OFFLINE, hub_cache_dir().
  static HubOptions from_environment();
};

// One file's transfer, reported at most every 100 ms and at its end.
struct DownloadProgress {
  std::string file;         // path in the repository
  uint64_t bytes_done = 0;  // including a resumed prefix
  uint64_t bytes_total = 0;
  double bytes_per_s = 0;  // over this transfer
  size_t file_index = 0;   // 0-based, among the files to download
  size_t n_files = 0;
  bool finished = false;  // the file is checked and linked
};
// May throw (Cancelled) to stop the download: the partial file stays resumable. Also called with an empty `file`
// while a listing or HEAD request runs (at least once a second), so that a caller can stop those too.
using DownloadSink = std::function<void(const DownloadProgress&)>;

struct ResolvedModel {
  std::string commit;
  std::string dir;                // CACHE/models--ORG--NAME/snapshots/COMMIT
  std::string file;               // dir/FILE when the name had :FILE
  uint64_t bytes_downloaded = 0;  // over the network in this call
  size_t files_downloaded = 0;
};

// Finds the model in the cache, downloading what is missing when allowed. Errors name the repository, revision
// and file; 401/403 name HF_TOKEN and the gate; a full disk names the path and the bytes needed.
ResolvedModel resolve_model(const HubRef& ref, const HubOptions& options, const DownloadSink& progress = {},
                            std::stop_token stop = {});

}  // namespace flux::hub
