// UNet2DConditionModel: config validation, construction of several configurations, odd sizes,
// strict loading, LDM key conversion, gradient isolation. Fixture parity is `tinv parity --only unet`.
#include <torch/torch.h>

#include <fstream>
#include <regex>

#include "io/json_config.h"
#include "io/safetensors.h"
#include "io/state_dict.h"
#include "models/convert_unet.h"
#include "models/unet.h"
#include "test_util.h"

namespace tinv {
namespace {

// A 2-level SD1-style config (the shape of the tiny-sd15 fixture).
nlohmann::json tiny_json() {
  return nlohmann::json::parse(R"({
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 4,
    "block_out_channels": [32, 64], "cross_attention_dim": 24,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn", "in_channels": 4, "out_channels": 4,
    "layers_per_block": 1, "norm_num_groups": 8, "class_embed_type": null,
    "addition_embed_type": null, "only_cross_attention": false, "sample_size": 8})");
}

UNetConfig parse(const nlohmann::json& j) { return UNetConfig::from_json(JsonConfig(j, "config.json")); }

// SD2-style, 3 levels: linear projections, per-block heads, upcast, 2 transformer layers per
// block, 16 norm groups, downsample_padding 0.
UNetConfig sd2_style() {
  auto j = tiny_json();
  j["block_out_channels"] = {32, 48, 64};
  j["down_block_types"] = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
  j["up_block_types"] = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
  j["attention_head_dim"] = {2, 3, 4};
  j["use_linear_projection"] = true;
  j["upcast_attention"] = true;
  j["transformer_layers_per_block"] = 2;
  j["norm_num_groups"] = 16;
  j["layers_per_block"] = 2;
  j["downsample_padding"] = 0;
  j["cross_attention_dim"] = 40;
  return parse(j);
}

torch::Tensor run(UNet2DConditionModel& unet, int64_t b, int64_t h, int64_t w, int64_t len = 7) {
  torch::manual_seed(1);
  const auto& c = unet->config();
  return unet->forward(torch::randn({b, c.in_channels, h, w}), torch::tensor({10, 700}).narrow(0, 0, b),
                       torch::randn({b, len, c.cross_attention_dim}));
}

StateDict params_of(torch::nn::Module& m) {
  StateDict sd;
  for (const auto& p : m.named_parameters()) sd[p.key()] = p.value();
  return sd;
}

// Test-side inverse of the LDM mapping (diffusers -> LDM), written independently of
// ldm_unet_prefixes from the table in FORMATS.md.
StateDict to_ldm(const StateDict& diffusers, int64_t L) {
  static const std::vector<std::pair<std::string, std::string>> kResnet = {
      {"norm1.", "in_layers.0."},  {"conv1.", "in_layers.2."},  {"time_emb_proj.", "emb_layers.1."},
      {"norm2.", "out_layers.0."}, {"conv2.", "out_layers.3."}, {"conv_shortcut.", "skip_connection."}};
  auto resnet = [&](std::string rest) {
    for (const auto& [d, l] : kResnet)
      if (rest.compare(0, d.size(), d) == 0) return l + rest.substr(d.size());
    ADD_FAILURE() << "unknown resnet tensor " << rest;
    return rest;
  };
  auto up_attn = [&](int64_t i) {
    return diffusers.lower_bound("up_blocks." + std::to_string(i) + ".attentions.") != diffusers.end() &&
           diffusers.lower_bound("up_blocks." + std::to_string(i) + ".attentions.")
                   ->first.rfind("up_blocks." + std::to_string(i) + ".attentions.", 0) == 0;
  };
  static const std::map<std::string, std::string> kPlain = {{"conv_in.", "input_blocks.0.0."},
                                                            {"time_embedding.linear_1.", "time_embed.0."},
                                                            {"time_embedding.linear_2.", "time_embed.2."},
                                                            {"conv_norm_out.", "out.0."},
                                                            {"conv_out.", "out.2."},
                                                            {"mid_block.attentions.0.", "middle_block.1."}};
  std::regex block(R"((down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.*))");
  std::regex mid(R"(mid_block\.resnets\.(\d+)\.(.*))");
  StateDict out;
  for (const auto& [key, t] : diffusers) {
    std::smatch m;
    std::string name;
    for (const auto& [d, l] : kPlain)
      if (key.rfind(d, 0) == 0) name = l + key.substr(d.size());
    if (!name.empty()) {
    } else if (std::regex_match(key, m, mid)) {
      name = "middle_block." + std::string(m[1] == "0" ? "0." : "2.") + resnet(m[2]);
    } else if (std::regex_match(key, m, block)) {
      int64_t i = std::stoll(m[2]), j = std::stoll(m[4]);
      std::string kind = m[3], rest = m[5];
      if (m[1] == "down") {
        std::string at = "input_blocks." + std::to_string(i * (L + 1) + j + 1);
        if (kind == "resnets") name = at + ".0." + resnet(rest);
        if (kind == "attentions") name = at + ".1." + rest;
        if (kind == "downsamplers")
          name = "input_blocks." + std::to_string((i + 1) * (L + 1)) + ".0.op." + rest.substr(5);
      } else {
        std::string at = "output_blocks." + std::to_string(i * (L + 1) + j);
        if (kind == "resnets") name = at + ".0." + resnet(rest);
        if (kind == "attentions") name = at + ".1." + rest;
        if (kind == "upsamplers")
          name = "output_blocks." + std::to_string(i * (L + 1) + L) + (up_attn(i) ? ".2." : ".1.") + rest;
      }
    }
    EXPECT_FALSE(name.empty()) << "no LDM name for " << key;
    out[name] = t;
  }
  return out;
}

void expect_same(const StateDict& a, const StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, t] : b) {
    auto it = a.find(k);
    ASSERT_NE(it, a.end()) << "missing " << k;
    EXPECT_TRUE(torch::equal(it->second.to(torch::kFloat32), t.to(torch::kFloat32))) << k;
  }
}

