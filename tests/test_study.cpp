// `tinv study` (apps/study.h): steps-to-reach and the table built on it, the CSV schema,
// aggregation and smoothing, option validation, the world-specific initialisation and edit
// prompts, a tiny end-to-end run on the fixtures (tiny-sd15, random BLIP
// with the synthetic BERT vocab; explicit captions) and the CLI.
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "apps/study.h"
#include "apps/world_eval.h"
#include "common/fs.h"
#include "inversion/templates.h"
#include "io/image_tensor.h"
#include "io/image_write.h"
#include "test_util.h"

namespace tinv {
namespace {

const std::string kSd = test::fixture("tiny-sd15/model");
const std::string kBlip = test::fixture("tiny-blip/model");

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// ---- steps to reach ----
TEST(StudyReach, FirstStepAtOrBelowTheTarget) {
  const std::vector<std::pair<int64_t, double>> curve = {{0, 1.0}, {5, 0.8}, {10, 0.5}, {15, 0.6}, {20, 0.4}};
  EXPECT_EQ(steps_to_reach(curve, 2.0), 0);
  EXPECT_EQ(steps_to_reach(curve, 0.8), 5);    // equal counts as reached
  EXPECT_EQ(steps_to_reach(curve, 0.55), 10);  // first time, not the last
  EXPECT_EQ(steps_to_reach(curve, 0.4), 20);
  EXPECT_EQ(steps_to_reach(curve, 0.39), -1);
  EXPECT_EQ(steps_to_reach({}, 1.0), -1);
  EXPECT_EQ(steps_to_reach({{0, NAN}, {1, INFINITY}, {2, 0.1}}, 0.5), 2);  // non-finite skipped
}

void add_curve(std::vector<StudyRecord>& r, const std::string& concept, const std::string& mode, int64_t seed,
               const std::vector<double>& values) {
  for (size_t k = 0; k < values.size(); ++k)
    r.push_back({concept, mode, seed, static_cast<int64_t>(k) * 10, "fixed_loss", values[k]});
}

TEST(StudyReach, TablePairsRunsWithTheTokenRunOfTheSameConceptAndSeed) {
  std::vector<StudyRecord> r;
  // Concept a, seed 0: token ends at 0.5; caption reaches it at step 10, class at 30.
  add_curve(r, "a", "token", 0, {1.0, 0.9, 0.7, 0.5});
  add_curve(r, "a", "caption", 0, {0.8, 0.5, 0.4, 0.3});
  add_curve(r, "a", "class", 0, {0.9, 0.8, 0.6, 0.45});
  // Concept a, seed 1: token ends at 0.2; caption reaches it at 20, class never.
  add_curve(r, "a", "token", 1, {1.0, 0.6, 0.4, 0.2});
  add_curve(r, "a", "caption", 1, {0.7, 0.3, 0.2, 0.1});
  add_curve(r, "a", "class", 1, {0.9, 0.8, 0.6, 0.3});
  // Concept b, seed 0: no token run -> not paired.
  add_curve(r, "b", "caption", 0, {0.1, 0.1});
  // Other metrics are ignored.
  r.push_back({"a", "caption", 0, 0, "loss", 100.0});

  auto rows = reach_table(r, {"caption", "class", "token"});
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].mode, "caption");
  EXPECT_EQ(rows[0].runs, 2);
  EXPECT_EQ(rows[0].reached, 2);
  EXPECT_DOUBLE_EQ(rows[0].mean_steps, 15.0);
  EXPECT_DOUBLE_EQ(rows[0].mean_target, 0.35);
  EXPECT_DOUBLE_EQ(rows[0].mean_final, 0.2);
  EXPECT_EQ(format_reach(rows[0]), "15.0");
  EXPECT_EQ(rows[1].runs, 2);
  EXPECT_EQ(rows[1].reached, 1);
  EXPECT_DOUBLE_EQ(rows[1].mean_steps, 30.0);
  EXPECT_EQ(format_reach(rows[1]), "30.0 (1/2 runs)");
  EXPECT_EQ(rows[2].mode, "token");  // the reference reaches its own final value at the end or before
  EXPECT_EQ(rows[2].reached, 2);
  EXPECT_DOUBLE_EQ(rows[2].mean_steps, 30.0);

  std::vector<StudyRecord> never;
  add_curve(never, "a", "token", 0, {1.0, 0.1});
  add_curve(never, "a", "class", 0, {1.0, 0.9});
  auto n = reach_table(never, {"class"});
  EXPECT_EQ(n[0].reached, 0);
  EXPECT_TRUE(std::isnan(n[0].mean_steps));
  EXPECT_EQ(format_reach(n[0]), "not reached");
  EXPECT_EQ(format_reach(reach_table(never, {"caption"})[0]), "no runs");
}

