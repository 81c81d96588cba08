// safetensors reader/writer: round trips, and every malformed-file rule of FORMATS.md.
#include <torch/torch.h>

#include <cstdio>
#include <fstream>

#include "common/fs.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace tinv {
namespace {

std::string make_file(const std::string& header, size_t data_bytes, bool pad = true) {
  std::string h = header;
  if (pad) h.append((8 - h.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + h + std::string(data_bytes, '\x01');
}

SafeTensors parse(const std::string& bytes) {
  auto buf = std::make_shared<std::vector<uint8_t>>(bytes.begin(), bytes.end());
  return SafeTensors::from_buffer(buf, "mem.safetensors");
}

TEST(SafeTensors, RoundTripAllFloatDtypesAndMetadata) {
  test::TempDir dir;
  auto a = torch::randn({3, 4});
  auto b = torch::arange(6, torch::kInt64).reshape({2, 3});
  auto c = torch::randn({5}).to(torch::kHalf);
  auto d = torch::randn({2, 2}).to(torch::kBFloat16);
  auto e = torch::zeros({0, 3});
  std::string path = dir.file("x.safetensors");
  save_safetensors(path, {{"a", a}, {"b", b}, {"c", c}, {"d", d}, {"empty", e}}, {{"k", "v"}});
  auto f = SafeTensors::open(path);
  EXPECT_EQ(f.metadata().at("k"), "v");
  EXPECT_TRUE(torch::equal(f.get("a"), a));
  EXPECT_TRUE(torch::equal(f.view("b"), b));
  EXPECT_EQ(f.get("b").scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(f.get("c"), c.to(torch::kFloat)));
  EXPECT_TRUE(torch::equal(f.get("d"), d.to(torch::kFloat)));
  EXPECT_EQ(f.get("empty").sizes(), e.sizes());
  EXPECT_EQ(f.keys().size(), 5u);
  // header padded to a multiple of 8
  auto bytes = read_binary_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  EXPECT_EQ(n % 8, 0u);
}

TEST(SafeTensors, ViewsOutliveTheFileObject) {
  test::TempDir dir;
  auto a = torch::randn({16});
  save_safetensors(dir.file("a.safetensors"), {{"a", a}});
  torch::Tensor v;
  { v = SafeTensors::open(dir.file("a.safetensors")).view("a"); }
  EXPECT_TRUE(torch::equal(v, a));
}

TEST(SafeTensors, ValidMinimalFile) {
  auto f = parse(make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8));
  EXPECT_EQ(f.info("x").shape, std::vector<int64_t>{2});
}

TEST(SafeTensors, RejectsMalformedFiles) {
  EXPECT_TINV_ERROR(parse(std::string(4, '\0')), "too short");
  EXPECT_TINV_ERROR(parse(std::string("\xff\xff\0\0\0\0\0\0{}", 10)), "past the end");
  EXPECT_TINV_ERROR(parse(std::string("\0\0\0\0\0\0\0\x10{}", 10)), "100 MB");
  EXPECT_TINV_ERROR(parse(make_file("{not json", 0)), "not valid UTF-8 JSON");
  EXPECT_TINV_ERROR(parse(make_file("{\"\xff\xfe\":1}", 0)), "not valid UTF-8 JSON");
  EXPECT_TINV_ERROR(parse(make_file("[1,2]", 0)), "not a JSON object");
  EXPECT_TINV_ERROR(parse(make_file(R"({"x":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", 1)),
                    "unknown dtype 'Q7'");
  EXPECT_TINV_ERROR(parse(make_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)), "tensor 'x'");
  EXPECT_TINV_ERROR(parse(make_file(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)), "non-negative");
  // gap
  EXPECT_TINV_ERROR(parse(make_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)), "gap");
  // overlap
  EXPECT_TINV_ERROR(parse(make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                    8)),
                    "overlap");
  // truncated data buffer
  EXPECT_TINV_ERROR(parse(make_file(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 10)), "truncated");
  // trailing bytes
  EXPECT_TINV_ERROR(parse(make_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 9)), "trailing");
  // duplicate names
  EXPECT_TINV_ERROR(parse(make_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                    R"("x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                    8)),
                    "duplicate");
  EXPECT_TINV_ERROR(parse(make_file(R"({"x":{"dtype":"F32","shape":[1]}})", 4)), "data_offsets");
  EXPECT_TINV_ERROR(parse(make_file(R"({"__metadata__":{"a":1}})", 0)), "not a string");
  EXPECT_TINV_ERROR(parse(make_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 4)), "end before");
}

TEST(SafeTensors, OpenErrorsNameTheFile) {
  EXPECT_TINV_ERROR(SafeTensors::open("/nonexistent/x.safetensors"), "/nonexistent/x.safetensors");
  test::TempDir dir;
  EXPECT_TINV_ERROR(SafeTensors::open(dir.path()), "not a regular file");
  std::ofstream(dir.file("empty.safetensors")).close();
  EXPECT_TINV_ERROR(SafeTensors::open(dir.file("empty.safetensors")), "empty.safetensors");
}

TEST(SafeTensors, MissingTensorNamed) {
  auto f = parse(make_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4));
  EXPECT_TINV_ERROR(f.get("nope"), "'nope'");
}