// --- config -----------------------------------------------------------------------------------

TEST(UNetConfig, FixtureConfigAndPresets) {
  auto c = UNetConfig::from_json(JsonConfig::load(test::fixture("tiny-sd15/model/unet/config.json")));
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(c.num_attention_heads, (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(c.layers_per_block, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(c.cross_attention_dim, 32);
  EXPECT_FALSE(c.use_linear_projection);
  EXPECT_NO_THROW(UNetConfig::sd15().validate());
  auto sd21 = UNetConfig::sd21();
  EXPECT_NO_THROW(sd21.validate());
  EXPECT_EQ(sd21.num_attention_heads, (std::vector<int64_t>{5, 10, 20, 20}));
  EXPECT_EQ(sd21.cross_attention_dim, 1024);
}

TEST(UNetConfig, EachBadFieldIsNamed) {
  auto bad = [](const char* key, nlohmann::json value) {
    auto j = tiny_json();
    j[key] = value;
    return j;
  };
  EXPECT_TINV_ERROR(parse(bad("down_block_types", {"CrossAttnDownBlock2D", "AttnDownBlock2D"})),
                    "'down_block_types' entry 'AttnDownBlock2D'");
  EXPECT_TINV_ERROR(parse(bad("up_block_types", {"UpBlock2D"})), "'up_block_types' has 1 entries");
  EXPECT_TINV_ERROR(parse(bad("attention_head_dim", {4, 4, 4})), "'attention_head_dim' has 3 entries");
  EXPECT_TINV_ERROR(parse(bad("attention_head_dim", 5)), "'attention_head_dim' (number of heads) 5");
  EXPECT_TINV_ERROR(parse(bad("num_attention_heads", 3)), "'attention_head_dim' (number of heads) 3");
  EXPECT_TINV_ERROR(parse(bad("norm_num_groups", 12)), "'block_out_channels' entry 32 is not divisible");
  EXPECT_TINV_ERROR(parse(bad("layers_per_block", 0)), "'layers_per_block' entries must be >= 1");
  EXPECT_TINV_ERROR(parse(bad("transformer_layers_per_block", {1})), "'transformer_layers_per_block' has 1");
  EXPECT_TINV_ERROR(parse(bad("class_embed_type", "timestep")), "'class_embed_type' is not supported");
  EXPECT_TINV_ERROR(parse(bad("addition_embed_type", "text")), "'addition_embed_type' 'text' is not supported");
  EXPECT_TINV_ERROR(parse(bad("addition_embed_type", "text_time")), "addition_time_embed_dim");  // SDXL needs it
  EXPECT_TINV_ERROR(parse(bad("only_cross_attention", {false, true})), "'only_cross_attention' must be false");
  EXPECT_TINV_ERROR(parse(bad("mid_block_type", "UNetMidBlock2DSimpleCrossAttn")), "'mid_block_type'");
  EXPECT_TINV_ERROR(parse(bad("act_fn", "gelu")), "'act_fn' 'gelu' is not supported");
  EXPECT_TINV_ERROR(parse(bad("resnet_time_scale_shift", "scale_shift")), "'resnet_time_scale_shift'");
  EXPECT_TINV_ERROR(parse(bad("dual_cross_attention", true)), "'dual_cross_attention'");
  EXPECT_TINV_ERROR(parse(bad("layers_per_block", "two")), "'layers_per_block' has the wrong type");
  EXPECT_TINV_ERROR(parse(bad("conv_in_kernel", 2)), "'conv_in_kernel' must be odd");
  EXPECT_TINV_ERROR(parse(bad("block_out_channels", nlohmann::json::array())), "'block_out_channels'");
}

// --- construction and forward -------------------------------------------------------------------

TEST(UNet, KeysFollowDiffusersNames) {
  UNet2DConditionModel unet(parse(tiny_json()));
  auto sd = params_of(*unet);
  for (const char* k :
       {"conv_in.weight", "time_embedding.linear_2.bias", "down_blocks.0.resnets.0.time_emb_proj.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.bias", "down_blocks.0.downsamplers.0.conv.weight",
        "mid_block.attentions.0.proj_in.weight", "mid_block.resnets.1.conv2.weight",
        "up_blocks.0.resnets.1.conv_shortcut.weight", "up_blocks.0.upsamplers.0.conv.weight",
        "up_blocks.1.attentions.1.norm.weight", "conv_norm_out.weight", "conv_out.bias"})
    EXPECT_TRUE(sd.count(k)) << k;
  EXPECT_FALSE(sd.count("down_blocks.1.downsamplers.0.conv.weight"));
  EXPECT_FALSE(sd.count("up_blocks.1.upsamplers.0.conv.weight"));
  EXPECT_FALSE(sd.count("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias"));
  EXPECT_EQ(sd.at("mid_block.attentions.0.proj_in.weight").dim(), 4);  // 1x1 conv (SD1)
}

TEST(UNet, Sd2StyleThreeLevelsRuns) {
  UNet2DConditionModel unet(sd2_style());
  init_random(*unet, 3);
  auto sd = params_of(*unet);
  EXPECT_EQ(sd.at("down_blocks.1.attentions.0.proj_in.weight").dim(), 2);  // linear (SD2)
  EXPECT_TRUE(sd.count("down_blocks.1.attentions.1.transformer_blocks.1.attn2.to_k.weight"));
  EXPECT_EQ(sd.at("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight").size(1), 40);
  EXPECT_TRUE(sd.count("up_blocks.2.attentions.2.transformer_blocks.1.norm3.weight"));
  torch::NoGradGuard no_grad;
  auto out = run(unet, 2, 16, 8);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 4, 16, 8}));
  EXPECT_TRUE(out.isfinite().all().item<bool>());
}