// ---- records ----
TEST(StudyReach, FidelityThresholdsPerMode) {
  // caption: seed 0 reaches 0.5 at step 25 and 0.7 at 50; seed 1 reaches 0.5 at 50, never 0.7.
  // token: reaches neither. Other metrics and concepts' records are ignored.
  std::vector<StudyRecord> r = {{"a", "caption", 0, 0, "fidelity", 0.1},   {"a", "caption", 0, 25, "fidelity", 0.55},
                                {"a", "caption", 0, 50, "fidelity", 0.75}, {"a", "caption", 0, 100, "fidelity", 0.6},
                                {"a", "caption", 1, 50, "fidelity", 0.52}, {"a", "caption", 1, 0, "fidelity", 0.2},
                                {"a", "token", 0, 0, "fidelity", 0.0},     {"a", "token", 0, 100, "fidelity", 0.3},
                                {"a", "token", 0, 100, "context", 0.9},    {"a", "class", 0, 100, "recon_psnr", 20}};
  auto half = fidelity_reach_table(r, {"caption", "class", "token"}, 0.5);
  ASSERT_EQ(half.size(), 2u);  // class has no fidelity records
  EXPECT_EQ(half[0].mode, "caption");
  EXPECT_EQ(half[0].runs, 2);
  EXPECT_EQ(half[0].reached, 2);
  EXPECT_DOUBLE_EQ(half[0].mean_steps, (25 + 50) / 2.0);
  EXPECT_DOUBLE_EQ(half[0].best, (0.75 + 0.52) / 2);
  EXPECT_EQ(half[1].mode, "token");
  EXPECT_EQ(half[1].reached, 0);
  EXPECT_TRUE(std::isnan(half[1].mean_steps));
  auto high = fidelity_reach_table(r, {"caption"}, 0.7);
  ASSERT_EQ(high.size(), 1u);
  EXPECT_EQ(high[0].reached, 1);
  EXPECT_DOUBLE_EQ(high[0].mean_steps, 50);
}

TEST(StudyRecords, CsvSchema) {
  std::vector<StudyRecord> r = {{"bullseye_circle", "caption", 0, 0, "loss", 0.125},
                                {"my, image", "token", 1, 25, "recon_psnr", 12.3456789012},
                                {"x\"y", "class", 2, 3, "fixed_loss", NAN}};
  auto l = lines(records_csv(r));
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l[0], "concept,mode,seed,step,metric,value");
  EXPECT_EQ(l[0], kRecordsCsvHeader);
  EXPECT_EQ(l[1], "bullseye_circle,caption,0,0,loss,0.125");
  EXPECT_EQ(l[2], "\"my, image\",token,1,25,recon_psnr,12.3456789");
  EXPECT_EQ(l[3], "\"x\"\"y\",class,2,3,fixed_loss,nan");
  EXPECT_EQ(lines(records_csv({})).size(), 1u);
}

TEST(StudyRecords, AggregateAndSmoothing) {
  std::vector<StudyRecord> r = {{"a", "caption", 0, 0, "m", 1.0}, {"b", "caption", 0, 0, "m", 3.0},
                                {"a", "caption", 0, 5, "m", 2.0}, {"a", "token", 0, 0, "m", 10.0},
                                {"a", "caption", 1, 0, "m", NAN}, {"a", "caption", 0, 0, "other", 7.0}};
  Aggregate a = aggregate(r, "caption", "m");
  ASSERT_EQ(a.steps, (std::vector<int64_t>{0, 5}));
  EXPECT_DOUBLE_EQ(a.mean[0], 2.0);
  EXPECT_DOUBLE_EQ(a.sd[0], 1.0);  // population sd of {1, 3}
  EXPECT_DOUBLE_EQ(a.min[0], 1.0);
  EXPECT_DOUBLE_EQ(a.max[0], 3.0);
  EXPECT_EQ(a.n, (std::vector<int64_t>{2, 1}));
  EXPECT_TRUE(aggregate(r, "class", "m").steps.empty());

  std::vector<StudyRecord> loss;
  for (int k = 0; k < 5; ++k) loss.push_back({"a", "token", 0, k, "loss", static_cast<double>(k)});
  loss.push_back({"a", "token", 1, 0, "loss", 100.0});  // another run: smoothed on its own
  auto s = smoothed(loss, "loss", 2);
  ASSERT_EQ(s.size(), 6u);
  std::map<std::pair<int64_t, int64_t>, double> v;
  for (const auto& x : s) v[{x.seed, x.step}] = x.value;
  EXPECT_DOUBLE_EQ((v[{0, 0}]), 0.0);
  EXPECT_DOUBLE_EQ((v[{0, 1}]), 0.5);
  EXPECT_DOUBLE_EQ((v[{0, 4}]), 3.5);
  EXPECT_DOUBLE_EQ((v[{1, 0}]), 100.0);
}

TEST(StudyRecords, RelativeToTheStartOfTheConceptAndSeed) {
  std::vector<StudyRecord> r = {{"a", "caption", 0, 0, "fixed_loss", 1.0}, {"a", "token", 0, 0, "fixed_loss", 3.0},
                                {"a", "caption", 0, 5, "fixed_loss", 1.0}, {"a", "token", 0, 5, "fixed_loss", 2.0},
                                {"a", "token", 1, 0, "fixed_loss", 4.0},   {"a", "token", 1, 5, "fixed_loss", 2.0},
                                {"b", "token", 0, 5, "fixed_loss", 9.0},   {"a", "caption", 0, 0, "loss", 7.0}};
  auto rel = relative_to_start(r, "fixed_loss");
  ASSERT_EQ(rel.size(), 6u);            // b has no step 0; other metrics dropped
  EXPECT_DOUBLE_EQ(rel[0].value, 0.5);  // 1 / mean(1, 3)
  EXPECT_DOUBLE_EQ(rel[1].value, 1.5);
  EXPECT_DOUBLE_EQ(rel[3].value, 1.0);
  EXPECT_DOUBLE_EQ(rel[5].value, 0.5);  // seed 1: 2 / 4
  EXPECT_EQ(rel[5].seed, 1);
}

