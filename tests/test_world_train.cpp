// Training and export of the world models (src/apps/world_train.h), on a few small steps.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sstream>
#include <torch/torch.h>

#include <filesystem>

#include "apps/world_train.h"
#include "common/error.h"
#include "common/fs.h"
#include "io/safetensors.h"
#include "pipelines/caption.h"
#include "pipelines/generate.h"
#include "test_util.h"
#include "text/wordpiece_tokenizer.h"
#include "world/world.h"

namespace tinv::world {
namespace {

TrainOptions small(const std::string& part, const std::string& work, int64_t steps) {
  TrainOptions o;
  o.part = parse_train_part(part);
  o.work = work;
  o.steps = steps;
  o.batch = 2;
  o.dataset = 4;
  o.save_every = 1;
  o.progress = false;
  o.device = torch::Device(torch::kCPU);
  return o;
}

TEST(WorldConfigs, AreValidAndSmall) {
  WorldConfigs c = world_configs(650, 80);
  EXPECT_NO_THROW(c.vae.validate("vae"));
  EXPECT_NO_THROW(c.unet.validate("unet"));
  EXPECT_NO_THROW(c.text.validate("text"));
  EXPECT_NO_THROW(c.blip.vision.validate("vision"));
  EXPECT_NO_THROW(c.blip.text.validate("text"));
  EXPECT_EQ(c.vae.downscale() * c.unet.sample_size, c.vae.sample_size);
  EXPECT_EQ(c.unet.cross_attention_dim, c.text.hidden_size);
  EXPECT_EQ(c.blip.text.bos_token_id, 80);  // [DEC] right after the vocabulary
}

TEST(WorldTrain, BlipVocabHasEveryCaptionWordAsOneToken) {
  test::TempDir dir;
  std::string text = blip_vocab_text();
  write_file_atomically(dir.file("vocab.txt"), text.data(), text.size());
  auto tok = WordPieceTokenizer::load(dir.file("vocab.txt"));
  for (const std::string& w : caption_words()) {
    auto ids = tok.encode(w, false);
    ASSERT_EQ(ids.size(), 1u) << w;
    EXPECT_NE(ids[0], tok.unk_id()) << w;
  }
  // A caption survives encode/decode exactly (the comma is re-attached).
  Sample s = sample_at(0, Split::kTrain, 3);
  EXPECT_EQ(tok.decode(tok.encode(s.caption)), s.caption);
}

TEST(WorldTrain, TrainsExportsAndLoads) {
  test::TempDir dir;
  const std::string work = dir.file("work");
  train_part(small("vae", work, 2));
  train_part(small("captioner", work, 2));
  train_part(small("diffusion", work, 2));
  for (const char* f : {"vae.ckpt.safetensors", "captioner.ckpt.safetensors", "diffusion.ckpt.safetensors",
                        "latents.safetensors", "vae.log.csv", "tokenizer/vocab.json", "blip-vocab.txt"})
    EXPECT_TRUE(file_exists(join_path(work, f))) << f;
  const std::string log = read_text_file(join_path(work, "diffusion.log.csv"));
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 3) << log;  // header + 2 steps

  // An epsilon run, continued with v-prediction from its weights (--init): a new schedule whose
  // weights start where the first run ended, and an export whose scheduler says v_prediction.
  const std::string eps_work = dir.file("eps");
  std::filesystem::copy(work, eps_work, std::filesystem::copy_options::recursive);
  std::filesystem::remove(join_path(eps_work, "diffusion.ckpt.safetensors"));
  TrainOptions eps = small("diffusion", eps_work, 1);
  eps.prediction = Prediction::kEpsilon;
  train_part(eps);
  const std::string eps_ckpt = join_path(eps_work, "eps.ckpt.safetensors");
  std::filesystem::rename(join_path(eps_work, "diffusion.ckpt.safetensors"), eps_ckpt);
  TrainOptions cont = small("diffusion", eps_work, 1);
  cont.init = eps_ckpt;
  cont.lr = 1e-30;  // a step that moves nothing: the weights must be the epsilon run's
  train_part(cont);
  {
    auto a = SafeTensors::open(eps_ckpt), b = SafeTensors::open(join_path(eps_work, "diffusion.ckpt.safetensors"));
    EXPECT_TRUE(torch::allclose(a.get("p.unet.conv_in.weight"), b.get("p.unet.conv_in.weight")));
    EXPECT_NE(a.metadata().at("config"), b.metadata().at("config"));  // the prediction differs
  }

