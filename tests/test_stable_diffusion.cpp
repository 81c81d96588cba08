// The whole-model loader: diffusers folders, single files (SD1 and OpenCLIP-named SD2 text),
// presets, and the errors users meet.
#include <torch/torch.h>

#include <fstream>

#include "common/fs.h"
#include "io/safetensors.h"
#include "models/stable_diffusion.h"
#include "test_util.h"

namespace tinv {
namespace {

const std::string kModel = test::fixture("tiny-sd15/model");
const std::string kSingle = test::fixture("tiny-sd15/model.safetensors");

TEST(StableDiffusion, LoadsDiffusersFolder) {
  auto sd = load_stable_diffusion(kModel);
  EXPECT_EQ(sd.format, "diffusers");
  EXPECT_EQ(sd.family, "sd1");
  ASSERT_TRUE(sd.tokenizer.has_value());
  EXPECT_EQ(sd.tokenizer->max_length(), 77);
  EXPECT_EQ(sd.scheduler.prediction_type, "epsilon");
  EXPECT_EQ(sd.fingerprint.size(), 16u);
  EXPECT_EQ(sd.file_dtypes.at("unet").rfind("F32", 0), 0u);
  for (const auto& p : sd.unet->parameters()) ASSERT_FALSE(p.requires_grad());
  SdLoadOptions opts;
  opts.prediction_type = "v_prediction";
  EXPECT_EQ(load_stable_diffusion(kModel, opts).scheduler.prediction_type, "v_prediction");
  opts.prediction_type = "x0";
  EXPECT_TINV_ERROR(load_stable_diffusion(kModel, opts), "unknown prediction type");
}

TEST(StableDiffusion, SingleFileMatchesFolderAndNeedsATokenizer) {
  SdLoadOptions opts;
  opts.config_dir = kModel;
  auto a = load_stable_diffusion(kSingle, opts);
  auto b = load_stable_diffusion(kModel);
  EXPECT_EQ(a.format, "single_file");
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_TINV_ERROR(load_stable_diffusion(kSingle), "");  // tiny text width: no head count
  SdLoadOptions tok_only;
  tok_only.tokenizer_dir = kModel + "/tokenizer";
  tok_only.preset = "sd15";
  EXPECT_TINV_ERROR(load_stable_diffusion(kSingle, tok_only), "has shape");  // preset sizes differ
  SdLoadOptions no_tok;
  no_tok.with_tokenizer = true;
  no_tok.config_dir = "";
  no_tok.preset = "bogus";
  EXPECT_TINV_ERROR(load_stable_diffusion(kSingle, no_tok), "unknown preset");
}

// HF CLIP names -> OpenCLIP names (the inverse of convert_openclip_text), to make an SD2-style
// single file out of the fixture's SD1 one.
StateDict to_openclip(const StateDict& sd) {
  StateDict out;
  const std::string hf = "cond_stage_model.transformer.text_model.";
  const std::string oc = "cond_stage_model.model.";
  for (const auto& [k, v] : sd) {
    if (k.rfind(hf, 0) != 0) {
      out[k] = v;
      continue;
    }
    std::string r = k.substr(hf.size());
    if (r == "embeddings.token_embedding.weight")
      out[oc + "token_embedding.weight"] = v;
    else if (r == "embeddings.position_embedding.weight")
      out[oc + "positional_embedding"] = v;
    else if (r.rfind("final_layer_norm.", 0) == 0)
      out[oc + "ln_final." + r.substr(17)] = v;
    else if (r.rfind("encoder.layers.", 0) == 0) {
      std::string rest = r.substr(15);
      std::string n = rest.substr(0, rest.find('.'));
      std::string tail = rest.substr(n.size() + 1);
      std::string base = oc + "transformer.resblocks." + n + ".";
      auto leaf = tail.substr(tail.rfind('.') + 1);
      if (tail.rfind("self_attn.q_proj", 0) == 0) {
        std::string p = hf + "encoder.layers." + n + ".self_attn.";
        out[base + "attn.in_proj_" + leaf] =
            torch::cat({sd.at(p + "q_proj." + leaf), sd.at(p + "k_proj." + leaf), sd.at(p + "v_proj." + leaf)});
      } else if (tail.rfind("self_attn.k_proj", 0) == 0 || tail.rfind("self_attn.v_proj", 0) == 0) {
      } else if (tail.rfind("self_attn.out_proj", 0) == 0)
        out[base + "attn.out_proj." + leaf] = v;
      else if (tail.rfind("layer_norm1", 0) == 0)
        out[base + "ln_1." + leaf] = v;
      else if (tail.rfind("layer_norm2", 0) == 0)
        out[base + "ln_2." + leaf] = v;
      else if (tail.rfind("mlp.fc1", 0) == 0)
        out[base + "mlp.c_fc." + leaf] = v;
      else if (tail.rfind("mlp.fc2", 0) == 0)
        out[base + "mlp.c_proj." + leaf] = v;
    }
  }
  return out;
}

TEST(StableDiffusion, OpenClipNamedSingleFile) {
  test::TempDir dir;
  auto sd = SafeTensors::open(kSingle).state_dict();
  auto oc = to_openclip(sd);
  std::vector<std::pair<std::string, torch::Tensor>> tensors(oc.begin(), oc.end());
  std::string path = dir.file("sd2style.safetensors");
  save_safetensors(path, tensors);
  EXPECT_EQ(detect_single_file_family(oc, path), "sd2");
  SdLoadOptions opts;
  opts.config_dir = kModel;
  auto a = load_stable_diffusion(path, opts);
  auto b = load_stable_diffusion(kModel);
  auto ids = torch::tensor({{49406, 320, 1125, 539, 49407}}, torch::kInt64);
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::allclose(a.text_encoder->forward(ids), b.text_encoder->forward(ids), 1e-5, 1e-6));
}

TEST(StableDiffusion, BadInputs) {
  test::TempDir dir;
  EXPECT_TINV_ERROR(load_stable_diffusion(dir.file("nothing")), "no such file or folder");
  EXPECT_TINV_ERROR(load_stable_diffusion(dir.path()), "no model_index.json");
  std::ofstream(dir.file("model_index.json")) << "{}";
  EXPECT_TINV_ERROR(load_stable_diffusion(dir.path()), "missing component folder");
  std::ofstream(dir.file("x.ckpt")) << "PK";
  EXPECT_TINV_ERROR(load_stable_diffusion(dir.file("x.ckpt")), "pickle checkpoints");
  save_safetensors(dir.file("other.safetensors"), {{"foo", torch::ones({2})}});
  EXPECT_TINV_ERROR(load_stable_diffusion(dir.file("other.safetensors")), "not a Stable Diffusion checkpoint");
  // A single file missing one UNet tensor: strict loading names it.
  auto sd = SafeTensors::open(kSingle).state_dict();
  sd.erase("model.diffusion_model.out.2.weight");
  std::vector<std::pair<std::string, torch::Tensor>> t(sd.begin(), sd.end());
  save_safetensors(dir.file("broken.safetensors"), t);
  SdLoadOptions opts;
  opts.config_dir = kModel;
  EXPECT_TINV_ERROR(load_stable_diffusion(dir.file("broken.safetensors"), opts), "conv_out.weight");
}

TEST(StableDiffusion, RandomModelFromTinyConfigs) {
  auto te = ClipTextConfig::sd15();
  te.hidden_size = 64;
  te.num_hidden_layers = 2;
  te.num_attention_heads = 2;
  te.intermediate_size = 128;
  te.vocab_size = 1000;
  auto unet = UNetConfig::sd15();
  unet.block_out_channels = {32, 64};
  unet.layers_per_block = {1, 1};
  unet.down_block_types = {"CrossAttnDownBlock2D", "DownBlock2D"};
  unet.up_block_types = {"UpBlock2D", "CrossAttnUpBlock2D"};
  unet.num_attention_heads = {2, 2};
  unet.transformer_layers_per_block = {1, 1};
  unet.cross_attention_dim = 64;
  unet.norm_num_groups = 16;
  auto vae = VaeConfig::sd15();
  vae.block_out_channels = {16, 32};
  vae.layers_per_block = 1;
  vae.norm_num_groups = 8;
  vae.down_block_types = {"DownEncoderBlock2D", "DownEncoderBlock2D"};
  vae.up_block_types = {"UpDecoderBlock2D", "UpDecoderBlock2D"};
  auto m = random_stable_diffusion(unet, vae, te, 3);
  torch::NoGradGuard ng;
  auto h = m.text_encoder->forward(torch::zeros({1, 77}, torch::kInt64));
  auto out = m.unet->forward(torch::randn({1, 4, 8, 8}), torch::tensor({10}), h);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 4, 8, 8}));
  EXPECT_TRUE(out.isfinite().all().item<bool>());
  EXPECT_EQ(random_stable_diffusion(unet, vae, te, 3).fingerprint, m.fingerprint);
}

}  // namespace
}  // namespace tinv
