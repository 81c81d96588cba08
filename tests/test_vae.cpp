// AutoencoderKL: config validation, strict loading, other architectures (3 levels, 8 groups,
// layers_per_block 1), odd sizes, LDM <-> diffusers key conversion, legacy diffusers names.
#include <torch/torch.h>

#include <fstream>
#include <regex>

#include "io/safetensors.h"
#include "io/state_dict.h"
#include "models/convert_vae.h"
#include "models/vae.h"
#include "test_util.h"

namespace tinv {
namespace {

const std::string kModelVae = "tiny-sd15/model/vae";

JsonConfig tiny_json() { return JsonConfig::load(test::fixture(kModelVae + "/config.json")); }
StateDict tiny_diffusers() {
  return SafeTensors::open(test::fixture(kModelVae + "/diffusion_pytorch_model.safetensors")).state_dict();
}
StateDict tiny_ldm() {
  return strip_prefix(SafeTensors::open(test::fixture("tiny-sd15/model.safetensors")).state_dict(),
                      "first_stage_model.");
}

// 3 levels, 8 groups, one resnet per encoder block: nothing like tiny-sd15 or SD.
VaeConfig three_level() {
  VaeConfig c;
  c.block_out_channels = {16, 32, 32};
  c.down_block_types.assign(3, "DownEncoderBlock2D");
  c.up_block_types.assign(3, "UpDecoderBlock2D");
  c.layers_per_block = 1;
  c.norm_num_groups = 8;
  c.sample_size = 32;
  return c;
}

// The inverse of convert_ldm_vae (diffusers -> LDM), written independently with regexes.
StateDict to_ldm(const StateDict& sd, int64_t n) {
  static const std::vector<std::pair<std::regex, std::string>> kRules = {
      {std::regex(R"(^(\w+)\.conv_norm_out\.)"), "$1.norm_out."},
      {std::regex(R"(^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.)"), "encoder.down.$1.block.$2."},
      {std::regex(R"(^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.)"), "encoder.down.$1.downsample.conv."},
      {std::regex(R"(^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.)"), "decoder.up.@$1@.block.$2."},
      {std::regex(R"(^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.)"), "decoder.up.@$1@.upsample.conv."},
      {std::regex(R"(\.mid_block\.resnets\.0\.)"), ".mid.block_1."},
      {std::regex(R"(\.mid_block\.resnets\.1\.)"), ".mid.block_2."},
      {std::regex(R"(\.mid_block\.attentions\.0\.group_norm\.)"), ".mid.attn_1.norm."},
      {std::regex(R"(\.mid_block\.attentions\.0\.to_(q|k|v)\.)"), ".mid.attn_1.$1."},
      {std::regex(R"(\.mid_block\.attentions\.0\.to_out\.0\.)"), ".mid.attn_1.proj_out."},
      {std::regex(R"(\.conv_shortcut\.)"), ".nin_shortcut."},
  };
  static const std::regex kUp(R"(@(\d+)@)");
  StateDict out;
  for (const auto& [key, t] : sd) {
    std::string k = key;
    for (const auto& [re, rep] : kRules) k = std::regex_replace(k, re, rep);
    std::smatch m;
    if (std::regex_search(k, m, kUp)) k = m.prefix().str() + std::to_string(n - 1 - std::stoi(m[1])) + m.suffix().str();
    bool linear = std::regex_search(k, std::regex(R"(attn_1\.(q|k|v|proj_out)\.weight$)"));
    out.emplace(k, linear ? t.view({t.size(0), t.size(1), 1, 1}) : t);
  }
  return out;
}

void expect_same(const StateDict& a, const StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, t] : a) {
    auto it = b.find(k);
    ASSERT_NE(it, b.end()) << "missing " << k;
    EXPECT_EQ(t.sizes(), it->second.sizes()) << k;
    EXPECT_TRUE(torch::equal(t.to(torch::kFloat32), it->second.to(torch::kFloat32))) << k;
  }
}

StateDict params_of(torch::nn::Module& m) {
  StateDict sd;
  for (const auto& p : m.named_parameters()) sd.emplace(p.key(), p.value().detach());
  return sd;
}

// ---------------------------------------------------------------------------------------------

