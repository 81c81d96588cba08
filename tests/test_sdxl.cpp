// SDXL: loading (diffusers folder with fp16 variants and sharded indexes, single file), the two
// text encoders, the text_time UNet, embedding files (clip_l/clip_g, the diffusers pair),
// generation and inversion on ../shared/fixtures/tiny-sdxl, and the bad inputs of issue 16.
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "apps/demo.h"
#include "apps/invert.h"
#include "apps/study.h"
#include "common/fs.h"
#include "inversion/method.h"
#include "inversion/trainer.h"
#include "io/embeddings.h"
#include "io/image_write.h"
#include "io/safetensors.h"
#include "models/stable_diffusion.h"
#include "pipelines/generate.h"
#include "schedulers/sampler.h"
#include "test_util.h"
#include "text/sdxl_text.h"

namespace tinv {
namespace {

namespace fs = std::filesystem;

const std::string kXl = test::fixture("tiny-sdxl/model");
const std::string kXlSingle = test::fixture("tiny-sdxl/model.safetensors");
const std::string kSd15 = test::fixture("tiny-sd15/model");

// A writable copy of the SDXL fixture folder.
std::string copy_model(const test::TempDir& dir) {
  const std::string to = dir.file("model");
  fs::copy(kXl, to, fs::copy_options::recursive);
  for (auto& e : fs::recursive_directory_iterator(to))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  fs::permissions(to, fs::perms::owner_write, fs::perm_options::add);
  return to;
}

StateDict cast(const StateDict& sd, torch::ScalarType t) {
  StateDict out;
  for (const auto& [k, v] : sd) out[k] = v.is_floating_point() ? v.to(t) : v;
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> items(const StateDict& sd) { return {sd.begin(), sd.end()}; }

// Rewrites `file` as a two-shard checkpoint with its index (diffusers/transformers layout).
void shard(const std::string& file, const std::string& index_name) {
  auto sd = SafeTensors::open(file).state_dict();
  StateDict a, b;
  nlohmann::json map;
  size_t i = 0;
  const std::string folder = parent_dir(file);
  for (const auto& [k, v] : sd) {
    const bool first = i++ < sd.size() / 2;
    (first ? a : b)[k] = v.clone();
    map[k] = first ? "part-00001.safetensors" : "part-00002.safetensors";
  }
  save_safetensors(join_path(folder, "part-00001.safetensors"), items(a));
  save_safetensors(join_path(folder, "part-00002.safetensors"), items(b));
  std::ofstream(join_path(folder, index_name)) << nlohmann::json{{"metadata", {}}, {"weight_map", map}}.dump();
  fs::remove(file);
}

torch::Tensor unet_out(StableDiffusion& sd, const SafeTensors& c) {
  torch::NoGradGuard g;
  return sd.unet->forward(c.get("sample"), c.get("timestep", torch::kInt64), c.get("encoder_hidden_states"),
                          {c.get("text_embeds"), c.get("time_ids")});
}

TEST(SdxlLoad, DiffusersFolder) {
  auto sd = load_stable_diffusion(kXl);
  EXPECT_EQ(sd.family, "sdxl");
  EXPECT_TRUE(sd.is_xl());
  ASSERT_TRUE(sd.tokenizer_2.has_value());
  EXPECT_EQ(sd.tokenizer->pad_id(), 49407);
  EXPECT_EQ(sd.tokenizer_2->pad_id(), 0);
  EXPECT_TRUE(sd.text_config_2.with_projection);
  EXPECT_FALSE(sd.text_config.with_projection);
  EXPECT_TRUE(sd.unet_config.text_time());
  EXPECT_EQ(sd.unet_config.cross_attention_dim, sd.text_config.hidden_size + sd.text_config_2.hidden_size);
  EXPECT_EQ(sd.unet_config.transformer_layers_per_block, (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(sd.force_zeros_for_empty_prompt);
  EXPECT_DOUBLE_EQ(sd.vae_config.scaling_factor, 0.13025);
  EXPECT_TRUE(sd.vae_config.force_upcast);
  EXPECT_EQ(sd.vae_dtype, torch::kFloat32);
  for (const auto& p : sd.text_encoder_2->parameters()) ASSERT_FALSE(p.requires_grad());
  // The SD1 folder is unchanged.
  auto sd1 = load_stable_diffusion(kSd15);
  EXPECT_EQ(sd1.family, "sd1");
  EXPECT_FALSE(sd1.tokenizer_2.has_value());
  EXPECT_FALSE(sd1.text_encoder_2);
}

TEST(SdxlLoad, Fp16VariantsAndShardedIndexesGiveTheSameModel) {
  test::TempDir dir;
  const std::string m = copy_model(dir);
  // text_encoder_2: fp16 variant only; unet: fp16 variant, sharded; text_encoder: sharded.
  auto te2 = SafeTensors::open(m + "/text_encoder_2/model.safetensors").state_dict();
  save_safetensors(m + "/text_encoder_2/model.fp16.safetensors", items(cast(te2, torch::kFloat16)));
  fs::remove(m + "/text_encoder_2/model.safetensors");
  auto unet = SafeTensors::open(m + "/unet/diffusion_pytorch_model.safetensors").state_dict();
  save_safetensors(m + "/unet/diffusion_pytorch_model.fp16.safetensors", items(cast(unet, torch::kFloat16)));
  fs::remove(m + "/unet/diffusion_pytorch_model.safetensors");
  shard(m + "/unet/diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.safetensors.index.json");
  shard(m + "/text_encoder/model.safetensors", "model.safetensors.index.json");
  auto a = load_stable_diffusion(m);
  auto b = load_stable_diffusion(kXl);
  EXPECT_EQ(a.fingerprint, b.fingerprint);  // the fixture's weights are exact in fp16
  EXPECT_EQ(a.file_dtypes.at("text_encoder_2").rfind("F16", 0), 0u);
  auto c = SafeTensors::open(test::fixture("tiny-sdxl/cases/unet.safetensors"));
  EXPECT_TRUE(torch::allclose(unet_out(a, c), c.get("out"), 1e-4, 1e-4));
}

TEST(SdxlLoad, FolderWithoutTextEncoder2NamesIt) {
  test::TempDir dir;
  const std::string m = copy_model(dir);
  fs::remove_all(m + "/text_encoder_2");
  EXPECT_TINV_ERROR(load_stable_diffusion(m), m + "/text_encoder_2: missing");
}

TEST(SdxlLoad, SingleFileMatchesTheFolder) {
  SdLoadOptions o;
  o.config_dir = kXl;
  auto a = load_stable_diffusion(kXlSingle, o);
  auto b = load_stable_diffusion(kXl);
  EXPECT_EQ(a.format, "single_file");
  EXPECT_EQ(a.family, "sdxl");
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_EQ(a.file_dtypes.at("unet").rfind("F16", 0), 0u);
  ASSERT_TRUE(a.tokenizer_2.has_value());
  EXPECT_EQ(a.tokenizer_2->pad_id(), 0);
  // Only --tokenizer: tokenizer_2 is the same vocabulary padded with "!".
  SdLoadOptions t;
  t.config_dir = kXl;
  t.tokenizer_dir = kXl + "/tokenizer";
  auto s = load_stable_diffusion(kXlSingle, t);
  EXPECT_EQ(s.tokenizer_2->pad_id(), 0);
  EXPECT_EQ(detect_single_file_family(SafeTensors::open(kXlSingle).state_dict(), kXlSingle), "sdxl");
}

TEST(SdxlLoad, SingleFileWithOneEncoderNamesTheFile) {
  test::TempDir dir;
  auto sd = SafeTensors::open(kXlSingle).state_dict();
  for (const std::string drop : {"conditioner.embedders.1.", "conditioner.embedders.0."}) {
    StateDict kept;
    for (const auto& [k, v] : sd)
      if (k.rfind(drop, 0) != 0) kept[k] = v;
    const std::string f = dir.file("one.safetensors");
    save_safetensors(f, items(kept));
    SdLoadOptions o;
    o.config_dir = kXl;
    EXPECT_TINV_ERROR(load_stable_diffusion(f, o), f + ": SDXL checkpoint with only one text encoder");
  }
}

TEST(SdxlModels, PooledIsTheProjectedFirstEos) {
  auto sd = load_stable_diffusion(kXl);
  torch::NoGradGuard g;
  auto ids = torch::tensor(sd.tokenizer_2->encode("a cat").ids, torch::kLong).unsqueeze(0);
  auto o = sd.text_encoder_2->forward_all(ids);
  const int64_t eos = 3;  // BOS a cat EOS, then "!" padding (id 0)
  ASSERT_EQ(ids[0][eos].item<int64_t>(), 49407);
  ASSERT_EQ(ids[0][eos + 1].item<int64_t>(), 0);
  auto w = sd.text_encoder_2->named_parameters()["text_projection.weight"];
  EXPECT_TRUE(torch::allclose(o.pooled[0], torch::mv(w, o.last_hidden_state[0][eos]), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(o.last_hidden_state, sd.text_encoder_2->forward(ids)));
  auto s = encode_sdxl_text(sd.text_encoder, sd.text_encoder_2, ids, ids);
  EXPECT_EQ(s.prompt_embeds.sizes(), torch::IntArrayRef({1, 77, 64}));
  EXPECT_TINV_ERROR(encode_sdxl_text(sd.text_encoder, sd.text_encoder_2, ids, ids.slice(1, 0, 70)), "differ in shape");
}

TEST(SdxlModels, UnetNeedsItsAddedConditions) {
  auto sd = load_stable_diffusion(kXl);
  auto c = SafeTensors::open(test::fixture("tiny-sdxl/cases/unet.safetensors"));
  torch::NoGradGuard g;
  EXPECT_TINV_ERROR(sd.unet->forward(c.get("sample"), c.get("timestep"), c.get("encoder_hidden_states")),
                    "needs the pooled text embeds and time_ids");
  EXPECT_TINV_ERROR(sd.unet->forward(c.get("sample"), c.get("timestep"), c.get("encoder_hidden_states"),
                                     {c.get("text_embeds"), c.get("time_ids").slice(1, 0, 5)}),
                    "time_ids must be [2, 6]");
  // A broadcast [1, 6] time_ids equals the repeated one.
  auto ids = c.get("time_ids");
  auto one = sd.unet->forward(c.get("sample"), c.get("timestep"), c.get("encoder_hidden_states"),
                              {c.get("text_embeds"), ids.slice(0, 0, 1)});
  auto two = sd.unet->forward(c.get("sample"), c.get("timestep"), c.get("encoder_hidden_states"),
                              {c.get("text_embeds"), ids.slice(0, 0, 1).expand({2, 6})});
  EXPECT_TRUE(torch::equal(one, two));
  // SD1 UNets refuse added conditions.
  auto sd1 = load_stable_diffusion(kSd15);
  auto c1 = SafeTensors::open(test::fixture("tiny-sd15/cases/unet.safetensors"));
  EXPECT_TINV_ERROR(sd1.unet->forward(c1.get("sample"), c1.get("timestep"), c1.get("encoder_hidden_states"),
                                      {torch::zeros({2, 4}), torch::zeros({2, 6})}),
                    "no addition embedding");
}

TEST(SdxlConfig, RefusesInconsistentTextTimeFields) {
  UNetConfig c = UNetConfig::sdxl();
  c.projection_class_embeddings_input_dim = 6 * c.addition_time_embed_dim;
  EXPECT_TINV_ERROR(c.validate("cfg"), "projection_class_embeddings_input_dim");
  c = UNetConfig::sdxl();
  c.addition_embed_type = "text";
  EXPECT_TINV_ERROR(c.validate("cfg"), "addition_embed_type");
}

// ---- embedding files ----

TEST(SdxlEmbeddings, ClipLClipGRoundTripAndRefusals) {
  test::TempDir dir;
  auto l = torch::randn({3, 768}), g = torch::randn({3, 1280});
  const std::string f = dir.file("cube.safetensors");
  save_sdxl_embedding(f, l, g, {{"caption", "a cube"}});
  auto file = SafeTensors::open(f);
  EXPECT_EQ(file.keys().size(), 2u);
  EXPECT_EQ(file.view("clip_l").sizes(), torch::IntArrayRef({3, 768}));
  EXPECT_EQ(file.view("clip_g").scalar_type(), torch::kFloat32);
  auto e = load_embeddings(f, 768, 1280);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].trigger, "cube");
  EXPECT_EQ(e[0].format, "sdxl");
  EXPECT_TRUE(torch::equal(e[0].vectors, l));
  EXPECT_TRUE(torch::equal(e[0].vectors_2, g));
  EXPECT_EQ(load_embeddings(f).size(), 1u);  // no model: read as is
  // On SD1/SD2 models: refused.
  EXPECT_TINV_ERROR(load_embeddings(f, 768),
                    f + ": SDXL embedding (clip_l, clip_g) cannot be used with an SD1/SD2 model");
  // SD1 files on SDXL: refused.
  const std::string sd1 = dir.file("sd1.safetensors");
  save_embedding(sd1, EmbeddingFormat::Diffusers, "<x>", torch::randn({2, 768}));
  EXPECT_TINV_ERROR(load_embeddings(sd1, 768, 1280),
                    sd1 + ": SD1/SD2 embedding (one [2, 768] tensor) cannot be used with an SDXL model");
  const std::string pt = dir.file("sd1.pt");
  save_embedding(pt, EmbeddingFormat::A1111, "sd1", torch::randn({2, 768}));
  EXPECT_TINV_ERROR(load_embeddings(pt, 768, 1280), "cannot be used with an SDXL model");
  const std::string kohya = dir.file("k.safetensors");
  save_embedding(kohya, EmbeddingFormat::Kohya, "k", torch::randn({2, 768}));
  EXPECT_TINV_ERROR(load_embeddings(kohya, 768, 1280), "cannot be used with an SDXL model");
  // Mismatched widths and row counts.
  EXPECT_TINV_ERROR(load_embeddings(f, 768, 1024), f + ": embedding is 1280 wide");
  EXPECT_TINV_ERROR(load_embeddings(f, 640, 1280), f + ": embedding is 768 wide");
  const std::string rows = dir.file("rows.safetensors");
  save_safetensors(rows, {{"clip_l", torch::randn({2, 8})}, {"clip_g", torch::randn({3, 16})}});
  EXPECT_TINV_ERROR(load_embeddings(rows, 8, 16), rows + ": SDXL embedding has 2 clip_l rows but 3 clip_g rows");
  // One tensor missing: never read, never written.
  const std::string half = dir.file("half.safetensors");
  save_safetensors(half, {{"clip_l", torch::randn({2, 8})}});
  EXPECT_TINV_ERROR(load_embeddings(half, 8, 16), half + ": SDXL embedding with 'clip_l' but no 'clip_g'");
  const std::string none = dir.file("none.safetensors");
  EXPECT_TINV_ERROR(save_sdxl_embedding(none, l, torch::Tensor()), none + ": SDXL embedding without its clip_g rows");
  EXPECT_TINV_ERROR(save_sdxl_embedding(none, torch::Tensor(), g), "without its clip_l rows");
  EXPECT_TINV_ERROR(save_sdxl_embedding(none, l, g.slice(0, 0, 2)), "clip_l has 3 rows but clip_g 2");
  EXPECT_FALSE(file_exists(none));
}

TEST(SdxlEmbeddings, DiffusersPairRoundTrip) {
  test::TempDir dir;
  auto l = torch::randn({2, 32}), g = torch::randn({2, 48});
  const std::string folder = dir.file("run");
  fs::create_directories(folder);
  const std::string f = folder + "/learned_embeds.safetensors";
  save_diffusers_pair(f, "<cube>", l, g);
  EXPECT_EQ(pair_path(f), folder + "/learned_embeds_2.safetensors");
  auto second = SafeTensors::open(pair_path(f));
  EXPECT_EQ(second.keys(), std::vector<std::string>{"<cube>"});
  EXPECT_EQ(second.view("<cube>").sizes(), torch::IntArrayRef({2, 48}));
  for (const std::string& path : {f, folder}) {
    auto e = load_embeddings(path, 32, 48);
    ASSERT_EQ(e.size(), 1u) << path;
    EXPECT_EQ(e[0].trigger, "<cube>");
    EXPECT_EQ(e[0].format, "diffusers_pair");
    EXPECT_TRUE(torch::equal(e[0].vectors, l));
    EXPECT_TRUE(torch::equal(e[0].vectors_2, g));
  }
  EXPECT_TINV_ERROR(load_embeddings(folder, 32), "cannot be used with an SD1/SD2 model");
  EXPECT_TINV_ERROR(save_diffusers_pair(dir.file("x.safetensors"), "<c>", l, torch::Tensor()), "without its clip_g");
  EXPECT_FALSE(file_exists(dir.file("x.safetensors")));
}

// ---- generation ----

GenerateOptions small(const std::string& sampler = "euler") {
  GenerateOptions o;
  o.prompt = "a watercolor painting of a lighthouse";
  o.sampler = sampler;
  o.steps = 3;
  o.cfg = 5.0;
  o.progress = false;
  return o;
}

TEST(SdxlGenerate, EverySamplerAndTheTimeIds) {
  auto sd = load_stable_diffusion(kXl);
  ExtraTokens none;
  for (const auto& name : sampler_names()) {
    auto r = generate(sd, none, small(name));
    EXPECT_EQ(r.images.sizes(), torch::IntArrayRef({1, 3, 32, 32})) << name;
    EXPECT_TRUE(torch::isfinite(r.images).all().item<bool>()) << name;
  }
  auto o = small();
  o.width = 48;
  o.height = 40;
  auto r = generate(sd, none, o);
  EXPECT_EQ(r.images.sizes(), torch::IntArrayRef({1, 3, 40, 48}));
  EXPECT_TRUE(torch::equal(sdxl_time_ids(o, 48, 40), torch::tensor({{40.f, 48.f, 0.f, 0.f, 40.f, 48.f}})));
  o.original_width = 1024, o.original_height = 512, o.crop_top = 3, o.crop_left = 5, o.target_width = 64;
  EXPECT_TRUE(torch::equal(sdxl_time_ids(o, 48, 40), torch::tensor({{512.f, 1024.f, 3.f, 5.f, 40.f, 64.f}})));
  // The time_ids reach the UNet: other sizes, other image.
  auto a = generate(sd, none, small()), b = [&] {
    auto q = small();
    q.original_width = q.original_height = 1024;
    return generate(sd, none, q);
  }();
  EXPECT_FALSE(torch::equal(a.images, b.images));
}

TEST(SdxlGenerate, TimeIdSizesMustBeMultiplesOf8) {
  auto o = small();
  o.original_width = 1020;
  EXPECT_TINV_ERROR(validate(o), "--original-width");
  o = small();
  o.target_height = 7;
  EXPECT_TINV_ERROR(validate(o), "--target-height");
  o = small();
  o.crop_top = -8;
  EXPECT_TINV_ERROR(validate(o), "--crop-top");
}

TEST(SdxlGenerate, EmptyNegativeIsZeroedUnlessAsked) {
  auto sd = load_stable_diffusion(kXl);
  ExtraTokens none;
  auto zero = generate(sd, none, small());
  auto enc_opts = small();
  enc_opts.encode_empty_negative = true;
  auto encoded = generate(sd, none, enc_opts);
  EXPECT_FALSE(torch::equal(zero.images, encoded.images));
  auto neg = small();
  neg.negative_prompt = "blurry";
  EXPECT_FALSE(torch::equal(generate(sd, none, neg).images, zero.images));
}

TEST(SdxlGenerate, EmbeddingsInPrompts) {
  test::TempDir dir;
  auto sd = load_stable_diffusion(kXl);
  const std::string f = dir.file("mycubez.safetensors");
  save_sdxl_embedding(f, torch::randn({2, 32}), torch::randn({2, 32}));
  StableDiffusion view = sd;
  ExtraTokens extra = add_embeddings(view, {f});
  EXPECT_TRUE(extra.is_xl());
  EXPECT_EQ(view.tokenizer->added_token_id("mycubez"), 49408);
  EXPECT_EQ(view.tokenizer_2->added_token_id("mycubez_1"), 49409);
  auto o = small();
  o.prompt = "a photo of mycubez";
  ExtraTokens none;
  auto with = generate(view, extra, o);
  auto without = generate(sd, none, o);
  EXPECT_FALSE(torch::equal(with.images, without.images));
  EXPECT_NE(with.parameters.find("TI hashes: \"mycubez: "), std::string::npos);
  // SD1 embeddings on SDXL, SDXL embeddings on SD1: refused naming the file.
  const std::string sd1 = dir.file("sd1.safetensors");
  save_embedding(sd1, EmbeddingFormat::Diffusers, "<x>", torch::randn({2, 32}));
  StableDiffusion v2 = sd;
  EXPECT_TINV_ERROR(add_embeddings(v2, {sd1}), sd1 + ": SD1/SD2 embedding");
  auto sd15 = load_stable_diffusion(kSd15);
  EXPECT_TINV_ERROR(add_embeddings(sd15, {f}), f + ": SDXL embedding (clip_l, clip_g) cannot be used");
}

// ---- inversion ----

std::string picture(const test::TempDir& dir) {
  auto img = torch::full({32, 32, 3}, 90, torch::kUInt8);
  img.slice(0, 8, 24).slice(1, 8, 24).select(2, 0).fill_(230);
  const std::string p = dir.file("cube.png");
  save_png(p, img);
  return p;
}

TEST(SdxlInvert, RowsInBothEncodersAndTheFiles) {
  test::TempDir dir;
  auto sd = load_stable_diffusion(kXl);
  for (const std::string init : {"caption", "class", "token"}) {
    InvertOptions o;
    o.model = kXl;
    o.images = {picture(dir)};
    o.init = parse_init_mode(init);
    o.caption = "a red cube";
    o.class_name = "cube";
    o.init_token = "cube";
    o.num_vectors = 2;
    o.steps = init == "caption" ? 3 : 1;
    o.lr = init == "caption" ? 5e-3 : 1e-12;  // > 0 required; 1e-12 keeps the rows at their start
    o.eval_every = 0;
    o.format = OutputFormat::kAll;
    o.name = "cube-" + init;
    o.out = dir.file(o.name + ".safetensors");
    o.progress = false;
    o.device = torch::Device(torch::kCPU);
    InvertResult r = run_inversion(o);
    const int64_t n = init == "caption" ? 3 : init == "class" ? 1 : 2;
    ASSERT_EQ(r.embeddings.sizes(), torch::IntArrayRef({n, 64})) << init;
    auto ids = torch::tensor(init == "token" ? std::vector<int64_t>(2, sd.tokenizer->tokenize("cube")[0])
                                             : sd.tokenizer->tokenize(init == "class" ? "cube" : "a red cube"),
                             torch::kLong);
    auto embs = load_embeddings(o.out, 32, 32);
    ASSERT_EQ(embs.size(), 1u);
    EXPECT_EQ(embs[0].trigger, o.name);
    EXPECT_TRUE(torch::equal(torch::cat({embs[0].vectors, embs[0].vectors_2}, 1), r.embeddings));
    if (init != "caption") {  // lr ~0: each encoder's own embedding of the init tokens
      EXPECT_TRUE(torch::allclose(embs[0].vectors, sd.text_encoder->token_embeddings(ids), 0, 1e-6));
      EXPECT_TRUE(torch::allclose(embs[0].vectors_2, sd.text_encoder_2->token_embeddings(ids), 0, 1e-6));
    } else {  // both row sets learned
      EXPECT_FALSE(torch::allclose(embs[0].vectors, sd.text_encoder->token_embeddings(ids)));
      EXPECT_FALSE(torch::allclose(embs[0].vectors_2, sd.text_encoder_2->token_embeddings(ids)));
    }
    const std::string pair = dir.file(o.name + ".diffusers/learned_embeds.safetensors");
    auto p = load_embeddings(pair, 32, 32);
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].trigger, "<" + o.name + ">");
    EXPECT_TRUE(torch::equal(p[0].vectors_2, embs[0].vectors_2));
    EXPECT_TRUE(file_exists(dir.file(o.name + ".checkpoint.safetensors")));
  }
}

TEST(SdxlInvert, TrainerUsesOneOptimiserOverBothRowSets) {
  auto sd = load_stable_diffusion(kXl);
  auto ids = torch::tensor(sd.tokenizer->tokenize("a cube"), torch::kLong);
  auto init = torch::cat({sd.text_encoder->token_embeddings(ids), sd.text_encoder_2->token_embeddings(ids)}, 1);
  TrainerOptions opt;
  opt.schedule = LrSchedule::make(LrScheduleKind::kConstant, 5e-3, 2);
  InversionTrainer tr(
      *sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler, {"<p0>", "<p1>"}, init, {"a photo of {}"}, opt,
      SecondTextEncoder{*sd.tokenizer_2, sd.text_encoder_2, torch::tensor({32.f, 32.f, 0.f, 0.f, 32.f, 32.f})});
  EXPECT_TRUE(tr.is_xl());
  EXPECT_EQ(tr.width_1(), 32);
  EXPECT_EQ(tr.optimizer().exp_avg().sizes(), torch::IntArrayRef({2, 64}));
  StepInputs in;
  in.template_index = {0};
  in.timesteps = torch::tensor({500}, torch::kLong);
  in.noise = torch::randn({1, 4, 16, 16});
  in.latents = torch::randn({1, 4, 16, 16});
  auto r = tr.step(in);
  ASSERT_TRUE(r.finite);
  EXPECT_GT(r.grad.narrow(1, 0, 32).abs().sum().item<double>(), 0);
  EXPECT_GT(r.grad.narrow(1, 32, 32).abs().sum().item<double>(), 0);
  EXPECT_EQ(tr.prompt_ids_2({0})[0][-1].item<int64_t>(), 0);  // tokenizer_2 pads with "!"
  EXPECT_EQ(tr.prompt_ids({0})[0][-1].item<int64_t>(), 49407);
  EXPECT_TINV_ERROR(InversionTrainer(*sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler, {"<p0>", "<p1>"},
                                     init.narrow(1, 0, 32), {"a photo of {}"}, opt,
                                     SecondTextEncoder{*sd.tokenizer_2, sd.text_encoder_2, torch::zeros({6})}),
                    "initial rows must be [2, 64]");
}

// The method options on SDXL: --optimizer sphere keeps each encoder's part of a row at that
// encoder's norm (mean norm of its own vocabulary), and --init-space output starts each part
// from its own encoder's output.
TEST(SdxlInvert, MethodOptionsWorkOnBothEncoders) {
  test::TempDir dir;
  auto sd = load_stable_diffusion(kXl);
  InvertOptions o;
  o.model = kXl;
  o.images = {picture(dir)};
  o.init = InitMode::kCaption;
  o.caption = "a red cube";
  o.steps = 3;
  o.eval_every = 0;
  o.name = "cube-sphere";
  o.out = dir.file(o.name + ".safetensors");
  o.progress = false;
  o.device = torch::Device(torch::kCPU);
  o.method.optimizer = OptimizerKind::kSphere;
  InvertResult r = run_inversion(o);
  ASSERT_EQ(r.embeddings.sizes(), torch::IntArrayRef({3, 64}));
  auto n1 = r.embeddings.narrow(1, 0, 32).norm(2, {1}), n2 = r.embeddings.narrow(1, 32, 32).norm(2, {1});
  EXPECT_TRUE(torch::allclose(n1, torch::full({3}, mean_token_norm(sd.text_encoder)), 1e-5, 0));
  EXPECT_TRUE(torch::allclose(n2, torch::full({3}, mean_token_norm(sd.text_encoder_2)), 1e-5, 0));

  auto ids = sd.tokenizer->tokenize("a red cube");
  auto start = torch::cat({start_rows(sd.text_encoder, *sd.tokenizer, ids, InitSpace::kOutput),
                           start_rows(sd.text_encoder_2, *sd.tokenizer_2, ids, InitSpace::kOutput)},
                          1);
  o.method = {};
  o.method.init_space = InitSpace::kOutput;
  o.lr = 1e-12;  // the rows stay at their start
  o.steps = 1;
  o.name = "cube-cross";
  o.out = dir.file(o.name + ".safetensors");
  r = run_inversion(o);
  EXPECT_TRUE(torch::allclose(r.embeddings, start, 0, 1e-6));
  EXPECT_FALSE(
      torch::allclose(start.narrow(1, 32, 32), sd.text_encoder_2->token_embeddings(torch::tensor(ids)), 0, 1e-3));
}

// ---- study and demo on SDXL (issue 16 item 6) ----

TEST(SdxlStudy, VariantsOnAUserImage) {
  test::TempDir dir;
  StudyOptions o;
  o.model = kXl;
  o.images = {picture(dir)};
  o.captions = {"a red cube"};
  o.class_name = "cube";
  o.modes = parse_variants("caption,caption+sphere,caption+cross,class");
  o.seeds = 1;
  o.steps = 4;
  o.checkpoints = {0, 4};
  o.eval_every = 2;
  o.sample_steps = 2;
  o.out = dir.file("study");
  o.progress = false;
  o.device = torch::Device(torch::kCPU);
  StudyResult r = run_study(o);
  std::map<std::string, std::vector<double>> fixed;  // mode -> fixed-input loss at 0, 2, 4
  std::set<std::string> psnr;
  for (const auto& rec : r.records) {
    if (rec.metric == "fixed_loss") fixed[rec.mode].push_back(rec.value);
    if (rec.metric == "recon_psnr" && std::isfinite(rec.value)) psnr.insert(rec.mode);
  }
  for (const std::string mode : {"caption", "caption+sphere", "caption+cross", "class"}) {
    ASSERT_EQ(fixed[mode].size(), 3u) << mode;
    for (double v : fixed[mode]) EXPECT_TRUE(std::isfinite(v)) << mode;
    EXPECT_TRUE(psnr.count(mode)) << mode << ": no reconstruction images were scored";
  }
  // Each variant starts somewhere else: the sphere rescales the caption rows to each encoder's
  // mean norm, cross initialisation starts from the encoders' outputs.
  EXPECT_NE(fixed["caption"][0], fixed["caption+sphere"][0]);
  EXPECT_NE(fixed["caption"][0], fixed["caption+cross"][0]);
  EXPECT_NE(fixed["caption"][2], fixed["caption+sphere"][2]);
  EXPECT_TRUE(file_exists(o.out.string() + "/report.html"));
  EXPECT_TRUE(r.notes.empty()) << r.notes.front();
}

TEST(SdxlDemo, LearnsShowsAndReproduces) {
  test::TempDir dir;
  DemoOptions o;
  o.image = picture(dir);
  o.model = kXl;
  o.caption = "a large red square in the center, on a plain gray background";
  o.name = "my-cube";
  o.steps = 3;
  o.samples = 1;
  o.sample_steps = 2;
  o.out = dir.file("demo");
  o.progress = false;
  o.device = torch::Device(torch::kCPU);
  const DemoResult r = run_demo(o);
  EXPECT_EQ(r.trigger, "<my-cube>");
  // The SDXL files: {clip_l, clip_g} and the diffusers pair, which generate loaded.
  auto xl = load_embeddings(o.out.string() + "/my-cube.safetensors", 32, 32);
  ASSERT_EQ(xl.size(), 1u);
  EXPECT_TRUE(xl[0].is_xl());
  const std::string pair = o.out.string() + "/my-cube.diffusers/learned_embeds.safetensors";
  ASSERT_TRUE(file_exists(pair));
  EXPECT_EQ(load_embeddings(pair, 32, 32)[0].trigger, "<my-cube>");
  const std::string cmds = read_text_file(o.out.string() + "/commands.sh");
  EXPECT_NE(cmds.find("--embedding " + pair + " --prompt"), std::string::npos) << cmds;
  // Before and after differ: the trigger reached the UNet through both encoders.
  const auto before = read_text_file(o.out.string() + "/images/p0-before-0.png");
  const auto after = read_text_file(o.out.string() + "/images/p0-after-0.png");
  EXPECT_FALSE(before.empty());
  EXPECT_NE(before, after);
  EXPECT_TRUE(file_exists(o.out.string() + "/index.html"));
}

// ---- CLI ----

TEST(SdxlCli, InfoGenerateInvertAndBadInput) {
  test::TempDir dir;
  auto info = test::run_tinv("info " + test::quote(kXl), dir);
  ASSERT_EQ(info.status, 0) << info.err;
  EXPECT_NE(info.out.find("Stable Diffusion XL (SDXL)"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("text enc. 2"), std::string::npos);
  auto single = test::run_tinv("info " + test::quote(kXlSingle) + " --config " + test::quote(kXl), dir);
  ASSERT_EQ(single.status, 0) << single.err;
  EXPECT_NE(single.out.find("SDXL"), std::string::npos);

  auto inv =
      test::run_tinv("invert --model " + test::quote(kXl) + " --image " + test::quote(picture(dir)) +
                         " --caption 'a red cube' --steps 2 --name cubexl --eval-every 0 --no-progress --device cpu"
                         " --format all --out " +
                         test::quote(dir.file("cubexl.safetensors")),
                     dir);
  ASSERT_EQ(inv.status, 0) << inv.err;
  auto gen = test::run_tinv("generate --model " + test::quote(kXl) +
                                " --prompt 'a photo of cubexl' --steps 2"
                                " --sampler euler_a --width 40 --height 32 --original-width 1024 --original-height 1024"
                                " --seed 1 --quiet --device cpu --embedding " +
                                test::quote(dir.file("cubexl.safetensors")) + " --out " + test::quote(dir.file("out")),
                            dir);
  ASSERT_EQ(gen.status, 0) << gen.err;
  EXPECT_TRUE(file_exists(dir.file("out/1-0.png")));
  auto pair = test::run_tinv("generate --model " + test::quote(kXl) +
                                 " --prompt 'a photo of <cubexl>' --steps 1"
                                 " --quiet --device cpu --embedding " +
                                 test::quote(dir.file("cubexl.diffusers")) + " --out " + test::quote(dir.file("out2")),
                             dir);
  ASSERT_EQ(pair.status, 0) << pair.err;

  auto bad = test::run_tinv("generate --model " + test::quote(kXl) + " --prompt x --original-width 1001 --out " +
                                test::quote(dir.file("bad")),
                            dir);
  EXPECT_NE(bad.status, 0);
  ASSERT_EQ(bad.err_lines.size(), 1u) << bad.err;
  EXPECT_NE(bad.err.find("--original-width"), std::string::npos) << bad.err;
  // An SD1 embedding on SDXL: one line naming the file.
  const std::string sd1 = dir.file("sd1.safetensors");
  save_embedding(sd1, EmbeddingFormat::Diffusers, "<x>", torch::randn({2, 32}));
  auto refused = test::run_tinv("generate --model " + test::quote(kXl) + " --prompt x --steps 1 --quiet --embedding " +
                                    test::quote(sd1) + " --out " + test::quote(dir.file("bad")),
                                dir);
  EXPECT_NE(refused.status, 0);
  ASSERT_EQ(refused.err_lines.size(), 1u) << refused.err;
  EXPECT_NE(refused.err.find(sd1 + ": SD1/SD2 embedding"), std::string::npos) << refused.err;
}

TEST(SdxlCli, ParityRunnerFailsWithoutCases) {
  test::TempDir dir;
  // --only a group with no case in this folder (no single file): 0 cases must not pass.
  fs::create_directories(dir.file("fx/model"));
  fs::copy(kXl + "/model_index.json", dir.file("fx/model/model_index.json"));
  auto r = test::run_tinv("parity " + test::quote(dir.file("fx")) + " --only single_file", dir);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("no case ran"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace tinv
