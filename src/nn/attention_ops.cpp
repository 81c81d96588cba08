#include "nn/attention_ops.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "common/error.h"
#include "common/memory.h"

namespace tinv {
namespace {

constexpr int64_t kMaxScoreBytes = 128ll << 20;

torch::Tensor attention_block(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const AttentionOptions& opts, double scale, int64_t q_offset, int64_t shift,
                              const torch::Tensor& mask) {
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

// Rows per chunk so that a [B, H, rows, Nk] float32 block stays under kMaxScoreBytes.
int64_t chunk_rows(const torch::Tensor& q, const torch::Tensor& k) {
  const int64_t bytes_per_row = q.size(0) * q.size(1) * k.size(2) * 4;
  return std::max<int64_t>(1, kMaxScoreBytes / std::max<int64_t>(1, bytes_per_row));
}

torch::Tensor mask_rows(const torch::Tensor& mask, int64_t s, int64_t n) {
  if (!mask.defined() || mask.dim() < 2 || mask.size(-2) == 1) return mask;
  return mask.narrow(-2, s, n);
}

// The chunked forward, no autograd.
torch::Tensor chunked_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                const AttentionOptions& opts, double scale) {
  const int64_t nq = q.size(2), shift = k.size(2) - nq, chunk = chunk_rows(q, k);
  if (chunk >= nq) return attention_block(q, k, v, opts, scale, 0, shift, opts.mask);
  std::vector<torch::Tensor> outs;
  for (int64_t s = 0; s < nq; s += chunk) {
    const int64_t e = std::min(nq, s + chunk);
    outs.push_back(attention_block(q.narrow(2, s, e - s), k, v, opts, scale, s, shift, mask_rows(opts.mask, s, e - s)));
  }
  return torch::cat(outs, 2);
}

// Probabilities of query rows [s, s + n) in the compute dtype (float32 with upcast).
torch::Tensor probs_rows(const torch::Tensor& q, const torch::Tensor& k, const AttentionOptions& opts, double scale,
                         int64_t s, int64_t n, int64_t shift) {
  auto qq = q.narrow(2, s, n);
  torch::Tensor kk = k;
  if (opts.upcast) qq = qq.to(torch::kFloat32), kk = kk.to(torch::kFloat32);
  auto scores = torch::matmul(qq * scale, kk.transpose(-1, -2));  // [B, H, n, Nk]
  auto m = mask_rows(opts.mask, s, n);
  if (m.defined()) scores = scores + m.to(scores.scalar_type());
  if (opts.causal) {
    auto opt = torch::TensorOptions().dtype(torch::kLong).device(q.device());
    auto rows = torch::arange(s, s + n, opt).unsqueeze(1);
    auto cols = torch::arange(k.size(2), opt).unsqueeze(0);
    scores = scores.masked_fill(cols > rows + shift, -INFINITY);
  }
  return torch::softmax(scores, -1);
}

torch::Tensor mask_arg(const torch::Tensor& mask, const torch::Tensor& q) {
  return mask.defined() ? mask : torch::empty({0}, q.options());
}

std::atomic<int64_t> g_store_budget{kAttentionStoreAuto};
std::atomic<int64_t> g_stored{0};

int64_t resolved_budget() {
  int64_t budget = g_store_budget.load();
  if (budget != kAttentionStoreAuto) return budget;
  const int64_t available = available_memory_bytes();
  const int64_t margin = std::max<int64_t>(int64_t{2} << 30, available / 4);
  const int64_t autob = std::clamp<int64_t>(available - margin, 0, kAttentionStoreAutoMax);
  // Another thread may have resolved or set it meanwhile: keep what is there then.
  g_store_budget.compare_exchange_strong(budget, autob);
  return g_store_budget.load();
}

// Reserves `bytes` of the budget; false (nothing reserved) when they do not fit.
bool reserve(int64_t bytes) {
  const int64_t budget = resolved_budget();
  int64_t held = g_stored.load();
  do {
    if (held + bytes > budget) return false;
  } while (!g_stored.compare_exchange_weak(held, held + bytes));
  return true;
}

// `probs` behind a storage whose deleter gives its bytes back to the budget.
torch::Tensor reserved(const torch::Tensor& probs, int64_t bytes) {
  return torch::from_blob(
      probs.data_ptr(), probs.sizes(), probs.strides(),
      [held = probs, bytes](void*) mutable {
        held.reset();
        g_stored -= bytes;
      },
      probs.options());
}

// The chunked forward that keeps each chunk's probabilities ([B, H, rows, Nk] in the compute
// dtype, each behind reserved() for its share of `bytes`) in `kept`.
torch::Tensor stored_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const AttentionOptions& o, double scale, int64_t bytes, c10::List<torch::Tensor>& kept);

class RecomputeAttention : public torch::autograd::Function<RecomputeAttention> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& mask_or_empty, double scale, bool causal,
                               bool upcast) {
    // An undefined tensor cannot be an input of a Function: "no mask" arrives as an empty one.
    const torch::Tensor mask = mask_or_empty.numel() == 0 ? torch::Tensor() : mask_or_empty;
    ctx->save_for_backward({q, k, v});
    ctx->saved_data["has_mask"] = mask.defined();
    if (mask.defined()) ctx->saved_data["mask"] = mask;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["upcast"] = upcast;
    AttentionOptions o;
    o.mask = mask, o.causal = causal, o.upcast = upcast;
    const auto dtype = upcast ? torch::kFloat32 : q.scalar_type();
    const int64_t bytes = q.size(0) * q.size(1) * q.size(2) * k.size(2) * c10::elementSize(dtype);
    if (!reserve(bytes)) return chunked_attention(q, k, v, o, scale);
    c10::List<torch::Tensor> kept;
    auto out = stored_forward(q, k, v, o, scale, bytes, kept);
    ctx->saved_data["probs"] = kept;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2];
    AttentionOptions o;
    if (ctx->saved_data["has_mask"].toBool()) o.mask = ctx->saved_data["mask"].toTensor();
    o.causal = ctx->saved_data["causal"].toBool();
    o.upcast = ctx->saved_data["upcast"].toBool();
    const double scale = ctx->saved_data["scale"].toDouble();
    const auto dtype = o.upcast ? torch::kFloat32 : q.scalar_type();
    auto d_out = grads[0].to(dtype);  // [B, H, Nq, Dv]
    auto k_c = k.to(dtype), v_c = v.to(dtype);
    auto dq = torch::empty(q.sizes(), q.options().dtype(dtype));
    auto dk = torch::zeros(k.sizes(), k.options().dtype(dtype));
    auto dv = torch::zeros(v.sizes(), v.options().dtype(dtype));
    // The probabilities the forward kept, if it did (released below, as autograd would).
    c10::List<torch::Tensor> kept;
    if (auto it = ctx->saved_data.find("probs"); it != ctx->saved_data.end()) {
      kept = it->second.toTensorList();
      ctx->saved_data.erase(it);
    }
    const int64_t nq = q.size(2), shift = k.size(2) - nq, chunk = chunk_rows(q, k);
    for (int64_t s = 0, i = 0; s < nq; s += chunk, ++i) {
      const int64_t n = std::min(nq - s, chunk);
      // [B, H, n, Nk]; a kept chunk goes back to the budget once this iteration drops it.
      torch::Tensor p = kept.empty() ? probs_rows(q, k, o, scale, s, n, shift) : kept.extract(i);
      auto g = d_out.narrow(2, s, n);  // [B, H, n, Dv]
      dv.add_(torch::matmul(p.transpose(-1, -2), g));
      // ds = p * (dp - rowsum(dp * p)), as p * dp - p * rowsum in place: two passes over the
      // [n, Nk] block fewer than the textbook form.
      auto ds = torch::matmul(g, v_c.transpose(-1, -2)).mul_(p);  // [B, H, n, Nk]: dp * p
      ds.addcmul_(p, ds.sum(-1, /*keepdim=*/true), -1);
      dq.narrow(2, s, n).copy_(torch::matmul(ds, k_c) * scale);
      dk.add_(torch::matmul(ds.transpose(-1, -2), q.narrow(2, s, n).to(dtype)), scale);
    }
    return {dq.to(q.scalar_type()), dk.to(k.scalar_type()), dv.to(v.scalar_type()), torch::Tensor(),
            torch::Tensor(),        torch::Tensor(),        torch::Tensor()};
  }
};

