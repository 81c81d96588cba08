// `tinv invert` as a library call: load the model, decode the images, initialise the
// placeholder rows (caption, class or token; BLIP when no caption is given), cache the latents,
// run the trainer core (inversion/trainer.h) with checkpoints, previews and the fixed-input
// loss, and write the embedding files.
//
//   tinv::InvertOptions o;  o.model = "sd15"; o.images = {"cat.png"}; o.caption = "a cat";
//   tinv::InvertResult res = tinv::run_inversion(o);
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/device.h"
#include "inversion/lr_schedule.h"
#include "inversion/method.h"
#include "inversion/templates.h"

namespace tinv {

struct PreviewRequest {
  int64_t step = 0;       // updates done
  std::string trigger;    // the trigger word of the embedding ("<concept>")
  torch::Tensor vectors;  // [n, d] current rows
  std::string prompt;     // --preview-prompt with "{}" -> trigger (or the prompt as given)
  std::string path;       // PNG to write
};

// --init: what the placeholder rows start from.
//   kCaption  the caption's tokens (--caption TEXT, or the captioner's caption of the first image)
//   kClass    the class word(s)' tokens (--class)
//   kToken    num_vectors copies of one vocabulary token (--init-token)
enum class InitMode { kCaption, kClass, kToken };
// "caption" | "class" | "token": the --init text, and the "init" the files' metadata record.
std::string to_string(InitMode mode);
// The inverse of to_string; throws tinv::Error("--init", "unknown mode ...") for other text.
InitMode parse_init_mode(const std::string& name);

// --format: the embedding files an SD1/SD2 run writes (one of them, or kAll: all three; see
// invert_paths). Not io/embeddings.h's EmbeddingFormat, which names one file's format.
enum class OutputFormat { kDiffusers, kA1111, kKohya, kAll };
// "diffusers" | "a1111" | "kohya" | "all".
std::string to_string(OutputFormat format);
// The inverse of to_string; throws tinv::Error("--format", "unknown format ...") for other text.
OutputFormat parse_output_format(const std::string& name);

struct InvertOptions {
  std::filesystem::path model;                // diffusers folder or single file
  std::vector<std::filesystem::path> images;  // files or folders
  InitMode init = InitMode::kCaption;
  std::string caption;              // caption: the text
  std::filesystem::path captioner;  // caption without text: a captioner model folder
  std::string class_name;           // class: its tokens initialise the rows
  std::string init_token = "*";     // token: one vocabulary token
  int64_t num_vectors = 1;          // token: number of rows
  std::string name = "concept";     // placeholders <name_0> ...; trigger <name>
  int64_t steps = 100;
  double lr = 5e-3;
  int64_t batch = 1;
  TemplateSource templates = BuiltinTemplates::kObject;  // --templates object | style | FILE
  int64_t resolution = 0;                                // 0: the VAE's sample_size
  bool flip = false;
  uint64_t seed = 0;
  LrScheduleKind lr_schedule = LrScheduleKind::kConstant;  // constant | cosine | warmup
  int64_t warmup_steps = -1;                               // -1: the schedule's default
  double max_grad_norm = 0;                                // 0: no clipping
  std::filesystem::path out;                               // default <name>.safetensors (<name>.pt for a1111)
  OutputFormat format = OutputFormat::kDiffusers;
  int64_t save_every = 0;  // checkpoint every N steps (0: only at the end)
  bool resume = false;
  int64_t preview_every = 0;
  std::string preview_prompt = "a photo of {}";
  int64_t eval_every = 10;                    // fixed-input loss every K steps (0: never)
  int64_t eval_pairs = 4;                     // number of fixed (timestep, noise) pairs
  MethodOptions method;                       // --optimizer, --init-space, --t-min, --stop-patience, ...
                                              // (inversion/method.h; defaults: the base recipe)
  DeviceChoice device;                        // std::nullopt: auto (CUDA when available)
  torch::ScalarType dtype = torch::kFloat32;  // fp32 | bf16 | fp16 (CUDA)
  bool progress = true;
};

struct InvertResult {
  torch::Tensor embeddings;        // [n, d] final rows
  std::vector<std::string> files;  // every file written
  std::string caption;             // the initialisation text used (after trimming)
  std::vector<std::string> notes;  // warnings and notes printed
  int64_t steps_done = 0;          // updates made (the run's total, resumed ones included)
  int64_t stopped_at = -1;         // early stop (--stop-patience): the step it stopped at; -1: none
  bool xl = false;                 // an SDXL model: rows [n, h1 + h2], files as invert_paths(.., true)
  std::string loss_svg;            // the loss plot (<stem>.loss.png) as SVG markup, for reports
};

// Throws tinv::Error with a one-line message on any bad input; on a non-finite loss it stops,
// keeps the last checkpoint and outputs untouched, and throws.
InvertResult run_inversion(const InvertOptions& options);

// Output paths for `out` (see docs/INVERSION.md): stem = out without its extension.
// SDXL (`xl`): `sdxl` is the {clip_l, clip_g} file (stem.safetensors, every format: the
// A1111/ComfyUI/kohya convention), `diffusers_pair` the load_textual_inversion pair
// (stem.diffusers/learned_embeds[_2].safetensors, formats diffusers and all); the SD1 fields
// stay empty.
struct InvertPaths {
  std::string diffusers, a1111, kohya, checkpoint, log_csv, plot_png, previews_dir;
  std::string sdxl, diffusers_pair;
};
InvertPaths invert_paths(const std::string& out, OutputFormat format, bool xl = false);

}  // namespace tinv
