// Parity case group 'ti_train' (see ../shared/fixtures/README.md): one reference textual
// inversion run replayed through the real trainer (InversionTrainer + run_steps), with the
// fixture's templates, placeholders, template choices, timesteps, noises and latents as the
// step source.
//   ti_train.input_ids        tokenised prompts (and caption ids) vs the reference, exact
//   ti_train.init_embeddings  caption token rows, rel 1e-3
//   ti_train.losses           loss before each update, max over steps of |ours-ref|/|ref| <= 1e-4
//   ti_train.first_step_grad  d loss_0 / d rows, rel 1e-3
//   ti_train.final_embeddings rows after all updates, rel 1e-3
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <sstream>

#include "common/fs.h"
#include "inversion/trainer.h"
#include "io/safetensors.h"
#include "models/stable_diffusion.h"
#include "parity/parity.h"
#include "parity/ti_train_replay.h"

namespace tinv::parity {

FixtureSource::FixtureSource(const SafeTensors& f, const torch::Device& device)
    : template_index_(f.get("template_index", torch::kInt64)),
      timesteps_(input(f, "timesteps", device, torch::kInt64)),
      noises_(input(f, "noises", device)),
      latents_(input(f, "latents", device)) {}

StepInputs FixtureSource::draw(int64_t step) {
  StepInputs in;
  auto ti = template_index_[step].contiguous();
  in.template_index.assign(ti.data_ptr<int64_t>(), ti.data_ptr<int64_t>() + ti.numel());
  in.timesteps = timesteps_[step];
  in.noise = noises_[step];
  in.latents = latents_;
  return in;
}

int64_t FixtureSource::steps() const { return timesteps_.size(0); }

TiTrainFixture open_ti_train(const std::string& dir, const torch::Device& device, bool xl, torch::ScalarType dtype) {
  const std::string path = join_path(dir, "cases/ti_train.safetensors");
  TiTrainFixture fx{path, SafeTensors::open(path)};
  fx.md = fx.file.metadata();
  auto& md = fx.md;
  for (const char* key : {"caption", "templates", "placeholders"})
    TINV_CHECK(md.count(key), path, "missing metadata '", key, "'");
  SdLoadOptions load;
  load.device = device;
  load.dtype = dtype;
  fx.sd = load_stable_diffusion(join_path(dir, "model"), load);
  if (xl) TINV_CHECK(fx.sd.is_xl(), dir, "model/ did not load as SDXL");
  if (md.count("prediction_type"))
    TINV_CHECK(md["prediction_type"] == fx.sd.scheduler.prediction_type, path, "fixture prediction type '",
               md["prediction_type"], "' but the model's scheduler says '", fx.sd.scheduler.prediction_type, "'");
  fx.templates = nlohmann::json::parse(md["templates"]).get<std::vector<std::string>>();
  std::istringstream words(md["placeholders"]);
  for (std::string w; words >> w;) fx.placeholders.push_back(w);
  return fx;
}

TrainerOptions ti_train_options(const TiTrainFixture& fx, int64_t steps) {
  TrainerOptions opt;  // AdamW lr 5e-3, betas (0.9, 0.999), wd 1e-2, eps 1e-8, constant
  if (fx.md.count("lr")) opt.adam.lr = std::stod(fx.md.at("lr"));
  opt.schedule = LrSchedule::make(LrScheduleKind::kConstant, opt.adam.lr, steps);
  return opt;
}

TiTrainReplay replay(InversionTrainer& trainer, FixtureSource& source) {
  TiTrainReplay run;
  run_steps(trainer, source, source.steps(), [&](int64_t k, const StepResult& r) {
    run.losses.push_back(r.loss);
    if (k == 0) run.first_grad = r.grad;
  });
  return run;
}

CaseResult losses_case(const std::string& name, const TiTrainReplay& run, const SafeTensors& f,
                       torch::ScalarType dtype) {
  const double tol = tol_at(dtype, 1e-4, kBf16LossRel);
  return guarded(name, [&] {
    auto ref = f.get("losses").to(torch::kFloat64);
    auto ours = torch::tensor(run.losses, torch::kFloat64);
    if (ours.numel() != ref.numel())
      return failed(name, str_cat("ran ", ours.numel(), " steps, reference has ", ref.numel()));
    CaseResult r = compare_rel(name, ours, ref, tol);  // for max_abs
    r.rel = ((ours - ref).abs() / ref.abs()).max().item<double>();
    r.tol = dtype == torch::kBFloat16 ? "rel 5e-3 per step" : "rel 1e-4 per step";
    r.pass = r.rel <= tol;
    r.note =
        r.pass ? str_cat(ours.numel(), " steps; rel = max over steps of |ours-ref|/|ref|") : "per-step loss mismatch";
    return r;
  });
}

std::vector<CaseResult> run_ti_train(const std::string& dir, const torch::Device& device, torch::ScalarType dtype) {
  const std::vector<std::string> names = {"ti_train.input_ids", "ti_train.init_embeddings", "ti_train.losses",
                                          "ti_train.first_step_grad", "ti_train.final_embeddings"};
  try {
    TiTrainFixture fx = open_ti_train(dir, device, false, dtype);
    const SafeTensors& f = fx.file;
    StableDiffusion& sd = fx.sd;
    auto caption_t = torch::tensor(sd.tokenizer->tokenize(fx.md["caption"]), torch::kInt64);
    auto init = sd.text_encoder->token_embeddings(caption_t.to(device));  // [n, d]
    FixtureSource source(f, device);
    InversionTrainer trainer(*sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler, fx.placeholders, init, fx.templates,
                             ti_train_options(fx, source.steps()));

    std::vector<CaseResult> out;
    out.push_back(guarded(names[0], [&] {
      auto ref_caption = f.get("init_caption_ids", torch::kInt64);
      if (!caption_t.equal(ref_caption)) return failed(names[0], "caption ids differ from init_caption_ids");
      auto ref = f.get("input_ids", torch::kInt64);  // [steps, B, 77]
      std::vector<torch::Tensor> ours;
      for (int64_t k = 0; k < source.steps(); ++k) ours.push_back(trainer.prompt_ids(source.draw(k).template_index));
      return compare_exact(names[0], torch::stack(ours), ref);
    }));
    out.push_back(guarded(names[1], [&] {
      return compare_rel(names[1], init, f.get("init_embeddings"), tol_at(dtype, 1e-3, kBf16InitRel));
    }));
    const TiTrainReplay run = replay(trainer, source);
    out.push_back(losses_case(names[2], run, f, dtype));
    out.push_back(guarded(names[3], [&] {
      return compare_rel(names[3], run.first_grad, f.get("first_step_grad"), tol_at(dtype, 1e-3, kBf16GradRel));
    }));
    out.push_back(guarded(names[4], [&] {
      return compare_rel(names[4], trainer.embeddings(), f.get("final_embeddings"), tol_at(dtype, 1e-3, kBf16Rel));
    }));
    return out;
  } catch (const std::exception& e) {
    return all_failed(names, e.what());
  }
}

}  // namespace tinv::parity
