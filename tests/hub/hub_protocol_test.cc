// The parsers of what the hub sends (listing, headers), the choice of a pipeline's files, names and sha256.
#include "hub/hub_protocol.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "hub/hf_cache.h"
#include "hub/sha256.h"

namespace flux::hub {
namespace {

std::string sha256(const std::string& s) {
  Sha256 h;
  h.update(s.data(), s.size());
  return h.hex_digest();
}

TEST(HubSha256, FipsVectors) {
  // FIPS 180-4 examples (csrc.nist.gov, SHA256.pdf): "abc", the 448-bit message, and the empty string.
  EXPECT_EQ(sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(HubSha256, StreamedInAnyPiecesEqualsOneShot) {
  std::string data(10000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 13);
  const std::string whole = sha256(data);
  for (size_t piece : {1, 3, 63, 64, 65, 1000}) {
    Sha256 h;
    for (size_t off = 0; off < data.size(); off += piece)
      h.update(data.data() + off, std::min(piece, data.size() - off));
    EXPECT_EQ(h.hex_digest(), whole) << "pieces of " << piece;
  }
}

TEST(HubRefs, ParsesNamesRevisionsAndFiles) {
  HubRef r = parse_hub_ref("black-forest-labs/FLUX.1-schnell");
  EXPECT_EQ(r.repo_id, "black-forest-labs/FLUX.1-schnell");
  EXPECT_EQ(r.revision, "main");
  EXPECT_EQ(r.file, "");
  r = parse_hub_ref("city96/FLUX.1-schnell-gguf@v2:flux1-schnell-Q4_K_S.gguf");
  EXPECT_EQ(r.repo_id, "city96/FLUX.1-schnell-gguf");
  EXPECT_EQ(r.revision, "v2");
  EXPECT_EQ(r.file, "flux1-schnell-Q4_K_S.gguf");
  EXPECT_EQ(r.str(), "city96/FLUX.1-schnell-gguf@v2:flux1-schnell-Q4_K_S.gguf");
  EXPECT_EQ(parse_hub_ref("a/b:sub/dir/f.safetensors").file, "sub/dir/f.safetensors");
  for (const char* bad : {"noslash", "a/b/c", "/abs/path", "a/", "/b", "a/b:../x", "a/b:", "a/b@", "a--x/b",
                          "a/b@../../x", "a b/c", "./x/y"})
    EXPECT_THROW(parse_hub_ref(bad), Error) << bad;
  EXPECT_FALSE(is_hub_ref("."));
  EXPECT_FALSE(is_hub_ref(""));
  EXPECT_TRUE(is_hub_ref("org/does-not-exist-here"));
}

TEST(HubRefs, CacheFolderNames) {
  EXPECT_EQ(repo_cache_dir("/c", "black-forest-labs/FLUX.1-dev"), "/c/models--black-forest-labs--FLUX.1-dev");
  EXPECT_EQ(snapshot_dir("/c", "a/b", "0123"), "/c/models--a--b/snapshots/0123");
}

const char* kCommitHex = "0123456789abcdef0123456789abcdef01234567";

std::string flux_listing() {
  nlohmann::json siblings = nlohmann::json::array();
  for (const char* f : {".gitattributes",
                        "README.md",
                        "ae.safetensors",
                        "flux1-schnell.safetensors",
                        "model_index.json",
                        "schnell_grid.jpeg",
                        "scheduler/scheduler_config.json",
                        "text_encoder/config.json",
                        "text_encoder/model.safetensors",
                        "text_encoder_2/config.json",
                        "text_encoder_2/model-00001-of-00002.safetensors",
                        "text_encoder_2/model-00002-of-00002.safetensors",
                        "text_encoder_2/model.safetensors.index.json",
                        "tokenizer/merges.txt",
                        "tokenizer/special_tokens_map.json",
                        "tokenizer/tokenizer_config.json",
                        "tokenizer/vocab.json",
                        "tokenizer_2/special_tokens_map.json",
                        "tokenizer_2/spiece.model",
                        "tokenizer_2/tokenizer.json",
                        "tokenizer_2/tokenizer_config.json",
                        "transformer/config.json",
                        "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
                        "transformer/diffusion_pytorch_model.safetensors.index.json",
                        "vae/config.json",
                        "vae/diffusion_pytorch_model.safetensors",
                        "vae/diffusion_pytorch_model.fp16.safetensors",
                        "vae/diffusion_pytorch_model.bin",
                        "vae/flax_model.msgpack",
                        "tokenizer/bpe.txt.gz"})
    siblings.push_back({{"rfilename", f}});
  return nlohmann::json{{"id", "black-forest-labs/FLUX.1-schnell"}, {"sha", kCommitHex}, {"siblings", siblings}}.dump();
}

TEST(HubListing, PicksTheDiffusersFilesOnly) {
  const RepoListing listing = parse_repo_listing(flux_listing(), "test");
  EXPECT_EQ(listing.commit, kCommitHex);
  std::vector<std::string> picked;
  for (const RepoFile& f : files_for_pipeline(listing, "", "test")) picked.push_back(f.path);
  auto has = [&](const std::string& p) { return std::find(picked.begin(), picked.end(), p) != picked.end(); };
  EXPECT_TRUE(has("model_index.json"));
  EXPECT_TRUE(has("transformer/diffusion_pytorch_model-00001-of-00003.safetensors"));
  EXPECT_TRUE(has("transformer/diffusion_pytorch_model.safetensors.index.json"));
  EXPECT_TRUE(has("tokenizer_2/spiece.model"));
  EXPECT_TRUE(has("tokenizer/merges.txt"));
  EXPECT_TRUE(has("vae/diffusion_pytorch_model.safetensors"));
  EXPECT_TRUE(has("scheduler/scheduler_config.json"));
  // Not the root's single files (23 GB), other formats, variants or pictures.
  for (const char* no : {"flux1-schnell.safetensors", "ae.safetensors", "README.md", ".gitattributes",
                         "schnell_grid.jpeg", "vae/diffusion_pytorch_model.fp16.safetensors",
                         "vae/diffusion_pytorch_model.bin", "vae/flax_model.msgpack", "tokenizer/bpe.txt.gz"})
    EXPECT_FALSE(has(no)) << no;
  EXPECT_EQ(picked.size(), 21u);
}

TEST(HubListing, OneFileByName) {
  const RepoListing listing = parse_repo_listing(flux_listing(), "test");
  const auto one = files_for_pipeline(listing, "flux1-schnell.safetensors", "test");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].path, "flux1-schnell.safetensors");
  try {
    files_for_pipeline(listing, "nope.gguf", "org/name");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.gguf"), std::string::npos) << e.what();
  }
}

TEST(HubListing, NotDiffusersNamesTheFileSyntax) {
  const std::string gguf =
      std::string(R"({"sha":")") + kCommitHex + R"(","siblings":[{"rfilename":"flux1-schnell-Q4_K_S.gguf"}]})";
  try {
    files_for_pipeline(parse_repo_listing(gguf, "city96/FLUX.1-schnell-gguf"), "", "city96/FLUX.1-schnell-gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ORG/NAME:FILE"), std::string::npos) << e.what();
  }
}

TEST(HubListing, GarbageIsAnErrorNotACrash) {
  const std::string sha = kCommitHex;
  for (const std::string& bad :
       {std::string(""), std::string("null"), std::string("[]"), std::string("{\"sha\": 5}"),
        std::string("{\"sha\":\"abc\",\"siblings\":[]}"), "{\"sha\":\"" + sha + "\"}",
        "{\"sha\":\"" + sha + "\",\"siblings\":[1]}", "{\"sha\":\"" + sha + "\",\"siblings\":[{\"rfilename\":7}]}",
        "{\"sha\":\"" + sha + "\",\"siblings\":[{\"rfilename\":\"../../etc/passwd\"}]}",
        "{\"sha\":\"" + sha + "\",\"siblings\":[{\"rfilename\":\"/abs\"}]}", std::string("{\"sha\":\"")})
    EXPECT_THROW(parse_repo_listing(bad, "x"), Error) << bad;
}

TEST(HubHeaders, MetadataOfAnLfsRedirect) {
  ResponseHead head;
  for (const char* line : {"HTTP/1.1 302 Found\r\n", "X-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\n",
                           "ETag: \"deadbeef\"\r\n",
                           "X-Linked-Etag: \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\r\n",
                           "X-Linked-Size: 23782506688\r\n", "Location: /lfs/xyz\r\n", "\r\n"})
    add_header_line(head, line);
  EXPECT_EQ(head.status, 302);
  const FileMetadata m = file_metadata(head, "f");
  EXPECT_EQ(m.commit, kCommitHex);
  EXPECT_EQ(m.etag, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(m.lfs());
  EXPECT_EQ(m.size, 23782506688ull);
  EXPECT_EQ(m.location, "/lfs/xyz");
}

TEST(HubHeaders, SmallFileAndANewHeadAfterARedirect) {
  ResponseHead head;
  add_header_line(head, "HTTP/1.1 307 Temporary Redirect\r\n");
  add_header_line(head, "Location: /elsewhere\r\n");
  add_header_line(head, "HTTP/2 200\r\n");
  add_header_line(head, "x-repo-commit: 0123456789abcdef0123456789abcdef01234567\r\n");
  add_header_line(head, "etag: W/\"3a52ce780950d4d969792a2559cd519d7ee8c727\"\r\n");
  add_header_line(head, "content-length: 487\r\n");
  EXPECT_EQ(head.status, 200);
  EXPECT_FALSE(head.field("location"));
  const FileMetadata m = file_metadata(head, "f");
  EXPECT_EQ(m.etag, "3a52ce780950d4d969792a2559cd519d7ee8c727");
  EXPECT_FALSE(m.lfs());
  EXPECT_EQ(m.size, 487u);
  EXPECT_EQ(m.location, "");
}

TEST(HubHeaders, MissingOrUnsafeFieldsAreErrors) {
  ResponseHead head;
  add_header_line(head, "HTTP/1.1 200 OK");
  add_header_line(head, "Content-Length: 5");
  EXPECT_THROW(file_metadata(head, "f"), Error);  // no commit
  add_header_line(head, "X-Repo-Commit: 0123456789abcdef0123456789abcdef01234567");
  EXPECT_THROW(file_metadata(head, "f"), Error);  // no etag
  add_header_line(head, "ETag: \"../../x\"");
  EXPECT_THROW(file_metadata(head, "f"), Error);  // an etag that is not a file name
  ResponseHead h2;
  add_header_line(h2, "HTTP/1.1 200 OK");
  add_header_line(h2, "X-Repo-Commit: 0123456789abcdef0123456789abcdef01234567");
  add_header_line(h2, "ETag: \"abc\"");
  add_header_line(h2, "Content-Length: -3");
  EXPECT_THROW(file_metadata(h2, "f"), Error);  // no usable size
}

TEST(HubHeaders, ContentRange) {
  EXPECT_EQ(content_range_start("bytes 100-199/1000"), 100u);
  EXPECT_EQ(content_range_start("bytes 0-0/1"), 0u);
  EXPECT_FALSE(content_range_start("bytes */1000"));
  EXPECT_FALSE(content_range_start("items 1-2/3"));
  EXPECT_FALSE(content_range_start(""));
}

}  // namespace
}  // namespace flux::hub
