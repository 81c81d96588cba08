// Quality of the embedded world models (`tinv world eval`): the Stable Diffusion model's VAE and
// prompt fidelity, and the BLIP captioner, measured on held-out scenes of the world (world.h).
//
//   tinv::world::EvalOptions o;                // models/world-sd, models/world-blip, seed 0
//   o.fidelity_prompts = 50;
//   tinv::world::EvalReport r = tinv::world::run_world_eval(o);
//   r.captioner->score.accuracy(Attribute::kColour);   // 0.97
//   std::cout << format_report(r);                     // the table `tinv world eval` prints
//
// The four parts (each optional, EvalOptions::parts):
//   vae        held-out scene i (sample_at(seed, kHeldOut, i), rendered at the VAE's sample_size)
//              -> encode -> posterior mean -> decode -> clamp to [0, 1]; mean PSNR in dB.
//   captioner  held-out scene i (rendered at 64 px) -> BLIP caption (greedy, prompt "a picture
//              of", max_length 40, min_length 1) -> parse_caption -> attributes scored against
//              the scene. Target: every attribute >= 95%.
//   fidelity   prompt i = caption(scene_at(seed, kHeldOut, i)) (every held-out scene holds an
//              object/background colour pair the train split never shows) -> one image, seed + i
//              -> the captioner as above -> scored against the prompt's scene. Target: >= 90%.
//   judge      the concept judge's validation (judge.h): real renderings of each concept score
//              >= 0.9, other concepts and the closest captions <= 0.5. No model needed.
//
// Scoring (score_scene): every attribute (shape, colour, size, position, mark, mark colour,
// background colour and pattern, exact scene) counts once per scene. A caption that does not
// parse is wrong on everything.
//
// Every entry point throws tinv::Error naming the option (`--only`, `--steps`, ...) or file.
#pragma once
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/device.h"
#include "world/judge.h"
#include "world/world.h"

namespace tinv {
struct StableDiffusion;
struct GenerateOptions;
struct CaptionOptions;
class ExtraTokens;
}  // namespace tinv

namespace tinv::world {

// ---- PSNR ----
// Peak signal-to-noise ratio in dB of images in [0, 1] (peak 1): 10 log10(1 / MSE).
// a and b: one image [C, H, W] or a batch [B, C, H, W] of the same shape. For a batch, each
// image's PSNR is computed from its own MSE and the result is the MEAN OF THE PER-IMAGE dB values
// (not the PSNR of the pooled MSE). MSE is floored at 1e-10, so identical images give 100 dB.
// Throws tinv::Error on mismatched or unsupported shapes.
double psnr(const torch::Tensor& a, const torch::Tensor& b);
// Per-image PSNR of a batch [B, C, H, W] (or [C, H, W]: one value), float64 [B] on the CPU.
torch::Tensor psnr_per_image(const torch::Tensor& a, const torch::Tensor& b);

// ---- Attribute scoring ----
enum class Attribute : uint8_t {
  kShape,
  kColour,  // the object's colour
  kSize,
  kPosition,
  kMark,        // none, dot or ring
  kMarkColour,  // right when neither has a mark, or both have one of the same colour
  kBackground,  // background colour
  kPattern,     // background pattern
  kExact,       // the whole scene, i.e. the exact caption
};
constexpr int kNumAttributes = 9;
// The eight attributes the targets apply to and mean_accuracy() averages (all but kExact).
constexpr int kNumScoredAttributes = 8;
const char* name(Attribute a);  // "shape", "colour", ..., "pattern", "exact"

struct AttributeScore {
  int64_t scenes = 0;  // scenes scored (the denominator of every attribute)
  int64_t parsed = 0;  // of those, predictions that parsed
  std::array<int64_t, kNumAttributes> correct{};

