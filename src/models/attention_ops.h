// Scaled dot-product attention shared by every model (CLIP, UNet, VAE, BLIP).
#pragma once
#include <torch/types.h>

namespace tinv {

struct AttentionOptions {
  bool causal = false;        // mask out keys after the query position (CLIP, BERT decoder)
  torch::Tensor mask;         // optional additive mask broadcastable to [B, H, Nq, Nk]
  bool upcast = false;        // compute scores and softmax in float32 (SD2 upcast_attention)
  double scale = 0.0;         // 0: 1/sqrt(head_dim)
};

// q [B, H, Nq, D], k [B, H, Nk, D], v [B, H, Nk, Dv] -> [B, H, Nq, Dv].
// On libtorch 2.x this uses the fused kernel (flash / memory-efficient attention). On 1.13 it
// processes queries in chunks so that the score matrix never exceeds ~128 MB, which keeps
// 512x512 attention (4096 x 4096 tokens per head) affordable on CPU.
torch::Tensor dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                    const torch::Tensor& v, const AttentionOptions& opts = {});

// [B, N, H*D] -> [B, H, N, D] and back.
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads);
torch::Tensor merge_heads(const torch::Tensor& x);

}  // namespace tinv
