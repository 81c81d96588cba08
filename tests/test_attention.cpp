// dot_product_attention: chunked path equals the plain formula; causal masks with a KV cache.
#include <torch/torch.h>

#include "models/attention_ops.h"
#include "test_util.h"

namespace tinv {
namespace {

torch::Tensor reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        bool causal) {
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
  EXPECT_TRUE(torch::allclose(dot_product_attention(q1, k, v, causal), reference(q, k, v, true).narrow(2, 6, 1),
                              1e-5, 1e-6));
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

}  // namespace
}  // namespace tinv