torch::Tensor stored_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const AttentionOptions& o, double scale, int64_t bytes, c10::List<torch::Tensor>& kept) {
  const int64_t nq = q.size(2), shift = k.size(2) - nq, chunk = chunk_rows(q, k);
  std::vector<torch::Tensor> outs;
  for (int64_t s = 0; s < nq; s += chunk) {
    const int64_t n = std::min(nq - s, chunk);
    auto p = probs_rows(q, k, o, scale, s, n, shift);  // [B, H, n, Nk]
    const int64_t share = bytes / nq * n;              // bytes is B * H * Nq * Nk * element size
    kept.push_back(reserved(p, share));
    outs.push_back(torch::matmul(p.to(v.scalar_type()), v));  // [B, H, n, Dv]
  }
  return outs.size() == 1 ? outs[0] : torch::cat(outs, 2);
}

std::atomic<bool> g_recompute{true};

}  // namespace

void set_attention_store(int64_t bytes) {
  TINV_CHECK(bytes >= kAttentionStoreAuto, "attention store",
             "must be auto, 0 (recompute every layer) or a positive number of bytes, got ", bytes);
  g_store_budget = bytes;
}
int64_t attention_store_budget() { return g_store_budget.load(); }
int64_t attention_stored_bytes() { return g_stored.load(); }

