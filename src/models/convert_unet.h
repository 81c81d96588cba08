// UNet key conversion from LDM (CompVis / single-file checkpoints, `model.diffusion_model.*`) to
// diffusers names, and inference of the UNet config from LDM tensor shapes.
// The mapping is the one in ../shared/docs/FORMATS.md ("UNet LDM <-> diffusers"):
//   input_blocks.{i(L+1)+j+1}.0|1   = down_blocks.i.resnets|attentions.j
//   input_blocks.{(i+1)(L+1)}.0.op  = down_blocks.i.downsamplers.0.conv
//   middle_block.0|1|2              = mid_block.resnets.0|attentions.0|resnets.1
//   output_blocks.{i(L+1)+j}.0|1    = up_blocks.i.resnets|attentions.j        (j <= L)
//   output_blocks.{i(L+1)+L}.{2|1}.conv = up_blocks.i.upsamplers.0.conv       (2 with attention)
//   time_embed.0|2 = time_embedding.linear_1|2, label_emb.0.0|2 = add_embedding.linear_1|2 (SDXL),
//   input_blocks.0.0 = conv_in, out.0|2 =
//   conv_norm_out|conv_out; resnet in_layers.0|2 = norm1|conv1, emb_layers.1 = time_emb_proj,
//   out_layers.0|3 = norm2|conv2, skip_connection = conv_shortcut; attention internals as is.
//
//   auto ldm = tinv::strip_prefix(file.state_dict(), "model.diffusion_model.");
//   tinv::UNetConfig cfg = tinv::infer_unet_config(ldm, /*sd2=*/false);
//   tinv::load_state_dict(*unet, tinv::convert_ldm_unet(ldm, cfg), path);
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "models/unet.h"

namespace tinv {

// Renames every tensor (values shared, not copied). SD1 1x1-conv and SD2 linear proj_in/out
// weights are kept as they are (the model's shapes follow use_linear_projection).
// Throws tinv::Error naming the first key with no diffusers name under `cfg`, or when
// cfg.layers_per_block differs between blocks (LDM numbering needs one L).
StateDict convert_ldm_unet(const StateDict& ldm, const UNetConfig& cfg);

// LDM prefix -> diffusers prefix (both ending in '.') for `cfg`, resnet prefixes flagged: their
// inner names are renamed too. The table convert_ldm_unet uses.
struct LdmPrefix {
  std::string ldm, diffusers;
  bool resnet = false;
};
std::vector<LdmPrefix> ldm_unet_prefixes(const UNetConfig& cfg);

// The resnet inner renames (in_layers.0 -> norm1, ...), LDM -> diffusers.
const std::vector<std::pair<std::string, std::string>>& ldm_resnet_renames();

// Infers the config of a single-file UNet (keys without `model.diffusion_model.`): channels,
// levels, layers per block, which levels attend, transformer layers, cross dim, in/out
// channels, kernels, time embedding width, linear projections (2-D proj_in). Heads: SD1 8 per
// block; SD2 (`sd2`) channels / 64. Not readable from weights and left at SD defaults:
// norm_num_groups (32, or the largest count <= 32 dividing every block width), upcast_attention
// (false), sample_size (64, 96 for SD2, 128 for SDXL). SDXL (`label_emb.0.*` present): the
// text_time embedding; its time-id width comes from `pooled_dim` (the width of text_encoder_2's
// projection), 256 when pooled_dim is 0.
UNetConfig infer_unet_config(const StateDict& ldm_unet, bool sd2, int64_t pooled_dim = 0);

}  // namespace tinv
