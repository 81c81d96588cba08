// Parity case group 'single_file' (see ../shared/fixtures/README.md): the single-file LDM
// checkpoint `model.safetensors`, loaded with the configs and tokenizer of `model/`, must
// compute what the diffusers folder computes — checked on the same reference cases:
//   single_file.text_encoder, single_file.text_encoder.added, single_file.unet,
//   single_file.vae.encode.mean, single_file.vae.encode.logvar, single_file.vae.decode
// (tolerances as for the diffusers-folder cases). A folder without model.safetensors has no
// single-file cases.
#include <torch/torch.h>

#include "common/fs.h"
#include "io/safetensors.h"
#include "models/stable_diffusion.h"
#include "parity/parity.h"

namespace tinv::parity {

StableDiffusion load_fixture_single_file(const std::string& file, const std::string& dir, const torch::Device& device,
                                         torch::ScalarType dtype) {
  SdLoadOptions opts;
  opts.config_dir = join_path(dir, "model");
  opts.device = device;
  opts.dtype = dtype;
  return load_stable_diffusion(file, opts);
}

std::vector<CaseResult> run_single_file(const std::string& dir, const torch::Device& device, torch::ScalarType dtype) {
  std::string file = join_path(dir, "model.safetensors");
  if (!file_exists(file)) return {};
  const char* names[] = {"single_file.text_encoder",    "single_file.text_encoder.added", "single_file.unet",
                         "single_file.vae.encode.mean", "single_file.vae.encode.logvar",  "single_file.vae.decode"};
  std::optional<StableDiffusion> sd;
  std::string load_error;
  try {
    sd = load_fixture_single_file(file, dir, device, dtype);
  } catch (const std::exception& e) {
    load_error = e.what();
  }
  std::vector<CaseResult> results;
  if (!sd) {
    for (const char* n : names) results.push_back(failed(n, load_error));
    return results;
  }
  torch::NoGradGuard no_grad;
  std::string cases = join_path(dir, "cases");
  results.push_back(guarded(names[0], [&] {
    auto c = SafeTensors::open(join_path(cases, "text_encoder.safetensors"));
    return compare_model(names[0], sd->text_encoder->forward(input(c, "input_ids", device, torch::kInt64)),
                         c.get("last_hidden_state"), 1e-4, dtype);
  }));
  results.push_back(guarded(names[1], [&] {
    auto c = SafeTensors::open(join_path(cases, "text_encoder.safetensors"));
    auto out = sd->text_encoder->forward(input(c, "added.input_ids", device, torch::kInt64),
                                         input(c, "added.embeddings", device, dtype));
    return compare_model(names[1], out, c.get("added.last_hidden_state"), 1e-4, dtype);
  }));
  results.push_back(guarded(names[2], [&] {
    auto c = SafeTensors::open(join_path(cases, "unet.safetensors"));
    auto out = sd->unet->forward(input(c, "sample", device, dtype), input(c, "timestep", device, torch::kInt64),
                                 input(c, "encoder_hidden_states", device, dtype));
    return compare_model(names[2], out, c.get("out"), 1e-4, dtype);
  }));
  auto vae_cases = [&] { return SafeTensors::open(join_path(cases, "vae.safetensors")); };
  std::optional<Posterior> posterior;
  results.push_back(guarded(names[3], [&] {
    auto c = vae_cases();
    posterior = sd->vae->encode(input(c, "image", device, dtype));
    return compare_model(names[3], posterior->mean, c.get("posterior_mean"), 1e-4, dtype);
  }));
  results.push_back(guarded(names[4], [&] {
    if (!posterior) return failed(names[4], "encode failed");
    return compare_model(names[4], posterior->logvar, vae_cases().get("posterior_logvar"), 1e-4, dtype);
  }));
  results.push_back(guarded(names[5], [&] {
    auto c = vae_cases();
    return compare_model(names[5], sd->vae->decode(input(c, "latent", device, dtype)), c.get("decoded"), 1e-4, dtype);
  }));
  return results;
}

}  // namespace tinv::parity