// ---- options ----
TEST(StudyOptions, Validation) {
  StudyOptions ok;
  ok.validate();
  study_quick_options().validate();
  struct Case {
    std::function<void(StudyOptions&)> change;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {[](StudyOptions& o) { o.modes = {}; }, "--modes"},
      {[](StudyOptions& o) {
         o.modes = {"caption", "photo"};
       },
       "unknown mode 'photo'"},
      {[](StudyOptions& o) {
         o.modes = {"token", "token"};
       },
       "given twice"},
      {[](StudyOptions& o) { o.seeds = 0; }, "--seeds"},
      {[](StudyOptions& o) { o.steps = 0; }, "--steps"},
      {[](StudyOptions& o) {
         o.checkpoints = {0, 600};
       },
       "--checkpoints: step 600 is outside"},
      {[](StudyOptions& o) {
         o.checkpoints = {50, 25};
       },
       "increasing"},
      {[](StudyOptions& o) { o.checkpoints = {-1}; }, "--checkpoints"},
      {[](StudyOptions& o) { o.lr = 0; }, "--lr"},
      {[](StudyOptions& o) { o.lr = NAN; }, "--lr"},
      {[](StudyOptions& o) { o.eval_every = 0; }, "--eval-every"},
      {[](StudyOptions& o) { o.eval_pairs = 0; }, "--eval-pairs"},
      {[](StudyOptions& o) { o.edits = 17; }, "--edits"},
      {[](StudyOptions& o) { o.out = ""; }, "--out"},
      {[](StudyOptions& o) { o.init_token = "a b"; }, "--init-token"},
      {[](StudyOptions& o) { o.concepts = {"dog"}; }, "--concepts: unknown concept 'dog'"},
      {[](StudyOptions& o) {
         o.concepts = {"badge_star", "badge_star"};
       },
       "given twice"},
      {[](StudyOptions& o) {
         o.images = {"x.png"};
         o.concepts = {"badge_star"};
       },
       "--images"},
      {[](StudyOptions& o) { o.images = {"x.png"}; }, "--class"},
      {[](StudyOptions& o) { o.sample_steps = 0; }, "--sample-steps"},
      {[](StudyOptions& o) { o.sampler = "magic"; }, "--sampler"},
      {[](StudyOptions& o) { o.cfg = -1; }, "--cfg"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.needle);
    StudyOptions o;
    c.change(o);
    EXPECT_TINV_ERROR(o.validate(), c.needle);
  }
  StudyOptions user;  // class mode left out: no --class needed
  user.images = {"x.png"};
  user.modes = {"caption", "token"};
  user.validate();
}

TEST(StudyOptions, CheckpointsAndModes) {
  StudyOptions o;
  EXPECT_EQ(o.resolved_checkpoints(), (std::vector<int64_t>{0, 25, 50, 100, 200, 500}));
  o.steps = 60;
  EXPECT_EQ(o.resolved_checkpoints(), (std::vector<int64_t>{0, 25, 50, 60}));
  o.checkpoints = {10, 20};
  EXPECT_EQ(o.resolved_checkpoints(), (std::vector<int64_t>{10, 20, 60}));
  o.steps = 1000;
  o.checkpoints.clear();
  EXPECT_EQ(o.resolved_checkpoints(), (std::vector<int64_t>{0, 25, 50, 100, 200, 500, 1000}));
  EXPECT_EQ(study_quick_options().resolved_checkpoints(), (std::vector<int64_t>{0, 5, 10}));

  EXPECT_EQ(parse_modes("caption,token"), (std::vector<std::string>{"caption", "token"}));
  EXPECT_EQ(parse_modes(" class "), (std::vector<std::string>{"class"}));
  EXPECT_TINV_ERROR(parse_modes("caption,"), "--modes");
  EXPECT_TINV_ERROR(parse_modes("caption,,token"), "--modes");
  EXPECT_TINV_ERROR(parse_modes("captions"), "unknown mode");
}

