// dot_product_attention: chunked path equals the plain formula; causal masks with a KV cache;
// recompute_attention's backward equals autograd through the plain formula, with its
// probabilities recomputed and kept (set_attention_store), and the store budget's accounting.
#include <torch/torch.h>

#include <limits>

#include "common/memory.h"
#include "nn/attention_ops.h"
#include "test_util.h"

namespace tinv {
namespace {

torch::Tensor reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal) {
  auto s = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(q.size(-1)));
  if (causal) {
    int64_t nq = q.size(2), nk = k.size(2);
    auto m = torch::ones({nq, nk}, torch::kBool).tril(nk - nq).logical_not();
    s = s.masked_fill(m, -INFINITY);
  }
  return torch::matmul(torch::softmax(s, -1), v);
}

TEST(Attention, MatchesReferencePlainAndCausal) {
  torch::manual_seed(0);
  auto q = torch::randn({2, 3, 7, 8}), k = torch::randn({2, 3, 7, 8}), v = torch::randn({2, 3, 7, 5});
  EXPECT_TRUE(torch::allclose(dot_product_attention(q, k, v), reference(q, k, v, false), 1e-5, 1e-6));
  AttentionOptions causal;
  causal.causal = true;
  EXPECT_TRUE(torch::allclose(dot_product_attention(q, k, v, causal), reference(q, k, v, true), 1e-5, 1e-6));
  // Fewer queries than keys (incremental decoding): the last query sees every key.
  auto q1 = q.narrow(2, 6, 1);
  EXPECT_TRUE(
      torch::allclose(dot_product_attention(q1, k, v, causal), reference(q, k, v, true).narrow(2, 6, 1), 1e-5, 1e-6));
}

TEST(Attention, ChunkedLargeQueryCountMatches) {
  torch::manual_seed(1);
  // 1 x 8 heads x 4096 queries x 4096 keys: 512 MB of scores unchunked, so the chunked path runs.
  auto q = torch::randn({1, 8, 4096, 8}), k = torch::randn({1, 8, 4096, 8}), v = torch::randn({1, 8, 4096, 8});
  auto ours = dot_product_attention(q, k, v);
  auto idx = torch::tensor({0, 1000, 4095});
  auto ref = reference(q.index_select(2, idx), k, v, false);
  EXPECT_TRUE(torch::allclose(ours.index_select(2, idx), ref, 1e-4, 1e-5));
}

TEST(Attention, AdditiveMaskAndHeads) {
  auto x = torch::randn({2, 5, 12});
  EXPECT_TRUE(torch::equal(merge_heads(split_heads(x, 3)), x));
  auto q = torch::randn({1, 1, 2, 4}), k = torch::randn({1, 1, 3, 4}), v = torch::randn({1, 1, 3, 4});
  AttentionOptions o;
  o.mask = torch::tensor({0.0f, 0.0f, -10000.0f}).view({1, 1, 1, 3});
  auto out = dot_product_attention(q, k, v, o);
  auto ref = reference(q, k.narrow(2, 0, 2), v.narrow(2, 0, 2), false);
  EXPECT_TRUE(torch::allclose(out, ref, 1e-4, 1e-5));
}

// Gradients of recompute_attention against autograd through the plain formula, in float64 so
// the comparison is tight: with and without a causal mask, with fewer queries than keys, and
// with additive masks per row and broadcast over rows.
constexpr int64_t kStoreAll = std::numeric_limits<int64_t>::max();

// Sets the store budget for one scope and puts the default (auto) back.
struct StoreBudget {
  explicit StoreBudget(int64_t bytes) { set_attention_store(bytes); }
  ~StoreBudget() { set_attention_store(kAttentionStoreAuto); }
};

void expect_same_grads_once(const torch::Tensor& q0, const torch::Tensor& k0, const torch::Tensor& v0,
                            const AttentionOptions& o, const std::string& what);

// Both ways: the probabilities recomputed in the backward (budget 0), and kept from the forward.
void expect_same_grads(const torch::Tensor& q0, const torch::Tensor& k0, const torch::Tensor& v0,
                       const AttentionOptions& o, const std::string& what) {
  for (int64_t budget : {int64_t{0}, kStoreAll}) {
    StoreBudget scope(budget);
    expect_same_grads_once(q0, k0, v0, o, what + (budget ? ", kept" : ", recomputed"));
    EXPECT_EQ(attention_stored_bytes(), 0) << what;
  }
}

void expect_same_grads_once(const torch::Tensor& q0, const torch::Tensor& k0, const torch::Tensor& v0,
                            const AttentionOptions& o, const std::string& what) {
  auto q = q0.clone().requires_grad_(true), k = k0.clone().requires_grad_(true), v = v0.clone().requires_grad_(true);
  auto q2 = q0.clone().requires_grad_(true), k2 = k0.clone().requires_grad_(true), v2 = v0.clone().requires_grad_(true);
  auto w = torch::randn({q0.size(0), q0.size(1), q0.size(2), v0.size(3)}, q0.options());  // a random upstream gradient
  auto ours = recompute_attention(q, k, v, o);
  const int64_t probs_bytes = q0.size(0) * q0.size(1) * q0.size(2) * k0.size(2) * q0.element_size();
  EXPECT_EQ(attention_stored_bytes(), attention_store_budget() ? probs_bytes : 0) << what;
  auto s = torch::matmul(q2, k2.transpose(-1, -2)) / std::sqrt(static_cast<double>(q0.size(-1)));
  if (o.mask.defined()) s = s + o.mask;
  if (o.causal) {
    const int64_t nq = q0.size(2), nk = k0.size(2);
    s = s.masked_fill(torch::ones({nq, nk}, torch::kBool).tril(nk - nq).logical_not(), -INFINITY);
  }
  auto ref = torch::matmul(torch::softmax(s, -1), v2);
  EXPECT_TRUE(torch::allclose(ours, ref, 1e-10, 1e-12)) << what;
  (ours * w).sum().backward();
  (ref * w).sum().backward();
  EXPECT_TRUE(torch::allclose(q.grad(), q2.grad(), 1e-9, 1e-11)) << what << " dq";
  EXPECT_TRUE(torch::allclose(k.grad(), k2.grad(), 1e-9, 1e-11)) << what << " dk";
  EXPECT_TRUE(torch::allclose(v.grad(), v2.grad(), 1e-9, 1e-11)) << what << " dv";
}

