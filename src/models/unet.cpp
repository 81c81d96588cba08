#include "models/unet.h"

#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "common/fs.h"
#include "io/state_dict.h"
#include "models/unet_blocks.h"

namespace tinv {
namespace {

const char* const kDownTypes[] = {"CrossAttnDownBlock2D", "DownBlock2D"};
const char* const kUpTypes[] = {"CrossAttnUpBlock2D", "UpBlock2D"};

template <size_t N>
bool one_of(const std::string& s, const char* const (&names)[N]) {
  for (const char* n : names)
    if (s == n) return true;
  return false;
}

// A field that is an int or a list with one entry per down block.
std::vector<int64_t> per_block(const JsonConfig& json, const std::string& key, size_t n, int64_t fallback) {
  if (!json.has(key)) return std::vector<int64_t>(n, fallback);
  if (!json.json().at(key).is_array()) return std::vector<int64_t>(n, json.require<int64_t>(key));
  auto v = json.require<std::vector<int64_t>>(key);
  if (v.size() != n) json.fail(key, str_cat("has ", v.size(), " entries but block_out_channels has ", n));
  return v;
}

// Fields of features SD1/SD2 UNets do not use: each must be null/absent (or the given value).
void refuse_unsupported(const JsonConfig& json) {
  for (const char* key :
       {"class_embed_type", "num_class_embeds", "encoder_hid_dim", "encoder_hid_dim_type", "time_cond_proj_dim",
        "time_embedding_act_fn", "timestep_post_act", "cross_attention_norm", "reverse_transformer_layers_per_block"})
    if (json.has(key)) json.fail(key, "is not supported by tinv's UNet (expected null)");
  for (const char* key :
       {"class_embeddings_concat", "dual_cross_attention", "resnet_skip_time_act", "mid_block_only_cross_attention"})
    if (json.get<bool>(key, false)) json.fail(key, "is not supported by tinv's UNet (expected false)");
  auto expect = [&](const char* key, const char* value) {
    if (json.has(key) && json.require<std::string>(key) != value)
      json.fail(key, str_cat("'", json.require<std::string>(key), "' is not supported (only '", value, "')"));
  };
  expect("resnet_time_scale_shift", "default");
  expect("time_embedding_type", "positional");
  expect("attention_type", "default");
  if (json.get<double>("resnet_out_scale_factor", 1.0) != 1.0) json.fail("resnet_out_scale_factor", "must be 1.0");
}

}  // namespace

// --- UNetConfig -----------------------------------------------------------------------------

UNetConfig UNetConfig::from_json(const JsonConfig& json) {
  refuse_unsupported(json);
  UNetConfig c;
  c.block_out_channels = json.get("block_out_channels", c.block_out_channels);
  size_t n = c.block_out_channels.size();
  if (n == 0) json.fail("block_out_channels", "must not be empty");
  c.in_channels = json.get<int64_t>("in_channels", c.in_channels);
  c.out_channels = json.get<int64_t>("out_channels", c.out_channels);
  c.down_block_types = json.get("down_block_types", c.down_block_types);
  c.up_block_types = json.get("up_block_types", c.up_block_types);
  for (const char* key : {"down_block_types", "up_block_types"}) {
    const auto& v = std::string(key) == "down_block_types" ? c.down_block_types : c.up_block_types;
    if (v.size() != n) json.fail(key, str_cat("has ", v.size(), " entries but block_out_channels has ", n));
  }
  if (json.json().contains("mid_block_type") && json.json().at("mid_block_type").is_null())
    c.mid_block_type = "";
  else
    c.mid_block_type = json.get<std::string>("mid_block_type", c.mid_block_type);
  c.layers_per_block = per_block(json, "layers_per_block", n, 2);
  // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (a head COUNT).
  c.num_attention_heads = json.has("num_attention_heads") ? per_block(json, "num_attention_heads", n, 8)
                                                          : per_block(json, "attention_head_dim", n, 8);
  c.transformer_layers_per_block = per_block(json, "transformer_layers_per_block", n, 1);
  c.cross_attention_dim = json.get<int64_t>("cross_attention_dim", c.cross_attention_dim);
  c.use_linear_projection = json.get<bool>("use_linear_projection", false);
  c.upcast_attention = json.get<bool>("upcast_attention", false);
  if (json.has("only_cross_attention")) {
    const auto& v = json.json().at("only_cross_attention");
    bool any = v.is_array() ? std::any_of(v.begin(), v.end(), [](const auto& e) { return e == true; })
                            : json.require<bool>("only_cross_attention");
    if (any) json.fail("only_cross_attention", "must be false (not supported)");
  }
  c.norm_num_groups = json.get<int64_t>("norm_num_groups", c.norm_num_groups);
  c.norm_eps = json.get<double>("norm_eps", c.norm_eps);
  c.flip_sin_to_cos = json.get<bool>("flip_sin_to_cos", c.flip_sin_to_cos);
  c.freq_shift = json.get<double>("freq_shift", c.freq_shift);
  c.downsample_padding = json.get<int64_t>("downsample_padding", c.downsample_padding);
  c.mid_block_scale_factor = json.get<double>("mid_block_scale_factor", c.mid_block_scale_factor);
  c.act_fn = json.get<std::string>("act_fn", c.act_fn);
  if (json.has("sample_size") && json.json().at("sample_size").is_array())
    c.sample_size = json.require<std::vector<int64_t>>("sample_size").at(0);
  else
    c.sample_size = json.get<int64_t>("sample_size", c.sample_size);
  c.time_embedding_dim = json.get<int64_t>("time_embedding_dim", 0);
  c.conv_in_kernel = json.get<int64_t>("conv_in_kernel", c.conv_in_kernel);
  c.conv_out_kernel = json.get<int64_t>("conv_out_kernel", c.conv_out_kernel);
  c.center_input_sample = json.get<bool>("center_input_sample", false);
  if (json.has("addition_embed_type")) {
    c.addition_embed_type = json.require<std::string>("addition_embed_type");
    if (c.addition_embed_type != "text_time")
      json.fail("addition_embed_type",
                str_cat("'", c.addition_embed_type, "' is not supported (only \"text_time\", SDXL)"));
    c.addition_time_embed_dim = json.require<int64_t>("addition_time_embed_dim");
    c.projection_class_embeddings_input_dim = json.require<int64_t>("projection_class_embeddings_input_dim");
  }
  c.validate(json.source());
  return c;
}

void UNetConfig::validate(const std::string& where) const {
  auto field = [&](const std::string& key, bool ok, const std::string& message) {
    if (!ok) throw Error(where, "field '" + key + "' " + message);
  };
  size_t n = block_out_channels.size();
  field("block_out_channels", n >= 1, "must not be empty");
  field("in_channels", in_channels >= 1, "must be >= 1");
  field("out_channels", out_channels >= 1, "must be >= 1");
  field("norm_num_groups", norm_num_groups >= 1, "must be >= 1");
  field("down_block_types", down_block_types.size() == n,
        str_cat("has ", down_block_types.size(), " entries but block_out_channels has ", n));
  field("up_block_types", up_block_types.size() == n,
        str_cat("has ", up_block_types.size(), " entries but block_out_channels has ", n));
  for (const char* key : {"layers_per_block", "num_attention_heads", "transformer_layers_per_block"}) {
    const auto& v = std::string(key) == "layers_per_block"      ? layers_per_block
                    : std::string(key) == "num_attention_heads" ? num_attention_heads
                                                                : transformer_layers_per_block;
    field(key, v.size() == n, str_cat("has ", v.size(), " entries but there are ", n, " blocks"));
    for (int64_t x : v) field(key, x >= 1, str_cat("entries must be >= 1 (got ", x, ")"));
  }
  for (size_t i = 0; i < n; ++i) {
    int64_t ch = block_out_channels[i];
    field("down_block_types", one_of(down_block_types[i], kDownTypes),
          str_cat("entry '", down_block_types[i], "' is not supported (CrossAttnDownBlock2D, DownBlock2D)"));
    field("up_block_types", one_of(up_block_types[i], kUpTypes),
          str_cat("entry '", up_block_types[i], "' is not supported (CrossAttnUpBlock2D, UpBlock2D)"));
    field("block_out_channels", ch >= 1 && ch % norm_num_groups == 0,
          str_cat("entry ", ch, " is not divisible by norm_num_groups ", norm_num_groups));
    // Block i of the down path and block n-1-i of the up path share channels and heads.
    bool attends = down_has_attention(i) || up_has_attention(n - 1 - i) || (i == n - 1 && !mid_block_type.empty());
    field(
        "attention_head_dim", !attends || ch % num_attention_heads[i] == 0,
        str_cat("(number of heads) ", num_attention_heads[i], " does not divide block channels ", ch, " of block ", i));
  }
  field("mid_block_type", mid_block_type.empty() || mid_block_type == "UNetMidBlock2DCrossAttn",
        str_cat("'", mid_block_type, "' is not supported (UNetMidBlock2DCrossAttn or null)"));
  field("cross_attention_dim", cross_attention_dim >= 1, "must be >= 1");
  field("only_cross_attention", !only_cross_attention, "must be false (not supported)");
  field("norm_eps", norm_eps > 0, "must be > 0");
  field("act_fn", act_fn == "silu" || act_fn == "swish", str_cat("'", act_fn, "' is not supported (only silu)"));
  field("downsample_padding", downsample_padding == 0 || downsample_padding == 1, "must be 0 or 1");
  field("mid_block_scale_factor", mid_block_scale_factor > 0, "must be > 0");
  field("time_embedding_dim", time_embedding_dim >= 0, "must be >= 1 or null");
  field("conv_in_kernel", conv_in_kernel >= 1 && conv_in_kernel % 2 == 1, "must be odd");
  field("conv_out_kernel", conv_out_kernel >= 1 && conv_out_kernel % 2 == 1, "must be odd");
  field("addition_embed_type", addition_embed_type.empty() || text_time(),
        str_cat("'", addition_embed_type, "' is not supported (only text_time)"));
  if (text_time()) {
    field("addition_time_embed_dim", addition_time_embed_dim >= 2, "must be >= 2");
    field("projection_class_embeddings_input_dim", pooled_dim() >= 1,
          str_cat(projection_class_embeddings_input_dim, " leaves no room for the pooled text after 6 x ",
                  addition_time_embed_dim, " time-id features"));
    field("freq_shift", addition_time_embed_dim / 2 != freq_shift,
          "equals half the time-id embedding width (division by zero)");
  }
  field("freq_shift", n == 0 || block_out_channels[0] / 2 != freq_shift,
        "equals half the time projection width (division by zero)");
}

UNetConfig UNetConfig::sd15() { return UNetConfig{}; }

UNetConfig UNetConfig::sd21() {
  UNetConfig c;
  c.num_attention_heads = {5, 10, 20, 20};
  c.cross_attention_dim = 1024;
  c.use_linear_projection = true;
  c.upcast_attention = true;
  c.sample_size = 96;
  return c;
}

UNetConfig UNetConfig::sdxl() {
  UNetConfig c;
  c.block_out_channels = {320, 640, 1280};
  c.down_block_types = {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"};
  c.up_block_types = {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"};
  c.layers_per_block = {2, 2, 2};
  c.num_attention_heads = {5, 10, 20};
  c.transformer_layers_per_block = {1, 2, 10};
  c.cross_attention_dim = 2048;
  c.use_linear_projection = true;
  c.sample_size = 128;
  c.addition_embed_type = "text_time";
  c.addition_time_embed_dim = 256;
  c.projection_class_embeddings_input_dim = 2816;  // 1280 + 6 * 256
  return c;
}

// --- UNet2DConditionModel -------------------------------------------------------------------

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& config) : config_(config) {
  config_.validate();
  const auto& ch = config_.block_out_channels;
  int64_t n = config_.num_blocks(), temb = config_.time_embed_dim();
  conv_in = register_module(
      "conv_in", torch::nn::Conv2d(torch::nn::Conv2dOptions(config_.in_channels, ch[0], config_.conv_in_kernel)
                                       .padding((config_.conv_in_kernel - 1) / 2)));
  time_embedding_ = register_module("time_embedding", std::make_shared<TimestepEmbeddingImpl>(ch[0], temb));
  if (config_.text_time())  // add_time_proj (Timesteps) has no weights
    add_embedding_ = register_module(
        "add_embedding", std::make_shared<TimestepEmbeddingImpl>(config_.projection_class_embeddings_input_dim, temb));
  BlockSettings s{temb,
                  config_.cross_attention_dim,
                  config_.norm_num_groups,
                  config_.norm_eps,
                  config_.use_linear_projection,
                  config_.upcast_attention};

  auto downs = torch::nn::ModuleList();
  int64_t out = ch[0];
  for (int64_t i = 0; i < n; ++i) {
    int64_t in = out;
    out = ch[i];
    down_blocks_.push_back(std::make_shared<DownBlock2DImpl>(
        in, out, config_.layers_per_block[i], config_.down_has_attention(i), config_.num_attention_heads[i],
        config_.transformer_layers_per_block[i], i < n - 1, config_.downsample_padding, s));
    downs->push_back(down_blocks_.back());
  }
  register_module("down_blocks", downs);

  if (!config_.mid_block_type.empty())
    mid_block_ = register_module(
        "mid_block", std::make_shared<MidBlock2DCrossAttnImpl>(ch[n - 1], config_.num_attention_heads[n - 1],
                                                               config_.transformer_layers_per_block[n - 1],
                                                               config_.mid_block_scale_factor, s));

  // Up path: block i works at the resolution of down block n-1-i (reversed lists).
  auto ups = torch::nn::ModuleList();
  out = ch[n - 1];
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = n - 1 - i, prev = out;
    out = ch[r];
    int64_t in = ch[std::max<int64_t>(r - 1, 0)];
    up_blocks_.push_back(std::make_shared<UpBlock2DImpl>(in, prev, out, config_.layers_per_block[r] + 1,
                                                         config_.up_has_attention(i), config_.num_attention_heads[r],
                                                         config_.transformer_layers_per_block[r], i < n - 1, s));
    ups->push_back(up_blocks_.back());
  }
  register_module("up_blocks", ups);

  conv_norm_out = register_module(
      "conv_norm_out",
      torch::nn::GroupNorm(torch::nn::GroupNormOptions(config_.norm_num_groups, ch[0]).eps(config_.norm_eps)));
  conv_out = register_module(
      "conv_out", torch::nn::Conv2d(torch::nn::Conv2dOptions(ch[0], config_.out_channels, config_.conv_out_kernel)
                                        .padding((config_.conv_out_kernel - 1) / 2)));
}

// Mirrors diffusers get_timestep_embedding(timesteps, dim, flip_sin_to_cos, freq_shift).
torch::Tensor UNet2DConditionModelImpl::timestep_features(const torch::Tensor& timesteps, int64_t dim) const {
  if (dim <= 0) dim = config_.block_out_channels[0];
  const int64_t half = dim / 2;
  auto opt = torch::TensorOptions().dtype(torch::kFloat32).device(timesteps.device());
  auto exponent = torch::arange(0, half, opt) * (-std::log(10000.0));
  exponent = exponent / (half - config_.freq_shift);
  auto emb = timesteps.to(torch::kFloat32).unsqueeze(1) * torch::exp(exponent).unsqueeze(0);  // [B, half]
  emb = config_.flip_sin_to_cos ? torch::cat({torch::cos(emb), torch::sin(emb)}, -1)
                                : torch::cat({torch::sin(emb), torch::cos(emb)}, -1);  // [B, 2*half]
  if (dim % 2 == 1) emb = torch::nn::functional::pad(emb, torch::nn::functional::PadFuncOptions({0, 1}));
  return emb;
}

// Mirrors diffusers UNet2DConditionModel.get_aug_embed for addition_embed_type "text_time":
// add_time_proj (Timesteps) of the flattened time_ids, reshaped to [B, 6 * dim], after the
// pooled text; add_embedding of that. Returns [B, temb].
torch::Tensor UNet2DConditionModelImpl::text_time_embedding(const AddedConditions& added, int64_t b,
                                                            const torch::Tensor& like) {
  const char* where = "UNet2DConditionModel.forward";
  TINV_CHECK(added.defined() && added.time_ids.defined(), where,
             "this SDXL UNet (addition_embed_type text_time) needs the pooled text embeds and time_ids");
  auto expand = [&](const torch::Tensor& t, int64_t width, const char* what) {
    TINV_CHECK(t.dim() == 2 && t.size(1) == width && (t.size(0) == b || t.size(0) == 1), where, what, " must be [", b,
               ", ", width, "], got ", t.sizes());
    return t.to(like.device()).expand({b, width});
  };
  auto text = expand(added.text_embeds, config_.pooled_dim(), "text_embeds");                      // [B, P]
  auto ids = expand(added.time_ids, 6, "time_ids");                                                // [B, 6]
  auto time = timestep_features(ids.flatten(), config_.addition_time_embed_dim).reshape({b, -1});  // [B, 6*dim]
  auto feats = torch::cat({text.to(torch::kFloat32), time}, -1).to(like.scalar_type());
  return add_embedding_->forward(feats);  // [B, temb]
}

// Mirrors diffusers UNet2DConditionModel.forward (text_time addition, no class embeddings,
// no adapters).
torch::Tensor UNet2DConditionModelImpl::forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                                                const torch::Tensor& encoder_hidden_states,
                                                const AddedConditions& added) {
  const char* where = "UNet2DConditionModel.forward";
  TINV_CHECK(sample.dim() == 4 && sample.size(1) == config_.in_channels, where, "sample must be [B, ",
             config_.in_channels, ", H, W], got ", sample.sizes());
  int64_t b = sample.size(0), n = config_.num_blocks();
  TINV_CHECK(encoder_hidden_states.dim() == 3 && encoder_hidden_states.size(0) == b &&
                 encoder_hidden_states.size(2) == config_.cross_attention_dim,
             where, "encoder_hidden_states must be [", b, ", L, ", config_.cross_attention_dim, "], got ",
             encoder_hidden_states.sizes());
  auto t = timesteps.dim() == 0 ? timesteps.reshape({1}) : timesteps;
  TINV_CHECK(t.dim() == 1 && (t.size(0) == b || t.size(0) == 1), where, "timesteps must be a scalar, [1] or [", b,
             "], got ", timesteps.sizes());
  t = t.to(sample.device()).expand({b});

  // 1. time: sinusoidal features -> TimestepEmbedding; every resnet uses SiLU(emb).
  auto emb = time_embedding_->forward(timestep_features(t).to(sample.scalar_type()));  // [B, temb]
  if (add_embedding_) {
    emb = emb + text_time_embedding(added, b, emb);  // SDXL: + add_embedding(text, time ids)
  } else {
    TINV_CHECK(!added.defined(), where, "added conditions given but the UNet has no addition embedding");
  }
  auto temb_act = torch::silu(emb);
  // 2. pre-process
  auto x = config_.center_input_sample ? 2 * sample - 1.0 : sample;
  x = conv_in(x);  // [B, C0, H, W]
  // 3. down
  std::vector<torch::Tensor> skips{x};
  for (auto& block : down_blocks_) x = block->forward(x, temb_act, encoder_hidden_states, skips);
  // 4. mid
  if (mid_block_) x = mid_block_->forward(x, temb_act, encoder_hidden_states);
  // 5. up: when H or W is not a multiple of 2^(n-1), upsample to the size of the skip instead of x2.
  int64_t factor = int64_t{1} << (n - 1);
  bool forward_size = sample.size(2) % factor != 0 || sample.size(3) % factor != 0;
  for (int64_t i = 0; i < n; ++i) {
    auto& block = up_blocks_[i];
    std::vector<int64_t> size;
    if (i < n - 1 && forward_size) {
      const auto& next = skips[skips.size() - block->num_layers() - 1];
      size = {next.size(2), next.size(3)};
    }
    x = block->forward(x, temb_act, encoder_hidden_states, skips, size);
  }
  // 6. post-process
  x = conv_out(torch::silu(conv_norm_out(x)));  // [B, out_C, H, W]
  return x;
}