TEST(VaeConfig, ReadsFixtureAndPresets) {
  auto c = VaeConfig::from_json(tiny_json());
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(c.layers_per_block, 1);
  EXPECT_EQ(c.latent_channels, 4);
  EXPECT_DOUBLE_EQ(c.scaling_factor, 0.18215);
  EXPECT_EQ(c.downscale(), 2);
  for (auto p : {VaeConfig::sd15(), VaeConfig::sd21()}) {
    EXPECT_EQ(p.block_out_channels, (std::vector<int64_t>{128, 256, 512, 512}));
    EXPECT_EQ(p.layers_per_block, 2);
    EXPECT_EQ(p.norm_num_groups, 32);
    EXPECT_EQ(p.downscale(), 8);
    EXPECT_NO_THROW(p.validate("preset"));
  }
  EXPECT_EQ(VaeConfig::sd21().sample_size, 768);
}

TEST(VaeConfig, EachBadFieldIsNamed) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"("in_channels": 0)", "field 'in_channels'"},
      {R"("out_channels": -1)", "field 'out_channels'"},
      {R"("latent_channels": 0)", "field 'latent_channels'"},
      {R"("layers_per_block": 0)", "field 'layers_per_block'"},
      {R"("layers_per_block": "two")", "field 'layers_per_block' has the wrong type"},
      {R"("norm_num_groups": 0)", "field 'norm_num_groups'"},
      {R"("norm_num_groups": 24)", "field 'block_out_channels' entry 0 (32) is not divisible"},
      {R"("block_out_channels": [])", "field 'block_out_channels'"},
      {R"("block_out_channels": [32, 64, 128])", "field 'down_block_types' has 2 entries"},
      {R"("down_block_types": ["DownEncoderBlock2D", "CrossAttnDownBlock2D"])", "field 'down_block_types' entry 1"},
      {R"("up_block_types": ["UpBlock2D", "UpDecoderBlock2D"])", "field 'up_block_types' entry 0"},
      {R"("act_fn": "gelu")", "field 'act_fn'"},
      {R"("sample_size": 0)", "field 'sample_size'"},
      {R"("scaling_factor": -0.5)", "field 'scaling_factor'"},
      {R"("force_upcast": "yes")", "field 'force_upcast'"},
      {R"("_class_name": "AutoencoderTiny")", "field '_class_name'"},
  };
  for (const auto& [field, msg] : bad) {
    auto j = tiny_json().json();
    j.merge_patch(nlohmann::json::parse("{" + field + "}"));
    SCOPED_TRACE(field);
    EXPECT_TINV_ERROR(VaeConfig::from_json(JsonConfig(j, "vae/config.json")), "vae/config.json: " + msg);
  }
}

TEST(AutoencoderKL, LoadingIsStrict) {
  auto cfg = VaeConfig::from_json(tiny_json());
  auto full = tiny_diffusers();
  {
    AutoencoderKL vae(cfg);
    EXPECT_NO_THROW(load_state_dict(*vae, full, "f"));
  }
  auto missing = full;
  missing.erase("decoder.mid_block.attentions.0.to_k.bias");
  AutoencoderKL vae(cfg);
  EXPECT_TINV_ERROR(load_state_dict(*vae, missing, "f"), "missing tensor(s): decoder.mid_block.attentions.0.to_k.bias");
  auto extra = full;
  extra.emplace("decoder.up_blocks.0.resnets.2.conv1.weight", torch::zeros({1}));
  EXPECT_TINV_ERROR(load_state_dict(*vae, extra, "f"), "unexpected tensor(s): decoder.up_blocks.0.resnets.2");
  auto shaped = full;
  shaped["quant_conv.weight"] = torch::zeros({8, 8, 3, 3});
  EXPECT_TINV_ERROR(load_state_dict(*vae, shaped, "f"), "'quant_conv.weight' has shape [8, 8, 3, 3]");
  // A folder with a config but no weights names what it looked for.
  test::TempDir dir;
  std::ofstream(dir.file("config.json")) << tiny_json().json().dump();
  EXPECT_TINV_ERROR(load_vae_folder(dir.path()), "no diffusion_pytorch_model");
}

