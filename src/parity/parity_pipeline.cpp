// Parity case group 'pipeline' (see ../shared/fixtures/README.md, pipeline_ddim.safetensors):
// the whole text-to-image loop of diffusers' StableDiffusionPipeline with DDIM (eta 0),
// configured from the model's scheduler config as DDIMScheduler.from_config does, classifier-free
// guidance on a batched [uncond; cond] UNet call, then the VAE decode (not clamped).
#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "common/fs.h"
#include "io/safetensors.h"
#include "models/stable_diffusion.h"
#include "parity/parity.h"
#include "pipelines/generate.h"
#include "schedulers/sampler.h"

namespace tinv::parity {
namespace {

double metadata_number(const SafeTensors& file, const std::string& key) {
  auto it = file.metadata().find(key);
  TINV_CHECK(it != file.metadata().end(), file.path(), "metadata '", key, "' is missing");
  try {
    return std::stod(it->second);
  } catch (const std::exception&) {
    throw Error(file.path(), "metadata '" + key + "' is not a number: '" + it->second + "'");
  }
}

}  // namespace

std::vector<CaseResult> run_pipeline(const std::string& dir, const torch::Device& device, torch::ScalarType dtype) {
  const std::string path = join_path(dir, "cases/pipeline_ddim.safetensors");
  std::unique_ptr<SafeTensors> file;
  StableDiffusion sd;
  std::unique_ptr<Sampler> sampler;
  double guidance = 0;
  try {
    file = std::make_unique<SafeTensors>(SafeTensors::open(path));
    SdLoadOptions opts;
    opts.with_tokenizer = false;  // the case gives token ids
    opts.device = device;
    opts.dtype = dtype;
    sd = load_stable_diffusion(join_path(dir, "model"), opts);
    const double steps = metadata_number(*file, "steps");
    guidance = metadata_number(*file, "guidance_scale");
    const double scaling = metadata_number(*file, "scaling_factor");
    TINV_CHECK(std::abs(scaling - sd.vae_config.scaling_factor) < 1e-9, path, "metadata scaling_factor ", scaling,
               " differs from the VAE config's ", sd.vae_config.scaling_factor);
    sampler = make_sampler("ddim", sd.scheduler, /*eta=*/0.0);
    sampler->set_timesteps(static_cast<int64_t>(steps));
  } catch (const std::exception& e) {
    return {failed("pipeline_ddim", e.what())};
  }

  std::vector<CaseResult> results;
  results.push_back(guarded("pipeline_ddim.timesteps", [&] {
    return compare_exact("pipeline_ddim.timesteps", sampler->timesteps(), file->get("timesteps"));
  }));
  torch::Tensor final_latents;
  results.push_back(guarded("pipeline_ddim.final_latents", [&] {
    ExtraTokens none;
    auto cond = encode_ids(sd, none, input(*file, "cond_ids", device));              // [B, 77, D]
    auto uncond = encode_ids(sd, none, input(*file, "uncond_ids", device));          // [B, 77, D]
    auto init = input(*file, "init_latents", device) * sampler->init_noise_sigma();  // [B, 4, h, w]
    final_latents = denoise(sd, *sampler, init, cond, uncond, guidance, nullptr);
    return compare_rel("pipeline_ddim.final_latents", final_latents, file->get("final_latents"),
                       tol_at(dtype, 1e-4, kBf16LoopRel));
  }));
  results.push_back(guarded("pipeline_ddim.image", [&] {
    TINV_CHECK(final_latents.defined(), "pipeline_ddim", "no final latents (the loop failed)");
    return compare_rel("pipeline_ddim.image", decode_latents(sd, final_latents), file->get("image"),
                       tol_at(dtype, 1e-4, kBf16LoopRel));
  }));
  return results;
}

}  // namespace tinv::parity
