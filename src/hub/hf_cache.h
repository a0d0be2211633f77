// Models by name (ORG/NAME[@REVISION][:FILE]) and the Hugging Face cache exactly as huggingface_hub writes it
// (https://huggingface.co/docs/huggingface_hub/guides/manage-cache), so that files diffusers or ComfyUI
// downloaded are used read-only and in place:
//   CACHE/models--ORG--NAME/refs/REVISION             the commit the revision pointed at (40 hex, no newline)
//   CACHE/models--ORG--NAME/blobs/ETAG                a file's content, named by the hub's ETag: the sha256 for
//                                                     large (LFS) files, the git blob sha1 for small ones
//   CACHE/models--ORG--NAME/blobs/ETAG.incomplete     a download under way (resumed with HTTP Range)
//   CACHE/models--ORG--NAME/snapshots/COMMIT/PATH     a relative symlink to ../../blobs/ETAG (one more ../ per
//                                                     folder in PATH)
// CACHE is $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flux::hub {

struct HubRef {
  std::string repo_id;            // "ORG/NAME"
  std::string revision = "main";  // a branch, tag or commit
  std::string file;               // one file of the repository (":FILE"), or empty for the diffusers folder
  std::string str() const;        // "ORG/NAME@REV:FILE" (the parts given)
};

// True when `arg` is a hub name and not a local path: it has the ORG/NAME[@REV][:FILE] shape and no file or
// folder of that name exists.
bool is_hub_ref(const std::string& arg);
// Error naming the argument and the expected shape when it is not ORG/NAME[@REVISION][:FILE] (ORG and NAME:
// letters, digits, '-', '_', '.'; FILE a relative path without "..").
HubRef parse_hub_ref(const std::string& arg);

std::string hub_cache_dir();  // from the environment, as above
// CACHE/models--ORG--NAME
std::string repo_cache_dir(const std::string& cache, const std::string& repo_id);

// The commit a revision points at in the cache: refs/REVISION's content, or REVISION itself when it is a commit
// hash with a snapshot folder; empty when the cache does not know it.
std::string cached_commit(const std::string& cache, const HubRef& ref);
// CACHE/models--ORG--NAME/snapshots/COMMIT
std::string snapshot_dir(const std::string& cache, const std::string& repo_id, const std::string& commit);

// A cached repository, for `fluxcpp ls`.
struct CachedRepo {
  std::string repo_id;
  std::string dir;
  std::vector<std::string> refs;       // "main -> 0123abcd..." for each refs/ file
  std::vector<std::string> snapshots;  // commits
  uint64_t bytes = 0;                  // complete blobs
  uint64_t partial_bytes = 0;          // *.incomplete blobs
  bool flux = false;                   // FluxPipeline in a model_index.json, or "flux" in a file or repo name
};
// Every models--* folder of the cache, by name; empty when the cache does not exist.
std::vector<CachedRepo> list_cache(const std::string& cache);

}  // namespace flux::hub