  int64_t total(Attribute) const { return scenes; }
  // correct / total; 0 when nothing was scored.
  double accuracy(Attribute a) const;
  // Unweighted mean of the accuracies of the eight attributes other than kExact.
  double mean_accuracy() const;
  AttributeScore& operator+=(const AttributeScore& o);
};

// Scores one prediction against the true scene (one object each). `predicted` is std::nullopt
// for a caption that did not parse: then every attribute is wrong (its totals still count).
// kExact is correct when *predicted == truth, i.e. when the captions are identical.
AttributeScore score_scene(const std::optional<SceneSpec>& predicted, const SceneSpec& truth);

// BLIP-decoded text -> caption text parse_caption accepts: lowercase, whitespace collapsed,
// no space before ',' ("in the center , on" -> "in the center, on"), a final '.' dropped, trimmed.
std::string normalise_caption(const std::string& text);
// parse_caption(normalise_caption(text)), then score_scene.
AttributeScore score_caption(const std::string& text, const SceneSpec& truth);

// ---- The evaluation ----
struct EvalParts {
  bool vae = true, captioner = true, fidelity = true, judge = true;
};
// "vae,captioner,fidelity,judge" (any non-empty subset, any order; "all" = every part). Throws
// tinv::Error("--only", ...) naming an unknown or empty entry.
EvalParts parse_parts(const std::string& list);

struct EvalOptions {
  std::filesystem::path sd_dir = "models/world-sd";      // diffusers folder (load_stable_diffusion)
  std::filesystem::path blip_dir = "models/world-blip";  // BLIP folder with vocab.txt (BlipCaptioner::load)
  DeviceChoice device;                                   // std::nullopt: auto (CUDA when available)
  uint64_t seed = 0;                                     // world seed of the evaluated scenes; image i uses seed + i
  // kHeldOut: every scene holds an (object, background) colour pair the training split never shows.
  // kTrain: unseen scenes of the training distribution: scene_at(seed, kTrain, kUnseenIndex + i),
  // indices no training run reaches (they draw from the first few million).
  Split split = Split::kHeldOut;
  SceneRules rules = bundled_rules();  // the scene rules of the evaluated scenes (--unnamed-dot)
  int64_t vae_scenes = 256;            // held-out scenes for the VAE PSNR
  int64_t caption_scenes = 500;        // held-out scenes for the captioner accuracy
  int64_t fidelity_prompts = 200;      // held-out captions for prompt fidelity
  int64_t judge_renders = 20;          // renderings per concept for the concept judge's validation
  std::string sampler = "ddim";        // a sampler name (make_sampler's registry key)
  int64_t steps = 25;
  double cfg = kModelCfg;  // the world models' guidance (world.h); 1 disables guidance
  int64_t batch = 16;      // images per VAE / UNet batch (1..64)
  EvalParts parts;
  bool progress = true;  // progress bars on stderr
  // Throws tinv::Error naming the option (--vae-scenes, --steps, --cfg, --batch, ...).
  void validate() const;
};

constexpr uint64_t kUnseenIndex = uint64_t{1} << 40;  // first scene index of the kTrain evaluation
// The i-th evaluated scene index of the split (i for kHeldOut, kUnseenIndex + i for kTrain).
uint64_t eval_scene_index(Split split, int64_t i);
constexpr double kCaptionerTarget = 0.95;  // per attribute, captioner on rendered scenes
constexpr double kFidelityTarget = 0.90;   // per attribute, captioner on generated images

// A wrongly captioned item, kept for the report (the first few of each part).
struct EvalFailure {
  int64_t index = 0;
  std::string truth;      // the true caption / the prompt
  std::string predicted;  // the captioner's text
  bool parsed = false;
};

struct VaeEval {
  int64_t scenes = 0, image_size = 0;
  double psnr_db = 0.0, min_psnr_db = 0.0;  // mean and worst per-image PSNR
  double seconds = 0.0;
};

struct CaptionEval {
  AttributeScore score;
  double target = 0.0;
  std::vector<EvalFailure> failures;  // at most kMaxFailures
  double seconds = 0.0;
  // Every attribute but kExact at or above `target`.
  bool pass() const;
};
constexpr size_t kMaxFailures = 10;

struct EvalReport {
  EvalOptions options;
  std::optional<VaeEval> vae;
  std::optional<CaptionEval> captioner, fidelity;
  std::optional<JudgeValidation> judge;  // needs no model
  double judge_seconds = 0.0;
  double load_seconds = 0.0;  // model loading
};

// Validates the options, checks the folders exist, loads the models a selected part needs (SD
// for vae/fidelity, BLIP for captioner/fidelity) and runs the selected parts in order.
// Throws tinv::Error: options (named), a missing folder (--model / --captioner), a BLIP folder
// without vocab.txt, any load error (naming the file).
EvalReport run_world_eval(const EvalOptions& opts);

// The table `tinv world eval` prints: PSNR, captioner and fidelity accuracy per attribute with
// target and PASS/FAIL, a few failures, timings.
std::string format_report(const EvalReport& report);
// The report as JSON text (nlohmann ordered, 2-space indent): options, then each part run.
std::string report_json(const EvalReport& report);

// Generates one image per prompt in one batch: image i is what tinv::generate gives for
// prompt i with seed seeds[i] and batch 1 (the same noise; equal up to float rounding of the
// batched UNet), using o's sampler, steps, cfg, eta, width/height and an empty negative prompt
// (o.prompt, o.negative_prompt, o.seed and o.batch are ignored). Any family: SDXL gets its
// pooled prompts, o's time_ids and the zeroed empty negative as tinv::generate does. Returns float32
// [B, 3, H, W] in [0, 1] on the CPU.
torch::Tensor generate_prompts(StableDiffusion& sd, const std::vector<std::string>& prompts,
                               const std::vector<uint64_t>& seeds, const GenerateOptions& o);
// The same with learned embeddings: the prompts may use the triggers of `extra`, which must have
// been added to sd.tokenizer (ExtraTokens::add_trigger), as tinv::generate requires.
torch::Tensor generate_prompts(StableDiffusion& sd, const ExtraTokens& extra, const std::vector<std::string>& prompts,
                               const std::vector<uint64_t>& seeds, const GenerateOptions& o);

// The captioner reads world images (tinv::Image) as rendered, and generated images [3, H, W]
// in [0, 1] through tinv::unit_tensor_to_image (io/image_tensor.h: rounded to 8 bits).
// How the world captioner reads world images (it was trained and is measured this way): greedy,
// BLIP's prompt "a picture of", 1 to 40 tokens.
CaptionOptions world_caption_options();

}  // namespace tinv::world
