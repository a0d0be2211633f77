// GgufWriter: round trip through GgufFile (every KV value type, every tensor dtype, alignments, tensors written
// in pieces), gguf-py's and sd-cli's byte layout reproduced from the golden files' own content, and errors
// that name the path.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "base/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "test_util.h"

namespace flux {
namespace {

using test::error_of;

GgufValue arr(GgufType type, std::vector<GgufValue> items) { return GgufValue{GgufArray{type, std::move(items)}}; }

std::vector<GgufKV> every_kv_type() {
  return {
      {"t.u8", GgufValue{uint8_t{200}}},
      {"t.i8", GgufValue{int8_t{-7}}},
      {"t.u16", GgufValue{uint16_t{60000}}},
      {"t.i16", GgufValue{int16_t{-300}}},
      {"t.u32", GgufValue{uint32_t{4000000000u}}},
      {"t.i32", GgufValue{int32_t{-2000000000}}},
      {"t.f32", GgufValue{0.1f}},
      {"t.bool", GgufValue{true}},
      {"t.string", GgufValue{std::string("héllo\nworld")}},
      {"t.u64", GgufValue{uint64_t{1} << 40}},
      {"t.i64", GgufValue{int64_t{-1} << 40}},
      {"t.f64", GgufValue{-2.5e-300}},
      {"t.empty_string", GgufValue{std::string()}},
      {"t.strings", arr(GgufType::string, {GgufValue{std::string("a")}, GgufValue{std::string("")}})},
      {"t.u32s", arr(GgufType::u32, {GgufValue{uint32_t{1}}, GgufValue{uint32_t{2}}, GgufValue{uint32_t{3}}})},
      {"t.f32s", arr(GgufType::f32, {GgufValue{-1.5f}, GgufValue{3.25f}})},
      {"t.i64s", arr(GgufType::i64, {GgufValue{int64_t{-5}}})},
      {"t.bools", arr(GgufType::boolean, {GgufValue{false}, GgufValue{true}})},
      {"t.empty", arr(GgufType::u8, {})},
      {"t.nested", arr(GgufType::array, {arr(GgufType::i32, {GgufValue{int32_t{9}}}), arr(GgufType::string, {})})},
  };
}

// A tensor of `dtype` and `shape` filled with bytes that depend on the seed (block contents are not checked
// by the reader, so any bytes round-trip).
Tensor patterned(DType dtype, const Shape& shape, uint32_t seed) {
  Tensor t = Tensor::empty(dtype, shape);
  auto* p = static_cast<uint8_t*>(t.raw_mut());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>((i * 131 + seed * 17 + (i >> 8)) & 0xff);
  return t;
}

TEST(GgufWriter, RoundTripEveryKvTypeAndDtype) {
  const DType dtypes[] = {DType::f32,  DType::f16,  DType::bf16, DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1,
                          DType::q8_0, DType::q2_K, DType::q3_K, DType::q4_K, DType::q5_K, DType::q6_K};
  for (const uint32_t alignment : {32u, 64u, 8u}) {
    std::vector<std::pair<std::string, Tensor>> tensors;
    uint32_t seed = 0;
    for (const DType d : dtypes) {
      const int64_t block = dtype_block_size(d) == 1 ? 3 : dtype_block_size(d);
      tensors.emplace_back(str_cat("w.", dtype_name(d)), patterned(d, {5, 2 * block}, ++seed));
    }
    tensors.emplace_back("w.1d", patterned(DType::f32, {7}, ++seed));  // 28 bytes: padding follows
    tensors.emplace_back("w.3d", patterned(DType::f16, {2, 3, 5}, ++seed));
    tensors.emplace_back("w.empty", Tensor::zeros(DType::f32, {0, 4}));
    tensors.emplace_back("a.last", patterned(DType::q8_0, {1, 32}, ++seed));  // not in name order: order kept

    const std::string path = test::temp_dir("gguf_writer") + "/all.gguf";
    write_gguf(path, every_kv_type(), tensors, {.alignment = alignment});
    EXPECT_FALSE(std::filesystem::exists(path + ".part"));

    const GgufFile g = GgufFile::open(path);
    EXPECT_EQ(g.version(), 3u);
    EXPECT_EQ(g.alignment(), alignment);
    const std::vector<GgufKV> kv = every_kv_type();
    ASSERT_EQ(g.kv().size(), kv.size() + (alignment == 32 ? 0 : 1));
    for (size_t i = 0; i < kv.size(); ++i) {
      EXPECT_EQ(g.kv()[i].key, kv[i].key);
      EXPECT_TRUE(g.kv()[i].value == kv[i].value) << kv[i].key << ": " << g.kv()[i].value.str();
    }
    if (alignment != 32) {
      EXPECT_EQ(g.kv().back().key, "general.alignment");
      EXPECT_EQ(g.kv().back().value.as_int(), alignment);
    }
    ASSERT_EQ(g.tensors().size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const GgufTensorInfo& info = g.tensors()[i];
      const Tensor& want = tensors[i].second;
      EXPECT_EQ(info.name, tensors[i].first);
      EXPECT_EQ(info.dtype, want.dtype()) << info.name;
      EXPECT_EQ(info.shape, want.shape()) << info.name;
      EXPECT_EQ(info.rel_offset % alignment, 0u) << info.name;
      ASSERT_EQ(info.nbytes, want.nbytes()) << info.name;
      EXPECT_EQ(std::memcmp(g.tensor(info).raw(), want.raw(), want.nbytes()), 0) << info.name;
    }
    // Padding after the last tensor too (gguf-py and ggml both pad it).
    EXPECT_EQ(std::filesystem::file_size(path) % alignment, 0u);
  }
}

TEST(GgufWriter, TensorsInPieces) {
  const Tensor a = patterned(DType::q4_K, {3, 512}, 1), b = patterned(DType::bf16, {10}, 2);
  const std::string dir = test::temp_dir("gguf_writer_pieces");
  write_gguf(dir + "/whole.gguf", {}, {{"a", a}, {"b", b}});
  GgufWriter w(dir + "/pieces.gguf", {}, {{"a", a.dtype(), a.shape()}, {"b", b.dtype(), b.shape()}});
  const auto* pa = static_cast<const uint8_t*>(a.raw());
  w.write(pa, 100);
  EXPECT_EQ(w.current(), 0u);
  w.write(pa + 100, a.nbytes() - 100);
  EXPECT_EQ(w.current(), 1u);
  w.write(b.raw(), b.nbytes());
  w.finish();
  EXPECT_EQ(test::read_file(dir + "/pieces.gguf"), test::read_file(dir + "/whole.gguf"));
}

TEST(GgufWriter, LastTensorPadding) {
  const Tensor t = patterned(DType::f32, {5}, 3);  // 20 bytes
  const std::string dir = test::temp_dir("gguf_writer_tail");
  write_gguf(dir + "/padded.gguf", {}, {{"t", t}, {"u", t}});
  write_gguf(dir + "/unpadded.gguf", {}, {{"t", t}, {"u", t}}, {.pad_last_tensor = false});
  const std::string padded = test::read_file(dir + "/padded.gguf"), unpadded = test::read_file(dir + "/unpadded.gguf");
  EXPECT_EQ(padded.size() % 32, 0u);
  EXPECT_EQ(padded.size(), unpadded.size() + 12);
  EXPECT_EQ(padded.substr(0, unpadded.size()), unpadded);
  EXPECT_EQ(GgufFile::open(dir + "/unpadded.gguf").tensors()[1].rel_offset, 32u);
}

// Every golden GGUF file written again from its parsed KV pairs and tensors gives the same bytes: gguf-py's
// layout (city96-*, zoo-ggufpy-*) and ggml's (sdcpp-*, zoo-sdcpp-*: the same but no padding after the last
// tensor).
TEST(GgufWriter, GoldenFilesByteIdentical) {
  const std::string dir = test::golden_dir() + "/gguf";
  const std::string out_dir = test::temp_dir("gguf_writer_golden");
  int n_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".gguf") continue;
    SCOPED_TRACE(name);
    const GgufFile g = GgufFile::open(entry.path().string());
    std::vector<GgufTensorSpec> specs;
    for (const GgufTensorInfo& t : g.tensors()) specs.push_back({t.name, t.dtype, t.shape});
    const std::string out = out_dir + "/" + name;
    const bool ggml_written = name.starts_with("sdcpp-") || name.starts_with("zoo-sdcpp-");
    GgufWriter w(out, g.kv(), specs,
                 {.alignment = static_cast<uint32_t>(g.alignment()), .pad_last_tensor = !ggml_written});
    for (const GgufTensorInfo& t : g.tensors()) w.write(g.tensor(t).raw(), t.nbytes);
    w.finish();
    const std::string got = test::read_file(out), want = test::read_file(entry.path().string());
    ASSERT_EQ(got.size(), want.size());
    EXPECT_TRUE(got == want);
    ++n_files;
  }
  EXPECT_EQ(n_files, 24);  // 3 city96, 2 sdcpp, 12 zoo-sdcpp, 7 zoo-ggufpy
}

