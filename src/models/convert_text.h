// Text-encoder key conversion from single-file (LDM) checkpoints to HF CLIPTextModel names
// (see ../shared/docs/FORMATS.md, "Stable Diffusion checkpoints").
//
//   StateDict sd = load_state_dict_file("v1-5.safetensors");
//   StateDict te = convert_ldm_clip_text(sd);                // SD1: cond_stage_model.transformer.*
//   StateDict te2 = convert_openclip_text(sd2, 23);          // SD2: cond_stage_model.model.*
//   ClipTextConfig cfg = infer_clip_text_config(te2);        // when no config.json is at hand
//
// Outputs carry the keys of `text_encoder/model.safetensors` (`text_model.*`); tensors are shared
// with the input (no copies) except the q|k|v slices of OpenCLIP's fused in_proj.
#pragma once
#include <string>

#include "io/safetensors.h"
#include "text/clip_text_model.h"

namespace tinv {

// SD1 single file: `cond_stage_model.transformer.text_model.*` (older files:
// `cond_stage_model.transformer.*` without `text_model.`) -> `text_model.*`. The int64
// `embeddings.position_ids` buffer is dropped. Throws tinv::Error if no key has the prefix.
// SDXL's first encoder uses the prefix `conditioner.embedders.0.transformer.`.
StateDict convert_ldm_clip_text(const StateDict& single_file,
                                const std::string& prefix = "cond_stage_model.transformer.");

// SD2 single file: OpenCLIP names under `cond_stage_model.model.` -> HF names.
//   token_embedding.weight                 -> text_model.embeddings.token_embedding.weight
//   positional_embedding                   -> text_model.embeddings.position_embedding.weight
//   transformer.resblocks.N.attn.in_proj_{weight,bias} [3D(,D)] -> self_attn.{q,k,v}_proj (q|k|v)
//   transformer.resblocks.N.attn.out_proj  -> self_attn.out_proj
//   transformer.resblocks.N.ln_1 / ln_2    -> layer_norm1 / layer_norm2
//   transformer.resblocks.N.mlp.c_fc / c_proj -> mlp.fc1 / mlp.fc2
//   ln_final                               -> final_layer_norm
// (resblock N -> text_model.encoder.layers.N). Blocks N >= num_layers are dropped (SD2: 23 of
// 24); num_layers < 0 keeps every block. text_projection, logit_scale, attn_mask and any
// visual.* entries are ignored, except that `with_projection` turns `text_projection`
// [D, P] (applied as x @ text_projection) into HF `text_projection.weight` [P, D] (SDXL's
// second encoder, prefix `conditioner.embedders.1.model.`). Throws tinv::Error for an unknown
// key inside a kept block, a fused projection whose first dim is not divisible by 3, fewer
// blocks than num_layers, no key with the prefix, or a missing/non-2-D text_projection.
StateDict convert_openclip_text(const StateDict& single_file, int64_t num_layers,
                                const std::string& prefix = "cond_stage_model.model.", bool with_projection = false);

// Number of `transformer.resblocks.N` blocks under `prefix` (0 if none).
int64_t count_openclip_blocks(const StateDict& single_file, const std::string& prefix = "cond_stage_model.model.");

// Config from the shapes of an HF-named text-encoder state dict: vocab and hidden size from the
// token table, positions from the position table, layers from the layer indices, intermediate
// size from layers.0.mlp.fc1. Heads cannot be read from weights: hidden/64 (every CLIP and
// OpenCLIP text tower); a width not divisible by 64 throws. `hidden_act` "" infers
// "quick_gelu" for width 768 (OpenAI CLIP, SD1) and "gelu" otherwise (OpenCLIP, SD2); pass it
// explicitly when the source format is known. Throws tinv::Error naming a missing tensor.
// A `text_projection.weight` [P, D] makes it a CLIPTextModelWithProjection of projection_dim P.
ClipTextConfig infer_clip_text_config(const StateDict& converted, const std::string& hidden_act = "");

}  // namespace tinv