void set_attention_recompute(bool on) { g_recompute = on; }
bool attention_recompute() { return g_recompute; }

torch::Tensor recompute_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const AttentionOptions& opts) {
  const double scale = opts.scale > 0 ? opts.scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  return RecomputeAttention::apply(q, k, v, mask_arg(opts.mask, q), scale, opts.causal, opts.upcast);
}

bool fused_attention(torch::ScalarType dtype, const torch::Device& device) {
  // Not bf16/fp16 on the CPU: there the fused kernel is 2.7x slower than the explicit path on
  // libtorch 2.6 (a 256 px TI step in bf16: 5.3-5.9 s against 2.0-2.2 s, bench_invert), while
  // in fp32 it is the faster one (3.6-4.3 s against 4.8-5.5 s).
  return TORCH_VERSION_MAJOR >= 2 && (dtype == torch::kFloat32 || !device.is_cpu());
}

torch::Tensor dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                    const AttentionOptions& opts) {
  double scale = opts.scale > 0 ? opts.scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
#if TORCH_VERSION_MAJOR >= 2
  // libtorch 2.x: the fused kernel (flash / memory-efficient / math fallback). Its is_causal
  // aligns the mask top-left, so causal attention over a key/value cache (Nq < Nk) and causal
  // plus additive masks get an explicit bottom-right aligned mask instead.
  if (fused_attention(q.scalar_type(), q.device()) && (!opts.upcast || q.scalar_type() == torch::kFloat32)) {
    int64_t nq = q.size(-2), nk = k.size(-2);
    c10::optional<at::Tensor> mask;
    if (opts.mask.defined()) mask = opts.mask.to(q.scalar_type());
    bool causal = opts.causal && !mask.has_value() && nq == nk;
    if (opts.causal && !causal) {
      auto keep = torch::ones({nq, nk}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).tril(nk - nq);
      auto additive = torch::zeros({nq, nk}, q.options()).masked_fill(keep.logical_not(), -INFINITY);
      mask = mask.has_value() ? *mask + additive : additive;
    }
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1
    return at::scaled_dot_product_attention(q, k, v, mask, 0.0, causal, scale);
#else
    return at::scaled_dot_product_attention(q * (scale * std::sqrt(static_cast<double>(q.size(-1)))), k, v, mask, 0.0,
                                            causal);
#endif
  }
#endif
  if (attention_recompute() && torch::GradMode::is_enabled() &&
      (q.requires_grad() || k.requires_grad() || v.requires_grad()))
    return RecomputeAttention::apply(q, k, v, mask_arg(opts.mask, q), scale, opts.causal, opts.upcast);
  return chunked_attention(q, k, v, opts, scale);
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
