// Parity case group 'text_encoder' (see ../shared/fixtures/README.md).
//   text_encoder            input_ids -> last_hidden_state, max abs 1e-4
//   text_encoder.added      added.input_ids + added.embeddings -> added.last_hidden_state
//   text_encoder.added_grad (ours) backward of the sum reaches exactly the used extra rows and
//                           no model parameter
#include <torch/torch.h>

#include "common/fs.h"
#include "io/safetensors.h"
#include "parity/parity.h"
#include "text/clip_text_model.h"

namespace tinv::parity {
namespace {

constexpr double kTol = 1e-4;

CaseResult check_added_grad(ClipTextModel& model, const SafeTensors& cases, const torch::Device& device,
                            torch::ScalarType dtype) {
  const std::string name = "text_encoder.added_grad";
  auto ids = cases.get("added.input_ids", torch::kInt64);
  auto extra = input(cases, "added.embeddings", device, dtype).requires_grad_(true);
  model->forward(ids.to(device), extra).sum().backward();
  if (!extra.grad().defined()) return failed(name, "no gradient reached the extra embeddings");
  for (const auto& p : model->named_parameters())
    if (p.value().requires_grad() || p.value().grad().defined())
      return failed(name, "parameter '" + p.key() + "' requires or received a gradient");
  // Rows used by some id must get a non-zero gradient, unused rows exactly zero.
  const int64_t vocab = model->config().vocab_size, n = extra.size(0);
  auto used = torch::zeros({n}, torch::kBool);
  auto flat = ids.flatten();
  auto added = flat.masked_select(flat >= vocab) - vocab;
  if (added.numel() == 0) return failed(name, "the case has no added token ids");
  used.index_fill_(0, added, true);
  auto row_norm = extra.grad().norm(2, {1}).cpu();  // [n]
  CaseResult r;
  r.name = name;
  r.tol = "exact";
  r.pass = (row_norm.masked_select(used) > 0).all().item<bool>() &&
           (row_norm.masked_select(used.logical_not()) == 0).all().item<bool>();
  if (!r.pass) r.note = "gradient rows do not match the added ids used";
  return r;
}

}  // namespace

std::vector<CaseResult> run_text_encoder(const std::string& dir, const torch::Device& device, torch::ScalarType dtype) {
  ClipTextModel model = load_clip_text_model(join_path(dir, "model/text_encoder"));
  model->to(device, dtype);
  SafeTensors cases = SafeTensors::open(join_path(dir, "cases/text_encoder.safetensors"));
  std::vector<CaseResult> out;
  out.push_back(guarded("text_encoder", [&] {
    torch::NoGradGuard no_grad;
    auto h = model->forward(input(cases, "input_ids", device, torch::kInt64));
    return compare_model("text_encoder", h, cases.get("last_hidden_state"), kTol, dtype);
  }));
  out.push_back(guarded("text_encoder.added", [&] {
    torch::NoGradGuard no_grad;
    auto h = model->forward(input(cases, "added.input_ids", device, torch::kInt64),
                            input(cases, "added.embeddings", device, dtype));
    return compare_model("text_encoder.added", h, cases.get("added.last_hidden_state"), kTol, dtype);
  }));
  out.push_back(guarded("text_encoder.added_grad", [&] { return check_added_grad(model, cases, device, dtype); }));
  return out;
}

}  // namespace tinv::parity
