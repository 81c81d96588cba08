#include "text/sdxl_text.h"

#include <torch/torch.h>

#include "common/error.h"

namespace tinv {

SdxlTextStates encode_sdxl_text(ClipTextModel& te1, ClipTextModel& te2, const torch::Tensor& ids,
                                const torch::Tensor& ids_2, const torch::Tensor& extra, const torch::Tensor& extra_2) {
  const char* where = "SDXL text encoders";
  TINV_CHECK(ids.sizes() == ids_2.sizes(), where, "token ids of the two tokenizers differ in shape: ", ids.sizes(),
             " vs ", ids_2.sizes());
  TINV_CHECK(te2->config().with_projection, where, "text_encoder_2 has no text_projection");
  auto o1 = te1->forward_all(ids, extra);      // penultimate [B, L, h1]
  auto o2 = te2->forward_all(ids_2, extra_2);  // penultimate [B, L, h2], pooled [B, P]
  SdxlTextStates s;
  s.prompt_embeds = torch::cat({o1.penultimate, o2.penultimate.to(o1.penultimate.scalar_type())}, -1);
  s.pooled = o2.pooled;
  return s;
}

}  // namespace tinv
