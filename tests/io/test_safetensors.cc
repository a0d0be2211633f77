// safetensors: round trips, every golden file, and each malformed header (bytes written here) giving an Error
// that names the file, the tensor and what was expected.
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace flux {
namespace {

std::string with_length(const std::string& header, uint64_t length) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(length >> (8 * i));
  return out + header;
}

// An 8-byte length, the header, then `data_bytes` zero bytes.
std::string make_bytes(const std::string& header, size_t data_bytes) {
  return with_length(header, header.size()) + std::string(data_bytes, '\0');
}

SafetensorsFile parse_bytes(const std::string& bytes, const std::string& name = "bad.safetensors") {
  auto copy = std::make_shared<std::string>(bytes);
  return SafetensorsFile::parse(copy, reinterpret_cast<const uint8_t*>(copy->data()), copy->size(), name);
}

// Expects parse to throw an Error whose message contains every one of `parts`.
void expect_error(const std::string& bytes, std::initializer_list<const char*> parts) {
  try {
    parse_bytes(bytes);
    ADD_FAILURE() << "no error for " << bytes.substr(std::min<size_t>(8, bytes.size()));
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    for (const char* part : parts) EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  }
}

TEST(Safetensors, RoundTripAllDtypes) {
  const std::string dir = test::temp_dir("st");
  std::vector<std::pair<std::string, Tensor>> tensors;
  const DType dtypes[] = {DType::f64, DType::f32, DType::f16, DType::bf16, DType::f8_e4m3, DType::i64,
                          DType::i32, DType::i16, DType::i8,  DType::u8,   DType::boolean};
  int k = 0;
  for (DType dt : dtypes) {
    Tensor t = Tensor::empty(dt, {2, 3, static_cast<int64_t>(k + 1)});
    auto* p = static_cast<uint8_t*>(t.raw_mut());
    for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(i * 7 + static_cast<size_t>(k));
    tensors.emplace_back(std::string("t.") + safetensors_dtype_name(dt), t);
    ++k;
  }
  tensors.emplace_back("scalar", Tensor::from_f32(Shape{}, std::vector<float>{3.5f}));
  tensors.emplace_back("empty", Tensor::empty(DType::f32, {0, 4}));
  const std::string path = dir + "/a.safetensors";
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "hello"}});

  // The header is padded with spaces to a multiple of 8.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  EXPECT_EQ(n % 8, 0u);

  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "hello");
  ASSERT_EQ(f.entries().size(), tensors.size());
  size_t total = 0;
  for (const auto& [name, want] : tensors) {
    const Tensor got = f.tensor(name);
    EXPECT_EQ(got.dtype(), want.dtype()) << name;
    EXPECT_EQ(got.shape(), want.shape()) << name;
    ASSERT_EQ(got.nbytes(), want.nbytes()) << name;
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << name;
    EXPECT_FALSE(got.writable());
    total += want.nbytes();
  }
  EXPECT_EQ(f.data_bytes(), total);
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_THROW(f.tensor("nope"), Error);
  // Entries are in data order.
  for (size_t i = 1; i < f.entries().size(); ++i) EXPECT_LE(f.entries()[i - 1].offset, f.entries()[i].offset);
}

TEST(Safetensors, ViewOutlivesFileObject) {
  const std::string path = test::temp_dir("st") + "/v.safetensors";
  write_safetensors(path, {{"x", Tensor::from_f32({3}, std::vector<float>{1, 2, 3})}});
  Tensor t;
  { t = SafetensorsFile::open(path).tensor("x"); }
  EXPECT_EQ(t.data<float>()[2], 3.0f);
}

TEST(Safetensors, UnalignedDataIsCopied) {
  // Header of 9 bytes of padding-free JSON makes data start at offset 8 + header: deliberately unaligned.
  std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  if ((8 + header.size()) % 4 == 0) header += " ";
  std::string bytes = make_bytes(header, 0);
  const float v[2] = {1.5f, -2.0f};
  bytes.append(reinterpret_cast<const char*>(v), sizeof v);
  const Tensor t = parse_bytes(bytes).tensor("x");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 4, 0u);
  EXPECT_EQ(t.data<float>()[0], 1.5f);
  EXPECT_EQ(t.data<float>()[1], -2.0f);
}

TEST(Safetensors, GoldenFilesOpen) {
  namespace fs = std::filesystem;
  int n_files = 0;
  for (const auto& e : fs::recursive_directory_iterator(test::golden_dir())) {
    if (e.path().extension() != ".safetensors") continue;
    SCOPED_TRACE(e.path().string());
    const SafetensorsFile f = SafetensorsFile::open(e.path().string());
    EXPECT_FALSE(f.entries().empty());
    for (const auto& entry : f.entries()) {
      const Tensor t = f.tensor(entry);
      EXPECT_EQ(t.nbytes(), entry.nbytes);
      EXPECT_LE(entry.offset + entry.nbytes, f.mapping()->size());
    }
    ++n_files;
  }
  EXPECT_GE(n_files, 15);
}

