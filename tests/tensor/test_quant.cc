// Dequantization and quantization of ggml's block types against ../shared/golden/gguf:
// - every tensor of every GGUF file dequantizes bit for bit to its companion (gguf-py's dequantization,
//   which equals ggml's), at every ISA level, through dequantize_row and Tensor::to;
// - the SIMD dequantizers equal the scalar twin bit for bit on random blocks and awkward row lengths;
// - the quantizers write the bytes of sd.cpp's `sd-cli -M convert` (zoo-sdcpp-*) and of gguf-py
//   (zoo-ggufpy-*) for the same zoo.safetensors input.
// The GGUF bytes are located with manifest.json (data offset, per-tensor type/offset/size), not a GGUF reader.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "base/cpu.h"
#include "io/safetensors.h"
#include "tensor/convert.h"
#include "tensor/quant.h"
#include "tensor/quant_blocks.h"
#include "tensor/quantize.h"
#include "test_util.h"

namespace flux {
namespace {

const std::string& gguf_dir() {
  static const std::string dir = test::golden_dir() + "/gguf";
  return dir;
}

DType gguf_type(const std::string& s) {
  static const std::map<std::string, DType> types{
      {"F32", DType::f32},   {"F16", DType::f16},   {"BF16", DType::bf16}, {"Q4_0", DType::q4_0}, {"Q4_1", DType::q4_1},
      {"Q5_0", DType::q5_0}, {"Q5_1", DType::q5_1}, {"Q8_0", DType::q8_0}, {"Q2_K", DType::q2_K}, {"Q3_K", DType::q3_K},
      {"Q4_K", DType::q4_K}, {"Q5_K", DType::q5_K}, {"Q6_K", DType::q6_K}};
  const auto it = types.find(s);
  if (it == types.end()) throw std::runtime_error("unknown GGUF type " + s);
  return it->second;
}

// One GGUF tensor's raw bytes, found through the manifest.
struct GgufTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;  // torch order (reversed ne)
  std::string bytes;
};

struct GgufFile {
  std::string file, companion;
  std::vector<GgufTensor> tensors;
};

std::vector<GgufFile> load_manifest() {
  const auto manifest = nlohmann::json::parse(test::read_file(gguf_dir() + "/manifest.json"));
  std::vector<GgufFile> files;
  for (const auto& f : manifest.at("files")) {
    GgufFile g;
    g.file = f.at("file").get<std::string>();
    g.companion = f.at("companion").get<std::string>();
    const std::string data = test::read_file(gguf_dir() + "/" + g.file);
    const size_t base = f.at("data_offset").get<size_t>();
    for (const auto& t : f.at("tensors")) {
      GgufTensor gt;
      gt.name = t.at("name").get<std::string>();
      gt.dtype = gguf_type(t.at("type").get<std::string>());
      gt.shape = t.at("shape").get<std::vector<int64_t>>();
      const size_t offset = base + t.at("offset").get<size_t>(), nbytes = t.at("nbytes").get<size_t>();
      if (offset + nbytes > data.size()) throw std::runtime_error(g.file + ": tensor out of range " + gt.name);
      gt.bytes = data.substr(offset, nbytes);
      g.tensors.push_back(std::move(gt));
    }
    files.push_back(std::move(g));
  }
  return files;
}

const std::vector<GgufFile>& manifest() {
  static const std::vector<GgufFile> files = load_manifest();
  return files;
}

const GgufFile& find_file(const std::string& name) {
  for (const auto& f : manifest())
    if (f.file == name) return f;
  throw std::runtime_error("not in manifest: " + name);
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Index of the first float that differs bitwise, or -1.
int64_t first_bit_difference(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (std::memcmp(a + i, b + i, 4) != 0) return i;
  return -1;
}

std::vector<IsaLevel> isa_levels() {
  std::vector<IsaLevel> levels{IsaLevel::scalar};
  if (cpu_detected().avx2) levels.push_back(IsaLevel::avx2);
  if (cpu_detected().avx512()) levels.push_back(IsaLevel::avx512);
  return levels;
}

TEST(QuantGolden, EveryGgufTensorDequantizesToItsCompanionBitExact) {
  ASSERT_EQ(manifest().size(), 24u);
  std::map<DType, int> checked;
  for (const auto& f : manifest()) {
    SCOPED_TRACE(f.file);
    const SafetensorsFile companion = SafetensorsFile::open(gguf_dir() + "/" + f.companion);
    int in_companion = 0;
    for (const auto& t : f.tensors) {
      const SafetensorsEntry* e = companion.find(t.name);
      if (!e) {
        // Full-model companions leave out F32 tensors (exact copies); anything else must be there.
        EXPECT_EQ(t.dtype, DType::f32) << t.name;
        continue;
      }
      ++in_companion;
      const Tensor want = companion.tensor(*e);
      ASSERT_EQ(want.dtype(), DType::f32);
      ASSERT_EQ(want.shape().to_vector(), t.shape) << t.name;
      const int64_t n = numel(t.shape);
      ASSERT_EQ(dtype_nbytes(t.dtype, n), t.bytes.size()) << t.name;
      std::vector<float> got(static_cast<size_t>(n));
      for (IsaLevel level : isa_levels()) {
        const IsaLevel saved = set_cpu_cap(level);
        std::fill(got.begin(), got.end(), NAN);
        dequantize_row(t.dtype, t.bytes.data(), got.data(), n);
        EXPECT_EQ(first_bit_difference(got.data(), want.data<float>(), n), -1)
            << t.name << " " << dtype_name(t.dtype) << " at " << isa_name(level);
        set_cpu_cap(saved);
      }
      // Tensor::to(f32) on a view of the stored bytes.
      auto owner = std::make_shared<std::string>(t.bytes);
      const Tensor stored = Tensor::view(t.dtype, Shape(std::span<const int64_t>(t.shape)), owner->data(), owner);
      const Tensor as_f32 = stored.to(DType::f32);
      EXPECT_EQ(first_bit_difference(as_f32.data<float>(), want.data<float>(), n), -1) << t.name << " via to()";
      ++checked[t.dtype];
    }
    EXPECT_EQ(in_companion, static_cast<int>(companion.entries().size()));
  }
  // All ten block types and the three float types were seen.
  for (DType d : {DType::f16, DType::bf16, DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0, DType::q2_K,
                  DType::q3_K, DType::q4_K, DType::q5_K, DType::q6_K})
    EXPECT_GT(checked[d], 0) << dtype_name(d);
}

TEST(QuantGolden, QuantizedTensorConvertsToBf16AndF16ThroughF32) {
  const auto& f = find_file("zoo-sdcpp-q4_K.gguf");
  const GgufTensor& t = f.tensors.front();
  auto owner = std::make_shared<std::string>(t.bytes);
  const Tensor stored = Tensor::view(t.dtype, Shape(std::span<const int64_t>(t.shape)), owner->data(), owner);
  const Tensor f32 = stored.to(DType::f32);
  const Tensor b = stored.to(DType::bf16), h = stored.to(DType::f16);
  ASSERT_EQ(b.shape(), stored.shape());
  std::vector<uint16_t> want(static_cast<size_t>(f32.numel()));
  scalar::convert_f32_to_bf16(f32.data<float>(), want.data(), want.size());
  EXPECT_EQ(std::memcmp(data_u16(b), want.data(), want.size() * 2), 0);
  scalar::convert_f32_to_f16(f32.data<float>(), want.data(), want.size());
  EXPECT_EQ(std::memcmp(data_u16(h), want.data(), want.size() * 2), 0);
  std::vector<uint16_t> row(static_cast<size_t>(f32.numel()));
  dequantize_row_bf16(t.dtype, t.bytes.data(), row.data(), f32.numel());
  EXPECT_EQ(std::memcmp(data_u16(b), row.data(), row.size() * 2), 0);
}

// Random blocks: random bytes everywhere, then every f16 scale field set to a sane value (zero, subnormal,
// small, ordinary, large; either sign).
std::vector<uint8_t> random_blocks(DType dtype, int64_t nblocks, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const size_t bb = dtype_block_bytes(dtype);
  std::vector<uint8_t> v(bb * static_cast<size_t>(nblocks));
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  std::vector<size_t> fields;  // byte offsets of the f16 fields in a block
  switch (dtype) {
    case DType::q4_0:
    case DType::q5_0:
    case DType::q8_0:
      fields = {0};
      break;
    case DType::q4_1:
    case DType::q5_1:
    case DType::q4_K:
    case DType::q5_K:
      fields = {0, 2};
      break;
    case DType::q2_K:
      fields = {80, 82};
      break;
    case DType::q3_K:
      fields = {108};
      break;
    case DType::q6_K:
      fields = {208};
      break;
    default:
      break;
  }
  const uint16_t sane[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x8123, 0x1400, 0x2e66, 0x3c00, 0xbc00, 0x5a00, 0x7bff};
  for (int64_t b = 0; b < nblocks; ++b) {
    for (size_t off : fields) {
      uint16_t h = (rng() & 1) ? sane[rng() % std::size(sane)] : static_cast<uint16_t>(rng() & 0x7bff);
      if ((h & 0x7c00) == 0x7c00) h = 0x3c00;  // no infinities or NaNs
      std::memcpy(v.data() + static_cast<size_t>(b) * bb + off, &h, 2);
    }
  }
  return v;
}

const DType kBlockTypes[] = {DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0,
                             DType::q2_K, DType::q3_K, DType::q4_K, DType::q5_K, DType::q6_K};

class DequantVariants : public ::testing::TestWithParam<IsaLevel> {
 protected:
  void SetUp() override {
    if (GetParam() == IsaLevel::avx512 && !cpu_detected().avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
    if (GetParam() == IsaLevel::avx2 && !cpu_detected().avx2) GTEST_SKIP() << "no AVX2 on this CPU";
    saved_ = set_cpu_cap(GetParam());
  }
  void TearDown() override { set_cpu_cap(saved_); }
  IsaLevel saved_{};
};

TEST_P(DequantVariants, MatchScalarTwinBitExact) {
  for (DType dtype : kBlockTypes) {
    for (int64_t nblocks : {1, 2, 3, 7, 13, 40}) {  // 40 blocks of 32 = 1280 > the bf16 chunk of 1024
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " blocks " + std::to_string(nblocks));
      const auto blocks = random_blocks(dtype, nblocks, static_cast<uint64_t>(nblocks) * 131 + uint64_t(dtype));
      const int64_t n = nblocks * dtype_block_size(dtype);
      std::vector<float> want(static_cast<size_t>(n) + 1, -7.0f), got(want.size(), -7.0f);
      scalar::dequantize_row(dtype, blocks.data(), want.data(), n);
      dequantize_row(dtype, blocks.data(), got.data(), n);
      ASSERT_EQ(first_bit_difference(got.data(), want.data(), n), -1);
      EXPECT_EQ(got[static_cast<size_t>(n)], -7.0f) << "wrote past the row";
      std::vector<uint16_t> bf(static_cast<size_t>(n)), bf_want(bf.size());
      dequantize_row_bf16(dtype, blocks.data(), bf.data(), n);
      scalar::convert_f32_to_bf16(want.data(), bf_want.data(), bf_want.size());
      ASSERT_EQ(bf, bf_want);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, DequantVariants, ::testing::Values(IsaLevel::scalar, IsaLevel::avx2, IsaLevel::avx512),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(Dequant, RejectsPartialBlocksAndOtherTypes) {
  std::vector<uint8_t> b(256);
  std::vector<float> y(64);
  EXPECT_THROW(dequantize_row(DType::q4_0, b.data(), y.data(), 33), Error);
  EXPECT_THROW(dequantize_row(DType::q4_K, b.data(), y.data(), 32), Error);
  EXPECT_THROW(dequantize_row(DType::i32, b.data(), y.data(), 4), Error);
}

// The 8 scales and mins of a q4_K / q5_K block at once (the tile packers' decode) against ggml's field-by-field one,
// on random scale bytes (every bit pattern of each field shows up many times over 20000 blocks).
TEST(Dequant, ScalesMinsK4EqualsScaleMinK4) {
  std::mt19937 rng(7);
  uint8_t q[12];
  int bad = 0;
  for (int t = 0; t < 20000; ++t) {
    for (uint8_t& v : q) v = static_cast<uint8_t>(rng());
    uint64_t sc = 0, mn = 0;
    blocks::scales_mins_k4(q, sc, mn);
    for (int j = 0; j < 8; ++j) {
      uint8_t want_sc, want_mn;
      blocks::scale_min_k4(j, q, want_sc, want_mn);
      if ((uint8_t(sc >> (8 * j)) != want_sc || uint8_t(mn >> (8 * j)) != want_mn) && bad++ < 3) {
        ADD_FAILURE() << "block " << t << " sub-block " << j << ": " << int(uint8_t(sc >> (8 * j))) << "/"
                      << int(uint8_t(mn >> (8 * j))) << " vs " << int(want_sc) << "/" << int(want_mn);
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

// ---- quantizers: bytes equal to the producers' on zoo.safetensors ----

struct ZooCase {
  std::string file;  // a zoo GGUF
  bool importance;   // sd.cpp passes all-ones importance; gguf-py uses the _ref quantizers
};

class QuantizerBytes : public ::testing::TestWithParam<ZooCase> {};

TEST_P(QuantizerBytes, EqualTheProducersBytes) {
  const ZooCase& c = GetParam();
  const GgufFile& f = find_file(c.file);
  const SafetensorsFile zoo = SafetensorsFile::open(gguf_dir() + "/zoo.safetensors");
  int quantized = 0;
  for (const auto& t : f.tensors) {
    SCOPED_TRACE(t.name);
    const Tensor src = zoo.tensor(t.name);
    ASSERT_EQ(src.shape().to_vector(), t.shape);
    if (t.dtype == DType::f32) {  // zoo.bias stays f32: a copy
      EXPECT_EQ(std::memcmp(src.raw(), t.bytes.data(), t.bytes.size()), 0);
      continue;
    }
    const int64_t k = t.shape.back(), rows = numel(t.shape) / k;
    const auto ones = unit_importance(k);
    std::string got(t.bytes.size(), '\0');
    ASSERT_EQ(quantize_rows(t.dtype, src.data<float>(), got.data(), rows, k, c.importance ? ones.data() : nullptr),
              t.bytes.size());
    // Report the first differing block to make a mismatch diagnosable.
    const size_t bb = dtype_block_bytes(t.dtype);
    size_t first = got.size();
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != t.bytes[i]) {
        first = i;
        break;
      }
    EXPECT_EQ(first, got.size()) << dtype_name(t.dtype) << ": first differing byte " << first << " (block "
                                 << first / bb << ", byte " << first % bb << " in it)";
    // Tensor-level entry point gives the same bytes.
    const Tensor q = quantize(src, t.dtype, c.importance ? ones.data() : nullptr);
    EXPECT_EQ(std::memcmp(q.raw(), got.data(), got.size()), 0);
    ++quantized;
  }
  EXPECT_EQ(quantized, 4);
}

std::vector<ZooCase> zoo_cases() {
  std::vector<ZooCase> cases;
  for (const char* t : {"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"})
    cases.push_back({std::string("zoo-sdcpp-") + t + ".gguf", true});
  for (const char* t : {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"})
    cases.push_back({std::string("zoo-ggufpy-") + t + ".gguf", false});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Zoo, QuantizerBytes, ::testing::ValuesIn(zoo_cases()), [](const auto& info) {
  std::string s = info.param.file.substr(4, info.param.file.size() - 9);  // "sdcpp-q4_K"
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
});

TEST(Quantize, RoundTripErrorIsSmallAndKQuantsNeedImportance) {
  const int64_t rows = 3, k = 512;
  const auto x = test::random_floats(size_t(rows * k), 77);
  const auto ones = unit_importance(k);
  // Max |error| relative to max |x| for uniform(-1, 1) data: about one quantization step of each width
  // (the searches minimise a weighted squared error, so the worst element may sit past half a step).
  const std::pair<DType, double> bounds[] = {{DType::q8_0, 0.01}, {DType::q6_K, 0.04}, {DType::q5_0, 0.08},
                                             {DType::q5_K, 0.08}, {DType::q4_0, 0.15}, {DType::q4_K, 0.15},
                                             {DType::q3_K, 0.3},  {DType::q2_K, 0.6}};
  for (const auto& [dtype, bound] : bounds) {
    std::vector<uint8_t> q(dtype_nbytes(dtype, rows * k));
    quantize_rows(dtype, x.data(), q.data(), rows, k, ones.data());
    std::vector<float> y(x.size());
    dequantize_row(dtype, q.data(), y.data(), rows * k);
    EXPECT_LE(test::compare(y.data(), x.data(), x.size()).max_rel, bound) << dtype_name(dtype);
  }
  std::vector<uint8_t> q(dtype_nbytes(DType::q4_K, k));
  EXPECT_THROW(quantize_rows(DType::q4_K, x.data(), q.data(), 1, k, nullptr), Error);
  EXPECT_THROW(quantize_rows(DType::q4_K, x.data(), q.data(), 1, 100, ones.data()), Error);
}

}  // namespace
}  // namespace flux