// --- helpers --------------------------------------------------------------------------------

void init_random(torch::nn::Module& module, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/true)) {
    if (auto* conv = m->as<torch::nn::Conv2dImpl>())
      conv->reset_parameters();
    else if (auto* lin = m->as<torch::nn::LinearImpl>())
      lin->reset_parameters();
    else if (auto* gn = m->as<torch::nn::GroupNormImpl>())
      gn->reset_parameters();
    else if (auto* ln = m->as<torch::nn::LayerNormImpl>())
      ln->reset_parameters();
  }
}

UNet2DConditionModel load_unet_folder(const std::string& folder) {
  auto config = UNetConfig::from_json(JsonConfig::load(join_path(folder, "config.json")));
  std::string weights;
  for (const char* name :
       {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.fp16.safetensors.index.json"}) {
    if (file_exists(join_path(folder, name))) {
      weights = join_path(folder, name);
      break;
    }
  }
  if (weights.empty()) {
    bool bin = file_exists(join_path(folder, "diffusion_pytorch_model.bin")) ||
               file_exists(join_path(folder, "diffusion_pytorch_model.fp16.bin"));
    throw Error(folder, bin ? "only PyTorch .bin UNet weights found; tinv reads "
                              "diffusion_pytorch_model[.fp16].safetensors (convert the .bin first)"
                            : "no diffusion_pytorch_model[.fp16].safetensors in the folder");
  }
  UNet2DConditionModel unet(config);
  load_state_dict(*unet, load_state_dict_file(weights), weights);
  freeze(*unet);
  unet->eval();
  return unet;
}

}  // namespace tinv
