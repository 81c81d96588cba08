// Parity case group 'blip' (see ../shared/fixtures/README.md, BLIP fixtures):
//   blip.preprocess       cases/image.png -> pixel_values            max abs 0.03
//   blip.image_embeds     pixel_values -> image_embeds                max abs 1e-4
//   blip.logits           input_ids + image_embeds -> logits          max abs 1e-3
//   blip.greedy_prompt    greedy from [DEC] "a picture of", 20 new    exact
//   blip.greedy_noprompt  greedy from [DEC], 20 new                   exact
#include <torch/torch.h>

#include "common/fs.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "parity/parity.h"
#include "pipelines/caption.h"

namespace tinv::parity {
namespace {

CaseResult greedy_case(const std::string& name, const BlipCaptioner& cap, const SafeTensors& cases,
                       const std::string& key, bool prompt, const torch::Device& device,
                       torch::ScalarType dtype) {
  CaptionOptions o;
  o.beams = 1;
  o.use_prompt = prompt;
  o.prompt_ids = {1037, 3861, 1997};  // "a picture of" in bert-base-uncased (fixture README)
  o.max_new_tokens = 20;
  o.min_length = 0;
  auto embeds = cap.image_embeds(input(cases, "pixel_values", device, dtype));
  auto ids = cap.generate(embeds, cap.prefix_ids(o), o);
  return compare_exact(name, torch::tensor(ids, torch::kLong), cases.get(key));
}

}  // namespace

std::vector<CaseResult> run_blip(const std::string& dir, const torch::Device& device, torch::ScalarType dtype) {
  std::vector<CaseResult> out;
  std::optional<BlipCaptioner> cap;
  std::optional<SafeTensors> cases;
  try {
    cap = BlipCaptioner::load(join_path(dir, "model"), device, dtype);
    cases = SafeTensors::open(join_path(dir, "cases/blip.safetensors"));
  } catch (const std::exception& e) {
    return {failed("blip", e.what())};
  }
  out.push_back(guarded("blip.preprocess", [&] {
    auto px = cap->preprocess(load_image(join_path(dir, "cases/image.png")));
    return compare_abs("blip.preprocess", px, cases->get("pixel_values"), 0.03);
  }));
  out.push_back(guarded("blip.image_embeds", [&] {
    return compare_model("blip.image_embeds", cap->image_embeds(input(*cases, "pixel_values", device, dtype)),
                       cases->get("image_embeds"), 1e-4, dtype);
  }));
  out.push_back(guarded("blip.logits", [&] {
    return compare_model("blip.logits", cap->logits(input(*cases, "input_ids", device), input(*cases, "image_embeds", device, dtype)),
                       cases->get("logits"), 1e-3, dtype);
  }));
  out.push_back(guarded("blip.greedy_prompt",
                        [&] { return greedy_case("blip.greedy_prompt", *cap, *cases, "greedy_prompt_ids", true, device, dtype); }));
  out.push_back(guarded("blip.greedy_noprompt", [&] {
    return greedy_case("blip.greedy_noprompt", *cap, *cases, "greedy_noprompt_ids", false, device, dtype);
  }));
  return out;
}

}  // namespace tinv::parity
