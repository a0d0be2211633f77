// The modules of the FLUX.1 transformer (BFL flux/modules/layers.py): MLPEmbedder, Modulation, QKNorm,
// DoubleStreamBlock, SingleStreamBlock, LastLayer, EmbedND, bound by BFL checkpoint names through FluxWeights
// (which maps diffusers names in one table, flux_names.cc). Used by flux.cc and by bench/flux_block.cc, which
// binds one full-size block alone.
//
// Memory layout: the hidden state of both streams lives in ONE buffer x: F32 [n_txt + n_img, hidden], text rows
// first -- the reference's cat((txt, img), 1) -- so the double blocks update row ranges in place and the single
// blocks see the concatenation without a copy. Scratch buffers (Workspace) are allocated once per sequence length
// and reused by every block of every step: fresh multi-megabyte allocations would cost page faults each time.
// Around the products, each row is visited once per step of the recipe: the LayerNorm and its modulation in one
// pass, the gated residual after attention fused with the MLP's pre-norm, QKNorm and RoPE in the pass that writes
// attention's Q and K.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/weight_store.h"
#include "models/flux.h"
#include "models/nn.h"
#include "tensor/tensor.h"

namespace flux::transformer {

// Binds tensors by BFL name from a store holding BFL names or diffusers FluxTransformer2DModel names.
class FluxWeights {
 public:
  FluxWeights(WeightStore& store, bool diffusers, kernels::WeightMode mode = kernels::default_weight_mode())
      : store_(store), diffusers_(diffusers), mode_(mode) {}
  // Diffusers names are recognised by x_embedder.weight.
  static bool is_diffusers(const WeightStore& store);

  // A tensor by BFL name: as stored (matmul weights) or widened to f32 (small parameters). From diffusers names
  // it may be mapped, row-concatenated (q|k|v[|mlp]) or half-swapped (final-layer shift/scale). Undefined after
  // a problem was recorded in the store (WeightStore::finish reports all of them).
  Tensor get(const std::string& bfl_name, const Shape& shape, bool to_f32);
  // Whether a BFL-named tensor (all its parts) is in the store; its stored shape (for diffusers: of its first
  // part), empty if absent. Both detect the naming themselves.
  static bool has(const WeightStore& store, const std::string& bfl_name);
  static Shape shape_in(const WeightStore& store, const std::string& bfl_name);

  // A Linear bound from "<prefix>weight" / "<prefix>bias", given the next LoRA slot (its module: the prefix without
  // its '.'), with the merged LoRA stack (if any) added to its weight.
  nn::Linear linear(const std::string& prefix, int64_t in, int64_t out, bool bias = true);
  void set_merged_loras(const LoraStack* stack) { merged_ = stack; }
  // The modules of the Linears bound so far and their [out, in], by slot.
  using Slot = LoraSlot;
  const std::vector<Slot>& slots() const { return slots_; }
  nn::RMSNorm rms_norm(const std::string& name, int64_t dim, float eps);
  WeightStore& store() { return store_; }
  // Whether the blocks run attention in bf16: their products are narrow, i.e. some block weight ("...blocks.N...",
  // 2-D) is stored in 16 bits or fewer and kernels::linear_compute_dtype() is bf16 or int8 (f32 weights keep f32
  // products, kernels/matmul.h; Precision::f32, the golden path, keeps f32 attention). Under int8 the attention
  // ran in f32 until session 8: 29.8 s per 512x512 step against 24.8 s with bf16 attention (bench_flux_block).
  // Decided once per FluxWeights.
  bool attention_in_bf16();

 private:
  WeightStore& store_;
  bool diffusers_ = false;
  kernels::WeightMode mode_ = kernels::WeightMode::prepacked;
  std::optional<bool> attention_in_bf16_;
  const LoraStack* merged_ = nullptr;
  std::vector<Slot> slots_;
};

// A diffusers FluxTransformer2DModel module (e.g. "transformer_blocks.0.attn.to_k", no ".weight") -> its BFL module
// ("double_blocks.0.img_attn.qkv"), which of the row-joined parts it is (q, k, v[, mlp]: part * hidden is its first
// row) and whether its rows are the BFL rows with the halves swapped (norm_out.linear). From flux_names.cc's one
// table; nullopt if the table has no such module. Used by the LoRA reader (diffusers / PEFT adapters).
struct DiffusersModule {
  std::string bfl;
  int part = 0, n_parts = 1;
  bool swap_halves = false;
};
std::optional<DiffusersModule> bfl_module_of_diffusers(const std::string& diffusers_module);

// Rotary tables of the joint sequence: cos, sin F32 [n_rows, head_dim / 2].
struct PositionEmbedding {
  Tensor cos, sin;
};

// EmbedND: per axis i, pair j: angle = id[i] * theta^(-2j / axes_dim[i]); axes concatenated along the pairs.
struct EmbedND {
  std::array<int64_t, 3> axes_dim{};
  float theta = 10000.0f;
  // ids: F32 [n_rows, 3] -> tables [n_rows, sum(axes_dim) / 2]
  PositionEmbedding forward(const Tensor& ids) const;
};

// Sinusoidal embedding of t * 1000 (BFL math.py timestep_embedding): F32 [1, dim] = [cos, sin].
Tensor timestep_embedding(float t, int64_t dim);

// Scratch buffers shared by all blocks, sized once for a sequence (n_txt + n_img rows) and kept by Flux from one
// forward to the next (one denoising step to the next): a step allocates nothing at the block level.
struct Workspace {
  Workspace(const FluxParams& p, int64_t n_txt, int64_t n_img);
  int64_t n_txt = 0, n_img = 0, n_rows = 0;
  Tensor x;        // F32 [n_rows, hidden]            the joint hidden state (Flux::forward), txt rows first
  Tensor mod;      // F32 [2, 6 hidden]               Modulation outputs (img, txt of a double block; row 0 else)
  Tensor x_mod;    // F32 [n_rows, hidden]            normalised, modulated input of a projection
  Tensor wide;     // F32 [n_rows, 3 hidden + mlp]    qkv (double), linear1 output (single), MLP hidden (double)
  Tensor q, k, v;  // F32 [heads, n_rows, head_dim]   attention inputs, after QKNorm and RoPE (q, k)
  Tensor attn;     // F32 [n_rows, hidden]            attention output, heads merged
  Tensor cat;      // F32 [n_rows, hidden + mlp]      single-block linear2 input: [attn | gelu(mlp)]
  Tensor out;      // F32 [n_rows, hidden]            projection output before its gated residual