TEST(AutoencoderKL, ThreeLevelEightGroupsOneLayer) {
  torch::manual_seed(0);
  AutoencoderKL vae(three_level());
  auto names = params_of(*vae);
  EXPECT_TRUE(names.count("encoder.down_blocks.1.downsamplers.0.conv.weight"));
  EXPECT_FALSE(names.count("encoder.down_blocks.2.downsamplers.0.conv.weight"));
  EXPECT_TRUE(names.count("decoder.up_blocks.0.resnets.1.conv1.weight"));  // L + 1 = 2 resnets
  EXPECT_FALSE(names.count("decoder.up_blocks.0.resnets.2.conv1.weight"));
  EXPECT_TRUE(names.count("decoder.up_blocks.1.upsamplers.0.conv.weight"));
  EXPECT_FALSE(names.count("decoder.up_blocks.2.upsamplers.0.conv.weight"));
  EXPECT_EQ(names.at("decoder.up_blocks.2.resnets.0.conv_shortcut.weight").sizes(), (c10::IntArrayRef{16, 32, 1, 1}));
  EXPECT_EQ(names.at("encoder.mid_block.attentions.0.to_out.0.weight").sizes(), (c10::IntArrayRef{32, 32}));
  torch::NoGradGuard no_grad;
  auto post = vae->encode(torch::rand({2, 3, 24, 20}) * 2 - 1);
  EXPECT_EQ(post.mean.sizes(), (c10::IntArrayRef{2, 4, 6, 5}));
  EXPECT_EQ(post.logvar.sizes(), (c10::IntArrayRef{2, 4, 6, 5}));
  EXPECT_TRUE(torch::isfinite(post.mean).all().item<bool>());
  auto z = post.sample(uint64_t{7});
  EXPECT_TRUE(torch::equal(z, post.sample(uint64_t{7})));
  EXPECT_FALSE(torch::equal(z, post.sample(uint64_t{8})));
  auto x = vae->decode(z);
  EXPECT_EQ(x.sizes(), (c10::IntArrayRef{2, 3, 24, 20}));
  EXPECT_TRUE(torch::isfinite(x).all().item<bool>());
  // Without mid-block attention the attention parameters are absent.
  auto cfg = three_level();
  cfg.mid_block_add_attention = false;
  AutoencoderKL plain(cfg);
  EXPECT_FALSE(params_of(*plain).count("encoder.mid_block.attentions.0.to_q.weight"));
  EXPECT_EQ(plain->decode(torch::randn({1, 4, 3, 3})).sizes(), (c10::IntArrayRef{1, 3, 12, 12}));
}

TEST(AutoencoderKL, GradModeMatchesNoGrad) {
  // The in-place shortcuts under no_grad must not change results.
  torch::manual_seed(1);
  AutoencoderKL vae(three_level());
  auto img = torch::rand({1, 3, 16, 16}) * 2 - 1;
  auto with_grad = vae->encode(img).mean;
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(with_grad.detach(), vae->encode(img).mean, 1e-5, 1e-6));
}

TEST(AutoencoderKL, OddSizesAsDiffusersAndTooSmallRefused) {
  torch::manual_seed(2);
  AutoencoderKL vae(three_level());
  torch::NoGradGuard no_grad;
  // Downsample2D: pad right/bottom by 1, 3x3 stride 2 -> floor(H/2): 33 -> 16 -> 8, 35 -> 17 -> 8.
  auto post = vae->encode(torch::zeros({1, 3, 33, 35}));
  EXPECT_EQ(post.mean.sizes(), (c10::IntArrayRef{1, 4, 8, 8}));
  EXPECT_EQ(vae->decode(torch::zeros({1, 4, 5, 7})).sizes(), (c10::IntArrayRef{1, 3, 20, 28}));
  EXPECT_TINV_ERROR(vae->encode(torch::zeros({1, 3, 3, 16})), "too small");
  EXPECT_TINV_ERROR(vae->encode(torch::zeros({1, 4, 16, 16})), "expected an image [B, 3, H, W]");
  EXPECT_TINV_ERROR(vae->decode(torch::zeros({1, 3, 4, 4})), "expected latents [B, 4, h, w]");
}

TEST(AutoencoderKL, LogvarIsClamped) {
  AutoencoderKL vae(three_level());
  torch::NoGradGuard no_grad;
  for (auto& p : vae->named_parameters())
    if (p.key() == "quant_conv.bias") p.value().slice(0, 4).fill_(1e4);
  auto post = vae->encode(torch::zeros({1, 3, 8, 8}));
  EXPECT_TRUE(torch::all(post.logvar == 20.0).item<bool>());
}

