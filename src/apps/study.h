// `tinv study`: caption vs class vs single-token initialisation of textual inversion, measured
// for convergence and quality (docs/convergence.md).
//
//   tinv::StudyOptions o;                 // the 7 held-out world concepts, 3 modes, 2 seeds
//   o.steps = 200;  o.out = "study";
//   tinv::StudyResult r = tinv::run_study(o);
//   // study/records.csv, study/*.png, study/report.html, study/summary.txt
//
// For every concept, every seed and every init mode one inversion run (the trainer core of
// trainer.h: InversionTrainer + RandomStepSource) records
//   per step         loss        the training loss before update k (random t and noise)
//                    fixed_loss  the loss on fixed (timestep, noise) pairs (fixed_eval_inputs), at
//                                step k = before update k, every eval_every steps and at the end
//   at checkpoints   recon_*     the training prompt with the learned trigger, generated and
//                                compared with the target: pixel PSNR / MSE, latent MSE
//                    edit_*      re-contextualised prompts (other size, place, background colour
//                                and pattern), generated and read back by the captioner: the
//                                share of images whose caption parses / names the requested
//                                attribute (world concepts only)
//                    fidelity    the concept judge's identity (world/judge.h) of the edit images,
//                                mean; fidelity_train: of the training prompt's image; context:
//                                the judge's context score of the edit images (world concepts)
// The three modes of one (concept, seed) share the training template, step draws, fixed pairs
// and generation seeds, so only the initial rows differ:
//   caption  every token of the init caption is one placeholder, started at that token's row
//   class    the concept's class word ("circle")     token  `init_token` ("*"), one placeholder
// Variants (`--variants`, study_variant) are an init mode with method options of `tinv invert`
// (inversion/method.h) joined by '+': "caption+sphere", "caption+cross", "caption+t500",
// "token+sphere+t500". Every variant is run and reported like a mode, under its name.
// With stop_patience > 0 each run also follows the early-stopping rule on its fixed-input loss
// (without stopping): the step it would stop at, and the quality measured there, are recorded.
//
// World concepts (the default): concept_at(world_seed, concept, concept_index) is the single
// training image; without concept_index, the concept's portrait (world::portrait_index: large,
// on a plain background; for world seed 0 the bundled models/concepts image, the demo's). The
// captioner describes it; world_init() turns the caption into the init text (the object words,
// "red striped star") and the template (the caption with them replaced by "{}": "a large {} in
// the center, on a plain white background").
// User images (--images, e.g. with a real SD and BLIP): one concept per image, the caption is the
// init text, the templates are diffusers' object templates (as `tinv invert`); no editability.
//
// Every entry point throws tinv::Error with a one-line message naming the option or file.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "apps/invert.h"
#include "common/device.h"
#include "inversion/method.h"
#include "world/judge.h"
#include "world/world.h"

namespace tinv {

struct StudyOptions {
  std::filesystem::path model;                // diffusers folder or single file; empty: the bundled world-sd
  std::filesystem::path captioner;            // BLIP folder with vocab.txt; empty: the bundled world-blip
                                              // (bundled models: common/default_models.h)
  std::vector<std::filesystem::path> images;  // user images, one concept each (instead of the world's)
  std::vector<std::string> captions;          // init captions, one per concept (skips the captioner)
  std::string class_name;                     // class mode with --images: the class word(s)
  std::vector<std::string> concepts;          // world concepts by name (empty: all 7)
  std::vector<std::string> modes = {"caption", "class", "token"};  // init modes or variants
  std::string init_token = "*";                                    // token mode: one vocabulary token
  int64_t seeds = 2;                                               // runs per (concept, mode): seeds 0 .. seeds-1
  int64_t steps = 500;
  std::vector<int64_t> checkpoints;  // quality at these steps; empty: kDefaultCheckpoints
  double lr = 5e-3;                  // as `tinv invert`
  int64_t eval_every = 5;            // fixed-input loss every K steps (and at 0 and the end);
                                     // each costs about one training step
  int64_t eval_pairs = 4;            // fixed (timestep, noise) pairs
  // Variant modifiers' settings (study_variant): `sphere` uses sphere_norm and vmf_kappa,
  // `cross` uses reg_init.
  SphereNorm sphere_norm = SphereNorm::kMean;  // --sphere-norm mean | init
  double vmf_kappa = 0;                        // von Mises-Fisher prior weight (0: off)
  double reg_init = 0.01;                      // L2 pull toward the cross-initialised start
  // Early-stopping rule recorded per run (0: off): see method.h EarlyStop.
  double stop_delta = 0.01;
  int64_t stop_patience = 0;
  int64_t edits = 4;                      // re-contextualised prompts per checkpoint (world only)
  std::string sampler = "ddim";           // a sampler name (make_sampler's registry key)
  int64_t sample_steps = 20;              // sampler steps of the quality images
  double cfg = 0;                         // 0: world::kModelCfg with the bundled world model, 7.5 with --model
  uint64_t world_seed = 0;                // concept_at(world_seed, concept, concept_index)
  std::optional<uint64_t> concept_index;  // std::nullopt: the portrait (world::portrait_index)
  std::filesystem::path out = "study";    // output folder
  DeviceChoice device;                    // std::nullopt: auto (CUDA when available)
  bool progress = true;                   // progress bar on stderr