TEST(Attention, RecomputeBackwardEqualsAutograd) {
  torch::manual_seed(3);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto q = torch::randn({2, 3, 7, 8}, f64), k = torch::randn({2, 3, 9, 8}, f64), v = torch::randn({2, 3, 9, 5}, f64);
  expect_same_grads(q, k, v, {}, "plain");
  AttentionOptions causal;
  causal.causal = true;
  expect_same_grads(q, k, v, causal, "causal, 7 queries over 9 keys");
  AttentionOptions rows;
  rows.mask = torch::randn({1, 1, 7, 9}, f64);
  expect_same_grads(q, k, v, rows, "mask per row");
  AttentionOptions broadcast;
  broadcast.mask = torch::tensor({0.0, 0.0, -1e4, 0.0, 0.0, 0.0, 0.0, 0.0, -1e4}, f64).view({1, 1, 1, 9});
  expect_same_grads(q, k, v, broadcast, "mask broadcast over rows");
}

TEST(Attention, RecomputeBackwardInChunks) {
  torch::manual_seed(4);
  // 1 x 16 heads x 2048 x 2048: 2 chunks of 1024 query rows (128 MB of float32 scores each).
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto q = torch::randn({1, 16, 2048, 4}, f64), k = torch::randn({1, 16, 2048, 4}, f64),
       v = torch::randn({1, 16, 2048, 4}, f64);
  expect_same_grads(q, k, v, {}, "chunked");
}

// A budget of one layer's probabilities: the first layer keeps them, the second recomputes; the
// backward gives the bytes back layer by layer, and so does a graph dropped without a backward.
TEST(Attention, StoreBudgetKeepsWhatFitsAndGivesItBack) {
  torch::manual_seed(6);
  auto q = torch::randn({1, 2, 64, 8}, torch::requires_grad()), k = torch::randn({1, 2, 64, 8});
  auto v = torch::randn({1, 2, 64, 8});
  const int64_t layer = 1 * 2 * 64 * 64 * 4;
  StoreBudget scope(layer);
  auto h = recompute_attention(q, k, v);
  EXPECT_EQ(attention_stored_bytes(), layer);
  auto out = recompute_attention(h, k, v);  // does not fit: recomputed
  EXPECT_EQ(attention_stored_bytes(), layer);
  out.square().sum().backward();
  EXPECT_EQ(attention_stored_bytes(), 0);
  // The same two layers with nothing kept give the same gradient.
  auto g = q.grad().clone();
  q.mutable_grad().reset();
  set_attention_store(0);
  recompute_attention(recompute_attention(q, k, v), k, v).square().sum().backward();
  EXPECT_TRUE(torch::allclose(q.grad(), g, 1e-5, 1e-6));
  set_attention_store(layer);
  {
    auto dropped = recompute_attention(q, k, v);
    EXPECT_EQ(attention_stored_bytes(), layer);
  }
  EXPECT_EQ(attention_stored_bytes(), 0);
  // Without a gradient nothing is kept.
  torch::NoGradGuard no_grad;
  recompute_attention(q, k, v);
  EXPECT_EQ(attention_stored_bytes(), 0);
}

// auto: fixed at the first training attention, from the memory available then, less a margin.
TEST(Attention, AutoStoreBudgetComesFromTheFreeMemory) {
  StoreBudget scope(kAttentionStoreAuto);
  EXPECT_EQ(attention_store_budget(), kAttentionStoreAuto);
  const int64_t available = available_memory_bytes();
  EXPECT_GT(available, 0);
  auto q = torch::randn({1, 1, 4, 4}, torch::requires_grad());
  recompute_attention(q, q.detach(), q.detach()).sum().backward();
  const int64_t budget = attention_store_budget();
  EXPECT_GE(budget, 0);
  EXPECT_LE(budget, std::min(kAttentionStoreAutoMax,
                             std::max<int64_t>(0, available - (int64_t{2} << 30)) + (int64_t{1} << 30)));
  EXPECT_TINV_ERROR(set_attention_store(-2), "attention store");
  EXPECT_EQ(attention_store_budget(), budget);
}

// What the models call: on libtorch 1.13 a gradient through dot_product_attention is
// recompute_attention's (the same values as autograd's, float32 rounding apart); on 2.x the
// fused kernel's. Either way the gradient matches the plain formula.
TEST(Attention, DotProductAttentionGradientsMatch) {
  torch::manual_seed(5);
  auto q = torch::randn({1, 2, 6, 4}, torch::requires_grad()), k = torch::randn({1, 2, 6, 4}, torch::requires_grad());
  auto v = torch::randn({1, 2, 6, 4}, torch::requires_grad());
  dot_product_attention(q, k, v).square().sum().backward();
  auto q2 = q.detach().clone().requires_grad_(true), k2 = k.detach().clone().requires_grad_(true);
  auto v2 = v.detach().clone().requires_grad_(true);
  reference(q2, k2, v2, false).square().sum().backward();
  EXPECT_TRUE(torch::allclose(q.grad(), q2.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(k.grad(), k2.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(v.grad(), v2.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(attention_recompute());
}

}  // namespace
}  // namespace tinv
