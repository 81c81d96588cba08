// Parity case group 'unet' (see ../shared/fixtures/README.md).
//   unet       cases/unet.safetensors: sample, timestep, encoder_hidden_states -> out (abs 1e-4)
//   unet.grad  our own check: with frozen weights, backward from the output reaches
//              encoder_hidden_states and leaves every parameter without a gradient (exact)
#include <torch/torch.h>

#include "common/fs.h"
#include "io/safetensors.h"
#include "models/unet.h"
#include "parity/parity.h"

namespace tinv::parity {
namespace {

CaseResult grad_case(UNet2DConditionModel& unet, const SafeTensors& cases, const torch::Device& device,
                     torch::ScalarType dtype) {
  auto ehs = input(cases, "encoder_hidden_states", device, dtype).requires_grad_(true);
  auto out = unet->forward(input(cases, "sample", device, dtype), input(cases, "timestep", device), ehs);
  out.square().mean().backward();
  int64_t with_grad = 0;
  for (const auto& p : unet->parameters()) with_grad += p.grad().defined() ? 1 : 0;
  CaseResult r;
  r.name = "unet.grad";
  r.tol = "exact";
  bool ok_grad =
      ehs.grad().defined() && ehs.grad().isfinite().all().item<bool>() && ehs.grad().abs().sum().item<double>() > 0;
  r.pass = ok_grad && with_grad == 0;
  r.note = str_cat("encoder_hidden_states grad ", ok_grad ? "finite, non-zero" : "MISSING or bad", "; ", with_grad,
                   " parameter(s) with a grad");
  return r;
}

}  // namespace

std::vector<CaseResult> run_unet(const std::string& dir, const torch::Device& device, torch::ScalarType dtype) {
  std::string case_file = join_path(dir, "cases/unet.safetensors");
  std::shared_ptr<UNet2DConditionModel> unet;
  std::vector<CaseResult> results;
  results.push_back(guarded("unet", [&] {
    unet = std::make_shared<UNet2DConditionModel>(load_unet_folder(join_path(dir, "model/unet")));
    (*unet)->to(device, dtype);
    auto cases = SafeTensors::open(case_file);
    torch::NoGradGuard no_grad;
    auto out = (*unet)->forward(input(cases, "sample", device, dtype), input(cases, "timestep", device),
                                input(cases, "encoder_hidden_states", device, dtype));
    return compare_model("unet", out, cases.get("out"), 1e-4, dtype);
  }));
  results.push_back(guarded("unet.grad", [&] {
    if (!unet) return failed("unet.grad", "model did not load");
    return grad_case(*unet, SafeTensors::open(case_file), device, dtype);
  }));
  return results;
}

}  // namespace tinv::parity
