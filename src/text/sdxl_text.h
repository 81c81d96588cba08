// SDXL prompt conditioning from its two text encoders (mirrors diffusers 0.25
// StableDiffusionXLPipeline.encode_prompt with clip_skip None):
//
//   auto s = tinv::encode_sdxl_text(te1, te2, ids1, ids2);   // ids [B, 77] from tokenizer / tokenizer_2
//   unet->forward(x, t, s.prompt_embeds, {s.pooled, time_ids});
//
//   prompt_embeds = cat(te1.hidden_states[-2], te2.hidden_states[-2], -1)   [B, 77, h1 + h2]
//   pooled        = te2.text_embeds (projection of the first-EOS final state) [B, P]
// Textual inversion: extra / extra_2 are the rows of the added ids (>= vocab size) in each
// encoder ([n, h1] and [n, h2]); autograd reaches them and nothing else.
#pragma once
#include <torch/types.h>

#include "text/clip_text_model.h"

namespace tinv {

struct SdxlTextStates {
  torch::Tensor prompt_embeds;  // [B, L, h1 + h2]
  torch::Tensor pooled;         // [B, P]
};

// Throws tinv::Error (from the encoders) for bad ids or rows, or when ids and ids_2 differ in
// shape or te2 has no projection.
SdxlTextStates encode_sdxl_text(ClipTextModel& te1, ClipTextModel& te2, const torch::Tensor& ids,
                                const torch::Tensor& ids_2, const torch::Tensor& extra = {},
                                const torch::Tensor& extra_2 = {});

}  // namespace tinv
