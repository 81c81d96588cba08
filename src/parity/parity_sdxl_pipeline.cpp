// Parity case groups of the SDXL layout that run whole loops (../shared/fixtures/README.md):
//   pipeline  cases/pipeline_euler.safetensors: StableDiffusionXLPipeline, 10 Euler steps, CFG,
//             through tinv's generate pieces (encode_text / encode_ids_xl, denoise, decode):
//             pipeline_euler.{cond_ids, uncond_ids, timesteps, sigmas, cond_prompt_embeds,
//             cond_pooled, final_latents, image} (force_zeros_for_empty_prompt: zero uncond),
//             pipeline_euler.encoded_negative.{uncond_prompt_embeds, uncond_pooled, final_latents}
//             (negative prompt "" encoded), pipeline_euler.ti.{cond_ids, final_latents}
//             (cases/embedding_sdxl.safetensors loaded as <cube>); ids exact, the rest rel 1e-4
//             (sigmas rel 1e-5, timesteps exact)
//   ti_train  cases/ti_train.safetensors: the reference run, rows of both encoders, replayed
//             through InversionTrainer with one AdamW over both row sets:
//             ti_train.{input_ids_1, input_ids_2} exact, ti_train.{init_l, init_g} rel 1e-3,
//             ti_train.losses (rel 1e-4 per step), ti_train.{first_step_grad_l, first_step_grad_g,
//             final_l, final_g} rel 1e-3
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "inversion/trainer.h"
#include "io/embeddings.h"
#include "io/safetensors.h"
#include "models/stable_diffusion.h"
#include "parity/parity.h"
#include "parity/ti_train_replay.h"
#include "pipelines/generate.h"
#include "schedulers/sampler.h"

namespace tinv::parity {
namespace {

constexpr double kRel = 1e-4;

std::string metadata(const SafeTensors& f, const std::string& key) {
  auto it = f.metadata().find(key);
  TINV_CHECK(it != f.metadata().end(), f.path(), "metadata '", key, "' is missing");
  return it->second;
}

double metadata_number(const SafeTensors& f, const std::string& key) {
  const std::string v = metadata(f, key);
  try {
    return std::stod(v);
  } catch (const std::exception&) {
    throw Error(f.path(), "metadata '" + key + "' is not a number: '" + v + "'");
  }
}

// The ids tinv's tokenizers give `text` (after trigger expansion) vs the reference pair.
CaseResult ids_case(const std::string& name, StableDiffusion& sd, const ExtraTokens& extra, const std::string& text,
                    const SafeTensors& f, const std::string& key1, const std::string& key2) {
  const std::string expanded = extra.expand(text);
  auto ours = torch::stack({torch::tensor(sd.tokenizer->encode(expanded).ids, torch::kInt64),
                            torch::tensor(sd.tokenizer_2->encode(expanded).ids, torch::kInt64)});
  auto ref = torch::cat({f.get(key1, torch::kInt64), f.get(key2, torch::kInt64)});
  return compare_exact(name, ours, ref);
}

}  // namespace

namespace {

struct PipelineFixture {
  std::string dir, path;  // the fixture folder; cases/pipeline_euler.safetensors
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  std::unique_ptr<SafeTensors> file;
  StableDiffusion sd;
  std::unique_ptr<Sampler> sampler;
  double guidance = 0;
  std::string prompt;

