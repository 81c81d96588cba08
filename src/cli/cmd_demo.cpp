// `tinv demo`: caption -> invert -> generate on one image, with an HTML report
// (src/apps/demo.h).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "apps/demo.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "common/default_models.h"

namespace tinv::cli {

void add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "Learn a concept from one image and show it in new prompts (HTML report)");
  auto o = std::make_shared<DemoOptions>();
  auto write_concepts = std::make_shared<std::string>();
  auto* concept_opt = cmd->add_option("--concept", o->concept_name,
                                      "Bundled concept image (models/concepts/NAME.png; default: the first)");
  cmd->add_option("--image", o->image, "An image file instead of a bundled concept")->excludes(concept_opt);
  cmd->add_option("--model", o->model, "Stable Diffusion model (default: the bundled world-sd)");
  cmd->add_option("--captioner", o->captioner, "BLIP folder (default: the bundled world-blip)");
  cmd->add_option("--caption", o->caption, "Use this caption instead of running the captioner");
  add_parsed(cmd, "--init-from", o->init_from, parse_demo_init,
             "auto | caption (every caption token) | object (the world caption's object words)")
      ->default_str(to_string(o->init_from));
  cmd->add_option("--name", o->name, "Concept name: placeholders <name_i>, trigger <name>");
  cmd->add_option("--steps", o->steps, "Inversion steps")->capture_default_str();
  cmd->add_option("--lr", o->lr, "Inversion learning rate")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the inversion and of image 0 of each prompt")->capture_default_str();
  cmd->add_option("--samples", o->samples, "Images per prompt, before and after")->capture_default_str();
  cmd->add_option("--sample-steps", o->sample_steps, "Sampling steps per image")->capture_default_str();
  cmd->add_option("--sampler", o->sampler, "default, ddim, euler, euler_a, dpmpp_2m, pndm")->capture_default_str();
  cmd->add_option("--cfg", o->cfg,
                  "Classifier-free guidance scale (0: 3 with the bundled world model, 7.5 with --model)")
      ->capture_default_str();
  cmd->add_option("--beams", o->beams, "Captioning beams (1 = greedy)")->capture_default_str();
  cmd->add_option("--out", o->out, "Output folder (index.html, PNGs, embedding)")->capture_default_str();
  add_device(cmd, o->device);
  add_threads(cmd);
  add_attention_store(cmd);
  cmd->add_flag("!--no-progress", o->progress, "No progress bars");
  cmd->add_option("--write-concepts", *write_concepts,
                  "Only write the bundled concept images (NAME.png per world concept) to this folder");
  cmd->callback([o, write_concepts] {
    if (!write_concepts->empty()) {
      for (const auto& f : write_bundled_concepts(*write_concepts)) std::printf("wrote %s\n", f.c_str());
      return;
    }
    if (std::string exe = executable_path(); !exe.empty()) o->program = exe;
    DemoResult r = run_demo(*o);
    std::printf("caption: %s\n", r.caption.c_str());
    std::printf("initialisation (%s): %s\n", to_string(r.init_from).c_str(), r.init_text.c_str());
    for (const auto& [stage, secs] : r.timings) std::printf("%s: %.1f s\n", stage.c_str(), secs);
    std::printf("report: %s\n", r.report.c_str());
  });
}

}  // namespace tinv::cli
