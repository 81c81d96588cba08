// Scaled dot-product attention shared by every model (CLIP, UNet, VAE, BLIP).
#pragma once
#include <torch/types.h>

namespace tinv {

struct AttentionOptions {
  bool causal = false;  // mask out keys after the query position (CLIP, BERT decoder)
  torch::Tensor mask;   // optional additive mask broadcastable to [B, H, Nq, Nk]
  bool upcast = false;  // compute scores and softmax in float32 (SD2 upcast_attention)
  double scale = 0.0;   // 0: 1/sqrt(head_dim)
};

// q [B, H, Nq, D], k [B, H, Nk, D], v [B, H, Nk, Dv] -> [B, H, Nq, Dv].
// On libtorch 2.x this uses the fused kernel (flash / memory-efficient attention), forward and
// backward, except for bf16/fp16 on the CPU, where the fused kernel is the slower one and the
// 1.13 path below runs instead. On 1.13 it processes queries in chunks so that the score matrix
// never exceeds ~128 MB, which keeps 512x512 attention (4096 x 4096 tokens per head) affordable
// on CPU; when a gradient is needed it runs recompute_attention, so training stores no
// probabilities either.
torch::Tensor dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const AttentionOptions& opts = {});

// The memory-saving attention for training (used by dot_product_attention on libtorch 1.13 when
// q, k or v requires grad; available on every libtorch). The forward saves only q, k and v
// (and the mask); the backward recomputes each chunk's probabilities P = softmax(s q k^T + M)
// and accumulates, chunk by chunk,
//   dV += P^T dO,  dS = P * (dO V^T - rowsum(dO * O)),  dQ = s dS K,  dK += s dS^T Q,
// so neither pass holds more than one chunk's [B, H, rows, Nk] scores (~128 MB) instead of the
// whole [B, H, Nq, Nk] probability tensor per layer that autograd would keep. The mask gets no
// gradient. Same results as the plain formula up to float rounding.
torch::Tensor recompute_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const AttentionOptions& opts = {});

// Whether dot_product_attention runs libtorch's fused kernel for tensors of this dtype and
// device: on libtorch 2.x, except bf16/fp16 on the CPU (docs/PERFORMANCE.md); never on 1.13.
bool fused_attention(torch::ScalarType dtype, const torch::Device& device);

// How much of the training attention's memory goes to speed. recompute_attention keeps a
// layer's probabilities for its backward (autograd's cost in memory, and one `q k^T` and softmax
// less per chunk, 10-17% of a 512 px TI step on 1.13) while the probabilities held by all layers
// stay within a process-wide budget, and recomputes them otherwise. A layer's probabilities are
// released as its backward runs, or with the graph.
//   kAttentionStoreAuto (the default): the budget is fixed at the first training attention, from
//     the memory then available (common/memory.h) less a margin for everything else the step
//     allocates: max(2 GiB, a quarter of it); never more than kAttentionStoreAutoMax.
//   0: recompute every layer (the least memory); a positive value: that many bytes.
constexpr int64_t kAttentionStoreAuto = -1;
constexpr int64_t kAttentionStoreAutoMax = int64_t{16} << 30;
// Throws tinv::Error("attention store", ...) below kAttentionStoreAuto.
void set_attention_store(int64_t bytes);
// The budget in effect, in bytes (kAttentionStoreAuto until its first use resolves it).
int64_t attention_store_budget();
// Bytes of probabilities held for backward passes right now.
int64_t attention_stored_bytes();

// Whether dot_product_attention takes recompute_attention for gradients on libtorch 1.13
// (default on). Process-wide; bench_invert --attention-backward autograd turns it off to measure
// what autograd's stored probabilities cost.
void set_attention_recompute(bool on);
bool attention_recompute();

// [B, N, H*D] -> [B, H, N, D] and back.
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads);
torch::Tensor merge_heads(const torch::Tensor& x);

}  // namespace tinv