// ---- variants ----
TEST(StudyVariants, NamesAndTheirOptionSets) {
  EXPECT_EQ(parse_variants("caption,caption+sphere,caption+cross,caption+t500,token,class"),
            (std::vector<std::string>{"caption", "caption+sphere", "caption+cross", "caption+t500", "token", "class"}));
  StudyOptions o;
  EXPECT_TRUE(study_variant("caption", o).method.non_default().empty());
  StudyVariant v = study_variant("caption+sphere", o);
  EXPECT_EQ(v.init, InitMode::kCaption);
  EXPECT_EQ(v.method.optimizer, OptimizerKind::kSphere);
  EXPECT_EQ(v.method.sphere_norm, SphereNorm::kMean);
  EXPECT_EQ(v.method.vmf_kappa, 0);
  o.sphere_norm = SphereNorm::kInit;
  o.vmf_kappa = 2;
  v = study_variant("token+sphere+t500", o);
  EXPECT_EQ(v.init, InitMode::kToken);
  EXPECT_EQ(v.method.sphere_norm, SphereNorm::kInit);
  EXPECT_EQ(v.method.vmf_kappa, 2);
  EXPECT_EQ(v.method.t_min, 500);
  EXPECT_EQ(v.method.t_max, -1);
  v = study_variant("caption+cross", o);
  EXPECT_EQ(v.method.init_space, InitSpace::kOutput);
  EXPECT_EQ(v.method.reg_init, 0.01);
  EXPECT_EQ(v.method.optimizer, OptimizerKind::kAdamW);
  v = study_variant("class+t200-800", o);
  EXPECT_EQ(v.init, InitMode::kClass);
  EXPECT_EQ(v.method.t_min, 200);
  EXPECT_EQ(v.method.t_max, 800);
  EXPECT_EQ(v.num_vectors, 1);
  v = study_variant("token+v8+t500", o);
  EXPECT_EQ(v.init, InitMode::kToken);
  EXPECT_EQ(v.num_vectors, 8);
  EXPECT_EQ(v.method.t_min, 500);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"caption+v4", "vN needs token mode"},     {"token+v0", "'0' is not a row count"},
      {"token+v4x", "'4x' is not a row count"},  {"token+v2+v3", "'vN' given twice"},
      {"token+v", "'' is not a row count"},      {"caption+foo", "--variants: 'caption+foo': unknown modifier 'foo'"},
      {"photo+sphere", "unknown mode 'photo'"},  {"caption+sphere+sphere", "'sphere' given twice"},
      {"caption+t500+t600", "'tN' given twice"}, {"caption+t800-200", "starts above its end"},
      {"caption+t5x", "not a timestep"},         {"caption+", "--variants"},
      {"caption,caption", "given twice"},        {"caption,", "--variants"},
  };
  for (const auto& [list, needle] : bad) {
    SCOPED_TRACE(list);
    EXPECT_TINV_ERROR(parse_variants(list), needle);
  }
  EXPECT_TINV_ERROR(parse_modes("caption+sphere"), "--modes: unknown mode");
  // validate() takes variants among the modes, and checks the study-wide method settings.
  StudyOptions w;
  w.modes = {"caption", "caption+sphere"};
  w.validate();
  w.modes = {"caption+bad"};
  EXPECT_TINV_ERROR(w.validate(), "--variants");
  w.modes = {"caption"};
  w.vmf_kappa = -1;
  EXPECT_TINV_ERROR(w.validate(), "--vmf-kappa");
  w.vmf_kappa = 0;
  w.reg_init = -1;
  EXPECT_TINV_ERROR(w.validate(), "--reg-init");
  w.reg_init = 0;
  w.stop_patience = -1;
  EXPECT_TINV_ERROR(w.validate(), "--stop-patience");
  w.stop_patience = 0;
  // User images: class mode needs --class also as a variant.
  StudyOptions u;
  u.images = {"x.png"};
  u.modes = {"caption", "class+sphere"};
  EXPECT_TINV_ERROR(u.validate(), "--class");
}

TEST(StudyVariants, StopTableFromRecords) {
  std::vector<StudyRecord> rec = {
      {"a", "caption", 0, 0, "fixed_loss", 1.0},      {"a", "caption", 0, 4, "fixed_loss", 0.5},
      {"a", "caption", 0, 10, "fixed_loss", 0.4},     {"a", "caption", 0, 4, "stop_step", 4},
      {"a", "caption", 0, 4, "stop_fixed_loss", 0.5}, {"a", "caption", 0, 4, "stop_recon_psnr", 10},
      {"a", "caption", 0, 10, "recon_psnr", 12},      {"a", "caption", 0, 0, "recon_psnr", 8},
      {"a", "caption", 1, 0, "fixed_loss", 1.0},      {"a", "caption", 1, 10, "fixed_loss", 0.3},
  };
  auto rows = stop_table(rec, {"caption", "token"}, 10);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].runs, 2);
  EXPECT_EQ(rows[0].stopped, 1);
  EXPECT_DOUBLE_EQ(rows[0].mean_stop, 4);
  EXPECT_DOUBLE_EQ(rows[0].mean_saved, 3);  // (6 + 0) / 2 runs
  EXPECT_DOUBLE_EQ(rows[0].fixed_at_stop, 0.5);
  EXPECT_DOUBLE_EQ(rows[0].fixed_final, 0.4);  // the stopped run's last value
  EXPECT_DOUBLE_EQ(rows[0].psnr_at_stop, 10);
  EXPECT_DOUBLE_EQ(rows[0].psnr_final, 12);
  EXPECT_TRUE(std::isnan(rows[0].edit_at_stop));
  EXPECT_EQ(rows[1].runs, 0);
}

// ---- world-specific initialisation ----
world::ConceptSample sample_context() {
  world::ConceptSample s;
  s.size = world::Size::kSmall;
  s.position = world::Position::kTop;
  s.background = world::Colour::kBlack;
  s.background_pattern = world::Pattern::kStriped;
  return s;
}

TEST(StudyInit, CaptionGivesObjectWordsAndItsOwnContext) {
  // BLIP-style spacing and case: normalised before parsing.
  StudyInit i =
      world_init("A large red star with a white dot in the center , on a plain cyan background .", sample_context());
  EXPECT_TRUE(i.parsed);
  EXPECT_FALSE(i.fallback);
  EXPECT_EQ(i.init_text, "red star with a white dot");
  EXPECT_EQ(i.tmpl, "a large {} in the center, on a plain cyan background");
  EXPECT_TRUE(i.note.empty());
  i = world_init("a small blue circle at the bottom, on a yellow checkered background", sample_context());
  EXPECT_EQ(i.init_text, "blue circle");
  EXPECT_EQ(i.tmpl, "a small {} at the bottom, on a yellow checkered background");
  // The template filled with the object words is the caption again.
  EXPECT_EQ(fill_template(i.tmpl, i.init_text), "a small blue circle at the bottom, on a yellow checkered background");
}

