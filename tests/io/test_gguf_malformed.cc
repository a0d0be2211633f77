// GGUF reader on malformed files, one test per kind of damage: each gives a flux::Error whose message names
// the file, the KV key or tensor, and the problem (never a crash or a huge allocation).
#include <cstring>

#include "base/error.h"
#include "io/gguf.h"
#include "io/gguf_test_writer.h"
#include "test_util.h"

namespace flux {
namespace {

using test::GgufWriter;

GgufValue v(auto x) { return GgufValue{x}; }

// A valid file: two KV pairs, an F32 [2, 8] and a Q8_0 [2, 32] tensor.
GgufWriter valid() {
  GgufWriter w;
  w.add_kv("general.architecture", v(std::string("flux")));
  w.add_kv("general.quantization_version", v(uint32_t{2}));
  w.add_tensor("a.weight", 0, {8, 2}, std::string(64, '\x01'));
  w.add_tensor("b.weight", 8, {32, 2}, std::string(68, '\x02'));
  return w;
}

void expect_error(const std::string& bytes, std::initializer_list<const char*> parts) {
  auto copy = std::make_shared<std::string>(bytes);
  try {
    GgufFile::parse(copy, reinterpret_cast<const uint8_t*>(copy->data()), copy->size(), "bad.gguf");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("bad.gguf: ", 0), 0u) << msg;
    for (const char* part : parts) EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  }
}

void set_u64(std::string& bytes, size_t at, uint64_t value) { std::memcpy(bytes.data() + at, &value, 8); }

TEST(GgufMalformed, ValidBaseParses) {
  const std::string b = valid().bytes();
  auto copy = std::make_shared<std::string>(b);
  const GgufFile g = GgufFile::parse(copy, reinterpret_cast<const uint8_t*>(copy->data()), copy->size(), "ok.gguf");
  EXPECT_EQ(g.tensors().size(), 2u);
}

TEST(GgufMalformed, NotGguf) {
  expect_error("", {"not a GGUF file"});
  expect_error("GGU", {"not a GGUF file"});
  expect_error(std::string("\x08\0\0\0\0\0\0\0{}", 10), {"not a GGUF file", "expected the magic \"GGUF\""});
}

TEST(GgufMalformed, Version1Refused) {
  GgufWriter w = valid();
  w.version = 1;
  expect_error(w.bytes(), {"GGUF version 1 is not supported", "expected version 2 or 3"});
}

TEST(GgufMalformed, UnknownAndByteSwappedVersions) {
  GgufWriter w = valid();
  w.version = 4;
  expect_error(w.bytes(), {"GGUF version 4 is not supported (expected 2 or 3)"});
  w.version = 0x03000000;
  expect_error(w.bytes(), {"byte-swapped"});
}

TEST(GgufMalformed, TruncatedHeader) {
  const std::string b = valid().bytes();
  expect_error(b.substr(0, 6), {"header", "version", "file truncated"});
  // Cut inside the second tensor info.
  const size_t header = valid().header().size();
  expect_error(b.substr(0, header - 5), {"tensor 'b.weight'", "offset", "file truncated"});
  // Cut inside a string value.
  GgufWriter w;
  w.add_kv("k", v(std::string(100, 'x')));
  expect_error(w.bytes().substr(0, 24 + 8 + 1 + 4 + 8 + 50), {"KV 'k'", "string value", "string length 100 is beyond"});
}

TEST(GgufMalformed, TruncatedData) {
  const std::string b = valid().bytes();
  expect_error(b.substr(0, b.size() - 1), {"tensor 'b.weight'", "beyond the data section"});
}

TEST(GgufMalformed, AbsurdTensorCount) {
  GgufWriter w = valid();
  w.n_tensors_override = int64_t{1} << 60;
  expect_error(w.bytes(), {"n_tensors 1152921504606846976 is more than the"});
}

TEST(GgufMalformed, AbsurdKvCount) {
  GgufWriter w = valid();
  w.n_kv_override = 1000000;
  expect_error(w.bytes(), {"n_kv 1000000 is more than the"});
}

TEST(GgufMalformed, AbsurdStringLength) {
  std::string b = valid().bytes();
  set_u64(b, 24, uint64_t{1} << 62);  // the first key's length
  expect_error(b, {"KV pair #0", "string length 4611686018427387904 is beyond the end of the file"});
  GgufWriter w = valid();
  w.kv[0].value = v(std::string("flux"));
  std::string c = w.bytes();
  const size_t at = 4 + 4 + 8 + 8 + 8 + std::strlen("general.architecture") + 4;  // the value's length
  set_u64(c, at, 1000000);
  expect_error(c, {"KV 'general.architecture'", "string value", "string length 1000000"});
}

TEST(GgufMalformed, AbsurdArrayLength) {
  GgufWriter w;
  w.add_kv("tokenizer.ggml.tokens", test::gguf_array(GgufType::u32, {v(uint32_t{1})}));
  std::string b = w.bytes();
  const size_t at = 4 + 4 + 8 + 8 + 8 + std::strlen("tokenizer.ggml.tokens") + 4 + 4;  // after the element type
  set_u64(b, at, uint64_t{1} << 40);
  expect_error(b, {"KV 'tokenizer.ggml.tokens'", "array length 1099511627776 of u32", "bytes left"});
}

TEST(GgufMalformed, ArraysNestedTooDeep) {
  GgufValue inner = v(uint8_t{1});
  for (int i = 0; i < 20; ++i) inner = test::gguf_array(inner.type(), {inner});
  GgufWriter w;
  w.add_kv("deep", inner);
  expect_error(w.bytes(), {"KV 'deep'", "nested deeper than"});
}

TEST(GgufMalformed, BadValueTypes) {
  GgufWriter w;
  w.add_kv("k", v(uint8_t{2}));
  std::string b = w.bytes();
  const size_t type_at = 4 + 4 + 8 + 8 + 8 + 1;
  b[type_at] = 13;
  expect_error(b, {"KV 'k'", "value type 13 is not a GGUF value type"});
  b[type_at] = 7;  // bool holding 2
  expect_error(b, {"KV 'k'", "bool value: expected 0 or 1, got 2"});
  GgufWriter a;
  a.add_kv("arr", test::gguf_array(GgufType::u8, {}));
  std::string c = a.bytes();
  c[4 + 4 + 8 + 8 + 8 + 3 + 4] = 99;  // element type
  expect_error(c, {"KV 'arr'", "array element type 99"});
}

TEST(GgufMalformed, DuplicateKey) {
  GgufWriter w = valid();
  w.add_kv("general.architecture", v(std::string("sd3")));
  expect_error(w.bytes(), {"KV 'general.architecture'", "duplicate key"});
}

TEST(GgufMalformed, BadAlignment) {
  GgufWriter w = valid();
  w.add_kv("general.alignment", v(uint32_t{48}));
  expect_error(w.bytes(), {"KV 'general.alignment'", "power of two, got 48"});
  w.kv.back().value = v(uint32_t{0});
  expect_error(w.bytes(), {"KV 'general.alignment'", "got 0"});
  w.kv.back().value = v(uint64_t{32});
  expect_error(w.bytes(), {"KV 'general.alignment'", "expected type u32, got u64"});
}

TEST(GgufMalformed, OffsetNotAligned) {
  GgufWriter w = valid();
  w.tensors[1].offset = 72;
  expect_error(w.bytes(), {"tensor 'b.weight'", "offset 72 is not a multiple of the alignment 32"});
}

TEST(GgufMalformed, OffsetBeyondTheFile) {
  GgufWriter w = valid();
  std::string b = w.bytes();
  w.tensors[1].offset = 1 << 20;
  std::string header = w.header();
  header.append((32 - header.size() % 32) % 32, '\0');
  expect_error(header + b.substr(header.size()),
               {"tensor 'b.weight'", "data at offset 1048576 + 68 bytes", "beyond the data section"});
  w.tensors[1].offset = UINT64_MAX - 31;  // offset + size would wrap
  header = w.header();
  header.append((32 - header.size() % 32) % 32, '\0');
  expect_error(header + b.substr(header.size()), {"tensor 'b.weight'", "beyond the data section"});
}

TEST(GgufMalformed, OverlappingTensors) {
  GgufWriter w = valid();
  w.tensors[1].offset = 32;  // a.weight spans [0, 64)
  expect_error(w.bytes(), {"tensor 'b.weight' data [32, 100) overlaps tensor 'a.weight' [0, 64)"});
}

TEST(GgufMalformed, TooManyDims) {
  GgufWriter w = valid();
  w.tensors[0].ne = {8, 2, 1, 1, 1};
  expect_error(w.bytes(), {"tensor 'a.weight'", "n_dims: expected at most 4, got 5"});
}

TEST(GgufMalformed, RowNotWholeBlocks) {
  GgufWriter w = valid();
  w.tensors[1].ne = {48, 2};
  expect_error(w.bytes(), {"tensor 'b.weight'", "ne[0] = 48 is not a multiple of the Q8_0 block size 32"});
  w.tensors[1].ggml_type = 12;
  w.tensors[1].ne = {32, 2};
  expect_error(w.bytes(), {"tensor 'b.weight'", "ne[0] = 32 is not a multiple of the Q4_K block size 256"});
}

TEST(GgufMalformed, DimsProductOverflows) {
  GgufWriter w = valid();
  w.tensors[0].ne = {uint64_t{1} << 40, uint64_t{1} << 40};
  expect_error(w.bytes(), {"tensor 'a.weight'", "element count overflows"});
  w.tensors[0].ne = {uint64_t{1} << 63};
  expect_error(w.bytes(), {"tensor 'a.weight'", "ne[0] = 9223372036854775808 is too large"});
  w.tensors[0].ne = {uint64_t{1} << 62};  // fits in int64, the byte size does not
  expect_error(w.bytes(), {"tensor 'a.weight'", "byte size", "overflows"});
}

TEST(GgufMalformed, DuplicateTensorName) {
  GgufWriter w = valid();
  w.tensors[1].name = "a.weight";
  expect_error(w.bytes(), {"tensor 'a.weight': duplicate name"});
}

TEST(GgufMalformed, UnsupportedTypeNamed) {
  GgufWriter w = valid();
  w.tensors[1].ggml_type = 20;
  expect_error(w.bytes(), {"tensor 'b.weight'", "type IQ4_NL (20) is not supported", "Q6_K"});
  w.tensors[1].ggml_type = 99;
  expect_error(w.bytes(), {"tensor 'b.weight'", "unknown type id 99 is not supported"});
}

TEST(GgufMalformed, ControlCharactersEscapedInNames) {
  GgufWriter w = valid();
  w.tensors[1].name = "b\nweight";
  w.tensors[1].ggml_type = 23;
  expect_error(w.bytes(), {"tensor 'b\\x0aweight'", "IQ4_XS (23)"});
}

}  // namespace
}  // namespace flux
