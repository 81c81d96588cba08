// `tinv world eval`: quality of the embedded world models on held-out scenes (apps/world_eval.h):
// VAE reconstruction PSNR, BLIP captioner accuracy per attribute (target 95%), prompt fidelity
// per attribute (target 90%), the concept judge's validation. Prints a table on stdout; --json
// writes the report atomically.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <memory>

#include "apps/world_eval.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "common/error.h"
#include "common/fs.h"

namespace tinv::cli {
namespace {

struct WorldEvalArgs {
  world::EvalOptions opts;
  std::string only = "all";
  std::string split = "heldout";
  std::string json;
  bool quiet = false;
};

void run_world_eval_cmd(const WorldEvalArgs& a) {
  world::EvalOptions o = a.opts;
  o.parts = world::parse_parts(a.only);
  o.split = a.split == "train" ? world::Split::kTrain : world::Split::kHeldOut;
  o.progress = !a.quiet;
  // Fail before the long run when the report could not be written.
  if (!a.json.empty()) {
    const std::string dir = parent_dir(a.json);
    TINV_CHECK(!dir_exists(a.json), "--json", "'", a.json, "' is a folder");
    TINV_CHECK(dir.empty() || dir_exists(dir), "--json", "no such folder: '", dir, "'");
  }
  world::EvalReport r = world::run_world_eval(o);
  std::cout << world::format_report(r) << std::flush;
  if (!a.json.empty()) {
    const std::string text = world::report_json(r);
    write_file_atomically(a.json, text.data(), text.size());
    std::fprintf(stderr, "wrote %s\n", a.json.c_str());
  }
}

}  // namespace

void add_world_eval(CLI::App* world) {
  auto* cmd = world->add_subcommand(
      "eval",
      "Measure the world models: VAE PSNR, captioner accuracy, prompt fidelity (held-out scenes), concept judge");
  auto a = std::make_shared<WorldEvalArgs>();
  world::EvalOptions& o = a->opts;
  cmd->add_option("--model", o.sd_dir, "World Stable Diffusion folder (diffusers)")->capture_default_str();
  cmd->add_option("--captioner", o.blip_dir, "World BLIP folder (with vocab.txt)")->capture_default_str();
  cmd->add_option("--seed", o.seed, "World seed of the held-out scenes; image i uses seed + i")->capture_default_str();
  cmd->add_option("--split", a->split,
                  "heldout: scenes with object/background colour pairs training never shows; train: "
                  "unseen scenes of the training distribution")
      ->capture_default_str()
      ->check(CLI::IsMember({"heldout", "train"}));
  add_unnamed_dot(cmd, o.rules.unnamed_dot);  // default: the bundled models' world
  cmd->add_option("--vae-scenes", o.vae_scenes, "Held-out scenes for the VAE PSNR")->capture_default_str();
  cmd->add_option("--caption-scenes", o.caption_scenes, "Held-out scenes for the captioner accuracy")
      ->capture_default_str();
  cmd->add_option("--fidelity-prompts", o.fidelity_prompts, "Held-out captions to generate from")
      ->capture_default_str();
  cmd->add_option("--judge-renders", o.judge_renders, "Renderings per concept for the concept judge's validation")
      ->capture_default_str();
  cmd->add_option("--sampler", o.sampler, "Sampler for prompt fidelity")->capture_default_str();
  cmd->add_option("--steps", o.steps, "Sampler steps")->capture_default_str();
  cmd->add_option("--cfg", o.cfg, "Classifier-free guidance scale (1 = off)")->capture_default_str();
  cmd->add_option("--batch", o.batch, "Images per VAE/UNet batch")->capture_default_str();
  add_device(cmd, o.device);
  add_threads(cmd);
  cmd->add_option("--only", a->only, "Parts to run: comma-separated vae, captioner, fidelity, judge (or all)")
      ->capture_default_str();
  cmd->add_option("--json", a->json, "Also write the report as JSON to this file");
  add_quiet(cmd, a->quiet, "No progress bars");
  cmd->callback([a] { run_world_eval_cmd(*a); });
}

}  // namespace tinv::cli
