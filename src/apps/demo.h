// `tinv demo`: the whole method on one image, with a self-contained HTML report.
//
//   tinv::DemoOptions o;                 // defaults: the bundled world models and concept images
//   o.concept_name = "bullseye_circle";  // models/concepts/bullseye_circle.png (or o.image = FILE)
//   tinv::DemoResult r = tinv::run_demo(o);   // r.report == "out/demo/index.html"
//
// Stages (each announced on stderr; inversion and generation show progress bars):
//   1. caption  the input with BLIP (greedy by default), unless DemoOptions::caption is given;
//   2. invert   with caption initialisation through tinv::run_inversion (InvertOptions);
//   3. generate re-contextualised images with tinv::generate: prompts of the world grammar with
//               the learned trigger in place of the object words ("after"), and the same prompts
//               with the initialisation words ("before": exactly the embedding at step 0), same
//               seeds, so each before/after pair starts from the same noise;
//   4. report   index.html (images embedded as base64 PNG data: URIs; no other file needed). For a
//               bundled world concept, each image is scored by the concept judge (world/judge.h):
//               concept fidelity (identity) and context (background, pattern, place, size), per
//               prompt and on average, before and after. Targets: after >= 0.7 identity and >= 0.8
//               context in 100 steps, before clearly lower.
//
// Initialisation (DemoOptions::init_from): kCaption ("caption") lets every token of the whole caption
// initialise a placeholder and trains on the textual-inversion "object" templates — tinv's
// method as for any model. kObject ("object") applies to captions of the world grammar (the bundled world
// models): the caption's object words ("red striped star") initialise the placeholders, and the
// caption itself with "{}" in their place ("a large {} on the left, on a blue checkered
// background") is the training template, so training and generation prompts are the
// in-distribution sentences the world model knows. kAuto (default) is kObject when the caption
// parses with the world grammar and has one object, kCaption otherwise.
//
// Outputs in DemoOptions::out (all written atomically): index.html, input.png, <name>.safetensors
// (+ .log.csv, .loss.png, .checkpoint.safetensors from the inversion), templates.txt (object
// mode), images/p<k>-{before,after}-<i>.png (A1111 parameters in each), commands.sh.
// Every bad input (unknown concept, unreadable image, bad --steps, ...) throws tinv::Error with a
// one-line message before any model is loaded.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/device.h"
#include "world/world.h"

namespace tinv {

// --init-from: auto | caption | object (see above).
enum class DemoInit { kAuto, kCaption, kObject };
// "auto" | "caption" | "object".
std::string to_string(DemoInit init);
// The inverse of to_string; throws tinv::Error("--init-from", "unknown value ...") for other text.
DemoInit parse_demo_init(const std::string& name);

struct DemoOptions {
  std::string concept_name;         // bundled concept (<concepts dir>/<name>.png); empty: the first one
  std::filesystem::path image;      // an image file instead of a bundled concept
  std::filesystem::path model;      // Stable Diffusion (diffusers folder / single file); empty: world-sd
  std::filesystem::path captioner;  // BLIP folder; empty: world-blip (unused when `caption` is given)
  std::string caption;              // use this caption instead of running the captioner
  DemoInit init_from = DemoInit::kAuto;
  std::string name;     // placeholders <name_i>, trigger <name>; empty: concept / file stem
  int64_t steps = 100;  // inversion steps
  double lr = 5e-3;
  uint64_t seed = 0;    // inversion draws and image i of each prompt: seed + i
  int64_t samples = 2;  // images per prompt and variant (before / after)
  int64_t sample_steps = 25;
  std::string sampler = "default";  // a sampler name (make_sampler's registry key)
  // Classifier-free guidance; 0: world::kModelCfg with the bundled world model, 7.5 (the Stable
  // Diffusion default) with --model.
  double cfg = 0;
  int beams = 1;  // captioning: 1 = greedy
  std::filesystem::path out = "out/demo";
  DeviceChoice device;  // std::nullopt: auto (CUDA when available)
  bool progress = true;
  std::string program = "tinv";  // the executable named in the reproduce commands
};

// The concept judge's scores (world/judge.h) of one prompt's images, means over its samples.
struct DemoPromptScore {
  std::string tmpl;
  double before_identity = 0, before_context = 0;  // the initialisation words
  double after_identity = 0, after_context = 0;    // the learned trigger
  // The parts of the after identity (the judge's shape, body, ring and dot), means over the samples.
  double after_shape = 0, after_body = 0, after_ring = 0, after_dot = 0;
};

struct DemoResult {
  std::string image;                        // the input file
  std::string caption;                      // the captioner's text (or DemoOptions::caption)
  DemoInit init_from = DemoInit::kCaption;  // kCaption or kObject (after resolving kAuto)
  std::string init_text;                    // the words that initialised the placeholders
  std::string trigger;                      // "<name>"
  std::vector<std::string> placeholders;    // "<name_0>", ...
  std::vector<std::string> prompts;         // prompt templates, "{}" = the concept
  // For a bundled world concept: the judge's scores per prompt, and their means over every prompt
  // (the last entry, tmpl "mean"). Empty for other inputs.
  std::vector<DemoPromptScore> scores;
  std::string report;                                   // index.html
  std::vector<std::string> files;                       // every file written
  std::vector<std::pair<std::string, double>> timings;  // stage -> seconds, then "total"
};

// Runs the four stages. Throws tinv::Error (one line) on bad options or input.
DemoResult run_demo(const DemoOptions& options);

// ---- Pieces, public for tests and tools ----

// The world caption of one object split into its object words and the rest:
// "a large red star with a white dot on the left, on a blue checkered background" ->
// {"red star with a white dot", "a large {} on the left, on a blue checkered background"}.
// std::nullopt when the text does not follow the world grammar.
std::optional<std::pair<std::string, std::string>> split_world_caption(const std::string& caption);

// Prompt templates of the world grammar ("a small {} on the right, on a blue striped
// background", ...): sizes, places and backgrounds varied, no background in a colour of `avoid`.
std::vector<std::string> demo_prompts(const std::vector<world::Colour>& avoid = {});

// The rendering of a world concept bundled as <concepts dir>/<name>.png: its portrait,
// concept_at(0, c, k) with k = world::portrait_index(0, c) (*index = k when given).
world::ConceptSample bundled_concept_sample(const world::Concept& c, uint64_t* index = nullptr);
// Writes <dir>/<name>.png for every world concept (the bundled images; `tinv demo
// --write-concepts DIR`). Returns the files written.
std::vector<std::string> write_bundled_concepts(const std::string& dir);

// `s` quoted for a POSIX shell when needed ("a b" -> 'a b', "it's" -> 'it'\''s').
std::string shell_quote(const std::string& s);

}  // namespace tinv