TEST(StudyInit, FallbackUsesTheRenderingsContext) {
  StudyInit i = world_init("w123 W456  w7", sample_context());
  EXPECT_FALSE(i.parsed);
  EXPECT_TRUE(i.fallback);
  EXPECT_EQ(i.init_text, "w123 w456 w7");
  EXPECT_EQ(i.tmpl, "a small {} at the top, on a black striped background");
  EXPECT_NE(i.note.find("grammar"), std::string::npos);
}

TEST(StudyInit, EditPromptsChangeTheContextAndAlternateTheSize) {
  for (const world::Concept& c : world::concepts()) {
    SCOPED_TRACE(c.name);
    const world::ConceptSample trained = world::concept_at(0, c, 0);
    auto edits = edit_prompts(c, trained, 6, 0);
    ASSERT_EQ(edits.size(), 6u);
    std::set<std::string> distinct;
    for (size_t i = 0; i < edits.size(); ++i) {
      const EditPrompt& e = edits[i];
      distinct.insert(e.tmpl);
      const world::ObjectSpec& o = e.truth.object;
      if (i % 2 == 0)
        EXPECT_NE(o.size, trained.size) << i;
      else
        EXPECT_EQ(o.size, trained.size) << i;
      EXPECT_NE(o.position, trained.position);
      EXPECT_NE(e.truth.background, trained.background);
      EXPECT_NE(e.truth.background_pattern, trained.background_pattern);
      for (auto col : c.colours) EXPECT_NE(e.truth.background, col);
      EXPECT_EQ(o.shape, c.shape);
      // The prompt with the class's words in place of the trigger is the grammar's caption of
      // the requested scene.
      auto parsed = world::parse_caption(fill_template(e.tmpl, world::object_words(o)));
      ASSERT_TRUE(parsed.has_value()) << e.tmpl;
      EXPECT_EQ(*parsed, e.truth);
    }
    EXPECT_GT(distinct.size(), 1u);
    // Deterministic.
    auto again = edit_prompts(c, trained, 6, 0);
    for (size_t i = 0; i < edits.size(); ++i) EXPECT_EQ(again[i].tmpl, edits[i].tmpl);
  }
}

// ---- end to end on the tiny fixtures ----

// A BLIP folder: the tiny fixture's weights plus the synthetic BERT vocab (random captions).
std::string blip_with_vocab(const test::TempDir& dir) {
  const std::string blip = dir.file("blip");
  ::mkdir(blip.c_str(), 0755);
  for (const char* f : {"config.json", "model.safetensors", "preprocessor_config.json"})
    EXPECT_EQ(::symlink((kBlip + "/" + f).c_str(), (blip + "/" + f).c_str()), 0);
  test::write_bert_test_vocab(blip + "/vocab.txt");
  return blip;
}

StudyOptions tiny_options(const test::TempDir& dir) {
  StudyOptions o;
  o.model = kSd;
  o.captioner = blip_with_vocab(dir);
  o.concepts = {"bullseye_circle"};
  o.modes = {"caption", "token"};
  o.seeds = 1;
  o.steps = 3;
  o.checkpoints = {0, 3};
  o.edits = 1;
  o.sample_steps = 2;
  o.eval_every = 1;
  o.device = torch::Device(torch::kCPU);
  o.out = dir.file("study");
  o.progress = false;
  return o;
}

