// Text-to-image pipeline on the tiny fixture model (32x32 images, few steps): determinism,
// learned embeddings of every format, option validation, truncation, A1111 parameters, and the
// `tinv generate` CLI on good and bad input (run as a subprocess: TINV_BINARY).
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "io/embeddings.h"
#include "io/safetensors.h"
#include "io/torch_save.h"
#include "models/stable_diffusion.h"
#include "pipelines/generate.h"
#include "test_util.h"

namespace tinv {
namespace {

StableDiffusion tiny() { return load_stable_diffusion(test::fixture("tiny-sd15/model")); }

GenerateOptions small(const std::string& prompt, uint64_t seed = 1) {
  GenerateOptions o;
  o.prompt = prompt;
  o.negative_prompt = "blurry";
  o.sampler = "ddim";
  o.steps = 2;
  o.seed = seed;
  o.progress = false;
  return o;
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

TEST(Generate, SameSeedSameImageAndBatchItemsMatchSingleRuns) {
  auto sd = tiny();
  ExtraTokens none;
  for (const char* sampler : {"ddim", "euler_a"}) {
    SCOPED_TRACE(sampler);
    auto o = small("a photo of a cat", 5);
    o.sampler = sampler;
    auto a = generate(sd, none, o);
    auto b = generate(sd, none, o);
    ASSERT_EQ(a.images.sizes(), (std::vector<int64_t>{1, 3, 32, 32}));
    EXPECT_TRUE(torch::equal(a.images, b.images));
    EXPECT_GE(a.images.min().item<float>(), 0.0f);
    EXPECT_LE(a.images.max().item<float>(), 1.0f);

    o.batch = 2;
    auto batch = generate(sd, none, o);
    ASSERT_EQ(batch.images.size(0), 2);
    EXPECT_EQ(batch.seeds, (std::vector<uint64_t>{5, 6}));
    EXPECT_LT(max_abs(batch.images[0], a.images[0]), 1e-5);
    o.batch = 1;
    o.seed = 6;
    auto single = generate(sd, none, o);
    EXPECT_LT(max_abs(batch.images[1], single.images[0]), 1e-5);
    EXPECT_GT(max_abs(batch.images[0], batch.images[1]), 1e-3);  // seeds differ
  }
}

TEST(Generate, ParametersFollowA1111) {
  auto sd = tiny();
  ExtraTokens none;
  auto o = small("a cat", 42);
  o.batch = 2;
  o.cfg = 7;
  auto r = generate(sd, none, o);
  ASSERT_EQ(r.image_parameters.size(), 2u);
  EXPECT_EQ(r.parameters, r.image_parameters[0]);
  EXPECT_EQ(r.image_parameters[1].rfind("a cat\nNegative prompt: blurry\nSteps: 2, Sampler: DDIM, "
                                        "CFG scale: 7, Seed: 43, Size: 32x32, Model hash: " +
                                            sd.fingerprint,
                                        0),
            0u)
      << r.image_parameters[1];
  EXPECT_FALSE(r.truncated);
}

TEST(Generate, LongPromptIsTruncatedAndFlagged) {
  auto sd = tiny();
  ExtraTokens none;
  std::string longp;
  for (int i = 0; i < 90; ++i) longp += "cat ";
  auto o = small(longp);
  o.steps = 1;
  EXPECT_TRUE(generate(sd, none, o).truncated);
  o.prompt = "cat";
  o.negative_prompt = longp;
  EXPECT_TRUE(generate(sd, none, o).truncated);
}

TEST(Generate, ValidationNamesTheOption) {
  auto bad = [](auto edit, const char* option) {
    GenerateOptions o;
    edit(o);
    EXPECT_TINV_ERROR(validate(o), option);
  };
  bad([](GenerateOptions& o) { o.sampler = "k_lms"; }, "--sampler: unknown sampler 'k_lms'");
  bad([](GenerateOptions& o) { o.steps = 0; }, "--steps");
  bad([](GenerateOptions& o) { o.cfg = std::numeric_limits<double>::quiet_NaN(); }, "--cfg");
  bad([](GenerateOptions& o) { o.cfg = std::numeric_limits<double>::infinity(); }, "--cfg");
  bad([](GenerateOptions& o) { o.cfg = -1; }, "--cfg");
  bad([](GenerateOptions& o) { o.eta = -0.5; }, "--eta");
  bad([](GenerateOptions& o) { o.width = 100; }, "--width");
  bad([](GenerateOptions& o) { o.height = -8; }, "--height");
  bad([](GenerateOptions& o) { o.batch = 0; }, "--batch");
  GenerateOptions ok;
  EXPECT_NO_THROW(validate(ok));
}

// Writes `trigger`'s vectors in `format` ("diffusers", "a1111", "kohya", "bin") and returns the
// path; A1111 and kohya take the trigger from the file stem.
std::string write_embedding(const test::TempDir& dir, const std::string& format, const std::string& trigger,
                            const torch::Tensor& v) {
  if (format == "bin") {
    std::string path = dir.file("learned_embeds.bin");
    save_torch_file(path, PickleValue::make_dict({{trigger, PickleValue(v[0].clone())}}));
    return path;
  }
  if (format == "diffusers") {
    std::string path = dir.file("learned_embeds.safetensors");
    save_embedding(path, EmbeddingFormat::Diffusers, trigger, v);
    return path;
  }
  std::string path = dir.file(trigger + (format == "a1111" ? ".pt" : ".safetensors"));
  save_embedding(path, parse_embedding_format(format), trigger, v);
  return path;
}

TEST(Generate, EmbeddingsOfEveryFormatChangeOnlyPromptsUsingTheirTrigger) {
  auto plain = tiny();
  ExtraTokens none;
  auto with_trigger = small("a photo of <toy>");
  auto without = small("a photo of a dog");
  const auto ref_trigger = generate(plain, none, with_trigger).images;
  const auto ref_without = generate(plain, none, without).images;
  for (const std::string format : {"diffusers", "bin", "a1111", "kohya"}) {
    SCOPED_TRACE(format);
    test::TempDir dir;
    torch::manual_seed(3);
    auto v = format == "bin" ? torch::randn({1, 32}) : torch::randn({2, 32});
    // A1111 and kohya files are named after their trigger: "<toy>" is not a file name.
    std::string trigger = format == "a1111" || format == "kohya" ? "cat-toy" : "<toy>";
    auto path = write_embedding(dir, format, trigger, v);
    auto sd = tiny();
    auto extra = add_embeddings(sd, {path});
    ASSERT_EQ(extra.size(), v.size(0));
    auto o = with_trigger;
    o.prompt = "a photo of " + trigger;
    auto r = generate(sd, extra, o);
    auto base = trigger == "cat-toy" ? generate(plain, none, o).images : ref_trigger;
    EXPECT_GT(max_abs(r.images, base), 1e-3);
    EXPECT_NE(r.parameters.find("TI hashes: \"" + trigger + ": "), std::string::npos) << r.parameters;
    auto r2 = generate(sd, extra, without);
    EXPECT_TRUE(torch::equal(r2.images, ref_without));
    EXPECT_EQ(r2.parameters.find("TI hashes"), std::string::npos);
  }
}

TEST(Generate, RefusesMismatchedMissingAndCorruptEmbeddings) {
  test::TempDir dir;
  save_embedding(dir.file("wide.safetensors"), EmbeddingFormat::Kohya, "wide", torch::randn({2, 48}));
  save_safetensors(dir.file("sdxl.safetensors"),
                   {{"clip_l", torch::randn({2, 32})}, {"clip_g", torch::randn({2, 64})}});
  {
    std::ofstream f(dir.file("corrupt.pt"));
    f << "not a zip";
  }
  auto sd = tiny();
  EXPECT_TINV_ERROR(add_embeddings(sd, {dir.file("wide.safetensors")}), "wide.safetensors");
  EXPECT_TINV_ERROR(add_embeddings(sd, {dir.file("sdxl.safetensors")}), "sdxl.safetensors");
  EXPECT_TINV_ERROR(add_embeddings(sd, {dir.file("missing.pt")}), "missing.pt");
  EXPECT_TINV_ERROR(add_embeddings(sd, {dir.file("corrupt.pt")}), "corrupt.pt");
}

// ---- CLI ----------------------------------------------------------------------------------
using test::quote;

test::CliResult run_cmd(const std::string& args, const test::TempDir& dir) {
  return test::run_tinv("generate --model " + quote(test::fixture("tiny-sd15/model")) + " " + args, dir);
}

int count_pngs(const std::string& dir) {
  int n = 0;
  if (!std::filesystem::exists(dir)) return 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.path().extension() == ".png" || e.path().string().find(".tmp") != std::string::npos) ++n;
  return n;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(GenerateCli, WritesImagesWithParametersAndAGrid) {
  test::TempDir dir;
  std::string out = dir.file("out/nested");
  auto r = run_cmd("--prompt 'a cat' --steps 2 --seed 9 --batch 2 --sampler euler --quiet --out " + quote(out), dir);
  ASSERT_EQ(r.status, 0) << (r.err_lines.empty() ? "" : r.err_lines[0]);
  for (const char* name : {"9-0.png", "9-1.png", "9-grid.png"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + name)) << name;
  std::string png = read_all(out + "/9-1.png");
  auto at = png.find(std::string("tEXtparameters\0", 15));
  ASSERT_NE(at, std::string::npos);
  EXPECT_NE(png.find("a cat\nSteps: 2, Sampler: Euler, CFG scale: 7.5, Seed: 10, Size: 32x32", at), std::string::npos);
}

TEST(GenerateCli, BadInputIsOneLineAndWritesNothing) {
  test::TempDir dir;
  save_embedding(dir.file("wide.safetensors"), EmbeddingFormat::Kohya, "wide", torch::randn({2, 48}));
  {
    std::ofstream f(dir.file("corrupt.pt"));
    f << "PK\x03\x04 truncated";
    std::ofstream g(dir.file("file"));
    g << "x";
  }
  const std::string out = " --out " + quote(dir.file("out"));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--prompt x --sampler k_lms" + out, "--sampler"},
      {"--prompt x --steps 0" + out, "--steps"},
      {"--prompt x --cfg nan" + out, "--cfg"},
      {"--prompt x --cfg -1" + out, "--cfg"},
      {"--prompt x --width 100" + out, "--width"},
      {"--prompt x --steps abc" + out, "--steps"},
      {"--prompt x --dtype fp16 --device cpu" + out, "--dtype"},
      {"--prompt x --embedding " + quote(dir.file("wide.safetensors")) + out, "wide.safetensors"},
      {"--prompt x --embedding " + quote(dir.file("missing.pt")) + out, "missing.pt"},
      {"--prompt x --embedding " + quote(dir.file("corrupt.pt")) + out, "corrupt.pt"},
      {"--prompt x --out " + quote(dir.file("file") + "/sub"), "--out"},
  };
  for (const auto& [args, needle] : cases) {
    SCOPED_TRACE(args);
    auto r = run_cmd(args + (args.find("--steps") == std::string::npos ? " --steps 1" : "") + " --quiet", dir);
    EXPECT_NE(r.status, 0);
    ASSERT_EQ(r.err_lines.size(), 1u);
    EXPECT_EQ(r.err_lines[0].rfind("tinv: error:", 0), 0u) << r.err_lines[0];
    EXPECT_NE(r.err_lines[0].find(needle), std::string::npos) << r.err_lines[0];
    EXPECT_EQ(count_pngs(dir.file("out")), 0);
  }
}

}  // namespace
}  // namespace tinv
