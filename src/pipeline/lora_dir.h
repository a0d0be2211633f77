// The server's LoRA folder (serve --lora-dir): client-supplied names resolved strictly inside it, and its listing.
// A name is a path relative to the folder, with or without ".safetensors"; absolute paths, ".." components and
// names whose file (through any symbolic link) resolves outside the folder are refused, and so are files that are not
// LoRA safetensors (by their tensor names).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"

namespace flux {

// A refused or unknown name; the message names it.
struct LoraNameError : Error {
  enum class Kind { invalid, not_found };
  LoraNameError(Kind k, const std::string& message) : Error(message), kind(k) {}
  Kind kind;
};

// The canonical path of the adapter `name` inside `dir`; throws LoraNameError.
std::string resolve_lora_name(const std::string& dir, const std::string& name);
// The syntax checks of resolve_lora_name alone (no folder needed: an API node of the cluster roles checks names
// its workers resolve); throws LoraNameError (invalid).
void check_lora_name(const std::string& name);
// The name a request would give for `path` (a resolve_lora_name result) in `dir`: the path below the canonical
// folder without ".safetensors". Throws Error when `path` is not inside `dir`.
std::string lora_name_of(const std::string& dir, const std::string& path);

struct LoraFileInfo {
  std::string name;    // as a request names it: the path below the folder without ".safetensors"
  std::string path;    // canonical
  uintmax_t size = 0;  // bytes
  std::string format;  // lora_format_name()
};
// The *.safetensors files under `dir` (recursively, links out of it skipped) whose tensor names are a LoRA's,
// sorted by name. Reads each file's header once (remembered by path, size and mtime). Throws Error if `dir` cannot
// be read.
std::vector<LoraFileInfo> list_lora_dir(const std::string& dir);

}  // namespace flux
