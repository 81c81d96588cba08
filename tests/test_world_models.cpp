// Smoke check of the shipped world models (models/world-sd, models/world-blip): they load, are
// fp16 and small, the captioner reads held-out scenes, and generation produces images the
// captioner recognises. Thresholds sit well below the measured quality (docs/WORLD.md) so the
// test catches broken or untrained weights, not noise.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/demo.h"
#include "apps/world_eval.h"
#include "common/fs.h"
#include "io/image_tensor.h"
#include "io/safetensors.h"
#include "pipelines/caption.h"
#include "pipelines/generate.h"
#include "test_util.h"
#include "world/world.h"

namespace tinv::world {
namespace {

const std::string kSd = std::string(TINV_SOURCE_DIR) + "/models/world-sd";
const std::string kBlip = std::string(TINV_SOURCE_DIR) + "/models/world-blip";

CaptionOptions fast() { return world_caption_options(); }

TEST(WorldModels, AreSmallFp16Files) {
  uintmax_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(std::string(TINV_SOURCE_DIR) + "/models")) {
    if (!e.is_regular_file()) continue;
    total += e.file_size();
    if (e.path().extension() != ".safetensors") continue;
    const SafeTensors file = SafeTensors::open(e.path().string());
    for (const auto& [name, info] : file.infos()) EXPECT_EQ(info.dtype, "F16") << e.path() << " " << name;
  }
  EXPECT_LT(total, 50u * 1024 * 1024);
}

TEST(WorldModels, BlipVocabularyAgreesWithItsConfig) {
  // Every id of the text model has a vocabulary line, and bos_token_id is [DEC]: transformers'
  // BlipProcessor then decodes tinv's captions without a leading [UNK].
  auto config = nlohmann::json::parse(read_text_file(kBlip + "/config.json"));
  std::vector<std::string> vocab;
  std::istringstream in(read_text_file(kBlip + "/vocab.txt"));
  for (std::string line; std::getline(in, line);) vocab.push_back(line);
  const auto& text = config.at("text_config");
  ASSERT_EQ(static_cast<int64_t>(vocab.size()), text.at("vocab_size").get<int64_t>());
  EXPECT_EQ(vocab.at(text.at("bos_token_id").get<size_t>()), "[DEC]");
  EXPECT_EQ(vocab.at(text.at("sep_token_id").get<size_t>()), "[SEP]");
  EXPECT_EQ(vocab.at(text.at("pad_token_id").get<size_t>()), "[PAD]");
  auto tok = nlohmann::json::parse(read_text_file(kBlip + "/tokenizer_config.json"));
  EXPECT_EQ(tok.at("bos_token"), "[DEC]");
}

TEST(WorldModels, CaptionerReadsHeldOutScenes) {
  BlipCaptioner cap = BlipCaptioner::load(kBlip);
  int parsed = 0, shapes = 0, colours = 0, positions = 0, backgrounds = 0, marks = 0;
  const int n = 24;
  for (int i = 0; i < n; ++i) {
    Sample s = sample_at(7, Split::kHeldOut, static_cast<uint64_t>(i));
    auto got = parse_caption(cap.caption(s.image, fast()).text);
    if (!got) continue;
    ++parsed;
    backgrounds += got->background == s.scene.background;
    shapes += got->object.shape == s.scene.object.shape;
    colours += got->object.colour == s.scene.object.colour;
    positions += got->object.position == s.scene.object.position;
    marks += got->object.mark == s.scene.object.mark;
  }
  EXPECT_GE(parsed, n * 9 / 10);
  EXPECT_GE(backgrounds, n * 9 / 10);
  EXPECT_GE(colours, n * 8 / 10);
  EXPECT_GE(positions, n * 8 / 10);
  EXPECT_GE(shapes, n * 8 / 10);
  EXPECT_GE(marks, n * 8 / 10);
}

TEST(WorldModels, GeneratesWorldImagesThatFollowThePrompt) {
  // docs/WORLD.md: the denoiser follows the scene-level words (background, number of objects,
  // roughly size and place) but not yet an object's colour or shape. This checks what holds:
  // structured 64x64 images whose caption names the prompt's background and object count.
  StableDiffusion sd = load_stable_diffusion(kSd);
  BlipCaptioner cap = BlipCaptioner::load(kBlip);
  GenerateOptions g;
  g.prompt = "a large yellow square in the center, on a plain blue background";
  g.steps = 20;
  g.cfg = 5;
  g.batch = 4;
  g.progress = false;
  GenerateResult r = generate(sd, {}, g);
  ASSERT_EQ(r.images.sizes(), (std::vector<int64_t>{4, 3, 64, 64}));
  ASSERT_TRUE(torch::isfinite(r.images).all().item<bool>());
  const SceneSpec want = *parse_caption(g.prompt);
  int parsed = 0, backgrounds = 0, colours = 0;
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_GT(r.images[i].std().item<double>(), 0.02) << "image " << i << " is flat";
    const std::string text = cap.caption(unit_tensor_to_image(r.images[i]), fast()).text;
    auto got = parse_caption(text);
    if (!got) continue;
    ++parsed;
    backgrounds += got->background == want.background;
    colours += got->object.colour == want.object.colour;
  }
  EXPECT_GE(parsed, 3);
  EXPECT_GE(backgrounds, 3);
  EXPECT_GE(colours, 3);
}

