// CLIP text encoder: config validation, strict loading, gradient isolation for added tokens,
// id range checks, activations, and single-file key conversion round trips (SD1 and OpenCLIP).
#include <torch/torch.h>

#include "io/json_config.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "models/convert_text.h"
#include "test_util.h"
#include "text/clip_text_model.h"

namespace tinv {
namespace {

ClipTextConfig tiny_config(const std::string& act = "quick_gelu") {
  ClipTextConfig c;
  c.vocab_size = 100;
  c.hidden_size = 128;
  c.intermediate_size = 200;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 16;
  c.hidden_act = act;
  return c;
}

// A model whose every parameter (LayerNorms included) is random, so that a wrong mapping shows.
ClipTextModel random_model(const ClipTextConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  ClipTextModel m(c);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.copy_(torch::randn_like(p) * 0.2 + (p.dim() == 1 ? 0.5 : 0.0));
  return m;
}

StateDict state_of(ClipTextModel& m) {
  StateDict sd;
  for (const auto& p : m->named_parameters()) sd[p.key()] = p.value().detach().clone();
  return sd;
}

torch::Tensor random_ids(const ClipTextConfig& c, int64_t b, int64_t len, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, c.vocab_size, {b, len}, torch::kLong);
}

JsonConfig json(const std::string& text) { return JsonConfig::parse(text, "config.json"); }

// ---- Config ----------------------------------------------------------------------------------

TEST(ClipTextConfig, FromJsonReadsFieldsAndDefaults) {
  auto c = ClipTextConfig::from_json(json(R"({"hidden_size": 32, "intermediate_size": 37,
      "num_hidden_layers": 5, "num_attention_heads": 4, "hidden_act": "gelu",
      "layer_norm_eps": 1e-6, "pad_token_id": 0})"));
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.intermediate_size, 37);
  EXPECT_EQ(c.num_hidden_layers, 5);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.hidden_act, "gelu");
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-6);
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.vocab_size, 49408);            // transformers default when omitted
  EXPECT_EQ(c.max_position_embeddings, 77);  // idem
  // A full CLIPModel config nests the text tower.
  auto nested = ClipTextConfig::from_json(json(R"({"text_config": {"hidden_size": 64,
      "num_attention_heads": 2}})"));
  EXPECT_EQ(nested.hidden_size, 64);
}

TEST(ClipTextConfig, FromFixtureConfig) {
  auto c = ClipTextConfig::from_json(JsonConfig::load(test::fixture("tiny-sd15/model/text_encoder/config.json")));
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.num_hidden_layers, 5);
  EXPECT_EQ(c.hidden_act, "quick_gelu");
}

TEST(ClipTextConfig, InvalidValuesNameTheField) {
  EXPECT_TINV_ERROR(ClipTextConfig::from_json(json(R"({"hidden_size": 30, "num_attention_heads": 4})")),
                    "config.json: field 'num_attention_heads' (4) must divide 'hidden_size' (30)");
  EXPECT_TINV_ERROR(ClipTextConfig::from_json(json(R"({"hidden_size": 0})")), "field 'hidden_size' must be >= 1");
  EXPECT_TINV_ERROR(ClipTextConfig::from_json(json(R"({"num_hidden_layers": -1})")),
                    "field 'num_hidden_layers' must be >= 1");
  EXPECT_TINV_ERROR(ClipTextConfig::from_json(json(R"({"intermediate_size": 0})")), "field 'intermediate_size'");
  EXPECT_TINV_ERROR(ClipTextConfig::from_json(json(R"({"max_position_embeddings": 0})")),
                    "field 'max_position_embeddings'");
  EXPECT_TINV_ERROR(ClipTextConfig::from_json(json(R"({"vocab_size": 0})")), "field 'vocab_size'");
  EXPECT_TINV_ERROR(ClipTextConfig::from_json(json(R"({"hidden_act": "relu"})")),
                    "field 'hidden_act' must be \"quick_gelu\" or \"gelu\" (got \"relu\")");
  EXPECT_TINV_ERROR(ClipTextConfig::from_json(json(R"({"layer_norm_eps": 0})")), "field 'layer_norm_eps' must be > 0");
  EXPECT_TINV_ERROR(ClipTextConfig::from_json(json(R"({"hidden_size": "wide"})")),
                    "field 'hidden_size' has the wrong type");
}