TEST(SafeTensors, WriterIsAtomicAndLeavesOldFileOnFailure) {
  test::TempDir dir;
  std::string path = dir.file("keep.safetensors");
  save_safetensors(path, {{"a", torch::ones({2})}});
  // Duplicate names make the writer fail before anything is written.
  EXPECT_TINV_ERROR(save_safetensors(path, {{"a", torch::ones({1})}, {"a", torch::ones({1})}}), "duplicate");
  EXPECT_TRUE(torch::equal(SafeTensors::open(path).get("a"), torch::ones({2})));
  // An unwritable destination fails with the path in the message, and no temp file remains.
  EXPECT_TINV_ERROR(save_safetensors(dir.file("no/such/dir/x.safetensors"), {{"a", torch::ones({1})}}), "no/such/dir");
}

TEST(SafeTensors, ShardedIndex) {
  test::TempDir dir;
  save_safetensors(dir.file("s1.safetensors"), {{"a", torch::ones({2})}});
  save_safetensors(dir.file("s2.safetensors"), {{"b", torch::zeros({3})}});
  std::ofstream(dir.file("m.safetensors.index.json"))
      << R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})";
  auto sd = load_state_dict_file(dir.file("m.safetensors.index.json"));
  ASSERT_EQ(sd.size(), 2u);
  EXPECT_EQ(sd["b"].numel(), 3);
  std::ofstream(dir.file("bad.safetensors.index.json")) << R"({"weight_map":{"c":"s1.safetensors"}})";
  EXPECT_TINV_ERROR(load_state_dict_file(dir.file("bad.safetensors.index.json")), "'c'");
}

TEST(SafeTensors, FixtureFilesOpen) {
  auto f = SafeTensors::open(test::fixture("tiny-sd15/model/unet/diffusion_pytorch_model.safetensors"));
  EXPECT_TRUE(f.contains("conv_in.weight"));
}

// ---- training checkpoints (io/checkpoint.h) ----

TEST(Checkpoint, RoundTripAndErrors) {
  test::TempDir dir;
  const std::string path = dir.file("run.ckpt.safetensors");
  auto w = torch::randn({3, 2}).requires_grad_(true);
  save_checkpoint(path, 12, {{"p.w", w}, {"m.w", torch::zeros({3, 2})}}, {{"config", "{}"}});
  Checkpoint ck = open_checkpoint(path, "not ours");
  EXPECT_EQ(ck.step, 12);
  EXPECT_EQ(ck.metadata().at("config"), "{}");
  EXPECT_EQ(ck.metadata().at("step"), "12");
  torch::Tensor back = torch::zeros({3, 2});
  restore_tensor(ck, "p.w", back);
  EXPECT_TRUE(torch::equal(back, w.detach()));
  torch::Tensor wrong = torch::zeros({2, 3});
  EXPECT_TINV_ERROR(restore_tensor(ck, "p.w", wrong), "tensor 'p.w' has the wrong shape");
  EXPECT_TINV_ERROR(restore_tensor(ck, "v.w", back), "missing tensor 'v.w'");
  save_safetensors(dir.file("plain.safetensors"), {{"x", back}});
  EXPECT_TINV_ERROR(open_checkpoint(dir.file("plain.safetensors"), "not a tinv checkpoint"),
                    "plain.safetensors: not a tinv checkpoint");
  save_safetensors(dir.file("bad.safetensors"), {{"x", back}}, {{"step", "1x"}});
  EXPECT_TINV_ERROR(open_checkpoint(dir.file("bad.safetensors"), "no"), "is not a non-negative integer");
}

// The writer's bytes are those of the former writers (save_safetensors with "step" in the
// metadata), so checkpoints written before the shared writer still resume.
TEST(Checkpoint, SameBytesAsTheFormerWriters) {
  test::TempDir dir;
  auto a = torch::randn({4}), b = torch::randn({2, 2});
  save_checkpoint(dir.file("new"), 7, {{"p.a", a}, {"m.a", b}}, {{"config", "{\"x\":1}"}});
  save_safetensors(dir.file("old"), {{"p.a", a}, {"m.a", b}}, {{"step", "7"}, {"config", "{\"x\":1}"}});
  EXPECT_EQ(read_text_file(dir.file("new")), read_text_file(dir.file("old")));
}

// runs/world-v2/vae.ckpt.safetensors (committed, written by the former world trainer): opens
// as a checkpoint, and written back through save_checkpoint gives the same bytes.
TEST(Checkpoint, CommittedWorldCheckpointLoadsAndRewritesIdentically) {
  const std::string path = std::string(TINV_SOURCE_DIR) + "/runs/world-v2/vae.ckpt.safetensors";
  if (!file_exists(path)) GTEST_SKIP() << path << " is not in this checkout";
  Checkpoint ck = open_checkpoint(path, "not a world checkpoint");
  EXPECT_GT(ck.step, 0);
  ASSERT_TRUE(ck.metadata().count("config"));
  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& [name, info] : ck.file.infos()) order.emplace_back(info.begin, name);
  std::sort(order.begin(), order.end());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [begin, name] : order) tensors.emplace_back(name, ck.file.view(name));
  EXPECT_TRUE(ck.file.contains("p.encoder.conv_in.weight") && ck.file.contains("m.encoder.conv_in.weight") &&
              ck.file.contains("v.encoder.conv_in.weight"));
  test::TempDir dir;
  save_checkpoint(dir.file("again"), ck.step, tensors, {{"config", ck.metadata().at("config")}});
  EXPECT_TRUE(read_text_file(dir.file("again")) == read_text_file(path));
}

}  // namespace
}  // namespace tinv
