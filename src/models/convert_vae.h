// VAE key conversion: LDM / single-file (`first_stage_model.*`) and older diffusers files to the
// diffusers 0.25 names that AutoencoderKL registers (see ../shared/docs/FORMATS.md, "VAE").
//
//   StateDict ldm = strip_prefix(SafeTensors::open("sd15.safetensors").state_dict(),
//                                "first_stage_model.");
//   VaeConfig cfg = infer_vae_config(ldm);           // or a diffusers vae/config.json
//   StateDict sd = convert_ldm_vae(ldm, cfg);        // diffusers names and shapes
//
// Table (LDM -> diffusers; i block, j layer, n = number of blocks):
//   {encoder,decoder}.{conv_in,conv_out}      same names; norm_out -> conv_norm_out
//   encoder.down.i.block.j                    encoder.down_blocks.i.resnets.j
//   encoder.down.i.downsample.conv            encoder.down_blocks.i.downsamplers.0.conv
//   decoder.up.{n-1-i}.block.j                decoder.up_blocks.i.resnets.j   (reversed)
//   decoder.up.{n-1-i}.upsample.conv          decoder.up_blocks.i.upsamplers.0.conv
//   *.mid.block_1 | block_2                   *.mid_block.resnets.0 | 1
//   *.mid.attn_1.{norm,q,k,v,proj_out}        *.mid_block.attentions.0.{group_norm,to_q,to_k,
//                                             to_v,to_out.0}; 1x1-conv weights [C,C,1,1] -> [C,C]
//   resnet nin_shortcut                       conv_shortcut (norm1/conv1/norm2/conv2 unchanged)
//   quant_conv, post_quant_conv               same names
#pragma once
#include <string>

#include "io/safetensors.h"
#include "models/vae.h"

namespace tinv {

// LDM VAE weights (prefix already stripped) -> diffusers names. Tensors are views (reshaped where
// needed), not copies. Throws tinv::Error naming the key for any key outside the table or a
// block index outside cfg's block count. Completeness and shapes are checked by the strict load.
StateDict convert_ldm_vae(const StateDict& ldm, const VaeConfig& cfg, const std::string& source = "");

// In place, for diffusers-format files: renames the legacy mid-attention names
// (`query`, `key`, `value`, `proj_attn` -> `to_q`, `to_k`, `to_v`, `to_out.0`) and reshapes
// mid-attention 1x1-conv weights [C,C,1,1] -> [C,C] and vectors stored as [C,1,1] -> [C].
// Throws if both a legacy and a current name are present for the same tensor.
void normalize_diffusers_vae(StateDict& sd, const std::string& source = "");

// Architecture from LDM VAE tensor shapes: in/out/latent channels, block_out_channels, layers
// per block, whether the mid block has attention. norm_num_groups cannot be read from weights:
// it is taken from the argument (32 in every released SD VAE); other fields keep their SD
// defaults. Throws naming the missing or inconsistent key, or the field that does not validate.
VaeConfig infer_vae_config(const StateDict& ldm_vae, const std::string& source = "", int64_t norm_num_groups = 32);

}  // namespace tinv
