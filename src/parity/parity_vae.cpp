// Parity case group 'vae' (see ../shared/fixtures/README.md): the diffusers AutoencoderKL of
// <dir>/model/vae against cases/vae.safetensors.
//   vae.encode.mean / vae.encode.logvar: image -> posterior_mean / posterior_logvar (abs 1e-4)
//   vae.decode:                          latent -> decoded                        (abs 1e-4)
#include <torch/torch.h>

#include "common/fs.h"
#include "io/safetensors.h"
#include "models/vae.h"
#include "parity/parity.h"

namespace tinv::parity {

std::vector<CaseResult> run_vae(const std::string& dir, const torch::Device& device, torch::ScalarType dtype) {
  constexpr double kTol = 1e-4;
  const std::vector<std::string> names = {"vae.encode.mean", "vae.encode.logvar", "vae.decode"};
  AutoencoderKL vae{nullptr};
  SafeTensors cases;
  try {
    vae = load_vae_folder(join_path(dir, "model/vae"));
    vae->to(device, dtype);
    cases = SafeTensors::open(join_path(dir, "cases/vae.safetensors"));
  } catch (const std::exception& e) {
    return all_failed(names, e.what());
  }
  torch::NoGradGuard no_grad;
  Posterior post;
  bool encoded = false;
  auto encode = [&] {
    if (!encoded) post = vae->encode(input(cases, "image", device, dtype));
    encoded = true;
  };
  return {
      guarded(names[0],
              [&] {
                encode();
                return compare_model(names[0], post.mean, cases.get("posterior_mean"), kTol, dtype);
              }),
      guarded(names[1],
              [&] {
                encode();
                return compare_model(names[1], post.logvar, cases.get("posterior_logvar"), kTol, dtype);
              }),
      guarded(names[2],
              [&] {
                return compare_model(names[2], vae->decode(input(cases, "latent", device, dtype)), cases.get("decoded"),
                                     kTol, dtype);
              }),
  };
}

}  // namespace tinv::parity