  export_models(work, dir.file("models"));
  const std::string sd_dir = dir.file("models/world-sd"), blip_dir = dir.file("models/world-blip");
  auto unet = SafeTensors::open(join_path(sd_dir, "unet/diffusion_pytorch_model.safetensors"));
  for (const auto& [name, info] : unet.infos()) EXPECT_EQ(info.dtype, "F16") << name;

  StableDiffusion sd = load_stable_diffusion(sd_dir);
  EXPECT_EQ(sd.scheduler.prediction_type, "v_prediction");  // the default target
  EXPECT_EQ(sd.vae_config.sample_size, 64);
  EXPECT_EQ(sd.tokenizer->max_length(), 32);
  GenerateOptions g;
  g.prompt = "a large red circle in the center, on a plain white background";
  g.steps = 2;
  g.progress = false;
  GenerateResult r = generate(sd, {}, g);
  EXPECT_EQ(r.images.sizes(), (std::vector<int64_t>{1, 3, 64, 64}));
  EXPECT_TRUE(torch::isfinite(r.images).all().item<bool>());

  // The exported vocabulary names every id of the model, [DEC] (bos) and [ENC] last, and the
  // tokenizer config marks them special (transformers decodes our captions without [UNK]).
  {
    const auto blip_cfg = nlohmann::json::parse(read_text_file(join_path(blip_dir, "config.json")));
    std::vector<std::string> lines;
    std::istringstream in(read_text_file(join_path(blip_dir, "vocab.txt")));
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    ASSERT_EQ(static_cast<int64_t>(lines.size()), blip_cfg["text_config"]["vocab_size"].get<int64_t>());
    EXPECT_EQ(lines.at(blip_cfg["text_config"]["bos_token_id"].get<size_t>()), "[DEC]");
    EXPECT_EQ(lines.back(), "[ENC]");
    const auto tc = nlohmann::json::parse(read_text_file(join_path(blip_dir, "tokenizer_config.json")));
    EXPECT_EQ(tc["bos_token"], "[DEC]");
    EXPECT_TRUE(file_exists(join_path(blip_dir, "special_tokens_map.json")));
  }
  // The export needs only latents.json from the git-ignored latent cache: a fresh clone of a
  // work folder exports the same VAE scaling factor; a broken latents.json is named.
  {
    const std::string json_path = join_path(work, "latents.json");
    ASSERT_TRUE(file_exists(json_path));
    const double scale = sd.vae_config.scaling_factor;
    EXPECT_GT(scale, 0);
    std::filesystem::remove(join_path(work, "latents.safetensors"));
    export_models(work, dir.file("models2"));
    EXPECT_EQ(load_stable_diffusion(dir.file("models2/world-sd")).vae_config.scaling_factor, scale);
    const std::string kept = read_text_file(json_path);
    auto write_text = [](const std::string& path, const std::string& text) {
      write_file_atomically(path, text.data(), text.size());
    };
    write_text(json_path, "{\"scaling_factor\": \"-1\"}");
    EXPECT_TINV_ERROR(export_models(work, dir.file("models3")), "latents.json: scaling_factor must be a positive");
    write_text(json_path, "{\"count\"");
    EXPECT_TINV_ERROR(export_models(work, dir.file("models3")), "latents.json: not a latent cache description");
    std::filesystem::remove(json_path);
    EXPECT_TINV_ERROR(export_models(work, dir.file("models3")), "latents.json: missing");
    write_text(json_path, kept);
  }

