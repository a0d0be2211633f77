// Finding the files of a FLUX.1 model set: a diffusers folder (model_index.json, transformer/, vae/,
// text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/; shards with *.index.json), a folder of
// BFL single files (flux1-*.safetensors or flux1-*.gguf, ae.safetensors, clip_l.safetensors, t5xxl*.safetensors,
// t5xxl*.gguf or t5-v1_1-xxl-encoder-*.gguf, tokenizer/ + tokenizer_2/), or single files given one by one
// (safetensors or GGUF), which override the folder's.
#pragma once

#include <string>

#include "pipeline/pipeline.h"

namespace flux {

struct ComponentFiles {
  std::string weights;  // a .safetensors / .gguf file, a *.index.json or a folder (WeightStore::open), "" = not found
  std::string config;   // config.json beside diffusers weights, or ""
  std::string origin;   // where it came from, for messages: "--vae" or "model folder vae/"
};

struct ModelFiles {
  ComponentFiles transformer, vae, clip, t5;
  std::string tokenizers;        // folder for find_tokenizer_dirs()
  std::string scheduler_config;  // diffusers scheduler/scheduler_config.json, or ""
};

// Throws one Error naming every missing component with the flag or folder that would provide it.
ModelFiles discover_model_files(const ModelPaths& paths);

}  // namespace flux