TEST(WorldModels, DemoRunsEndToEnd) {
  test::TempDir dir;
  DemoOptions o;  // the bundled models and concept, found without any path
  o.steps = 5;
  o.samples = 1;
  o.sample_steps = 5;
  o.out = dir.file("demo");
  o.progress = false;
  DemoResult r = run_demo(o);
  EXPECT_TRUE(file_exists(r.report));
  EXPECT_TRUE(parse_caption(r.caption).has_value()) << r.caption;
  EXPECT_EQ(r.init_from, DemoInit::kObject);
  EXPECT_GE(r.placeholders.size(), 2u);  // colour shape [with a colour mark]
  const std::string cmds = read_text_file(dir.file("demo/commands.sh"));
  EXPECT_NE(cmds.find(" --cfg 3 "), std::string::npos) << cmds;  // world::kModelCfg with the bundled model
}

// The method, visible: 100 steps of caption-initialised inversion on one bundled concept image,
// then new prompts with the learned trigger. The concept judge (world/judge.h) must find the
// concept in those images well above chance (a missing ring or dot scores ~0), and above the
// images of the caption's own words. docs/WORLD.md has the measured figures.
TEST(WorldModels, LearnedConceptComesBackInNewPrompts) {
  test::TempDir dir;
  DemoOptions o;
  o.concept_name = "bullseye_circle";
  o.steps = 100;
  o.samples = 2;
  o.sample_steps = 20;
  o.out = dir.file("demo");
  o.progress = false;
  DemoResult r = run_demo(o);
  ASSERT_FALSE(r.scores.empty()) << "no concept scores: the caption did not parse as a world caption";
  const DemoPromptScore& mean = r.scores.back();
  ASSERT_EQ(mean.tmpl, "mean");
  EXPECT_GE(mean.after_identity, 0.4);
  EXPECT_GT(mean.after_identity, mean.before_identity + 0.15);
  EXPECT_GE(mean.after_context, 0.6);
  // The parts of the after fidelity: each in [0, 1], and the fidelity (a geometric mean of the
  // parts per image) at most their arithmetic mean.
  for (double part : {mean.after_shape, mean.after_body, mean.after_ring, mean.after_dot}) {
    EXPECT_GE(part, 0.0);
    EXPECT_LE(part, 1.0);
  }
  EXPECT_LE(mean.after_identity, (mean.after_shape + mean.after_body + mean.after_ring + mean.after_dot) / 4 + 1e-9);
}

}  // namespace
}  // namespace tinv::world