TEST(UNet, OddLatentSizes) {
  UNet2DConditionModel unet(sd2_style());
  torch::NoGradGuard no_grad;
  for (auto hw : std::vector<std::pair<int64_t, int64_t>>{{13, 10}, {7, 5}}) {
    auto out = run(unet, 1, hw.first, hw.second);
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 4, hw.first, hw.second}));
    EXPECT_TRUE(out.isfinite().all().item<bool>());
  }
}

TEST(UNet, NoMidBlockAndCenteredInput) {
  auto j = tiny_json();
  j["mid_block_type"] = nullptr;
  j["center_input_sample"] = true;
  UNet2DConditionModel unet(parse(j));
  for (const auto& p : unet->named_parameters()) EXPECT_NE(p.key().rfind("mid_block", 0), 0u) << p.key();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(run(unet, 2, 8, 8).sizes(), (std::vector<int64_t>{2, 4, 8, 8}));
}

TEST(UNet, TimestepsScalarIntFloatAgree) {
  UNet2DConditionModel unet(parse(tiny_json()));
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 4, 8, 8}), ctx = torch::randn({2, 5, 24});
  auto a = unet->forward(x, torch::tensor(int64_t{250}), ctx);
  auto b = unet->forward(x, torch::tensor({250, 250}), ctx);
  auto c = unet->forward(x, torch::tensor({250.f, 250.f}), ctx);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_TRUE(torch::equal(b, c));
  auto f = unet->timestep_features(torch::tensor({0}));  // flip_sin_to_cos: [cos | sin]
  EXPECT_TRUE(torch::equal(f, torch::cat({torch::ones({1, 16}), torch::zeros({1, 16})}, 1)));
  EXPECT_TINV_ERROR(unet->forward(x, torch::tensor({1, 2, 3}), ctx), "timesteps");
  EXPECT_TINV_ERROR(unet->forward(x, torch::tensor({1, 2}), torch::randn({2, 5, 7})), "encoder_hidden_states");
}