  BlipCaptioner cap = BlipCaptioner::load(blip_dir);
  ASSERT_TRUE(cap.has_tokenizer());
  CaptionOptions co;
  co.beams = 1;
  co.max_length = 12;
  Sample s = sample_at(0, Split::kHeldOut, 0);
  CaptionResult c = cap.caption(s.image, co);
  EXPECT_FALSE(c.ids.empty());
}

TEST(WorldTrain, ResumeRepeatsAnUninterruptedRun) {
  test::TempDir a, b;
  train_part(small("captioner", a.path(), 3));
  train_part(small("captioner", b.path(), 1));
  train_part(small("captioner", b.path(), 3));  // resumes at step 1
  auto fa = SafeTensors::open(a.file("captioner.ckpt.safetensors"));
  auto fb = SafeTensors::open(b.file("captioner.ckpt.safetensors"));
  EXPECT_EQ(fb.metadata().at("step"), "3");
  ASSERT_EQ(fa.keys(), fb.keys());
  for (const auto& k : fa.keys()) EXPECT_TRUE(torch::equal(fa.get(k), fb.get(k))) << k;
  EXPECT_EQ(read_text_file(a.file("captioner.log.csv")).size(), read_text_file(b.file("captioner.log.csv")).size());
}

// --init starts a captioner from another run's weights (a fine-tune: fresh optimiser, step 0), and
// the scene rules belong to a checkpoint's configuration.
TEST(WorldTrain, CaptionerFineTuneFromInitAndRulesInTheCheckpoint) {
  test::TempDir base, ft;
  train_part(small("captioner", base.path(), 2));
  TrainOptions o = small("captioner", ft.path(), 1);
  o.init = base.file("captioner.ckpt.safetensors");
  o.rules.unnamed_dot = 0.5;
  o.seed = 7;    // its own initialisation would differ from the base run's
  o.lr = 1e-12;  // a negligible step: the weights stay those of the base run
  train_part(o);
  auto fb = SafeTensors::open(base.file("captioner.ckpt.safetensors"));
  auto ff = SafeTensors::open(ft.file("captioner.ckpt.safetensors"));
  EXPECT_EQ(ff.metadata().at("step"), "1");
  int weights = 0;
  for (const auto& k : fb.keys())
    if (k.rfind("p.", 0) == 0) {
      EXPECT_TRUE(torch::allclose(fb.get(k), ff.get(k), 1e-5, 1e-6)) << k;
      ++weights;
    }
  EXPECT_GT(weights, 10);
  TrainOptions other = o;  // resuming with other rules is refused
  other.steps = 2;
  other.rules.unnamed_dot = 0.25;
  EXPECT_TINV_ERROR(train_part(other), "another configuration");
  other.rules.unnamed_dot = 0.5;
  train_part(other);
  EXPECT_EQ(SafeTensors::open(ft.file("captioner.ckpt.safetensors")).metadata().at("step"), "2");
  TrainOptions bad = small("vae", ft.path(), 1);
  bad.init = o.init;
  EXPECT_TINV_ERROR(train_part(bad), "--init");
  bad = small("captioner", ft.path(), 1);
  bad.rules.unnamed_dot = 2;
  EXPECT_TINV_ERROR(train_part(bad), "--unnamed-dot");
}

TEST(WorldTrain, PartAndPredictionParseAndName) {
  for (auto p : {TrainPart::kVae, TrainPart::kDecoder, TrainPart::kDiffusion, TrainPart::kCaptioner})
    EXPECT_EQ(parse_train_part(to_string(p)), p);
  EXPECT_EQ(to_string(TrainPart::kDiffusion), "diffusion");
  EXPECT_TINV_ERROR_IS(parse_train_part("unet"),
                       "world train: unknown part 'unet' (vae, decoder, diffusion or captioner)");
  for (auto p : {Prediction::kEpsilon, Prediction::kVPrediction}) EXPECT_EQ(parse_prediction(to_string(p)), p);
  EXPECT_EQ(to_string(Prediction::kVPrediction), "v_prediction");
  EXPECT_TINV_ERROR_IS(parse_prediction("sample"), "--prediction: must be epsilon or v_prediction, not 'sample'");
}

TEST(WorldTrain, RefusesBadOptionsAndForeignCheckpoints) {
  test::TempDir dir;
  EXPECT_TINV_ERROR(train_part(small("vae", dir.path(), 0)), "--steps");
  EXPECT_TINV_ERROR(train_part(small("diffusion", dir.path(), 1)), "run `tinv world train vae` first");
  TrainOptions bad = small("diffusion", dir.path(), 1);
  bad.init = dir.file("missing.ckpt.safetensors");
  EXPECT_TINV_ERROR(train_part(bad), "missing.ckpt.safetensors");
  train_part(small("captioner", dir.path(), 1));
  TrainOptions other = small("captioner", dir.path(), 2);
  other.batch = 3;
  EXPECT_TINV_ERROR(train_part(other), "another configuration");
  EXPECT_TINV_ERROR(export_models(dir.path(), dir.file("out")), "vae.ckpt.safetensors");
  // A truncated checkpoint is reported, not crashed on.
  const std::string ck = dir.file("captioner.ckpt.safetensors");
  std::string bytes = read_text_file(ck);
  write_file_atomically(ck, bytes.data(), bytes.size() / 2);
  EXPECT_THROW(train_part(small("captioner", dir.path(), 2)), Error);
}

}  // namespace
}  // namespace tinv::world
