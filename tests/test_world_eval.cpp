// `tinv world eval` (apps/world_eval.h): PSNR, attribute scoring on hand-built scenes, BLIP-style
// caption spacing, option checks, the batched generation matching tinv::generate, an end-to-end
// run on the tiny fixtures (random-weight BLIP with the synthetic BERT vocab), and the CLI.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "apps/world_eval.h"
#include "common/fs.h"
#include "models/stable_diffusion.h"
#include "pipelines/generate.h"
#include "test_util.h"

namespace tinv::world {
namespace {

const std::string kSd = test::fixture("tiny-sd15/model");
const std::string kBlip = test::fixture("tiny-blip/model");

int64_t correct(const AttributeScore& s, Attribute a) { return s.correct[static_cast<int>(a)]; }

ObjectSpec object(Shape shape, Colour colour, Size size, Position position, Mark mark = Mark::kNone,
                  Colour mark_colour = Colour::kWhite) {
  return {shape, colour, size, position, mark, mark_colour};
}

SceneSpec scene(ObjectSpec o, Colour bg = Colour::kWhite, Pattern p = Pattern::kPlain) {
  SceneSpec s;
  s.object = o;
  s.background = bg;
  s.background_pattern = p;
  return s;
}

// "a large red star with a yellow ring on the left, on a green checkered background"
SceneSpec ringed_star() {
  return scene(object(Shape::kStar, Colour::kRed, Size::kLarge, Position::kLeft, Mark::kRing, Colour::kYellow),
               Colour::kGreen, Pattern::kCheckered);
}

// Expects the per-attribute correct counts in Attribute order (shape .. exact).
void expect_counts(const AttributeScore& s, std::array<int64_t, kNumAttributes> want) {
  for (int k = 0; k < kNumAttributes; ++k) EXPECT_EQ(s.correct[k], want[k]) << name(static_cast<Attribute>(k));
}

// ---- PSNR ----
TEST(WorldEvalPsnr, KnownValuesAndPerImageMean) {
  auto a = torch::zeros({3, 4, 4});
  EXPECT_NEAR(psnr(a, torch::full({3, 4, 4}, 0.1)), 20.0, 1e-6);   // MSE 0.01
  EXPECT_NEAR(psnr(a, torch::full({3, 4, 4}, 0.01)), 40.0, 1e-6);  // MSE 1e-4
  EXPECT_NEAR(psnr(a, torch::ones({3, 4, 4})), 0.0, 1e-6);
  EXPECT_NEAR(psnr(a, a), 100.0, 1e-6);  // floored MSE

  // A batch: the mean of the per-image dB values, not the PSNR of the pooled MSE.
  auto x = torch::zeros({2, 3, 4, 4});
  auto y = torch::stack({torch::full({3, 4, 4}, 0.1), torch::full({3, 4, 4}, 0.01)});
  auto per = psnr_per_image(x, y);
  ASSERT_EQ(per.sizes(), (std::vector<int64_t>{2}));
  EXPECT_NEAR(per[0].item<double>(), 20.0, 1e-6);
  EXPECT_NEAR(per[1].item<double>(), 40.0, 1e-6);
  EXPECT_NEAR(psnr(x, y), 30.0, 1e-6);
  const double pooled = -10 * std::log10((0.01 + 0.0001) / 2);
  EXPECT_GT(std::abs(psnr(x, y) - pooled), 1.0);

  // Half the pixels off by 0.2: MSE 0.02.
  auto b = torch::zeros({1, 3, 2, 2});
  b.index_put_({0, torch::indexing::Slice(), 0}, 0.2);
  EXPECT_NEAR(psnr(torch::zeros({1, 3, 2, 2}), b), -10 * std::log10(0.02), 1e-6);
}

TEST(WorldEvalPsnr, BadShapesAreErrors) {
  EXPECT_TINV_ERROR(psnr(torch::zeros({3, 4, 4}), torch::zeros({3, 4, 5})), "same shape");
  EXPECT_TINV_ERROR(psnr(torch::zeros({4, 4}), torch::zeros({4, 4})), "[C, H, W]");
  EXPECT_TINV_ERROR(psnr(torch::zeros({0, 3, 4, 4}), torch::zeros({0, 3, 4, 4})), "empty");
}

// ---- Scoring ----
TEST(WorldEvalScore, ExactMatchIsRightOnEverything) {
  SceneSpec t = ringed_star();
  AttributeScore s = score_scene(t, t);
  EXPECT_EQ(s.scenes, 1);
  EXPECT_EQ(s.parsed, 1);
  expect_counts(s, {1, 1, 1, 1, 1, 1, 1, 1, 1});
  for (int k = 0; k < kNumAttributes; ++k) EXPECT_EQ(s.accuracy(static_cast<Attribute>(k)), 1.0);
  EXPECT_EQ(s.mean_accuracy(), 1.0);
}

TEST(WorldEvalScore, FailedParseIsWrongOnEverythingButCounted) {
  AttributeScore s = score_scene(std::nullopt, ringed_star());
  EXPECT_EQ(s.scenes, 1);
  EXPECT_EQ(s.parsed, 0);
  expect_counts(s, {0, 0, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_EQ(s.total(Attribute::kShape), 1);
  EXPECT_EQ(s.mean_accuracy(), 0.0);
  s = score_caption("a picture of a dog", ringed_star());
  EXPECT_EQ(s.parsed, 0);
  expect_counts(s, {0, 0, 0, 0, 0, 0, 0, 0, 0});
}

TEST(WorldEvalScore, EachAttributeIsScoredOnItsOwn) {
  const SceneSpec t = ringed_star();
  struct Case {
    const char* what;
    std::function<void(SceneSpec&)> change;
    std::array<int64_t, kNumAttributes> want;
  };
  const std::vector<Case> cases = {
      {"shape", [](SceneSpec& p) { p.object.shape = Shape::kHeart; }, {0, 1, 1, 1, 1, 1, 1, 1, 0}},
      {"colour", [](SceneSpec& p) { p.object.colour = Colour::kBlue; }, {1, 0, 1, 1, 1, 1, 1, 1, 0}},
      {"size", [](SceneSpec& p) { p.object.size = Size::kSmall; }, {1, 1, 0, 1, 1, 1, 1, 1, 0}},
      {"position", [](SceneSpec& p) { p.object.position = Position::kTop; }, {1, 1, 1, 0, 1, 1, 1, 1, 0}},
      // A dot of the ring's colour: the mark is wrong, its colour right.
      {"mark", [](SceneSpec& p) { p.object.mark = Mark::kDot; }, {1, 1, 1, 1, 0, 1, 1, 1, 0}},
      {"mark colour", [](SceneSpec& p) { p.object.mark_colour = Colour::kBlack; }, {1, 1, 1, 1, 1, 0, 1, 1, 0}},
      // No mark at all: both the mark and its colour are wrong.
      {"no mark", [](SceneSpec& p) { p.object.mark = Mark::kNone; }, {1, 1, 1, 1, 0, 0, 1, 1, 0}},
      {"background", [](SceneSpec& p) { p.background = Colour::kCyan; }, {1, 1, 1, 1, 1, 1, 0, 1, 0}},
      {"pattern", [](SceneSpec& p) { p.background_pattern = Pattern::kPlain; }, {1, 1, 1, 1, 1, 1, 1, 0, 0}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    SceneSpec p = t;
    c.change(p);
    expect_counts(score_scene(p, t), c.want);
  }
}

TEST(WorldEvalScore, MarkColourOfUnmarkedObjectsIsIgnored) {
  SceneSpec t = scene(object(Shape::kCircle, Colour::kRed, Size::kSmall, Position::kCenter));
  SceneSpec p = t;
  p.object.mark_colour = Colour::kBlack;  // no mark: the colour field carries nothing
  expect_counts(score_scene(p, t), {1, 1, 1, 1, 1, 1, 1, 1, 1});
  p.object.mark = Mark::kRing;  // a mark the truth does not have
  expect_counts(score_scene(p, t), {1, 1, 1, 1, 0, 0, 1, 1, 0});
}

TEST(WorldEvalScore, ScoresAddUp) {
  const SceneSpec t1 = ringed_star();
  const SceneSpec t2 = scene(object(Shape::kHeart, Colour::kYellow, Size::kSmall, Position::kCenter));
  AttributeScore total;
  total += score_scene(t1, t1);
  total += score_scene(std::nullopt, t2);
  SceneSpec p = t2;
  p.background = Colour::kBlack;
  total += score_scene(p, t2);
  EXPECT_EQ(total.scenes, 3);
  EXPECT_EQ(total.parsed, 2);
  expect_counts(total, {2, 2, 2, 2, 2, 2, 1, 2, 1});
  EXPECT_NEAR(total.accuracy(Attribute::kShape), 2.0 / 3, 1e-12);
  EXPECT_NEAR(total.accuracy(Attribute::kBackground), 1.0 / 3, 1e-12);
  EXPECT_NEAR(total.accuracy(Attribute::kExact), 1.0 / 3, 1e-12);
  const double mean = (2.0 / 3 * 7 + 1.0 / 3) / 8;  // exact excluded
  EXPECT_NEAR(total.mean_accuracy(), mean, 1e-12);
  EXPECT_EQ(AttributeScore{}.accuracy(Attribute::kShape), 0.0);
}

TEST(WorldEvalScore, AttributeNames) {
  EXPECT_STREQ(name(Attribute::kShape), "shape");
  EXPECT_STREQ(name(Attribute::kMarkColour), "mark_colour");
  EXPECT_STREQ(name(Attribute::kExact), "exact");
}

// ---- Captions as BLIP writes them ----
TEST(WorldEvalCaption, BlipSpacingParses) {
  const SceneSpec t = scene(object(Shape::kCircle, Colour::kRed, Size::kSmall, Position::kCenter));
  ASSERT_EQ(caption(t), "a small red circle in the center, on a plain white background");
  // parse_caption itself splits the comma off (whitespace is free) ...
  auto direct = parse_caption("a small red circle in the center , on a plain white background");
  ASSERT_TRUE(direct.has_value());
  EXPECT_EQ(*direct, t);
  // ... and normalise_caption removes it anyway, with case, runs of spaces and a final period.
  EXPECT_EQ(normalise_caption("  A small red circle in the center , on a plain  white\tbackground . "),
            "a small red circle in the center, on a plain white background");
  for (const char* text : {"a small red circle in the center , on a plain white background",
                           "a small red circle in the center ,on a plain white background",
                           "A Small Red Circle In The Center, On A Plain White Background.",
                           "a small red circle in the center, on a plain white background"}) {
    SCOPED_TRACE(text);
    expect_counts(score_caption(text, t), {1, 1, 1, 1, 1, 1, 1, 1, 1});
  }
  // Every held-out caption survives a BLIP-style round trip (each ',' spaced as a token).
  for (uint64_t i = 0; i < 200; ++i) {
    const SceneSpec s = scene_at(3, Split::kHeldOut, i);
    std::string spaced;
    for (char c : caption(s)) spaced += c == ',' ? std::string(" ,") : std::string(1, c);
    EXPECT_EQ(score_caption(spaced, s).correct[static_cast<int>(Attribute::kExact)], 1) << spaced;
  }
}

// ---- Options ----
TEST(WorldEvalOptions, Parts) {
  EvalParts p = parse_parts("vae");
  EXPECT_TRUE(p.vae && !p.captioner && !p.fidelity);
  p = parse_parts("fidelity, captioner");
  EXPECT_TRUE(!p.vae && p.captioner && p.fidelity);
  EXPECT_FALSE(p.judge);
  p = parse_parts("judge");
  EXPECT_TRUE(!p.vae && !p.captioner && !p.fidelity && p.judge);
  p = parse_parts("all");
  EXPECT_TRUE(p.vae && p.captioner && p.fidelity && p.judge);
  EXPECT_TINV_ERROR(parse_parts("vae,psnr"), "--only: unknown part 'psnr'");
  EXPECT_TINV_ERROR(parse_parts(""), "--only");
  EXPECT_TINV_ERROR(parse_parts("vae,"), "--only");
  EXPECT_TINV_ERROR(parse_parts("vae,,fidelity"), "--only: unknown part ''");
}

TEST(WorldEvalOptions, ValidationNamesTheOption) {
  auto bad = [](std::function<void(EvalOptions&)> change, const char* needle) {
    EvalOptions o;
    change(o);
    EXPECT_TINV_ERROR(o.validate(), needle);
    EXPECT_TINV_ERROR(run_world_eval(o), needle);  // before looking for the models
  };
  bad([](EvalOptions& o) { o.vae_scenes = 0; }, "--vae-scenes");
  bad([](EvalOptions& o) { o.rules.unnamed_dot = -0.5; }, "--unnamed-dot");
  bad([](EvalOptions& o) { o.caption_scenes = -1; }, "--caption-scenes");
  bad([](EvalOptions& o) { o.fidelity_prompts = 0; }, "--fidelity-prompts");
  bad([](EvalOptions& o) { o.batch = 0; }, "--batch");
  bad([](EvalOptions& o) { o.batch = 65; }, "--batch");
  bad([](EvalOptions& o) { o.steps = 0; }, "--steps");
  bad([](EvalOptions& o) { o.cfg = std::nan(""); }, "--cfg");
  bad([](EvalOptions& o) { o.sampler = "k_lms"; }, "--sampler");
  bad([](EvalOptions& o) { o.parts = EvalParts{false, false, false, false}; }, "--only");
  bad([](EvalOptions& o) { o.judge_renders = 0; }, "--judge-renders");
  EvalOptions o;  // the count of a part not run is not checked
  o.parts = parse_parts("fidelity");
  o.vae_scenes = 0;
  o.caption_scenes = 0;
  EXPECT_NO_THROW(o.validate());
}

TEST(WorldEvalOptions, MissingFoldersNameTheOption) {
  EvalOptions o;
  o.device = torch::Device(torch::kCPU);
  o.sd_dir = "/nonexistent/world-sd";
  o.blip_dir = kBlip;
  EXPECT_TINV_ERROR(run_world_eval(o), "--model: no such folder: '/nonexistent/world-sd'");
  o.parts = parse_parts("captioner");  // the SD folder is not needed
  o.blip_dir = "/nonexistent/world-blip";
  EXPECT_TINV_ERROR(run_world_eval(o), "--captioner: no such folder");
  o.blip_dir = kBlip;  // no vocab.txt: ids only, cannot be parsed
  EXPECT_TINV_ERROR(run_world_eval(o), "vocab.txt: missing");
}

// ---- Generation ----
TEST(WorldEvalGenerate, BatchedPromptsMatchSingleGenerateRuns) {
  torch::set_num_threads(1);
  StableDiffusion sd = load_stable_diffusion(kSd);
  GenerateOptions g;
  g.sampler = "ddim";
  g.steps = 2;
  g.cfg = 5;
  g.progress = false;
  const std::vector<std::string> prompts = {"a small red circle in the center, on a plain white background",
                                            "a large blue star on the left, on a green dotted background"};
  auto batch = generate_prompts(sd, prompts, {7, 8}, g);
  ASSERT_EQ(batch.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  ExtraTokens none;
  for (int i = 0; i < 2; ++i) {
    GenerateOptions one = g;
    one.prompt = prompts[i];
    one.seed = 7 + i;
    auto single = generate(sd, none, one).images;  // [1, 3, 32, 32]
    EXPECT_LT((batch[i] - single[0]).abs().max().item<double>(), 1e-5) << i;
  }
  EXPECT_TINV_ERROR(generate_prompts(sd, prompts, {7}, g), "one seed per prompt");
}

// ---- End to end on the tiny fixtures ----

// A BLIP folder: the tiny fixture's weights plus the synthetic BERT vocab (random captions).
void blip_with_vocab(const test::TempDir& dir) {
  for (const char* f : {"config.json", "model.safetensors", "preprocessor_config.json"})
    ASSERT_EQ(::symlink((kBlip + "/" + f).c_str(), dir.file(f).c_str()), 0);
  test::write_bert_test_vocab(dir.file("vocab.txt"));
}

EvalOptions tiny_options(const test::TempDir& dir) {
  EvalOptions o;
  o.sd_dir = kSd;
  o.blip_dir = dir.path();
  o.device = torch::Device(torch::kCPU);
  o.vae_scenes = 5;
  o.caption_scenes = 3;
  o.fidelity_prompts = 3;
  o.judge_renders = 2;
  o.steps = 2;
  o.batch = 2;  // several batches, the last one partial
  o.progress = false;
  return o;
}

TEST(WorldEvalRun, TinyModelsEndToEnd) {
  torch::set_num_threads(1);
  test::TempDir dir;
  blip_with_vocab(dir);
  EvalOptions o = tiny_options(dir);
  EvalReport r = run_world_eval(o);

  ASSERT_TRUE(r.vae.has_value());
  EXPECT_EQ(r.vae->scenes, 5);
  EXPECT_EQ(r.vae->image_size, 32);  // the VAE's sample_size
  EXPECT_TRUE(std::isfinite(r.vae->psnr_db));
  EXPECT_GT(r.vae->psnr_db, 0.0);
  EXPECT_LE(r.vae->min_psnr_db, r.vae->psnr_db);

  for (const auto* e : {&*r.captioner, &*r.fidelity}) {
    EXPECT_EQ(e->score.scenes, 3);
    EXPECT_EQ(e->score.parsed, 0);  // random weights write "w123 w456 ..."
    EXPECT_EQ(e->score.mean_accuracy(), 0.0);
    EXPECT_FALSE(e->pass());
    ASSERT_EQ(e->failures.size(), 3u);
    EXPECT_EQ(e->failures[1].index, 1);
    EXPECT_EQ(e->failures[1].truth, caption(scene_at(0, Split::kHeldOut, 1, bundled_rules())));
    EXPECT_FALSE(e->failures[1].parsed);
  }
  EXPECT_EQ(r.captioner->target, kCaptionerTarget);
  EXPECT_EQ(r.fidelity->target, kFidelityTarget);
  // Captions depend only on the rendered scene: the same text again.
  EvalOptions again = o;
  again.parts = parse_parts("captioner");
  EvalReport r2 = run_world_eval(again);
  EXPECT_FALSE(r2.vae || r2.fidelity);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r2.captioner->failures[i].predicted, r.captioner->failures[i].predicted);
  // The train split scores unseen scenes of the training distribution, not the training scenes.
  again.split = Split::kTrain;
  EvalReport r3 = run_world_eval(again);
  EXPECT_EQ(r3.captioner->failures[1].truth, caption(scene_at(0, Split::kTrain, kUnseenIndex + 1, bundled_rules())));
  EXPECT_NE(r3.captioner->failures[1].truth, caption(scene_at(0, Split::kTrain, 1, bundled_rules())));
  EXPECT_EQ(nlohmann::json::parse(report_json(r3))["options"]["split"], "train");
  EXPECT_NE(format_report(r3).find("unseen scenes of the training distribution"), std::string::npos);
  EXPECT_EQ(eval_scene_index(Split::kHeldOut, 7), 7u);

  ASSERT_TRUE(r.judge.has_value());
  EXPECT_EQ(r.judge->rows.size(), concepts().size());
  EXPECT_TRUE(r.judge->pass());
  const std::string table = format_report(r);
  for (const char* needle : {"PSNR", "captioner", "prompt fidelity", "concept judge", "bullseye_circle",
                             "target  95.0%", "target  90.0%", "FAIL", "exact", "(no target)", "mean"})
    EXPECT_NE(table.find(needle), std::string::npos) << needle << "\n" << table;
  auto j = nlohmann::json::parse(report_json(r));
  EXPECT_EQ(j["options"]["vae_scenes"], 5);
  EXPECT_EQ(j["vae"]["image_size"], 32);
  EXPECT_EQ(j["captioner"]["attributes"]["shape"]["total"], r.captioner->score.scenes);
  EXPECT_EQ(j["fidelity"]["attributes"]["mark"]["pass"], false);
  EXPECT_FALSE(j["fidelity"]["attributes"]["exact"].contains("pass"));
  EXPECT_EQ(j["fidelity"]["failures"].size(), 3u);
}

// ---- CLI ----
using test::quote;

test::CliResult run_cmd(const std::string& args, const test::TempDir& dir) {
  return test::run_tinv("world eval " + args, dir);
}

TEST(WorldEvalCli, PrintsTheTableAndWritesJson) {
  test::TempDir dir;
  blip_with_vocab(dir);
  const std::string json = dir.file("report.json");
  auto r =
      run_cmd("--model " + quote(kSd) + " --captioner " + quote(dir.path()) +
                  " --device cpu --only vae,captioner --vae-scenes 2 --caption-scenes 2 --quiet --json " + quote(json),
              dir);
  ASSERT_EQ(r.status, 0) << (r.err_lines.empty() ? "" : r.err_lines[0]);
  EXPECT_NE(r.out.find("PSNR"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("target  95.0%"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("prompt fidelity"), std::string::npos) << r.out;
  auto j = nlohmann::json::parse(read_text_file(json));
  EXPECT_EQ(j["captioner"]["scenes"], 2);
  EXPECT_FALSE(j.contains("fidelity"));
}

TEST(WorldEvalCli, BadInputIsOneLine) {
  test::TempDir dir;
  blip_with_vocab(dir);
  const std::string models = " --model " + quote(kSd) + " --captioner " + quote(dir.path()) + " --quiet";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--model /nonexistent/sd --captioner " + quote(dir.path()), "--model: no such folder"},
      {"--model " + quote(kSd) + " --captioner /nonexistent/blip", "--captioner: no such folder"},
      {"--captioner " + quote(kBlip) + " --only captioner", "vocab.txt"},
      {models + " --only psnr", "--only"},
      {models + " --steps 0", "--steps"},
      {models + " --seed abc", "--seed"},
      {models + " --json " + quote(dir.file("missing/r.json")), "--json"},
  };
  for (const auto& [args, needle] : cases) {
    SCOPED_TRACE(args);
    auto r = run_cmd(args + " --device cpu", dir);
    EXPECT_NE(r.status, 0);
    ASSERT_EQ(r.err_lines.size(), 1u);
    EXPECT_EQ(r.err_lines[0].rfind("tinv: error:", 0), 0u) << r.err_lines[0];
    EXPECT_NE(r.err_lines[0].find(needle), std::string::npos) << r.err_lines[0];
  }
}

}  // namespace
}  // namespace tinv::world