TEST(GgufWriter, Errors) {
  const Tensor t = patterned(DType::f32, {4}, 1);
  const std::string missing = "/nonexistent-dir-fluxcpp/out.gguf";
  const std::string e1 = error_of([&] { write_gguf(missing, {}, {{"t", t}}); });
  EXPECT_NE(e1.find(missing), std::string::npos) << e1;
  EXPECT_NE(e1.find("No such file or directory"), std::string::npos) << e1;

  const std::string dir = test::temp_dir("gguf_writer_errors");
  const std::string path = dir + "/x.gguf";
  {
    GgufWriter w(path, {}, {{"t", DType::f32, {4}}});
    const std::string e2 = error_of([&] { w.write(t.raw(), 20); });
    EXPECT_NE(e2.find("tensor 't': 20 bytes written where 16 were left"), std::string::npos) << e2;
    w.write(t.raw(), 8);
    const std::string e3 = error_of([&] { w.finish(); });
    EXPECT_NE(e3.find("tensor 't' not written in full (8 of 16 bytes)"), std::string::npos) << e3;
  }
  // Abandoned: neither the file nor its partial twin is left behind.
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".part"));

  const std::string e4 = error_of([&] { GgufWriter w(path, {}, {{"q", DType::q4_K, {2, 100}}}); });
  EXPECT_NE(e4.find("tensor 'q' [2, 100]: q4_K needs rows of whole 256-element blocks"), std::string::npos) << e4;
  const std::string e5 = error_of([&] { GgufWriter w(path, {{"general.alignment", GgufValue{int32_t{64}}}}, {}); });
  EXPECT_NE(e5.find("general.alignment: expected type u32, got i32"), std::string::npos) << e5;
  const std::string e6 = error_of([&] { GgufWriter w(path, {}, {}, {.alignment = 48}); });
  EXPECT_NE(e6.find("expected a nonzero power of two, got 48"), std::string::npos) << e6;
}

}  // namespace
}  // namespace flux
