// `tinv generate --model M --prompt P [...]`: text-to-image, one PNG per image with the
// generation parameters in a `parameters` tEXt chunk (A1111 convention), plus a grid for batches.
//
// Order of work, so that bad input fails fast and nothing is half-written: options validated,
// output folder checked, embedding files checked to exist, model loaded, embeddings loaded,
// images generated, every PNG encoded in memory, then each written atomically.

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <random>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/default_models.h"
#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "io/image_write.h"
#include "models/stable_diffusion.h"
#include "pipelines/generate.h"
#include "text/clip_tokenizer.h"

namespace tinv::cli {
namespace {

struct GenerateArgs {
  std::string model, tokenizer, config, prediction_type;
  std::vector<std::string> embeddings;
  std::string out = "outputs";
  DeviceChoice device;  // auto
  torch::ScalarType dtype = torch::kFloat32;
  int64_t seed = -1;  // -1: random
  bool quiet = false;
  GenerateOptions opts;
};

// Throws unless `out` is, or can be created as, a writable folder.
void check_output_dir(const std::string& out) {
  TINV_CHECK(!out.empty(), "--out", "empty output folder");
  check_creatable_dir(out, "--out");
}

void make_output_dir(const std::string& out) {
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  TINV_CHECK(!ec, "--out", "cannot create '", out, "': ", ec.message());
}

void run_generate(GenerateArgs& a) {
  TINV_CHECK(a.seed >= -1, "--seed", "must be >= 0 (or -1 for a random seed), got ", a.seed);
  validate(a.opts);
  check_output_dir(a.out);
  if (a.model.empty()) a.model = default_model_dir("world-sd");
  for (const auto& e : a.embeddings) TINV_CHECK(file_exists(e) || dir_exists(e), e, "no such embedding file");
  SdLoadOptions lo;
  lo.device = resolve_device(a.device);
  check_dtype(a.dtype, lo.device);
  lo.dtype = a.dtype;
  lo.tokenizer_dir = a.tokenizer;
  lo.config_dir = a.config;
  lo.prediction_type = a.prediction_type;
  a.opts.seed = a.seed >= 0 ? static_cast<uint64_t>(a.seed) : std::random_device{}() & 0xffffffffu;
  a.opts.progress = !a.quiet;

  StableDiffusion sd = load_stable_diffusion(a.model, lo);
  ExtraTokens extra = add_embeddings(sd, a.embeddings);
  for (const auto* p : {&a.opts.prompt, &a.opts.negative_prompt})
    if (sd.tokenizer->encode(extra.expand(*p)).truncated)
      std::fprintf(stderr, "tinv: warning: %s is longer than %lld tokens and was truncated\n",
                   p == &a.opts.prompt ? "the prompt" : "the negative prompt",
                   static_cast<long long>(sd.tokenizer->max_length()));
  make_output_dir(a.out);

  GenerateResult r = generate(sd, extra, a.opts);

  std::vector<std::pair<std::string, std::vector<uint8_t>>> files;  // encoded before any write
  std::vector<torch::Tensor> images;
  for (int64_t i = 0; i < r.images.size(0); ++i) {
    std::string path = join_path(a.out, std::to_string(a.opts.seed) + "-" + std::to_string(i) + ".png");
    images.push_back(r.images[i]);
    files.emplace_back(path, encode_png(r.images[i], {{"parameters", r.image_parameters[i]}}, path));
  }
  if (images.size() > 1) {
    std::string path = join_path(a.out, std::to_string(a.opts.seed) + "-grid.png");
    auto cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(images.size()))));
    files.emplace_back(path, encode_png(make_grid(images, cols), {{"parameters", r.parameters}}, path));
  }
  for (const auto& [path, bytes] : files) {
    write_file_atomically(path, bytes.data(), bytes.size());
    std::cout << path << "\n";
  }
}

}  // namespace

void add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Text-to-image generation (with learned embeddings)");
  auto a = std::make_shared<GenerateArgs>();
  auto& o = a->opts;
  cmd->add_option("--model", a->model,
                  "Diffusers folder or single-file checkpoint (.safetensors); default: the bundled "
                  "world-sd");
  cmd->add_option("--prompt", o.prompt, "Prompt (embedding triggers allowed)")->required();
  cmd->add_option("--negative-prompt", o.negative_prompt, "Negative prompt");
  cmd->add_option("--embedding", a->embeddings,
                  "Embedding file (diffusers, A1111 .pt, emb_params safetensors; SDXL: clip_l/clip_g "
                  "safetensors or a diffusers pair); repeatable")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--sampler", o.sampler, "default (the model's), ddim, euler, euler_a, dpmpp_2m, pndm")
      ->capture_default_str();
  cmd->add_option("--steps", o.steps, "Sampling steps")->capture_default_str();
  cmd->add_option("--cfg", o.cfg, "Classifier-free guidance scale")->capture_default_str();
  cmd->add_option("--eta", o.eta, "DDIM eta (0 = deterministic)")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Seed of image 0 (image i uses seed + i); -1 = random")->capture_default_str();
  cmd->add_option("--width", o.width, "Width in pixels, multiple of 8 (0 = model default)");
  cmd->add_option("--height", o.height, "Height in pixels, multiple of 8 (0 = model default)");
  cmd->add_option("--original-width", o.original_width, "SDXL time_ids: original width (0 = --width)");
  cmd->add_option("--original-height", o.original_height, "SDXL time_ids: original height (0 = --height)");
  cmd->add_option("--crop-top", o.crop_top, "SDXL time_ids: crop top coordinate")->capture_default_str();
  cmd->add_option("--crop-left", o.crop_left, "SDXL time_ids: crop left coordinate")->capture_default_str();
  cmd->add_option("--target-width", o.target_width, "SDXL time_ids: target width (0 = --width)");
  cmd->add_option("--target-height", o.target_height, "SDXL time_ids: target height (0 = --height)");
  cmd->add_flag("--encode-empty-negative", o.encode_empty_negative,
                "SDXL: encode an empty negative prompt instead of zeroing it (force_zeros_for_empty_prompt)");
  cmd->add_option("--batch", o.batch, "Images to generate")->capture_default_str();
  cmd->add_option("--out", a->out, "Output folder (created if needed)")->capture_default_str();
  add_device(cmd, a->device);
  add_threads(cmd);
  add_dtype(cmd, a->dtype);
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer folder (single-file checkpoints)");
  cmd->add_option("--config", a->config, "Diffusers folder giving configs and tokenizer (single files)");
  cmd->add_option("--prediction-type", a->prediction_type, "Override: epsilon, v_prediction, sample");
  add_quiet(cmd, a->quiet);
  cmd->callback([a] { run_generate(*a); });
}

}  // namespace tinv::cli