TEST(UNet, GradientOnlyReachesEncoderStates) {
  UNet2DConditionModel unet(sd2_style());
  freeze(*unet);
  auto ctx = torch::randn({1, 7, 40}).requires_grad_(true);
  auto out = unet->forward(torch::randn({1, 4, 8, 8}), torch::tensor({500}), ctx);
  out.square().mean().backward();
  ASSERT_TRUE(ctx.grad().defined());
  EXPECT_GT(ctx.grad().abs().sum().item<double>(), 0.0);
  for (const auto& p : unet->named_parameters()) EXPECT_FALSE(p.value().grad().defined()) << p.key();
}

// --- loading and conversion -------------------------------------------------------------------

TEST(UNetLoad, StrictErrorsAndFolders) {
  UNet2DConditionModel unet(parse(tiny_json()));
  auto sd = params_of(*unet);
  auto missing = sd;
  missing.erase("mid_block.resnets.1.conv2.weight");
  EXPECT_TINV_ERROR(load_state_dict(*unet, missing, "w"), "missing tensor(s): mid_block.resnets.1.conv2.weight");
  auto extra = sd;
  extra["down_blocks.0.resnets.0.conv_shortcut.weight"] = torch::zeros({32, 32, 1, 1});
  EXPECT_TINV_ERROR(load_state_dict(*unet, extra, "w"), "unexpected tensor(s): down_blocks.0.resnets.0.conv_shortcut");
  auto shaped = sd;
  shaped["conv_in.weight"] = torch::zeros({32, 4, 1, 1});
  EXPECT_TINV_ERROR(load_state_dict(*unet, shaped, "w"), "'conv_in.weight' has shape [32, 4, 1, 1]");

  test::TempDir dir;
  std::ofstream(dir.file("config.json")) << tiny_json().dump();
  EXPECT_TINV_ERROR(load_unet_folder(dir.path()), "no diffusion_pytorch_model");
  std::ofstream(dir.file("diffusion_pytorch_model.bin")) << "x";
  EXPECT_TINV_ERROR(load_unet_folder(dir.path()), "only PyTorch .bin");
  std::vector<std::pair<std::string, torch::Tensor>> half;
  for (const auto& [k, t] : sd) half.emplace_back(k, t.detach().to(torch::kFloat16));
  save_safetensors(dir.file("diffusion_pytorch_model.fp16.safetensors"), half);
  auto loaded = load_unet_folder(dir.path());
  for (const auto& p : loaded->parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST(ConvertUNet, RoundTripOnFixtureAndSd2Style) {
  auto folder = test::fixture("tiny-sd15/model/unet/");
  auto cfg = UNetConfig::from_json(JsonConfig::load(folder + "config.json"));
  auto diffusers = load_state_dict_file(folder + "diffusion_pytorch_model.safetensors");
  expect_same(convert_ldm_unet(to_ldm(diffusers, 2), cfg), diffusers);

  UNet2DConditionModel unet(sd2_style());
  auto sd = params_of(*unet);
  auto ldm = to_ldm(sd, 2);
  expect_same(convert_ldm_unet(ldm, unet->config()), sd);
  auto inferred = infer_unet_config(ldm, /*sd2=*/true);
  EXPECT_TRUE(inferred.use_linear_projection);
  EXPECT_EQ(inferred.block_out_channels, (std::vector<int64_t>{32, 48, 64}));
  EXPECT_EQ(inferred.transformer_layers_per_block, (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(inferred.down_block_types, unet->config().down_block_types);
  EXPECT_EQ(inferred.up_block_types, unet->config().up_block_types);
  EXPECT_EQ(inferred.cross_attention_dim, 40);
  EXPECT_EQ(inferred.num_attention_heads, (std::vector<int64_t>{1, 1, 1}));  // channels / 64
  EXPECT_EQ(inferred.norm_num_groups, 16);

  auto bad = ldm;
  bad["input_blocks.1.0.in_layers.9.weight"] = torch::zeros({1});
  EXPECT_TINV_ERROR(convert_ldm_unet(bad, unet->config()), "'input_blocks.1.0.in_layers.9.weight'");
}

TEST(ConvertUNet, SingleFileMatchesDiffusersFolder) {
  auto file = SafeTensors::open(test::fixture("tiny-sd15/model.safetensors"));
  auto ldm = strip_prefix(file.state_dict(), "model.diffusion_model.");
  auto folder = test::fixture("tiny-sd15/model/unet/");
  auto cfg = UNetConfig::from_json(JsonConfig::load(folder + "config.json"));
  auto inferred = infer_unet_config(ldm, /*sd2=*/false);
  EXPECT_EQ(inferred.block_out_channels, cfg.block_out_channels);
  EXPECT_EQ(inferred.layers_per_block, cfg.layers_per_block);
  EXPECT_EQ(inferred.down_block_types, cfg.down_block_types);
  EXPECT_EQ(inferred.up_block_types, cfg.up_block_types);
  EXPECT_EQ(inferred.num_attention_heads, cfg.num_attention_heads);
  EXPECT_EQ(inferred.transformer_layers_per_block, cfg.transformer_layers_per_block);
  EXPECT_EQ(inferred.cross_attention_dim, cfg.cross_attention_dim);
  EXPECT_EQ(inferred.use_linear_projection, cfg.use_linear_projection);
  EXPECT_EQ(inferred.time_embed_dim(), cfg.time_embed_dim());
  auto diffusers = load_state_dict_file(folder + "diffusion_pytorch_model.safetensors");
  expect_same(convert_ldm_unet(ldm, inferred), diffusers);
  // And the converted weights load strictly into a model built from the inferred config.
  UNet2DConditionModel unet(inferred);
  EXPECT_NO_THROW(load_state_dict(*unet, convert_ldm_unet(ldm, inferred), "model.safetensors"));
}

}  // namespace
}  // namespace tinv
