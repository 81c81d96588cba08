// `tinv invert`: textual inversion with captioning initialisation (src/apps/invert.h).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "apps/invert.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "common/default_models.h"
#include "inversion/trainer.h"

namespace tinv::cli {

void add_invert(CLI::App& app) {
  auto* cmd = app.add_subcommand("invert", "Learn placeholder embeddings for a concept from one or a few images");
  auto o = std::make_shared<InvertOptions>();
  cmd->add_option("--model", o->model, "Diffusers folder or single-file checkpoint (default: the bundled world-sd)");
  cmd->add_option("--image", o->images, "Image files or folders (one or more)")->required();
  add_parsed(cmd, "--init", o->init, parse_init_mode, "Initialisation: caption | class | token")
      ->default_str(to_string(o->init));
  cmd->add_option("--caption", o->caption, "Caption of the images (--init caption)");
  cmd->add_option("--captioner", o->captioner,
                  "BLIP model folder to write the caption (default without --caption: the bundled "
                  "world-blip)");
  cmd->add_option("--class", o->class_name, "Class word(s) (--init class)");
  cmd->add_option("--init-token", o->init_token, "One vocabulary token (--init token)")->capture_default_str();
  cmd->add_option("--num-vectors", o->num_vectors, "Rows (--init token)")->capture_default_str();
  cmd->add_option("--name", o->name, "Concept name: placeholders <name_i>, trigger <name>")->capture_default_str();
  cmd->add_option("--steps", o->steps, "Optimisation steps")->capture_default_str();
  cmd->add_option("--lr", o->lr, "AdamW learning rate")->capture_default_str();
  cmd->add_option("--batch", o->batch, "Batch size")->capture_default_str();
  add_parsed(cmd, "--templates", o->templates, parse_templates, "object | style | FILE (one per line, with {})")
      ->default_str(to_string(o->templates));
  cmd->add_option("--resolution", o->resolution, "Training resolution (default: VAE sample_size)");
  cmd->add_flag("--flip", o->flip, "Also train on horizontally flipped images");
  cmd->add_option("--seed", o->seed, "Seed of the per-step draws")->capture_default_str();
  add_parsed(cmd, "--lr-schedule", o->lr_schedule, parse_lr_schedule, "constant | cosine | warmup")
      ->default_str(to_string(o->lr_schedule));
  cmd->add_option("--warmup-steps", o->warmup_steps, "Linear warm-up steps (default: warmup 10%)");
  cmd->add_option("--max-grad-norm", o->max_grad_norm, "Clip the gradient norm (0: off)")->capture_default_str();
  cmd->add_option("--out", o->out, "Output file (default <name>.safetensors)");
  add_parsed(cmd, "--format", o->format, parse_output_format,
             "diffusers | a1111 | kohya | all (SDXL: always the clip_l/clip_g file; diffusers and all "
             "add the load_textual_inversion pair in <stem>.diffusers/)")
      ->default_str(to_string(o->format));
  cmd->add_option("--save-every", o->save_every, "Checkpoint every N steps (0: at the end)")->capture_default_str();
  cmd->add_flag("--resume", o->resume, "Continue from <stem>.checkpoint.safetensors");
  cmd->add_option("--preview-every", o->preview_every, "Preview image every N steps (0: off)")->capture_default_str();
  cmd->add_option("--preview-prompt", o->preview_prompt, "Preview prompt; {} = the trigger")->capture_default_str();
  cmd->add_option("--eval-every", o->eval_every, "Fixed-input loss every K steps (0: off)")->capture_default_str();
  cmd->add_option("--eval-pairs", o->eval_pairs, "Fixed (timestep, noise) pairs")->capture_default_str();
  MethodOptions& m = o->method;  // docs/INVERSION.md, "Method options"
  add_parsed(cmd, "--optimizer", m.optimizer, parse_optimizer,
             "adamw | sphere (norm-fixed rows, only their direction learns: Riemannian Adam)")
      ->default_str(to_string(m.optimizer));
  add_parsed(cmd, "--sphere-norm", m.sphere_norm, parse_sphere_norm,
             "sphere: mean (the vocabulary's mean token norm) | init (each row's initial norm)")
      ->default_str(to_string(m.sphere_norm));
  cmd->add_option("--vmf-kappa", m.vmf_kappa,
                  "sphere: von Mises-Fisher prior weight toward the initial direction (0: off)")
      ->capture_default_str();
  add_parsed(cmd, "--init-space", m.init_space, parse_init_space,
             "input (token embeddings) | output (the text encoder's output for each init token: "
             "cross initialisation)")
      ->default_str(to_string(m.init_space));
  cmd->add_option("--reg-init", m.reg_init, "Weight of the L2 pull of the rows toward their start (0: off)")
      ->capture_default_str();
  cmd->add_option("--t-min", m.t_min, "Lowest training timestep")->capture_default_str();
  cmd->add_option("--t-max", m.t_max, "Highest training timestep (-1: the schedule's last)")->capture_default_str();
  cmd->add_option("--stop-delta", m.stop_delta, "Early stop: relative improvement of the fixed-input loss that counts")
      ->capture_default_str();
  cmd->add_option("--stop-patience", m.stop_patience,
                  "Early stop after this many fixed-input evaluations without improvement (0: off)")
      ->capture_default_str();
  add_device(cmd, o->device);
  add_threads(cmd);
  add_attention_store(cmd);
  add_dtype(cmd, o->dtype);
  cmd->add_flag("!--no-progress", o->progress, "No progress bar");
  cmd->callback([o] {
    if (o->model.empty()) o->model = default_model_dir("world-sd");
    if (o->init == InitMode::kCaption && o->caption.empty() && o->captioner.empty())
      o->captioner = default_model_dir("world-blip");
    InvertResult r = run_inversion(*o);
    std::printf("caption: %s\n", r.caption.c_str());
    std::printf("embedding: %lld x %lld\n", static_cast<long long>(r.embeddings.size(0)),
                static_cast<long long>(r.embeddings.size(1)));
    if (r.stopped_at >= 0) std::printf("stopped early at step %lld\n", static_cast<long long>(r.stopped_at));
    for (const auto& f : r.files) std::printf("wrote %s\n", f.c_str());
  });
}

}  // namespace tinv::cli
