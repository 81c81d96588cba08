// Embedding files: round trips of the three written formats, reading files written by Python
// (tests/data, from tests/data/make_embedding_fixtures.py), and one clear error per malformed
// input. PythonTorchLoad runs only under ctest's `python` label (TINV_PYTHON set).
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>

#include "common/fs.h"
#include "io/embeddings.h"
#include "io/safetensors.h"
#include "io/torch_save.h"
#include "test_util.h"

namespace tinv {
namespace {

std::string data_file(const std::string& name) { return std::string(TINV_SOURCE_DIR) + "/tests/data/" + name; }

torch::Tensor ramp(int64_t n, int64_t d = 16) {
  return torch::arange(n * d, torch::kFloat32).reshape({n, d}) * 0.25 - 1.0;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void copy_file(const std::string& from, const std::string& to) { write_bytes(to, read_binary_file(from)); }

TEST(Embeddings, DiffusersRoundTrip) {
  test::TempDir dir;
  std::string path = dir.file("learned_embeds.safetensors");
  save_embedding(path, EmbeddingFormat::Diffusers, "<cat-toy>", ramp(3, 768), {{"step", "100"}});
  auto embs = load_embeddings(path, 768);
  ASSERT_EQ(embs.size(), 1u);
  EXPECT_EQ(embs[0].trigger, "<cat-toy>");
  EXPECT_EQ(embs[0].format, "diffusers");
  EXPECT_TRUE(torch::equal(embs[0].vectors, ramp(3, 768)));
  EXPECT_EQ(embs[0].metadata.at("step"), "100");
}

TEST(Embeddings, KohyaRoundTrip) {
  test::TempDir dir;
  std::string path = dir.file("cat-toy.safetensors");
  save_embedding(path, EmbeddingFormat::Kohya, "cat-toy", ramp(2, 1024), {{"a", "b"}});
  SafeTensors f = SafeTensors::open(path);
  EXPECT_EQ(f.keys(), std::vector<std::string>{"emb_params"});
  auto embs = load_embeddings(path, 1024);
  ASSERT_EQ(embs.size(), 1u);
  EXPECT_EQ(embs[0].trigger, "cat-toy");
  EXPECT_EQ(embs[0].format, "kohya");
  EXPECT_TRUE(torch::equal(embs[0].vectors, ramp(2, 1024)));
  EXPECT_EQ(embs[0].metadata.at("a"), "b");
}

TEST(Embeddings, A1111RoundTrip) {
  test::TempDir dir;
  std::string path = dir.file("cat-toy.pt");
  save_embedding(path, EmbeddingFormat::A1111, "cat-toy", ramp(4, 768),
                 {{"step", "1500"}, {"sd_checkpoint_name", "v1-5"}, {"learning_rate", "0.005"}});
  auto embs = load_embeddings(path, 768);
  ASSERT_EQ(embs.size(), 1u);
  EXPECT_EQ(embs[0].trigger, "cat-toy");
  EXPECT_EQ(embs[0].format, "a1111");
  EXPECT_TRUE(torch::equal(embs[0].vectors, ramp(4, 768)));
  EXPECT_EQ(embs[0].metadata.at("name"), "cat-toy");
  EXPECT_EQ(embs[0].metadata.at("step"), "1500");
  EXPECT_EQ(embs[0].metadata.at("sd_checkpoint_name"), "v1-5");
  EXPECT_EQ(embs[0].metadata.at("learning_rate"), "0.005");
  EXPECT_EQ(embs[0].metadata.count("sd_checkpoint"), 0u);  // None
  PickleValue v = load_torch_file(path);
  EXPECT_EQ(v.find("string_to_token")->find("*")->integer(), 265);
  EXPECT_EQ(v.find("step")->integer(), 1500);
  EXPECT_TRUE(v.find("sd_checkpoint")->is_none());
  // The trigger comes from the file stem, as in A1111.
  copy_file(path, dir.file("other-name.pt"));
  EXPECT_EQ(load_embeddings(dir.file("other-name.pt"))[0].trigger, "other-name");
}

TEST(Embeddings, SaveAcceptsOneVectorAndRefusesBadInput) {
  test::TempDir dir;
  save_embedding(dir.file("one.pt"), EmbeddingFormat::A1111, "one", ramp(1)[0]);
  EXPECT_EQ(load_embeddings(dir.file("one.pt"))[0].vectors.sizes(), torch::IntArrayRef({1, 16}));
  torch::Tensor nan = ramp(2);
  nan[1][3] = NAN;
  EXPECT_TINV_ERROR(save_embedding(dir.file("nan.pt"), EmbeddingFormat::A1111, "x", nan), "NaN or infinite");
  EXPECT_FALSE(file_exists(dir.file("nan.pt")));
  EXPECT_TINV_ERROR(save_embedding(dir.file("x.pt"), EmbeddingFormat::A1111, "", ramp(1)), "empty trigger");
  EXPECT_TINV_ERROR(save_embedding(dir.file("x.pt"), EmbeddingFormat::A1111, "x", ramp(1), {{"step", "12abc"}}),
                    "'step' must be an integer");
  EXPECT_TINV_ERROR(save_embedding(dir.file("x.pt"), EmbeddingFormat::Kohya, "x", torch::zeros({0, 16})),
                    "holds no vectors");
}

TEST(Embeddings, ReadsPythonA1111Files) {
  auto t = load_embeddings(data_file("a1111_tensor.pt"), 16);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].trigger, "a1111_tensor");
  EXPECT_EQ(t[0].format, "a1111");
  EXPECT_TRUE(torch::equal(t[0].vectors, ramp(2)));
  EXPECT_EQ(t[0].metadata.at("name"), "cat-toy");
  EXPECT_EQ(t[0].metadata.at("step"), "500");
  EXPECT_EQ(t[0].metadata.at("sd_checkpoint"), "abc123");