  // The denoising loop from the fixture's init latents with conditioning c / unconditional u.
  torch::Tensor run(const Conditioning& c, const Conditioning& u) {
    sampler->set_timesteps(sampler->num_steps());  // fresh state
    auto init = input(*file, "init_latents", device) * sampler->init_noise_sigma();
    return denoise(sd, *sampler, init, c, u, guidance, nullptr, nullptr, input(*file, "time_ids", device));
  }
};

// Opens the case file and the SDXL model, checks the metadata against it, sets the sampler up.
void open_pipeline(PipelineFixture& fx) {
  fx.file = std::make_unique<SafeTensors>(SafeTensors::open(fx.path));
  const SafeTensors& file = *fx.file;
  SdLoadOptions opts;
  opts.device = fx.device;
  opts.dtype = fx.dtype;
  fx.sd = load_stable_diffusion(join_path(fx.dir, "model"), opts);
  TINV_CHECK(fx.sd.is_xl(), fx.dir, "model/ did not load as SDXL");
  const double scaling = metadata_number(file, "scaling_factor");
  TINV_CHECK(std::abs(scaling - fx.sd.vae_config.scaling_factor) < 1e-9, fx.path, "metadata scaling_factor ", scaling,
             " differs from the VAE config's ", fx.sd.vae_config.scaling_factor);
  const bool zeros = metadata(file, "force_zeros_for_empty_prompt") == "true";
  TINV_CHECK(zeros == fx.sd.force_zeros_for_empty_prompt, fx.path,
             "force_zeros_for_empty_prompt differs from model_index.json");
  fx.guidance = metadata_number(file, "guidance_scale");
  fx.prompt = metadata(file, "prompt");
  fx.sampler = make_sampler("euler", fx.sd.scheduler);
  fx.sampler->set_timesteps(static_cast<int64_t>(metadata_number(file, "steps")));
}

// pipeline_euler.{cond_ids, uncond_ids, timesteps, sigmas, cond_prompt_embeds, cond_pooled,
// final_latents, image}; `cond` gets the prompt's conditioning.
void plain_cases(PipelineFixture& fx, Conditioning& cond, std::vector<CaseResult>& results) {
  const std::string p = "pipeline_euler.";
  const SafeTensors& file = *fx.file;
  StableDiffusion& sd = fx.sd;
  ExtraTokens none;
  results.push_back(guarded(
      p + "cond_ids", [&] { return ids_case(p + "cond_ids", sd, none, fx.prompt, file, "cond_ids_1", "cond_ids_2"); }));
  results.push_back(guarded(p + "uncond_ids", [&] {
    return ids_case(p + "uncond_ids", sd, none, "", file, "uncond_ids_1", "uncond_ids_2");
  }));
  results.push_back(guarded(p + "timesteps", [&] {
    CaseResult r = compare_abs(p + "timesteps", fx.sampler->timesteps(), file.get("timesteps"), 0.0);
    r.tol = "exact";
    return r;
  }));
  results.push_back(
      guarded(p + "sigmas", [&] { return compare_rel(p + "sigmas", fx.sampler->sigmas(), file.get("sigmas"), 1e-5); }));
  results.push_back(guarded(p + "cond_prompt_embeds", [&] {
    cond = encode_ids_xl(sd, none, input(file, "cond_ids_1", fx.device, torch::kInt64),
                         input(file, "cond_ids_2", fx.device, torch::kInt64));
    return compare_rel(p + "cond_prompt_embeds", cond.states, file.get("cond_prompt_embeds"),
                       tol_at(fx.dtype, kRel, kBf16Rel));
  }));
  results.push_back(guarded(p + "cond_pooled", [&] {
    TINV_CHECK(cond.pooled.defined(), fx.path, "conditional encoding failed");
    return compare_rel(p + "cond_pooled", cond.pooled, file.get("cond_pooled"), tol_at(fx.dtype, kRel, kBf16Rel));
  }));
  torch::Tensor final_latents;
  results.push_back(guarded(p + "final_latents", [&] {
    TINV_CHECK(cond.states.defined(), fx.path, "conditional encoding failed");
    // No negative prompt + force_zeros_for_empty_prompt: zero states AND pooled (generate() does this).
    Conditioning zero{torch::zeros_like(cond.states), torch::zeros_like(cond.pooled)};
    final_latents = fx.run(cond, zero);
    return compare_rel(p + "final_latents", final_latents, file.get("final_latents"),
                       tol_at(fx.dtype, kRel, kBf16LoopRel));
  }));
  results.push_back(guarded(p + "image", [&] {
    TINV_CHECK(final_latents.defined(), fx.path, "no final latents (the loop failed)");
    return compare_rel(p + "image", decode_latents(sd, final_latents), file.get("image"),
                       tol_at(fx.dtype, kRel, kBf16LoopRel));
  }));
}

// pipeline_euler.encoded_negative.*: negative_prompt="" given explicitly: "" is encoded.
void negative_cases(PipelineFixture& fx, const Conditioning& cond, std::vector<CaseResult>& results) {
  const SafeTensors& file = *fx.file;
  Conditioning neg;
  ExtraTokens none;
  const std::string n = "pipeline_euler.encoded_negative.";
  results.push_back(guarded(n + "uncond_prompt_embeds", [&] {
    neg = encode_text(fx.sd, none, "");
    return compare_rel(n + "uncond_prompt_embeds", neg.states, file.get("encoded_negative.uncond_prompt_embeds"),
                       tol_at(fx.dtype, kRel, kBf16Rel));
  }));
  results.push_back(guarded(n + "uncond_pooled", [&] {
    TINV_CHECK(neg.pooled.defined(), fx.path, "encoding \"\" failed");
    return compare_rel(n + "uncond_pooled", neg.pooled, file.get("encoded_negative.uncond_pooled"),
                       tol_at(fx.dtype, kRel, kBf16Rel));
  }));
  results.push_back(guarded(n + "final_latents", [&] {
    TINV_CHECK(cond.states.defined() && neg.states.defined(), fx.path, "encoding failed");
    return compare_rel(n + "final_latents", fx.run(cond, neg), file.get("encoded_negative.final_latents"),
                       tol_at(fx.dtype, kRel, kBf16LoopRel));
  }));
}

// pipeline_euler.ti.*: the SDXL embedding loaded the diffusers way, trigger <cube>, via add_embeddings.
void ti_cases(PipelineFixture& fx, std::vector<CaseResult>& results) {
  const SafeTensors& file = *fx.file;
  StableDiffusion& sd = fx.sd;
  const std::string t = "pipeline_euler.ti.";
  std::optional<ExtraTokens> extra;
  results.push_back(guarded(t + "cond_ids", [&] {
    // metadata ti: "prompt '<text>', <cube> = cases/embedding_sdxl.safetensors ..."
    const std::string meta = metadata(file, "ti");
    const size_t a = meta.find('\''), b = meta.find('\'', a + 1);
    TINV_CHECK(a != std::string::npos && b != std::string::npos, fx.path, "metadata 'ti' has no quoted prompt");
    const std::string ti_prompt = meta.substr(a + 1, b - a - 1);
    auto embs = load_embeddings(join_path(fx.dir, "cases/embedding_sdxl.safetensors"), sd.text_config.hidden_size,
                                sd.text_config_2.hidden_size);
    TINV_CHECK(embs.size() == 1, fx.path, "expected one embedding");
    extra.emplace();
    extra->add_trigger(*sd.tokenizer, *sd.tokenizer_2, "<cube>", embs[0].vectors, embs[0].vectors_2);
    return ids_case(t + "cond_ids", sd, *extra, ti_prompt, file, "ti.cond_ids_1", "ti.cond_ids_2");
  }));
  results.push_back(guarded(t + "final_latents", [&] {
    TINV_CHECK(extra.has_value(), fx.path, "the embedding did not load");
    auto c = encode_ids_xl(sd, *extra, input(file, "ti.cond_ids_1", fx.device, torch::kInt64),
                           input(file, "ti.cond_ids_2", fx.device, torch::kInt64));
    Conditioning zero{torch::zeros_like(c.states), torch::zeros_like(c.pooled)};
    return compare_rel(t + "final_latents", fx.run(c, zero), file.get("ti.final_latents"),
                       tol_at(fx.dtype, kRel, kBf16LoopRel));
  }));
}

// The ti_train cases, in the order they are reported.
const char* const kTiTrainCases[] = {"ti_train.input_ids_1",
                                     "ti_train.input_ids_2",
                                     "ti_train.init_l",
                                     "ti_train.init_g",
                                     "ti_train.losses",
                                     "ti_train.first_step_grad_l",
                                     "ti_train.first_step_grad_g",
                                     "ti_train.final_l",
                                     "ti_train.final_g"};

}  // namespace

std::vector<CaseResult> run_sdxl_pipeline(const std::string& dir, const torch::Device& device,
                                          torch::ScalarType dtype) {
  PipelineFixture fx;
  fx.dtype = dtype;
  fx.dir = dir;
  fx.path = join_path(dir, "cases/pipeline_euler.safetensors");
  fx.device = device;
  try {
    open_pipeline(fx);
  } catch (const std::exception& e) {
    return {failed("pipeline_euler", e.what())};
  }
  std::vector<CaseResult> results;
  Conditioning cond;
  plain_cases(fx, cond, results);
  negative_cases(fx, cond, results);
  ti_cases(fx, results);
  return results;
}

std::vector<CaseResult> run_sdxl_ti_train(const std::string& dir, const torch::Device& device,
                                          torch::ScalarType dtype) {
  const std::vector<std::string> names(std::begin(kTiTrainCases), std::end(kTiTrainCases));
  try {
    TiTrainFixture fx = open_ti_train(dir, device, true, dtype);
    const std::string& path = fx.path;
    const SafeTensors& f = fx.file;
    StableDiffusion& sd = fx.sd;
    auto& md = fx.md;
    auto caption = torch::tensor(sd.tokenizer->tokenize(md["caption"]), torch::kInt64);
    auto init_l = sd.text_encoder->token_embeddings(caption.to(device));    // [n, h1]
    auto init_g = sd.text_encoder_2->token_embeddings(caption.to(device));  // [n, h2]
    const int64_t h1 = init_l.size(1);

    FixtureSource source(f, device);
    auto time_ids = input(f, "time_ids", device);  // [2, 6], the same row for both items
    TINV_CHECK(time_ids.dim() == 2 && time_ids.size(1) == 6 && torch::equal(time_ids[0], time_ids[-1]), path,
               "time_ids must be [B, 6] with one row repeated");
    InversionTrainer trainer(*sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler, fx.placeholders,
                             torch::cat({init_l, init_g}, 1), fx.templates, ti_train_options(fx, source.steps()),
                             SecondTextEncoder{*sd.tokenizer_2, sd.text_encoder_2, time_ids[0]});
    std::vector<CaseResult> out;
    auto input_ids_case = [&](const std::string& name, bool second, const char* key) {
      return guarded(name, [&] {
        if (!caption.equal(f.get("init_caption_ids", torch::kInt64)))
          return failed(name, "caption ids differ from init_caption_ids");
        std::vector<torch::Tensor> ours;
        for (int64_t k = 0; k < source.steps(); ++k) {
          auto ti = source.draw(k).template_index;
          ours.push_back(second ? trainer.prompt_ids_2(ti) : trainer.prompt_ids(ti));
        }
        return compare_exact(name, torch::stack(ours), f.get(key, torch::kInt64));
      });
    };
    out.push_back(input_ids_case(names[0], false, "input_ids_1"));
    out.push_back(input_ids_case(names[1], true, "input_ids_2"));
    out.push_back(guarded(
        names[2], [&] { return compare_rel(names[2], init_l, f.get("init_l"), tol_at(dtype, 1e-3, kBf16InitRel)); }));
    out.push_back(guarded(
        names[3], [&] { return compare_rel(names[3], init_g, f.get("init_g"), tol_at(dtype, 1e-3, kBf16InitRel)); }));

    const TiTrainReplay run = replay(trainer, source);
    out.push_back(losses_case(names[4], run, f, dtype));
    auto split = [&](const torch::Tensor& rows, bool g) {
      TINV_CHECK(rows.defined(), path, "the run produced no rows");
      return g ? rows.narrow(1, h1, rows.size(1) - h1) : rows.narrow(1, 0, h1);
    };
    const torch::Tensor final_rows = trainer.embeddings();
    const char* keys[] = {"first_step_grad_l", "first_step_grad_g", "final_l", "final_g"};
    for (int k = 0; k < 4; ++k)  // names[5..8]: the first step's gradient, then the final rows; l, then g
      out.push_back(guarded(names[5 + k], [&] {
        return compare_rel(names[5 + k], split(k < 2 ? run.first_grad : final_rows, k % 2 == 1), f.get(keys[k]),
                           tol_at(dtype, 1e-3, k < 2 ? kBf16GradRel : kBf16Rel));
      }));
    return out;
  } catch (const std::exception& e) {
    return all_failed(names, e.what());
  }
}

}  // namespace tinv::parity
