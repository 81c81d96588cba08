// `tinv study`: caption vs class vs single-token initialisation of textual inversion, measured
// for convergence and quality (src/apps/study.h, docs/convergence.md).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>

#include "apps/study.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "common/error.h"

namespace tinv::cli {
namespace {

struct StudyArgs {
  StudyOptions given;  // values from the command line
  std::string modes = "caption,class,token";
  std::string variants;
  bool quick = false, quiet = false;
  // option name -> copies that option's value from `given` (applied when it was given, over
  // the defaults or the --quick preset).
  std::vector<std::pair<CLI::Option*, std::function<void(StudyOptions&)>>> setters;
};

template <typename T>
void option(CLI::App* cmd, StudyArgs& a, const std::string& name, T StudyOptions::*field, const std::string& help) {
  auto* opt = cmd->add_option(name, a.given.*field, help);
  if constexpr (!std::is_same_v<T, std::vector<std::string>> && !std::is_same_v<T, std::vector<int64_t>> &&
                !std::is_same_v<T, std::vector<std::filesystem::path>>)
    opt->capture_default_str();
  a.setters.push_back({opt, [&a, field](StudyOptions& o) { o.*field = a.given.*field; }});
}

// The same for a typed field whose text `parse` reads (add_parsed); `shown` is the default in --help.
template <typename T, typename Parse>
void parsed_option(CLI::App* cmd, StudyArgs& a, const std::string& name, T StudyOptions::*field, Parse parse,
                   const std::string& help, const std::string& shown) {
  auto* opt = add_parsed(cmd, name, a.given.*field, parse, help)->default_str(shown);
  a.setters.push_back({opt, [&a, field](StudyOptions& o) { o.*field = a.given.*field; }});
}

std::optional<uint64_t> parse_concept_index(const std::string& text) {
  if (text == "portrait") return std::nullopt;
  const bool digits = !text.empty() && text.size() <= 18 && text.find_first_not_of("0123456789") == std::string::npos;
  TINV_CHECK(digits, "--concept-index", "expected a rendering number or 'portrait', got '", text, "'");
  return std::stoull(text);
}

void run_study_cmd(StudyArgs& a, CLI::Option* modes_opt, CLI::Option* variants_opt) {
  StudyOptions o = a.quick ? study_quick_options() : StudyOptions{};
  for (auto& [opt, set] : a.setters)
    if (opt->count() > 0) set(o);
  if (modes_opt->count() > 0 && variants_opt->count() > 0)
    throw Error("--variants", "replaces --modes (a plain mode is a variant: caption,caption+sphere); give one of them");
  if (modes_opt->count() > 0) o.modes = parse_modes(a.modes);
  if (variants_opt->count() > 0) o.modes = parse_variants(a.variants);
  if (!o.images.empty() && a.quick) o.concepts.clear();  // the preset's concept is a world one
  o.progress = !a.quiet;
  StudyResult r = run_study(o);
  std::printf("%s", r.summary.c_str());
  for (const auto& f : r.files) std::printf("wrote %s\n", f.c_str());
}

}  // namespace

void add_study(CLI::App& app) {
  auto* cmd = app.add_subcommand("study",
                                 "Compare caption, class and single-token initialisation of textual inversion: "
                                 "convergence and quality over concepts and seeds");
  auto a = std::make_shared<StudyArgs>();
  StudyArgs& s = *a;
  option(cmd, s, "--model", &StudyOptions::model,
         "Stable Diffusion model (diffusers folder or single file; default: the bundled world-sd)");
  option(cmd, s, "--captioner", &StudyOptions::captioner,
         "BLIP folder (with vocab.txt) for init captions and editability (default: the bundled world-blip)");
  option(cmd, s, "--images", &StudyOptions::images, "User images, one concept each, instead of the world concepts");
  option(cmd, s, "--caption", &StudyOptions::captions, "Init caption per concept, in order (skips the captioner)");
  option(cmd, s, "--class", &StudyOptions::class_name, "Class word(s) for class mode with --images");
  cmd->add_option("--concepts", a->given.concepts, "World concepts, comma-separated (default: all 7)")->delimiter(',');
  a->setters.push_back({cmd->get_option("--concepts"), [a](StudyOptions& o) { o.concepts = a->given.concepts; }});
  auto* modes_opt =
      cmd->add_option("--modes", a->modes, "Init modes: comma-separated caption, class, token")->capture_default_str();
  auto* variants_opt =
      cmd->add_option("--variants", a->variants,
                      "Named option sets instead of --modes, comma-separated: <mode>[+sphere][+cross][+tN|+tA-B], e.g. "
                      "caption,caption+sphere,caption+cross,caption+t500,token,class");
  parsed_option(cmd, s, "--sphere-norm", &StudyOptions::sphere_norm, parse_sphere_norm,
                "+sphere variants: mean | init (as tinv invert)", to_string(s.given.sphere_norm));
  option(cmd, s, "--vmf-kappa", &StudyOptions::vmf_kappa, "+sphere variants: von Mises-Fisher prior weight");
  option(cmd, s, "--reg-init", &StudyOptions::reg_init, "+cross variants: L2 pull toward the start");
  option(cmd, s, "--stop-delta", &StudyOptions::stop_delta, "Early-stop rule: relative improvement that counts");
  option(cmd, s, "--stop-patience", &StudyOptions::stop_patience,
         "Record where the early-stop rule would stop each run, and the quality there (0: off)");
  option(cmd, s, "--init-token", &StudyOptions::init_token, "Token mode: one vocabulary token");
  option(cmd, s, "--seeds", &StudyOptions::seeds, "Runs per concept and mode (seeds 0..N-1)");
  option(cmd, s, "--steps", &StudyOptions::steps, "Optimisation steps per run");
  cmd->add_option("--checkpoints", a->given.checkpoints,
                  "Steps with quality measurements, comma-separated (default 0,25,50,100,200,500 up to --steps; "
                  "--steps is always one)")
      ->delimiter(',');
  a->setters.push_back(
      {cmd->get_option("--checkpoints"), [a](StudyOptions& o) { o.checkpoints = a->given.checkpoints; }});
  option(cmd, s, "--lr", &StudyOptions::lr, "AdamW learning rate (as tinv invert)");
  option(cmd, s, "--eval-every", &StudyOptions::eval_every, "Fixed-input loss every K steps");
  option(cmd, s, "--eval-pairs", &StudyOptions::eval_pairs, "Fixed (timestep, noise) pairs");
  option(cmd, s, "--edits", &StudyOptions::edits, "Re-contextualised prompts per checkpoint (world concepts)");
  option(cmd, s, "--sampler", &StudyOptions::sampler, "Sampler of the quality images");
  option(cmd, s, "--sample-steps", &StudyOptions::sample_steps, "Sampler steps of the quality images");
  option(cmd, s, "--cfg", &StudyOptions::cfg,
         "Classifier-free guidance of the quality images (0: 3 with the bundled world model, 7.5 with --model)");
  option(cmd, s, "--world-seed", &StudyOptions::world_seed, "World seed of the concept renderings");
  parsed_option(cmd, s, "--concept-index", &StudyOptions::concept_index, parse_concept_index,
                "Which rendering of each concept is trained on: N, or portrait (the first large one on a plain "
                "background, the bundled image)",
                "portrait");
  option(cmd, s, "--out", &StudyOptions::out, "Output folder");
  parsed_option(cmd, s, "--device", &StudyOptions::device, parse_device, "auto | cpu | cuda | cuda:N", "auto");
  cmd->add_flag("--quick", a->quick,
                "Tiny configuration for CI: 1 concept, 1 seed, 10 steps, checkpoints 0,5,10, 2 edits, 4 "
                "sampler steps, --out study-quick (options given explicitly still apply)");
  add_threads(cmd);
  add_attention_store(cmd);
  add_quiet(cmd, a->quiet);
  cmd->callback([a, modes_opt, variants_opt] { run_study_cmd(*a, modes_opt, variants_opt); });
}

}  // namespace tinv::cli