TEST(Safetensors, GoldenClipContents) {
  const SafetensorsFile f = SafetensorsFile::open(test::golden_dir() + "/clip.safetensors");
  const Tensor ids = f.tensor("input_ids");
  EXPECT_EQ(ids.dtype(), DType::i64);
  EXPECT_EQ(ids.shape(), Shape({3, 77}));
  EXPECT_EQ(ids.data<int64_t>()[0], 49406);  // BOS
  EXPECT_EQ(f.tensor("last_hidden_state").shape(), Shape({3, 77, 32}));
  EXPECT_EQ(f.tensor("pooler_output").dtype(), DType::f32);
}

TEST(Safetensors, DtypeNames) {
  for (const char* s : {"F64", "F32", "F16", "BF16", "F8_E4M3", "I64", "I32", "I16", "I8", "U8", "BOOL"})
    EXPECT_STREQ(safetensors_dtype_name(parse_safetensors_dtype(s)), s);
  EXPECT_THROW(parse_safetensors_dtype("F8_E5M2"), Error);
}

TEST(SafetensorsMalformed, TooShort) {
  expect_error("", {"0 bytes"});
  expect_error("abc", {"3 bytes"});
}

TEST(SafetensorsMalformed, HeaderLength) {
  expect_error(with_length("{}", 1000), {"header length 1000", "beyond the end"});
  expect_error(with_length("{}", uint64_t{1} << 40), {"exceeds the limit"});
  expect_error(with_length("{}", ~uint64_t{0}), {"exceeds the limit"});
}

TEST(SafetensorsMalformed, BadJson) {
  expect_error(make_bytes(R"({"x": )", 0), {"not valid JSON"});
  expect_error(make_bytes("[1, 2]", 0), {"expected a JSON object", "array"});
  expect_error(make_bytes(std::string(100, '[') + std::string(100, ']'), 0), {"nested deeper"});
}

TEST(SafetensorsMalformed, EntryFields) {
  expect_error(make_bytes(R"({"w": 5})", 0), {"'w'", "expected an object"});
  expect_error(make_bytes(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", 4), {"'w'", "missing field 'dtype'"});
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", 4), {"'w'", "'shape'"});
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "shape": [1]}})", 4), {"'w'", "'data_offsets'"});
  expect_error(make_bytes(R"({"w": {"dtype": 3, "shape": [1], "data_offsets": [0, 4]}})", 4),
               {"'w'", "dtype", "expected a string"});
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})", 4),
               {"'w'", "shape", "expected an array"});
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4),
               {"'w'", "expected an integer"});
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, "4"]}})", 4),
               {"'w'", "data_offsets", "expected an integer"});
}

TEST(SafetensorsMalformed, UnknownDtype) {
  expect_error(make_bytes(R"({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}})", 8),
               {"'w'", "unsupported 'C64'"});
}

TEST(SafetensorsMalformed, Shapes) {
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4),
               {"'w'", "non-negative", "-1"});
  expect_error(make_bytes(R"({"w": {"dtype": "U8", "shape": [1,1,1,1,1], "data_offsets": [0, 1]}})", 1),
               {"'w'", "5 dims", "at most 4"});
  expect_error(make_bytes(R"({"w": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})", 8),
               {"'w'", "overflows"});
  expect_error(make_bytes(R"({"w": {"dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 8]}})", 8),
               {"'w'", "overflows"});
}

TEST(SafetensorsMalformed, Offsets) {
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4),
               {"'w'", "expected [begin, end]"});
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8),
               {"'w'", "begin <= end"});
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 4),
               {"'w'", "beyond the data section (4 bytes)"});
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", 8),
               {"'w'", "span 4 bytes; expected 8"});
  expect_error(make_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 18446744073709551615]}})", 4),
               {"'w'", "beyond the data section"});
}

TEST(SafetensorsMalformed, Overlap) {
  expect_error(make_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                          12),
               {"'a'", "'b'", "overlaps"});
  // Empty tensors take no bytes and overlap nothing.
  EXPECT_NO_THROW(parse_bytes(make_bytes(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                                         8)));
}

TEST(SafetensorsMalformed, DuplicateNames) {
  expect_error(make_bytes(R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                              "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                          2),
               {"duplicate key 'a'"});
}

TEST(SafetensorsMalformed, Metadata) {
  expect_error(make_bytes(R"({"__metadata__": {"k": 1}})", 0), {"__metadata__ 'k'", "expected a string"});
  expect_error(make_bytes(R"({"__metadata__": [1]})", 0), {"__metadata__", "expected an object"});
  EXPECT_TRUE(parse_bytes(make_bytes(R"({"__metadata__": null})", 0)).metadata().empty());
}

TEST(SafetensorsMalformed, OpenNamesThePath) {
  const std::string path = test::temp_dir("st") + "/broken.safetensors";
  std::ofstream(path, std::ios::binary) << make_bytes(
      R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}})", 4);
  try {
    SafetensorsFile::open(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_THROW(SafetensorsFile::open(path + ".absent"), Error);
}

}  // namespace
}  // namespace flux