TEST(ClipTextConfig, Presets) {
  auto a = ClipTextConfig::sd15();
  EXPECT_EQ(a.hidden_size, 768);
  EXPECT_EQ(a.num_hidden_layers, 12);
  EXPECT_EQ(a.num_attention_heads, 12);
  EXPECT_EQ(a.intermediate_size, 3072);
  EXPECT_EQ(a.hidden_act, "quick_gelu");
  auto b = ClipTextConfig::sd21();
  EXPECT_EQ(b.hidden_size, 1024);
  EXPECT_EQ(b.num_hidden_layers, 23);
  EXPECT_EQ(b.num_attention_heads, 16);
  EXPECT_EQ(b.intermediate_size, 4096);
  EXPECT_EQ(b.hidden_act, "gelu");
  EXPECT_NO_THROW(a.validate("sd15"));
  EXPECT_NO_THROW(b.validate("sd21"));
}

// ---- Names and strict loading ----------------------------------------------------------------

TEST(ClipTextModel, ParameterNamesAreTheHfKeys) {
  auto c = ClipTextConfig::from_json(JsonConfig::load(test::fixture("tiny-sd15/model/text_encoder/config.json")));
  ClipTextModel m(c);
  auto file = SafeTensors::open(test::fixture("tiny-sd15/model/text_encoder/model.safetensors"));
  std::vector<std::string> ours;
  for (const auto& p : m->named_parameters()) ours.push_back(p.key());
  std::sort(ours.begin(), ours.end());
  EXPECT_EQ(ours, file.keys());
  EXPECT_TRUE(m->named_buffers().is_empty());
  for (const auto& p : m->parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST(ClipTextModel, StrictLoadingNamesTheTensor) {
  auto c = tiny_config();
  ClipTextModel src = random_model(c, 1);
  StateDict sd = state_of(src);
  ClipTextModel m(c);

  StateDict missing = sd;
  missing.erase("text_model.encoder.layers.1.mlp.fc2.bias");
  EXPECT_TINV_ERROR(load_clip_text_weights(m, missing, "te.safetensors"),
                    "te.safetensors: missing tensor(s): text_model.encoder.layers.1.mlp.fc2.bias");

  StateDict unexpected = sd;
  unexpected["text_model.encoder.layers.2.mlp.fc2.bias"] = torch::zeros({128});
  EXPECT_TINV_ERROR(load_clip_text_weights(m, unexpected, "te.safetensors"),
                    "unexpected tensor(s): text_model.encoder.layers.2.mlp.fc2.bias");

  StateDict misshaped = sd;
  misshaped["text_model.encoder.layers.0.self_attn.k_proj.weight"] = torch::zeros({128, 64});
  EXPECT_TINV_ERROR(load_clip_text_weights(m, misshaped, "te.safetensors"),
                    "tensor 'text_model.encoder.layers.0.self_attn.k_proj.weight' has shape "
                    "[128, 64] but the model expects [128, 128]");

  // HF checkpoints may carry the position_ids buffer: accepted and ignored.
  StateDict with_ids = sd;
  with_ids["text_model.embeddings.position_ids"] = torch::arange(16, torch::kLong).unsqueeze(0);
  load_clip_text_weights(m, with_ids, "te.safetensors");
  auto ids = random_ids(c, 2, 9, 3);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(m->forward(ids), src->forward(ids)));
}

TEST(ClipTextModel, LoadsFixtureFolder) {
  auto m = load_clip_text_model(test::fixture("tiny-sd15/model/text_encoder"));
  EXPECT_EQ(m->config().hidden_size, 32);
  auto ids = torch::tensor({{49406, 320, 1125, 49407, 49407}}, torch::kLong);
  torch::NoGradGuard no_grad;
  auto h = m->forward(ids);
  EXPECT_EQ(h.sizes(), (std::vector<int64_t>{1, 5, 32}));
  EXPECT_TRUE(torch::isfinite(h).all().item<bool>());
  EXPECT_TINV_ERROR(load_clip_text_model(test::fixture("tiny-sd15/model/unet")), "no model.safetensors");
}

// ---- Forward semantics -----------------------------------------------------------------------

TEST(ClipTextModel, CausalOutputsDoNotSeeLaterTokens) {
  auto c = tiny_config();
  auto m = random_model(c, 2);
  auto ids = random_ids(c, 1, 10, 4);
  auto changed = ids.clone();
  changed[0][7] = (ids[0][7].item<int64_t>() + 1) % c.vocab_size;
  torch::NoGradGuard no_grad;
  auto a = m->forward(ids), b = m->forward(changed);
  EXPECT_TRUE(torch::equal(a.narrow(1, 0, 7), b.narrow(1, 0, 7)));
  EXPECT_FALSE(torch::allclose(a.narrow(1, 7, 3), b.narrow(1, 7, 3)));
  // Prefix invariance: a shorter sequence gives the same leading states.
  EXPECT_TRUE(torch::allclose(m->forward(ids.narrow(1, 0, 4)), a.narrow(1, 0, 4), 1e-5, 1e-6));
}

TEST(ClipTextModel, ActivationsGeluAndQuickGelu) {
  torch::manual_seed(5);
  ClipMlp quick(8, 16, "quick_gelu"), gelu(8, 16, "gelu");
  {
    torch::NoGradGuard no_grad;
    auto p = quick->named_parameters(), q = gelu->named_parameters();
    for (const auto& kv : p) q[kv.key()].copy_(kv.value());
  }
  auto x = torch::randn({2, 3, 8});
  auto fc1 = quick->named_parameters();
  auto h = torch::matmul(x, fc1["fc1.weight"].t()) + fc1["fc1.bias"];
  auto out = [&](const torch::Tensor& a) { return torch::matmul(a, fc1["fc2.weight"].t()) + fc1["fc2.bias"]; };
  auto ref_quick = out(h * torch::sigmoid(1.702 * h));
  auto ref_gelu = out(0.5 * h * (1 + torch::erf(h / std::sqrt(2.0))));
  EXPECT_TRUE(torch::allclose(quick(x), ref_quick, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(gelu(x), ref_gelu, 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(quick(x), gelu(x), 1e-4, 1e-5));

  // And the whole model follows its config's activation.
  auto mq = random_model(tiny_config("quick_gelu"), 6);
  auto mg = random_model(tiny_config("gelu"), 6);
  auto ids = random_ids(tiny_config(), 1, 5, 7);
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(torch::allclose(mq->forward(ids), mg->forward(ids), 1e-4, 1e-5));
}

TEST(ClipTextModel, ExtraEmbeddingsActAsTokenRows) {
  auto c = tiny_config();
  auto m = random_model(c, 8);
  auto ids = torch::tensor({{3, 17, 42, 5}}, torch::kLong);
  // Extra rows equal to the rows of ids 17 and 42: ids 100 and 101 then give the same output.
  auto extra = m->token_embeddings(torch::tensor({17, 42}, torch::kLong));
  EXPECT_EQ(extra.sizes(), (std::vector<int64_t>{2, 128}));
  auto with_added = torch::tensor({{3, 100, 101, 5}}, torch::kLong);
  torch::NoGradGuard no_grad;
  auto ref = m->forward(ids);
  EXPECT_TRUE(torch::equal(m->forward(with_added, extra), ref));
  // Extra rows present but unused change nothing.
  EXPECT_TRUE(torch::equal(m->forward(ids, extra), ref));
}

TEST(ClipTextModel, GradientsReachOnlyTheExtraRows) {
  auto c = tiny_config();
  auto m = random_model(c, 9);
  m->to(torch::kFloat64);  // double, so that the finite-difference check below is precise
  auto extra = torch::randn({3, 128}, torch::kFloat64).requires_grad_(true);
  auto ids = torch::tensor({{1, 100, 2, 102}, {102, 4, 5, 6}}, torch::kLong);
  auto h = m->forward(ids, extra);
  EXPECT_TRUE(h.requires_grad());
  h.pow(2).sum().backward();
  ASSERT_TRUE(extra.grad().defined());
  auto row_norm = extra.grad().norm(2, {1});
  EXPECT_GT(row_norm[0].item<double>(), 0.0);
  EXPECT_EQ(row_norm[1].item<double>(), 0.0);  // id 101 unused
  EXPECT_GT(row_norm[2].item<double>(), 0.0);
  for (const auto& p : m->named_parameters()) {
    EXPECT_FALSE(p.value().requires_grad()) << p.key();
    EXPECT_FALSE(p.value().grad().defined()) << p.key();
  }
  // Without extra rows nothing requires grad at all.
  EXPECT_FALSE(m->forward(torch::tensor({{1, 2}}, torch::kLong)).requires_grad());

  // The gradient is the true derivative: compare with a finite difference on one coordinate.
  auto f = [&](const torch::Tensor& e) {
    torch::NoGradGuard no_grad;
    return m->forward(ids, e).pow(2).sum().item<double>();
  };
  auto e64 = extra.detach().clone();
  const double eps = 1e-5;
  auto plus = e64.clone(), minus = e64.clone();
  plus[2][5] += eps;
  minus[2][5] -= eps;
  double fd = (f(plus) - f(minus)) / (2 * eps);
  EXPECT_NEAR(extra.grad()[2][5].item<double>(), fd, 1e-5 * std::abs(fd) + 1e-6);
}

TEST(ClipTextModel, OutOfRangeIdsThrow) {
  auto c = tiny_config();
  ClipTextModel m(c);
  torch::NoGradGuard no_grad;
  EXPECT_TINV_ERROR(m->forward(torch::tensor({{1, 100}}, torch::kLong)),
                    "token id 100 is out of range: the vocabulary has 100 ids and 0 extra");
  EXPECT_TINV_ERROR(m->forward(torch::tensor({{1, 102}}, torch::kLong), torch::zeros({2, 128})),
                    "token id 102 is out of range: the vocabulary has 100 ids and 2 extra");
  EXPECT_TINV_ERROR(m->forward(torch::tensor({{-1, 2}}, torch::kLong)), "token id -1 is out of range");
  EXPECT_TINV_ERROR(m->forward(torch::zeros({1, 17}, torch::kLong)),
                    "sequence length 17 exceeds max_position_embeddings 16");
  EXPECT_TINV_ERROR(m->forward(torch::zeros({1, 2}, torch::kLong), torch::zeros({2, 64})),
                    "extra_embeddings must be [n, 128], got [2, 64]");
  EXPECT_TINV_ERROR(m->forward(torch::zeros({4}, torch::kLong)), "input_ids must be [batch, length]");
  EXPECT_TINV_ERROR(m->token_embeddings(torch::tensor({100}, torch::kLong)), "token id 100 is out of range");
}

// ---- Single-file conversion ------------------------------------------------------------------

// Inverse of convert_openclip_text: HF names -> OpenCLIP names under cond_stage_model.model.
StateDict to_openclip(const StateDict& hf, int64_t layers) {
  const std::string p = "cond_stage_model.model.";
  const std::string l = "text_model.encoder.layers.";
  StateDict out;
  out[p + "token_embedding.weight"] = hf.at("text_model.embeddings.token_embedding.weight");
  out[p + "positional_embedding"] = hf.at("text_model.embeddings.position_embedding.weight");
  out[p + "ln_final.weight"] = hf.at("text_model.final_layer_norm.weight");
  out[p + "ln_final.bias"] = hf.at("text_model.final_layer_norm.bias");
  const std::vector<std::pair<std::string, std::string>> names = {{"self_attn.out_proj", "attn.out_proj"},
                                                                  {"layer_norm1", "ln_1"},
                                                                  {"layer_norm2", "ln_2"},
                                                                  {"mlp.fc1", "mlp.c_fc"},
                                                                  {"mlp.fc2", "mlp.c_proj"}};
  for (int64_t i = 0; i < layers; ++i) {
    std::string src = l + std::to_string(i) + ".";
    std::string dst = p + "transformer.resblocks." + std::to_string(i) + ".";
    for (std::string s : {"weight", "bias"}) {
      out[dst + "attn.in_proj_" + s] =
          torch::cat({hf.at(src + "self_attn.q_proj." + s), hf.at(src + "self_attn.k_proj." + s),
                      hf.at(src + "self_attn.v_proj." + s)});
      for (const auto& [h, o] : names) out[dst + o + "." + s] = hf.at(src + h + "." + s);
    }
  }
  return out;
}

TEST(ConvertText, OpenClipRoundTripDropsTheLastBlock) {
  auto c = tiny_config("gelu");
  auto ref = random_model(c, 10);
  // A 3-block OpenCLIP tower whose first 2 blocks are `ref`; SD2 semantics keep blocks 0..1.
  auto c3 = c;
  c3.num_hidden_layers = 3;
  auto big = random_model(c3, 11);
  StateDict hf = state_of(ref);
  StateDict big_sd = state_of(big);
  for (const auto& [k, v] : big_sd)
    if (k.find("layers.2.") != std::string::npos) hf[k] = v;
  StateDict file = to_openclip(hf, 3);
  file["cond_stage_model.model.text_projection"] = torch::randn({128, 128});
  file["cond_stage_model.model.logit_scale"] = torch::tensor(4.6f);
  file["cond_stage_model.model.attn_mask"] = torch::zeros({16, 16});
  file["model.diffusion_model.conv_in.weight"] = torch::zeros({4, 4, 3, 3});
  EXPECT_EQ(count_openclip_blocks(file), 3);

  StateDict converted = convert_openclip_text(file, 2);
  auto inferred = infer_clip_text_config(converted);
  EXPECT_EQ(inferred.vocab_size, 100);
  EXPECT_EQ(inferred.hidden_size, 128);
  EXPECT_EQ(inferred.intermediate_size, 200);
  EXPECT_EQ(inferred.num_hidden_layers, 2);
  EXPECT_EQ(inferred.num_attention_heads, 2);
  EXPECT_EQ(inferred.max_position_embeddings, 16);
  EXPECT_EQ(inferred.hidden_act, "gelu");

  ClipTextModel m(inferred);
  load_clip_text_weights(m, converted, "sd2.safetensors");  // strict: exactly the HF key set
  auto ids = random_ids(c, 2, 12, 12);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(m->forward(ids), ref->forward(ids)));

  // num_layers < 0 keeps all blocks.
  EXPECT_EQ(infer_clip_text_config(convert_openclip_text(file, -1)).num_hidden_layers, 3);
}

TEST(ConvertText, OpenClipErrors) {
  auto c = tiny_config("gelu");
  auto ref = random_model(c, 13);
  StateDict file = to_openclip(state_of(ref), 2);
  EXPECT_TINV_ERROR(convert_openclip_text(file, 3), "asked for 3 layers but the file has 2");
  StateDict odd = file;
  odd["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_bias"] = torch::zeros({128});
  EXPECT_TINV_ERROR(convert_openclip_text(odd, 2),
                    "tensor 'cond_stage_model.model.transformer.resblocks.0.attn.in_proj_bias' has "
                    "shape [128]");
  StateDict unknown = file;
  unknown["cond_stage_model.model.transformer.resblocks.1.ls_1.gamma"] = torch::zeros({128});
  EXPECT_TINV_ERROR(convert_openclip_text(unknown, 2),
                    "unknown OpenCLIP text tensor 'cond_stage_model.model.transformer.resblocks.1.ls_1.gamma'");
  EXPECT_TINV_ERROR(convert_openclip_text(StateDict{{"x", torch::zeros({1})}}, 23),
                    "no tensor starts with 'cond_stage_model.model.'");
  StateDict hf = state_of(ref);
  hf.erase("text_model.encoder.layers.0.mlp.fc1.weight");
  EXPECT_TINV_ERROR(infer_clip_text_config(hf), "missing tensor 'text_model.encoder.layers.0.mlp.fc1.weight'");
  auto narrow = tiny_config();
  narrow.hidden_size = 32;
  ClipTextModel narrow_model(narrow);
  EXPECT_TINV_ERROR(infer_clip_text_config(state_of(narrow_model)),
                    "cannot infer the head count of a 32-wide text encoder");
}

TEST(ConvertText, LdmPrefixesBothForms) {
  auto c = tiny_config();
  auto ref = random_model(c, 14);
  StateDict hf = state_of(ref);
  auto ids = random_ids(c, 2, 8, 15);
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = ref->forward(ids);
  }
  for (bool with_text_model : {true, false}) {
    StateDict file;
    for (const auto& [k, v] : hf) {
      std::string rest = with_text_model ? k : k.substr(std::string("text_model.").size());
      file["cond_stage_model.transformer." + rest] = v;
    }
    std::string pos_ids = with_text_model ? "text_model.embeddings.position_ids" : "embeddings.position_ids";
    file["cond_stage_model.transformer." + pos_ids] = torch::arange(16, torch::kLong).unsqueeze(0);
    file["model.diffusion_model.conv_in.weight"] = torch::zeros({4, 4, 3, 3});
    file["alphas_cumprod"] = torch::ones({1000});
    StateDict converted = convert_ldm_clip_text(file);
    EXPECT_EQ(converted.size(), hf.size());
    auto inferred = infer_clip_text_config(converted, "quick_gelu");
    EXPECT_EQ(inferred.num_hidden_layers, 2);
    ClipTextModel m(inferred);
    load_clip_text_weights(m, converted, "sd1.ckpt");
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(m->forward(ids), expected)) << "text_model. form: " << with_text_model;
  }
  EXPECT_TINV_ERROR(convert_ldm_clip_text(StateDict{{"x", torch::zeros({1})}}),
                    "no tensor starts with 'cond_stage_model.transformer.'");
}

TEST(ConvertText, FixtureSingleFileMatchesFolder) {
  auto folder = load_clip_text_model(test::fixture("tiny-sd15/model/text_encoder"));
  StateDict converted = convert_ldm_clip_text(load_state_dict_file(test::fixture("tiny-sd15/model.safetensors")));
  ClipTextModel single(folder->config());
  load_clip_text_weights(single, converted, "model.safetensors");
  auto ids = random_ids(folder->config(), 2, 77, 16);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(single->forward(ids), folder->forward(ids)));
}

}  // namespace
}  // namespace tinv
