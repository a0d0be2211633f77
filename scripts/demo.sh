#!/usr/bin/env bash
# fluxcpp demo: makes a small random-weight test model and generates one image to out/demo.png.
# Builds nothing: expects build/ made by scripts/setup.sh (binary build/src/cli/fluxcpp).
#
#   scripts/demo.sh                      tiny test model, 64x64
#   SIZE=small scripts/demo.sh           bigger test model, 256x256
#   TOKENIZERS=DIR scripts/demo.sh       real tokenizer files (clip-l/ + t5/, or a diffusers folder); without
#                                        it the test model gets small test tokenizers of fluxcpp's own making
#   FLUX_MODEL=DIR scripts/demo.sh       real FLUX.1 weights (a diffusers folder such as a download of
#                                        black-forest-labs/FLUX.1-schnell, or a folder with flux1-schnell.safetensors,
#                                        ae.safetensors, clip_l.safetensors, t5xxl_fp16.safetensors + tokenizer dirs)
#   PROMPT="..." SEED=N STEPS=N WIDTH=N HEIGHT=N override the generation parameters.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${FLUXCPP:-$root/build/src/cli/fluxcpp}"
if [[ ! -x "$bin" ]]; then
  echo "demo: $bin not found; build first with scripts/setup.sh (or set FLUXCPP=path/to/fluxcpp)" >&2
  exit 1
fi
out_dir="$root/out"
mkdir -p "$out_dir"
prompt="${PROMPT:-a photo of a red fox in the snow, golden hour}"
seed="${SEED:-42}"

if [[ -n "${FLUX_MODEL:-}" ]]; then
  model="$FLUX_MODEL"
  width="${WIDTH:-512}"
  height="${HEIGHT:-512}"
  echo "demo: using real weights from $model (${width}x${height}; this takes minutes on a CPU)"
else
  size="${SIZE:-tiny}"
  model="$out_dir/test-model-$size"
  if [[ ! -f "$model/model_index.json" ]]; then
    tok_args=()
    [[ -n "${TOKENIZERS:-}" ]] && tok_args=(--tokenizers "$TOKENIZERS")
    "$bin" make-test-model "$model" --variant schnell --layout diffusers --size "$size" "${tok_args[@]}"
  fi
  if [[ "$size" == tiny ]]; then width="${WIDTH:-64}"; height="${HEIGHT:-64}"; else width="${WIDTH:-256}"; height="${HEIGHT:-256}"; fi
fi

args=(generate --model "$model" --prompt "$prompt" --width "$width" --height "$height" --seed "$seed"
      --output "$out_dir/demo.png")
[[ -n "${STEPS:-}" ]] && args+=(--steps "$STEPS")
"$bin" "${args[@]}"

echo
echo "demo: the image is at $out_dir/demo.png"
if [[ -z "${FLUX_MODEL:-}" ]]; then
  echo "demo: this model has RANDOM weights (and, unless TOKENIZERS was given, small test tokenizers), so the"
  echo "      picture is noise-like by design: it shows the whole pipeline (tokenizers, CLIP-L, T5, the FLUX"
  echo "      transformer, the Euler sampler, the autoencoder) running end to end."
  echo "      For real pictures, download FLUX.1-schnell (diffusers layout) and run:"
  echo "        FLUX_MODEL=/path/to/FLUX.1-schnell scripts/demo.sh"
  echo "      or call the binary with single files:"
  echo "        $bin generate --diffusion-model flux1-schnell.safetensors --vae ae.safetensors \\"
  echo "          --clip-l clip_l.safetensors --t5xxl t5xxl_fp16.safetensors --tokenizers DIR -p \"...\" -W 512 -H 512"
fi