  // bench_flux_block: when set, the blocks add here the seconds spent in their products (Linear, Modulation
  // included) and in attention, so what is left of a block's time (norms, modulation, RoPE, activations,
  // residuals, copies) is measured in the same run.
  struct Timings {
    double products = 0, attention = 0;
  };
  Timings* timings = nullptr;
  // Adapters applied at run time by the forward in progress (Flux::forward sets and clears it).
  const LoraSet* loras = nullptr;

  // Whether this workspace fits a sequence of n_txt + n_img rows.
  bool fits(int64_t txt, int64_t img) const { return txt == n_txt && img == n_img; }
  size_t bytes() const;
};

struct MLPEmbedder {
  nn::Linear in_layer, out_layer;
  static MLPEmbedder bind(FluxWeights& w, const std::string& prefix, int64_t in, int64_t hidden);
  Tensor forward(const Tensor& x, const LoraSet* loras = nullptr) const;  // [1, in] -> [1, hidden]
};

// (shift, scale, gate) pointers into a Modulation output, each F32 [hidden].
struct ModulationOut {
  const float* shift = nullptr;
  const float* scale = nullptr;
  const float* gate = nullptr;
};

struct Modulation {
  nn::Linear lin;
  int64_t hidden = 0;
  int multiplier = 3;  // 6 (double) or 3 (single)
  static Modulation bind(FluxWeights& w, const std::string& prefix, int64_t hidden, bool is_double);
  // silu_vec: F32 [1, hidden] -> [1, multiplier * hidden] (read through chunk())
  Tensor forward(const Tensor& silu_vec) const { return lin.forward(silu_vec); }
  // The same into out: F32 [multiplier * hidden].
  void forward(const Tensor& silu_vec, float* out) const { lin.op.forward(silu_vec.data<float>(), 1, out); }
  ModulationOut chunk(const float* out, int index) const;  // index 0 or 1 (double blocks)
};

struct QKNorm {
  nn::RMSNorm query_norm, key_norm;  // F32 [head_dim] ("... .scale" in BFL names), eps 1e-6
  static QKNorm bind(FluxWeights& w, const std::string& prefix, int64_t head_dim);
};

struct SelfAttention {
  nn::Linear qkv;  // [3 hidden, hidden], rows (K H D)
  QKNorm norm;
  nn::Linear proj;  // [hidden, hidden]
  static SelfAttention bind(FluxWeights& w, const std::string& prefix, const FluxParams& p);
};

struct MLP {
  nn::Linear fc1, fc2;  // BFL "<prefix>.0" [mlp, hidden], "<prefix>.2" [hidden, mlp]; GELU (tanh) between
  static MLP bind(FluxWeights& w, const std::string& prefix, int64_t hidden, int64_t mlp);
};

struct DoubleStreamBlock {
  int64_t hidden = 0, num_heads = 0, mlp_hidden = 0;
  bool attention_bf16 = false;  // Q K^T and P V on bf16 products (kernels/attention.h): FluxWeights::attention_in_bf16
  Modulation img_mod, txt_mod;
  SelfAttention img_attn, txt_attn;
  MLP img_mlp, txt_mlp;

  // prefix e.g. "double_blocks.3."
  static DoubleStreamBlock bind(FluxWeights& w, const std::string& prefix, const FluxParams& p);
  // x: F32 [n_txt + n_img, hidden] (text rows first), updated in place; silu_vec: F32 [1, hidden].
  void forward(float* x, const Tensor& silu_vec, const PositionEmbedding& pe, Workspace& ws) const;
};

struct SingleStreamBlock {
  int64_t hidden = 0, num_heads = 0, mlp_hidden = 0;
  bool attention_bf16 = false;  // as in DoubleStreamBlock
  Modulation modulation;
  nn::Linear linear1;  // [3 hidden + mlp, hidden]: q | k | v | mlp
  nn::Linear linear2;  // [hidden, hidden + mlp]: input cat(attn, gelu_tanh(mlp))
  QKNorm norm;

  static SingleStreamBlock bind(FluxWeights& w, const std::string& prefix, const FluxParams& p);
  // x: F32 [n_rows, hidden], updated in place.
  void forward(float* x, const Tensor& silu_vec, const PositionEmbedding& pe, Workspace& ws) const;
};

struct LastLayer {
  nn::Linear adaLN_modulation;  // BFL "final_layer.adaLN_modulation.1": [2 hidden, hidden] -> (shift, scale)
  nn::Linear linear;            // [out_channels, hidden]
  int64_t hidden = 0;
  static LastLayer bind(FluxWeights& w, const std::string& prefix, int64_t hidden, int64_t out_channels);
  // x: F32 [n, hidden] (n rows at `x`) -> [n, out_channels]; ws.x_mod and ws.mod as scratch (n <= ws.n_rows).
  Tensor forward(const float* x, int64_t n, const Tensor& silu_vec, Workspace& ws) const;
};

}  // namespace flux::transformer