  // Option checks that need no model. Throws tinv::Error("--steps", ...) etc.
  void validate() const;
  // The checkpoints used: the given ones, or kDefaultCheckpoints up to `steps`; `steps` is
  // always included; sorted, unique.
  std::vector<int64_t> resolved_checkpoints() const;
};

constexpr int64_t kDefaultCheckpoints[] = {0, 25, 50, 100, 200, 500};

// `--quick`: the CI configuration (1 concept, 1 seed, 10 steps, checkpoints 0,5,10, 2 edits,
// 4 sampler steps): seconds on the world model, exercising every part of the study.
StudyOptions study_quick_options();

// "caption,class,token" -> modes; throws tinv::Error("--modes", ...) on unknown, repeated or
// missing entries.
std::vector<std::string> parse_modes(const std::string& list);

// A named option set: an init mode and the method options of its run.
struct StudyVariant {
  std::string name;                    // "caption+sphere"
  InitMode init = InitMode::kCaption;  // the mode before the first '+'
  int64_t num_vectors = 1;             // token mode: rows started at the init token (`vN`)
  MethodOptions method;
};
// "<mode>[+<modifier>]...", each modifier at most once:
//   sphere   --optimizer sphere with options.sphere_norm and options.vmf_kappa
//   cross    --init-space output with --reg-init options.reg_init
//   tN       timesteps from N to the last one (t500: [500, N-1]); tA-B: [A, B]
//   vN       token mode only: N placeholder rows, each started at the init token (token+v8),
//            as `tinv invert --init token --num-vectors N`
// A plain mode is the variant without modifiers. Throws tinv::Error("--variants", ...) naming
// the variant for an unknown mode or modifier, a repeated modifier or a bad range.
StudyVariant study_variant(const std::string& name, const StudyOptions& options);
// "caption,caption+sphere,token" -> variant names (checked with study_variant); throws
// tinv::Error("--variants", ...) on bad, repeated or missing entries.
std::vector<std::string> parse_variants(const std::string& list);

// ---- World-specific initialisation ----
struct StudyInit {
  std::string init_text;  // caption mode: the words whose tokens become the placeholders
  std::string tmpl;       // the training template, with "{}" for the placeholders
  bool parsed = false;    // the caption parsed with the world grammar
  bool fallback = false;  // the template is the concept sample's context, not the caption's
  std::string note;       // why the fallback was taken (empty otherwise)
};
// The caption (BLIP text; normalise_caption is applied) of the rendering `sample`:
//   parses          -> init = the object words (world::object_words, "red circle with a white
//                      ring"), template = the caption with them replaced by "{}"
//   does not parse  -> init = the normalised caption, template = sample.caption("{}")
StudyInit world_init(const std::string& caption, const world::ConceptSample& sample);

// A re-contextualised prompt: the template and the scene it asks for (the concept's class
// shape and first colour stand in for the concept itself).
struct EditPrompt {
  std::string tmpl;        // "a small {} on the left, on a yellow striped background"
  world::SceneSpec truth;  // one object: class shape, size, position; background, pattern
};
// `n` prompts for a concept trained in the context of `trained`: each differs from it in
// position, background colour (never one the concept shows) and pattern; prompt i changes the
// size when i is even and keeps it when i is odd (the grammar has two sizes); deterministic in
// (seed, concept name, i).
std::vector<EditPrompt> edit_prompts(const world::Concept& c, const world::ConceptSample& trained, int64_t n,
                                     uint64_t seed);

// ---- Records ----
struct StudyRecord {
  std::string concept, mode;
  int64_t seed = 0, step = 0;
  std::string metric;  // loss, fixed_loss, recon_psnr, recon_mse, recon_latent_mse, edit_*;
                       // with stop_patience: stop_step and stop_<metric> at the stop step
  double value = 0;
};
// The CSV of every measurement: header "concept,mode,seed,step,metric,value", one row per
// record in order; values with 9 significant digits; fields with ',' or '"' quoted.
std::string records_csv(const std::vector<StudyRecord>& records);
constexpr const char* kRecordsCsvHeader = "concept,mode,seed,step,metric,value";

// Steps a run needs to reach `target`: the first step whose value is <= target (the curve as
// (step, value) pairs in step order; non-finite values skipped), or -1 when it never does.
int64_t steps_to_reach(const std::vector<std::pair<int64_t, double>>& curve, double target);

// One row of the steps-to-reach table: for each (concept, seed) with a reference run, the
// target is the reference run's final fixed_loss; each run of `mode` for that (concept, seed)
// reaches it after steps_to_reach(its fixed_loss curve, target) steps, or not.
struct ReachRow {
  std::string mode;
  int64_t runs = 0;        // runs of this mode paired with a reference run
  int64_t reached = 0;     // of those, runs that reached the target
  double mean_steps = 0;   // mean over the runs that reached it (NaN when none did)
  double mean_target = 0;  // mean target (the reference runs' final fixed_loss)
  double mean_final = 0;   // mean final fixed_loss of this mode's runs
};
std::vector<ReachRow> reach_table(const std::vector<StudyRecord>& records, const std::vector<std::string>& modes,
                                  const std::string& reference = "token");
// "12.5", or "not reached", with " (k/n runs)" when some runs did not reach it.
std::string format_reach(const ReachRow& row);

// Steps each mode needs until a run's concept fidelity (metric "fidelity", the judge's identity
// of re-contextualised images at the checkpoints) first reaches `threshold`: per mode, the runs,
// how many reached it, and the mean checkpoint step over those.
struct FidelityReachRow {
  std::string mode;
  double threshold = 0;
  int64_t runs = 0, reached = 0;
  double mean_steps = 0;  // NaN when no run reached it
  double best = 0;        // mean over runs of the best fidelity seen
};
std::vector<FidelityReachRow> fidelity_reach_table(const std::vector<StudyRecord>& records,
                                                   const std::vector<std::string>& modes, double threshold);
constexpr double kFidelityThresholds[] = {0.5, 0.7};
// One row of the early-stop table (stop_patience > 0): per mode, over its runs.
struct StopRow {
  std::string mode;
  int64_t runs = 0;                           // runs of this mode (with a fixed_loss record)
  int64_t stopped = 0;                        // runs where the rule fired
  double mean_stop = 0;                       // mean stop step over those (NaN when none)
  double mean_saved = 0;                      // mean steps saved over all runs (steps - stop; 0 when not stopped)
  double fixed_at_stop = 0, fixed_final = 0;  // mean fixed_loss at the stop / at the end (stopped runs)
  double psnr_at_stop = 0, psnr_final = 0;    // mean recon_psnr at the stop / at the end (stopped runs)
  double edit_at_stop = 0, edit_final = 0;    // mean edit_mean likewise (NaN without edits)
};
std::vector<StopRow> stop_table(const std::vector<StudyRecord>& records, const std::vector<std::string>& modes,
                                int64_t steps);

// Mean, standard deviation (population), min and max of `metric` per (mode, step) over
// concepts and seeds.
struct Aggregate {
  std::vector<int64_t> steps;
  std::vector<double> mean, sd, min, max;
  std::vector<int64_t> n;
};
Aggregate aggregate(const std::vector<StudyRecord>& records, const std::string& mode, const std::string& metric);
// Per run, `metric` replaced by its trailing moving average over `window` steps (the raw
// training loss is dominated by the random timestep and noise).
std::vector<StudyRecord> smoothed(const std::vector<StudyRecord>& records, const std::string& metric, int64_t window);

// `metric` of each run divided by the mean step-0 value of that metric over the runs of the same
// (concept, seed) (all modes): paired curves that start near 1, so the spread between concepts'
// loss levels does not hide the differences between modes. Runs without a step-0 value for their
// (concept, seed) are dropped.
std::vector<StudyRecord> relative_to_start(const std::vector<StudyRecord>& records, const std::string& metric);

// ---- The study ----
struct StudyConcept {
  std::string name;                               // world concept name or image file stem
  const world::Concept* world_concept = nullptr;  // world concepts: scored by the concept judge
  world::JudgeContext train_context;              // world concepts: the training image's context
  std::string class_word;
  std::string caption;  // the captioner's text (or the given caption)
  std::string source;   // where the training image comes from: the file, or the world rendering
  StudyInit init;
  std::vector<EditPrompt> edits;
  torch::Tensor target;  // [3, H, W] in [0, 1], CPU: the training image
};

struct StudyTimings {
  double load = 0, captions = 0, train = 0, fixed_eval = 0, quality = 0, report = 0, total = 0;
  int64_t train_steps = 0, fixed_evals = 0, quality_evals = 0;
  double per_step() const { return train_steps ? train / train_steps : 0; }
  double per_fixed_eval() const { return fixed_evals ? fixed_eval / fixed_evals : 0; }
  double per_quality_eval() const { return quality_evals ? quality / quality_evals : 0; }
};

// The quality images of seed 0 at one checkpoint, for the report.
struct StudySample {
  std::string concept, mode;
  int64_t step = 0;
  torch::Tensor images;               // [1 + edits, 3, H, W] in [0, 1]: reconstruction, edits
  std::vector<std::string> captions;  // the captioner's reading of each edit image
};

// The best caption the grammar can write for a world concept: of its closest captions' object
// words (Concept::nearest_objects), the one whose edit-prompt images score highest.
struct ClosestCaption {
  std::string concept;
  std::string words;    // "red circle with a white ring"
  double fidelity = 0;  // mean judge identity over the edit prompts and seeds
  double context = 0;
};

struct StudyResult {
  std::vector<StudyConcept> concepts;
  std::vector<StudyRecord> records;
  std::vector<StudySample> samples;
  std::vector<ReachRow> reach;
  std::vector<FidelityReachRow> fidelity_reach;  // world concepts: kFidelityThresholds x modes
  std::vector<ClosestCaption> closest;           // world concepts with edits: the grammar's best
  std::vector<StopRow> stops;                    // stop_patience > 0
  std::vector<std::string> files;                // every file written
  std::vector<std::string> notes;                // warnings (fallbacks, diverged runs)
  std::string summary;                           // the text of summary.txt (also printed by the CLI)
  StudyTimings timings;
};

// Validates, loads the models, runs every (concept, seed, mode) and writes into `out`:
// records.csv (rewritten after each run), loss_raw.png, loss_fixed.png,
// loss_fixed_relative.png, recon_psnr.png,
// recon_latent_mse.png, edit_accuracy.png (world concepts), summary.txt and report.html
// (self-contained). A run whose loss becomes NaN/inf stops there; its records so far are kept
// and a note says so.
StudyResult run_study(const StudyOptions& options);

// ---- Report (study_report.cpp) ----
// The text of summary.txt: settings, concepts (caption, init, template), the steps-to-reach
// table, quality per mode at each checkpoint (mean +- sd), timings.
std::string study_summary(const StudyOptions& options, const StudyResult& result);
// Writes the figures, summary.txt and report.html (io/html_report.h) into options.out
// (atomically) and appends their paths to result.files.
void write_study_report(const StudyOptions& options, StudyResult& result);

}  // namespace tinv