  auto pd = load_embeddings(data_file("a1111_paramdict.pt"), 16);
  EXPECT_TRUE(torch::equal(pd[0].vectors, ramp(3)));

  auto od = load_embeddings(data_file("a1111_ordered.pt"), 16);
  EXPECT_EQ(od[0].vectors.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(od[0].vectors, ramp(4).slice(0, 1, 3)));
}

TEST(Embeddings, ReadsDiffusersBin) {
  auto embs = load_embeddings(data_file("learned_embeds.bin"), 16);
  ASSERT_EQ(embs.size(), 1u);
  EXPECT_EQ(embs[0].trigger, "<cat>");
  EXPECT_EQ(embs[0].format, "diffusers");
  EXPECT_TRUE(torch::equal(embs[0].vectors, ramp(1)));
}

TEST(Embeddings, DetectsFormatByContentNotExtension) {
  test::TempDir dir;
  copy_file(data_file("a1111_tensor.pt"), dir.file("cat.safetensors"));
  EXPECT_EQ(load_embeddings(dir.file("cat.safetensors"))[0].format, "a1111");
  save_embedding(dir.file("kohya.pt"), EmbeddingFormat::Kohya, "k", ramp(2));
  EXPECT_EQ(load_embeddings(dir.file("kohya.pt"))[0].format, "kohya");
}

TEST(Embeddings, DiffusersSafetensorsWithSeveralTriggersAndOneDVectors) {
  test::TempDir dir;
  std::string path = dir.file("multi.safetensors");
  save_safetensors(path, {{"<a>", ramp(2)}, {"<b>", ramp(1)[0].to(torch::kFloat16)}});
  auto embs = load_embeddings(path, 16);
  ASSERT_EQ(embs.size(), 2u);
  EXPECT_EQ(embs[0].trigger, "<a>");
  EXPECT_TRUE(torch::equal(embs[0].vectors, ramp(2)));
  EXPECT_EQ(embs[1].trigger, "<b>");
  EXPECT_TRUE(torch::equal(embs[1].vectors, ramp(1)));
}

TEST(Embeddings, RefusesSdxlOnSd1AndWrongWidth) {
  test::TempDir dir;
  save_safetensors(dir.file("xl.safetensors"), {{"clip_l", ramp(2, 768)}, {"clip_g", ramp(2, 1280)}});
  EXPECT_TINV_ERROR(load_embeddings(dir.file("xl.safetensors"), 768),
                    "SDXL embedding (clip_l, clip_g) cannot be used with an SD1/SD2 model");
  EXPECT_TRUE(load_embeddings(dir.file("xl.safetensors"))[0].is_xl());  // no model: read as is
  save_embedding(dir.file("sd2.safetensors"), EmbeddingFormat::Diffusers, "<x>", ramp(2, 1024));
  EXPECT_TINV_ERROR(
      load_embeddings(dir.file("sd2.safetensors"), 768),
      dir.file("sd2.safetensors") + ": embedding is 1024 wide (SD2) but the text encoder is 768 wide (SD1)");
  EXPECT_EQ(load_embeddings(dir.file("sd2.safetensors"), 1024).size(), 1u);
}

TEST(Embeddings, MalformedFilesAreOneLineErrorsNamingTheFile) {
  test::TempDir dir;
  auto expect_error = [&](const std::string& name, const std::string& what) {
    std::string path = dir.file(name);
    try {
      load_embeddings(path);
      ADD_FAILURE() << name << ": expected an error containing '" << what << "'";
    } catch (const Error& e) {
      std::string msg = e.what();
      std::cout << "  " << msg << "\n";  // the messages users see, for review
      EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  };
  write_bytes(dir.file("empty.pt"), {});
  expect_error("empty.pt", "empty file");
  write_bytes(dir.file("text.pt"), {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
  expect_error("text.pt", "unrecognized embedding file");
  EXPECT_TINV_ERROR(load_embeddings(dir.file("missing.pt")), "cannot open");

  auto a1111 = read_binary_file(data_file("a1111_tensor.pt"));
  write_bytes(dir.file("cut.pt"), std::vector<uint8_t>(a1111.begin(), a1111.begin() + 700));
  expect_error("cut.pt", "not a torch.save zip or truncated");
  save_embedding(dir.file("st.safetensors"), EmbeddingFormat::Kohya, "x", ramp(2));
  auto st = read_binary_file(dir.file("st.safetensors"));
  write_bytes(dir.file("cut.safetensors"), std::vector<uint8_t>(st.begin(), st.end() - 8));
  expect_error("cut.safetensors", "");
  write_bytes(dir.file("cuthdr.safetensors"), std::vector<uint8_t>(st.begin(), st.begin() + 20));
  expect_error("cuthdr.safetensors", "");

  save_torch_file(dir.file("nostp.pt"),
                  PickleValue::make_dict({{"name", PickleValue("x")}, {"step", PickleValue(int64_t(3))}}));
  expect_error("nostp.pt", "expected string_to_param");
  save_torch_file(dir.file("notdict.pt"), PickleValue::make_list({PickleValue(ramp(1))}));
  expect_error("notdict.pt", "expected a dict");
  save_torch_file(dir.file("strparam.pt"),
                  PickleValue::make_dict({{"string_to_param", PickleValue::make_dict({{"*", PickleValue("no")}})}}));
  expect_error("strparam.pt", "expected a tensor");

  save_safetensors(dir.file("3d.safetensors"), {{"<x>", torch::zeros({2, 3, 4})}});
  expect_error("3d.safetensors", "has shape [2, 3, 4]; expected [n, d] or [d]");
  torch::Tensor inf = ramp(2);
  inf[0][0] = INFINITY;
  save_safetensors(dir.file("inf.safetensors"), {{"emb_params", inf}});
  expect_error("inf.safetensors", "NaN or infinite");
  save_safetensors(dir.file("zero.safetensors"), {{"emb_params", torch::zeros({0, 16})}});
  expect_error("zero.safetensors", "holds no vectors");
  save_safetensors(dir.file("int.safetensors"), {{"<x>", torch::zeros({2, 16}, torch::kInt64)}});
  expect_error("int.safetensors", "expected floating point");

  copy_file(data_file("evil.pt"), dir.file("evil.pt"));
  expect_error("evil.pt", "refusing to unpickle global posix.system");
  copy_file(data_file("legacy.pt"), dir.file("legacy.pt"));
  expect_error("legacy.pt", "legacy .pt format");
}

TEST(Embeddings, ParseFormat) {
  EXPECT_EQ(parse_embedding_format("diffusers"), EmbeddingFormat::Diffusers);
  EXPECT_EQ(parse_embedding_format("A1111"), EmbeddingFormat::A1111);
  EXPECT_EQ(parse_embedding_format("kohya"), EmbeddingFormat::Kohya);
  EXPECT_TINV_ERROR(parse_embedding_format("sdxl"), "unknown embedding format 'sdxl'");
  EXPECT_STREQ(embedding_format_name(EmbeddingFormat::A1111), "a1111");
}

// Random byte flips and cuts of a valid .pt, 500 times: a load or a tinv::Error, never a crash.
TEST(Embeddings, RandomCorruptionNeverCrashes) {
  test::TempDir dir;
  std::string valid = dir.file("valid.pt");
  save_embedding(valid, EmbeddingFormat::A1111, "valid", ramp(2));
  auto full = read_binary_file(valid);
  std::mt19937 rng(42);
  int loaded = 0, errors = 0;
  for (int iter = 0; iter < 500; ++iter) {
    std::vector<uint8_t> bytes = full;
    int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
    if (rng() % 3 == 0) bytes.resize(rng() % bytes.size());
    std::string path = dir.file("c.pt");
    write_bytes(path, bytes);
    try {
      auto embs = load_embeddings(path, 16);
      ASSERT_FALSE(embs.empty());
      EXPECT_EQ(embs[0].vectors.dim(), 2);
      ++loaded;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path, 0), 0u) << e.what();
      ++errors;
    }
  }
  EXPECT_EQ(loaded + errors, 500);
  EXPECT_GT(errors, 0);
}

// Python's torch.load (and weights_only=True) must read the A1111 file we write, exactly.
// Registered in tests.cmake with label `python`; fails (does not skip) when torch is missing.
TEST(PythonTorchLoad, ReadsOurA1111File) {
  const char* python = std::getenv("TINV_PYTHON");
  if (!python) GTEST_SKIP() << "run through ctest -L python (TINV_PYTHON unset)";
  test::TempDir dir;
  std::string pt = dir.file("cat-toy.pt");
  save_embedding(pt, EmbeddingFormat::A1111, "cat-toy", ramp(3, 768),
                 {{"step", "1500"}, {"sd_checkpoint", "abc123"}, {"sd_checkpoint_name", "v1-5"}});
  std::string script = dir.file("check.py");
  std::ofstream(script) << R"(import sys
import torch
d = torch.load(sys.argv[1])
print(d)
assert type(d) is dict, type(d)
expected = torch.arange(3 * 768, dtype=torch.float32).reshape(3, 768) * 0.25 - 1.0
v = d["string_to_param"]["*"]
assert v.dtype == torch.float32 and v.shape == (3, 768), (v.dtype, v.shape)
assert torch.equal(v, expected)
assert d["string_to_token"] == {"*": 265}, d["string_to_token"]
assert d["name"] == "cat-toy" and d["step"] == 1500, d
assert d["sd_checkpoint"] == "abc123" and d["sd_checkpoint_name"] == "v1-5", d
assert set(d) == {"string_to_token", "string_to_param", "name", "step", "sd_checkpoint",
                  "sd_checkpoint_name"}, set(d)
w = torch.load(sys.argv[1], weights_only=True)
assert torch.equal(w["string_to_param"]["*"], expected)
print("torch", torch.__version__, "read", sys.argv[1], "ok")
)";
  std::string cmd = std::string(python) + " '" + script + "' '" + pt + "'";
  int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << cmd;
}

}  // namespace
}  // namespace tinv