TEST(ConvertVae, SingleFileMatchesDiffusersFolder) {
  auto ldm = tiny_ldm();
  auto cfg = infer_vae_config(ldm, "model.safetensors");
  auto ref = VaeConfig::from_json(tiny_json());
  EXPECT_EQ(cfg.block_out_channels, ref.block_out_channels);
  EXPECT_EQ(cfg.layers_per_block, ref.layers_per_block);
  EXPECT_EQ(cfg.latent_channels, ref.latent_channels);
  EXPECT_EQ(cfg.in_channels, ref.in_channels);
  EXPECT_EQ(cfg.out_channels, ref.out_channels);
  EXPECT_TRUE(cfg.mid_block_add_attention);
  auto converted = convert_ldm_vae(ldm, cfg, "model.safetensors");
  auto diffusers = tiny_diffusers();
  expect_same(converted, diffusers);
  // And the inverse helper reproduces the single file exactly.
  expect_same(to_ldm(diffusers, 2), ldm);
  // The converted model computes what the folder model computes.
  auto a = load_vae_ldm(ldm, cfg, "model.safetensors");
  auto b = load_vae_folder(test::fixture(kModelVae));
  torch::NoGradGuard no_grad;
  auto z = torch::randn({1, 4, 8, 8});
  EXPECT_TRUE(torch::equal(a->decode(z), b->decode(z)));
}

TEST(ConvertVae, RoundTripThreeLevels) {
  AutoencoderKL vae(three_level());
  auto sd = params_of(*vae);
  auto ldm = to_ldm(sd, 3);
  EXPECT_TRUE(ldm.count("decoder.up.2.block.2.conv1.weight") == 0);    // 2 resnets per up block
  EXPECT_TRUE(ldm.count("decoder.up.0.block.0.nin_shortcut.weight"));  // 32 -> 16, last diffusers block
  EXPECT_TRUE(ldm.count("decoder.up.2.upsample.conv.weight"));
  EXPECT_TINV_ERROR(infer_vae_config(ldm), "not divisible by norm_num_groups (32)");
  auto cfg = infer_vae_config(ldm, "", 8);
  EXPECT_EQ(cfg.block_out_channels, (std::vector<int64_t>{16, 32, 32}));
  EXPECT_EQ(cfg.layers_per_block, 1);
  expect_same(convert_ldm_vae(ldm, three_level()), sd);
}

TEST(ConvertVae, UnknownKeysAndBadIndicesAreNamed) {
  auto ldm = tiny_ldm();
  auto cfg = VaeConfig::from_json(tiny_json());
  auto extra = ldm;
  extra.emplace("encoder.mid.attn_2.q.weight", torch::zeros({1}));
  EXPECT_TINV_ERROR(convert_ldm_vae(extra, cfg, "m.safetensors"),
                    "m.safetensors: unexpected VAE tensor 'encoder.mid.attn_2.q.weight'");
  auto far = ldm;
  far.emplace("decoder.up.2.block.0.conv1.weight", torch::zeros({1}));
  EXPECT_TINV_ERROR(convert_ldm_vae(far, cfg), "'decoder.up.2.block.0.conv1.weight'");
  ldm.erase("decoder.conv_in.weight");
  EXPECT_TINV_ERROR(infer_vae_config(ldm, "m"), "missing tensor 'decoder.conv_in.weight'");
}

TEST(ConvertVae, LegacyDiffusersNamesAndConvShapes) {
  static const std::map<std::string, std::string> kOld = {
      {"to_q", "query"}, {"to_k", "key"}, {"to_v", "value"}, {"to_out.0", "proj_attn"}};
  auto sd = tiny_diffusers();
  StateDict legacy;
  for (const auto& [k, t] : sd) {
    std::string name = k;
    torch::Tensor v = t;
    for (const auto& [now, old] : kOld) {
      auto at = k.find(".attentions.0." + now + ".");
      if (at == std::string::npos) continue;
      name = k.substr(0, at) + ".attentions.0." + old + k.substr(at + 14 + now.size());
      v = t.dim() == 2 ? t.view({t.size(0), t.size(1), 1, 1}) : t.view({t.size(0), 1, 1});
    }
    if (k.find(".group_norm.") != std::string::npos) v = t.view({t.size(0), 1, 1});
    legacy.emplace(name, v);
  }
  ASSERT_TRUE(legacy.count("encoder.mid_block.attentions.0.proj_attn.bias"));
  ASSERT_EQ(legacy.at("encoder.mid_block.attentions.0.query.weight").dim(), 4);
  normalize_diffusers_vae(legacy, "old.safetensors");
  expect_same(legacy, sd);
  AutoencoderKL vae(VaeConfig::from_json(tiny_json()));
  EXPECT_NO_THROW(load_state_dict(*vae, legacy, "old.safetensors"));
  // Both names at once is an error, not a silent pick.
  auto mixed = sd;
  mixed.emplace("decoder.mid_block.attentions.0.query.weight", sd.at("decoder.mid_block.attentions.0.to_q.weight"));
  EXPECT_TINV_ERROR(normalize_diffusers_vae(mixed, "mixed.safetensors"), "legacy and current attention names");
}

}  // namespace
}  // namespace tinv