TEST(StudyRun, TinyEndToEnd) {
  torch::set_num_threads(1);
  test::TempDir dir;
  StudyOptions o = tiny_options(dir);
  StudyResult r = run_study(o);

  // The random BLIP's caption does not parse: the rendering's context is the template.
  ASSERT_EQ(r.concepts.size(), 1u);
  const StudyConcept& c = r.concepts[0];
  EXPECT_EQ(c.name, "bullseye_circle");
  EXPECT_EQ(c.class_word, "circle");
  EXPECT_TRUE(c.init.fallback);
  // Without --concept-index the study trains on the concept's portrait (the bundled image).
  const world::Concept& wc = world::find_concept("bullseye_circle");
  const uint64_t portrait = world::portrait_index(0, wc);
  const auto sample = world::concept_at(0, wc, portrait, 32);
  EXPECT_EQ(c.init.tmpl, sample.caption("{}"));
  EXPECT_EQ(c.source, str_cat("rendering ", portrait, " of world seed 0, its portrait"));
  EXPECT_EQ(c.target.sizes(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_TRUE(torch::equal(c.target, image_to_unit_tensor(sample.image)));
  ASSERT_EQ(c.edits.size(), 1u);
  EXPECT_FALSE(r.notes.empty());

  // Records: per run 3 losses, fixed_loss at 0..3, quality at 0 and 3.
  std::map<std::tuple<std::string, std::string>, int> count;  // (mode, metric)
  std::set<int64_t> quality_steps;
  for (const auto& rec : r.records) {
    EXPECT_EQ(rec.concept, "bullseye_circle");
    EXPECT_EQ(rec.seed, 0);
    EXPECT_TRUE(std::isfinite(rec.value)) << rec.metric;
    ++count[{rec.mode, rec.metric}];
    if (rec.metric == "recon_psnr") quality_steps.insert(rec.step);
  }
  for (const char* mode : {"caption", "token"}) {
    SCOPED_TRACE(mode);
    EXPECT_EQ((count[{mode, "loss"}]), 3);
    EXPECT_EQ((count[{mode, "fixed_loss"}]), 4);
    for (const char* m :
         {"recon_psnr", "recon_mse", "recon_latent_mse", "edit_parsed", "edit_mean", "edit_background", "edit_pattern",
          "edit_position", "edit_size", "edit_shape", "fidelity", "fidelity_train", "context"})
      EXPECT_EQ((count[{mode, m}]), 2) << m;
  }
  EXPECT_EQ(quality_steps, (std::set<int64_t>{0, 3}));
  // Step 0 is measured on the initial rows: the same fixed pairs, different init -> different loss.
  auto fixed0 = [&](const std::string& mode) -> double {
    for (const auto& rec : r.records)
      if (rec.mode == mode && rec.metric == "fixed_loss" && rec.step == 0) return rec.value;
    return NAN;
  };
  EXPECT_NE(fixed0("caption"), fixed0("token"));

  ASSERT_EQ(r.reach.size(), 2u);
  EXPECT_EQ(r.reach[0].runs, 1);
  EXPECT_EQ(r.samples.size(), 4u);  // 2 modes x 2 checkpoints, seed 0
  EXPECT_EQ(r.samples[0].images.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_EQ(r.timings.train_steps, 6);
  EXPECT_EQ(r.timings.fixed_evals, 8);
  EXPECT_EQ(r.timings.quality_evals, 4);

  // Files: the CSV equals the records; figures and a self-contained report.
  const std::string csv = read_text_file(o.out.string() + "/records.csv");
  EXPECT_EQ(csv, records_csv(r.records));
  EXPECT_EQ(lines(csv).size(), r.records.size() + 1);
  for (const char* f : {"records.csv", "loss_raw.png", "loss_fixed.png", "loss_fixed_relative.png", "recon_psnr.png",
                        "recon_latent_mse.png", "edit_accuracy.png", "fidelity.png", "fidelity_train.png",
                        "context.png", "summary.txt", "report.html"})
    EXPECT_TRUE(file_exists(o.out.string() + "/" + f)) << f;
  EXPECT_EQ(r.files.size(), 12u);
  // The grammar's best caption for the concept, and the fidelity tables.
  ASSERT_EQ(r.closest.size(), 1u);
  EXPECT_EQ(r.closest[0].concept, "bullseye_circle");
  EXPECT_NE(r.closest[0].words.find("red circle with a white"), std::string::npos);
  EXPECT_GE(r.closest[0].fidelity, 0.0);
  EXPECT_LE(r.closest[0].fidelity, 1.0);
  EXPECT_EQ(r.fidelity_reach.size(), 4u);  // 2 thresholds x 2 modes
  const std::string html = read_text_file(o.out.string() + "/report.html");
  EXPECT_NE(html.find("data:image/png;base64,iVBORw0KGgo"), std::string::npos);
  EXPECT_EQ(html.find("src=\"loss"), std::string::npos);  // no external files
  // The 9 figures inline as SVG (their PNG files stay beside the report).
  size_t svgs = 0;
  for (size_t at = html.find("<svg "); at != std::string::npos; at = html.find("<svg ", at + 1)) ++svgs;
  EXPECT_EQ(svgs, 9u);
  EXPECT_NE(html.find(">step</text>"), std::string::npos);
  EXPECT_NE(html.find("bullseye_circle"), std::string::npos);
  const std::string summary = read_text_file(o.out.string() + "/summary.txt");
  EXPECT_NE(summary.find("best caption the grammar"), std::string::npos) << summary;
  EXPECT_NE(summary.find("bullseye_circle (rendering "), std::string::npos) << summary;
  // --cfg 0 with --model: the resolved guidance (7.5), not the 0 the options came with.
  EXPECT_NE(summary.find("quality images ddim, 2 steps, cfg 7.5, 1 edit prompts"), std::string::npos) << summary;
  // Reachability: the training prompt's fidelity at the last step, per concept and mode.
  double train_fid[2] = {NAN, NAN};
  for (const auto& rec : r.records)
    if (rec.metric == "fidelity_train" && rec.step == 3) train_fid[rec.mode == "caption" ? 0 : 1] = rec.value;
  char row[128];
  std::snprintf(row, sizeof row, "  %-16s %8.3f %8.3f\n", "bullseye_circle", train_fid[0], train_fid[1]);
  const size_t table = summary.find("concept fidelity of the training prompt at the last step");
  ASSERT_NE(table, std::string::npos) << summary;
  EXPECT_NE(summary.find(row, table), std::string::npos) << row << "\n" << summary;
  EXPECT_NE(summary.find("concepts >= 0.8", table), std::string::npos) << summary;
  // cfg 0 (the default) resolves to 7.5 for a model other than the bundled world model.
  EXPECT_NE(html.find("steps, cfg 7.5,"), std::string::npos);
  EXPECT_NE(summary.find("first reaches a threshold"), std::string::npos) << summary;
  EXPECT_EQ(summary, r.summary);
  for (const char* needle : {"steps to reach", "recon_psnr", "edit_mean", "ms/step", "caption", "token"})
    EXPECT_NE(summary.find(needle), std::string::npos) << needle << "\n" << summary;
  // No temporary files left behind.
  for (const auto& e : std::filesystem::directory_iterator(o.out))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(StudyRun, ExplicitCaptionsAndUserImages) {
  torch::set_num_threads(1);
  test::TempDir dir;
  StudyOptions o = tiny_options(dir);
  // A parsed caption: the object words initialise, the caption's context is the template.
  o.captions = {"a large red circle in the center, on a plain white background"};
  o.modes = {"caption", "class"};
  o.steps = 1;
  o.checkpoints = {1};
  o.edits = 0;  // no captioner needed
  o.captioner = dir.file("no-such-blip");
  StudyResult r = run_study(o);
  EXPECT_EQ(r.concepts[0].init.init_text, "red circle");
  EXPECT_EQ(r.concepts[0].init.tmpl, "a large {} in the center, on a plain white background");
  EXPECT_TRUE(r.reach.empty());  // no token run
  EXPECT_NE(r.summary.find("token mode not run"), std::string::npos);

  // User images: the caption initialises, object templates; no edits.
  StudyOptions u = o;
  u.concepts.clear();
  const std::string png = dir.file("my-star.png");
  save_png(png, image_to_unit_tensor(world::concept_at(0, world::concepts()[2], 0, 40).image));
  u.images = {png};
  u.captions = {"an orange star"};
  u.class_name = "star";
  u.out = dir.file("user");
  StudyResult ur = run_study(u);
  ASSERT_EQ(ur.concepts.size(), 1u);
  EXPECT_EQ(ur.concepts[0].name, "my-star");
  EXPECT_EQ(ur.concepts[0].init.init_text, "an orange star");
  EXPECT_EQ(ur.concepts[0].init.tmpl, load_templates(BuiltinTemplates::kObject).front());
  EXPECT_EQ(ur.concepts[0].target.sizes(), (std::vector<int64_t>{3, 32, 32}));
  for (const auto& rec : ur.records) EXPECT_EQ(rec.metric.rfind("edit_", 0), std::string::npos);

  // User images in class/token mode need no caption and no captioner.
  u.captions.clear();
  u.modes = {"class", "token"};
  u.out = dir.file("user2");
  EXPECT_EQ(run_study(u).concepts[0].init.tmpl, load_templates(BuiltinTemplates::kObject).front());

  // Wrong number of captions, missing captioner.
  o.captions = {"a", "b"};
  EXPECT_TINV_ERROR(run_study(o), "--caption: got 2 captions for 1 concepts");
  o.captions.clear();
  EXPECT_TINV_ERROR(run_study(o), "--captioner: no such folder");
  // World concepts take the template from the caption even without caption mode.
  o.modes = {"token"};
  EXPECT_TINV_ERROR(run_study(o), "init captions come from it");
}

TEST(StudyRun, VariantsSideBySideWithTheEarlyStopRule) {
  torch::set_num_threads(1);
  test::TempDir dir;
  StudyOptions o = tiny_options(dir);
  o.modes = {"caption", "caption+sphere", "caption+cross", "caption+t500"};
  o.steps = 2;
  o.checkpoints = {2};
  o.edits = 0;
  o.stop_patience = 1;
  o.stop_delta = 0.9;  // nothing improves by 90%: every run's rule fires at its second evaluation
  StudyResult r = run_study(o);
  std::map<std::pair<std::string, int64_t>, double> fixed;  // (mode, step) -> fixed_loss
  std::set<std::string> modes;
  std::map<std::string, int> stops, stop_quality;
  for (const auto& rec : r.records) {
    modes.insert(rec.mode);
    if (rec.metric == "fixed_loss") fixed[{rec.mode, rec.step}] = rec.value;
    if (rec.metric == "stop_step") {
      ++stops[rec.mode];
      EXPECT_EQ(rec.step, 1);
    }
    if (rec.metric == "stop_recon_psnr") {
      ++stop_quality[rec.mode];
      EXPECT_EQ(rec.step, 1);
    }
  }
  EXPECT_EQ(modes, std::set<std::string>(o.modes.begin(), o.modes.end()));
  for (const auto& m : o.modes) {
    EXPECT_EQ(stops[m], 1) << m;
    EXPECT_EQ(stop_quality[m], 1) << m;
  }
  // Same start for caption and caption+t500 (only the draws differ); other starts elsewhere.
  EXPECT_EQ((fixed[{"caption", 0}]), (fixed[{"caption+t500", 0}]));
  EXPECT_NE((fixed[{"caption", 2}]), (fixed[{"caption+t500", 2}]));
  EXPECT_NE((fixed[{"caption", 0}]), (fixed[{"caption+sphere", 0}]));
  EXPECT_NE((fixed[{"caption", 0}]), (fixed[{"caption+cross", 0}]));
  ASSERT_EQ(r.stops.size(), 4u);
  EXPECT_EQ(r.stops[1].mode, "caption+sphere");
  EXPECT_EQ(r.stops[1].stopped, 1);
  EXPECT_DOUBLE_EQ(r.stops[1].mean_saved, 1);
  EXPECT_EQ(r.samples.size(), 4u);  // the checkpoint only: the stop's images are not samples
  for (const char* needle :
       {"early stop", "caption+sphere", "variants caption+sphere: optimizer=sphere sphere_norm=mean",
        "caption+t500: t_min=500", "caption+cross: init_space=output reg_init=0.01"})
    EXPECT_NE(r.summary.find(needle), std::string::npos) << needle << "\n" << r.summary;
  // A range outside the model's schedule, once the model is loaded.
  o.modes = {"caption+t5000"};
  o.out = dir.file("bad");
  EXPECT_TINV_ERROR(run_study(o), "--variants: 'caption+t5000': --t-min");
}

TEST(StudyRun, SeveralRowsFromTheInitToken) {
  torch::set_num_threads(1);
  test::TempDir dir;
  StudyOptions o = tiny_options(dir);
  o.modes = {"token", "token+v2", "token+v3"};
  o.steps = 1;
  o.checkpoints = {1};
  o.edits = 0;
  StudyResult r = run_study(o);
  std::map<std::string, double> start;  // mode -> fixed_loss at step 0
  for (const auto& rec : r.records)
    if (rec.metric == "fixed_loss" && rec.step == 0) start[rec.mode] = rec.value;
  ASSERT_EQ(start.size(), 3u);
  // One, two and three copies of `*` in the prompt: three different starts.
  EXPECT_NE(start["token"], start["token+v2"]);
  EXPECT_NE(start["token+v2"], start["token+v3"]);
  EXPECT_NE(r.summary.find("token+v2: num_vectors=2"), std::string::npos) << r.summary;
}

// ---- CLI ----
using test::quote;

test::CliResult run_cmd(const std::string& args, const test::TempDir& dir) {
  return test::run_tinv("study " + args, dir);
}

TEST(StudyCli, QuickWithOverrides) {
  test::TempDir dir;
  const std::string blip = blip_with_vocab(dir);
  const std::string out = dir.file("q");
  // --quick, made smaller still: explicit options apply over the preset.
  auto r = run_cmd("--quick --model " + quote(kSd) + " --captioner " + quote(blip) +
                       " --device cpu --quiet --modes token,class --steps 2 --checkpoints 2 --edits 1 "
                       "--sample-steps 1 --out " +
                       quote(out),
                   dir);
  ASSERT_EQ(r.status, 0) << (r.err_lines.empty() ? "" : r.err_lines.back());
  EXPECT_NE(r.out.find("steps to reach"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrote " + out + "/report.html"), std::string::npos) << r.out;
  auto csv = lines(read_text_file(out + "/records.csv"));
  ASSERT_GT(csv.size(), 1u);
  EXPECT_EQ(csv[0], kRecordsCsvHeader);
  std::set<std::string> concepts, modes;
  int losses = 0, fixed = 0;
  for (size_t i = 1; i < csv.size(); ++i) {
    auto c1 = csv[i].find(','), c2 = csv[i].find(',', c1 + 1);
    concepts.insert(csv[i].substr(0, c1));
    modes.insert(csv[i].substr(c1 + 1, c2 - c1 - 1));
    losses += csv[i].find(",loss,") != std::string::npos;
    fixed += csv[i].find(",fixed_loss,") != std::string::npos;
  }
  EXPECT_EQ(concepts, (std::set<std::string>{world::concepts().front().name}));  // the preset's concept
  EXPECT_EQ(modes, (std::set<std::string>{"token", "class"}));
  EXPECT_EQ(losses, 4);  // 2 runs x 2 steps
  EXPECT_EQ(fixed, 4);   // --eval-every 5 (default): steps 0 and 2 (the end) of each run
}

TEST(StudyCli, BadInputIsOneLine) {
  test::TempDir dir;
  const std::string blip = blip_with_vocab(dir);
  std::ofstream(dir.file("afile")) << "x";
  const std::string models = " --model " + quote(kSd) + " --captioner " + quote(blip) + " --quiet";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--model /nonexistent/sd", "--model: no such model"},
      {"--model " + quote(kSd) + " --captioner /nonexistent/blip", "--captioner: no such folder"},
      {models + " --modes caption,photo", "--modes: unknown mode 'photo'"},
      {models + " --steps 0", "--steps"},
      {models + " --steps 10 --checkpoints 0,20", "--checkpoints"},
      {models + " --concepts bullseye_circle,dog", "--concepts: unknown concept 'dog'"},
      {models + " --seeds x", "--seeds"},
      {models + " --lr -1", "--lr"},
      {models + " --images " + quote(dir.file("missing.png")) + " --modes token", "missing.png"},
      {models + " --out " + quote(dir.file("afile")), "--out"},
      {models + " --init-token 'red circle'", "--init-token"},
      {models + " --variants caption,caption+foo", "--variants: 'caption+foo': unknown modifier 'foo'"},
      {models + " --variants caption+sphere --modes caption", "--variants: replaces --modes"},
      {models + " --variants caption+sphere --vmf-kappa -1", "--vmf-kappa"},
      {models + " --stop-patience -2", "--stop-patience"},
      {models + " --concept-index first", "--concept-index: expected a rendering number or 'portrait', got 'first'"},
      {models + " --concept-index -1", "--concept-index"},
  };
  for (const auto& [args, needle] : cases) {
    SCOPED_TRACE(args);
    auto r = run_cmd(args + " --device cpu", dir);
    EXPECT_NE(r.status, 0);
    ASSERT_EQ(r.err_lines.size(), 1u) << r.err_lines[0];
    EXPECT_EQ(r.err_lines[0].rfind("tinv: error:", 0), 0u) << r.err_lines[0];
    EXPECT_NE(r.err_lines[0].find(needle), std::string::npos) << r.err_lines[0];
  }
}

}  // namespace
}  // namespace tinv
