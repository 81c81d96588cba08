#include "models/attention_ops.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>

namespace tinv {
namespace {

constexpr int64_t kMaxScoreBytes = 128ll << 20;

torch::Tensor attention_block(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const AttentionOptions& opts, double scale, int64_t q_offset,
                              int64_t shift, const torch::Tensor& mask) {
  auto dtype = q.scalar_type();
  torch::Tensor qq = opts.upcast ? q.to(torch::kFloat32) : q;
  torch::Tensor kk = opts.upcast ? k.to(torch::kFloat32) : k;
  // Scale the [nq, D] queries, not the [nq, Nk] scores: one memory pass fewer over the largest
  // tensor, forward and backward (about 20% of CPU attention time at 4096 tokens).
  auto scores = torch::matmul(qq * scale, kk.transpose(-1, -2));  // [B, H, nq, Nk]
  if (mask.defined()) scores = scores + mask.to(scores.scalar_type());
  if (opts.causal) {
    // Queries are the last positions of the key sequence (shift = Nk - Nq, non-zero with a
    // key/value cache): query i sees keys j <= i + shift.
    int64_t nq = q.size(-2), nk = k.size(-2);
    auto opt = torch::TensorOptions().dtype(torch::kLong).device(q.device());
    auto rows = torch::arange(q_offset, q_offset + nq, opt).unsqueeze(1);
    auto cols = torch::arange(nk, opt).unsqueeze(0);
    scores = scores.masked_fill(cols > rows + shift, -INFINITY);
  }
  auto probs = torch::softmax(scores, -1).to(dtype);
  return torch::matmul(probs, v);
}

}  // namespace

torch::Tensor dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                    const torch::Tensor& v, const AttentionOptions& opts) {
  double scale = opts.scale > 0 ? opts.scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
#if TORCH_VERSION_MAJOR >= 2
  // libtorch 2.x: the fused kernel (flash / memory-efficient / math fallback). Its is_causal
  // aligns the mask top-left, so causal attention over a key/value cache (Nq < Nk) and causal
  // plus additive masks get an explicit bottom-right aligned mask instead.
  if (!opts.upcast || q.scalar_type() == torch::kFloat32) {
    int64_t nq = q.size(-2), nk = k.size(-2);
    c10::optional<at::Tensor> mask;
    if (opts.mask.defined()) mask = opts.mask.to(q.scalar_type());
    bool causal = opts.causal && !mask.has_value() && nq == nk;
    if (opts.causal && !causal) {
      auto keep = torch::ones({nq, nk}, torch::TensorOptions().dtype(torch::kBool).device(q.device()))
                      .tril(nk - nq);
      auto additive = torch::zeros({nq, nk}, q.options()).masked_fill(keep.logical_not(), -INFINITY);
      mask = mask.has_value() ? *mask + additive : additive;
    }
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1
    return at::scaled_dot_product_attention(q, k, v, mask, 0.0, causal, scale);
#else
    return at::scaled_dot_product_attention(q * (scale * std::sqrt(static_cast<double>(q.size(-1)))),
                                            k, v, mask, 0.0, causal);
#endif
  }
#endif
  int64_t b = q.size(0), h = q.size(1), nq = q.size(2), nk = k.size(2), shift = nk - nq;
  int64_t bytes_per_row = b * h * nk * 4;
  int64_t chunk = std::max<int64_t>(1, kMaxScoreBytes / std::max<int64_t>(1, bytes_per_row));
  if (chunk >= nq) return attention_block(q, k, v, opts, scale, 0, shift, opts.mask);
  std::vector<torch::Tensor> outs;
  for (int64_t s = 0; s < nq; s += chunk) {
    int64_t e = std::min(nq, s + chunk);
    torch::Tensor m;
    if (opts.mask.defined()) m = opts.mask.size(-2) == 1 ? opts.mask : opts.mask.narrow(-2, s, e - s);
    outs.push_back(attention_block(q.narrow(2, s, e - s), k, v, opts, scale, s, shift, m));
  }
  return torch::cat(outs, 2);
}

torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  auto b = x.size(0), n = x.size(1), c = x.size(2);
  return x.view({b, n, heads, c / heads}).transpose(1, 2);
}

torch::Tensor merge_heads(const torch::Tensor& x) {
  auto b = x.size(0), h = x.size(1), n = x.size(2), d = x.size(3);
  return x.transpose(1, 2).reshape({b, n, h * d});
}

}  // namespace tinv
