// BLIP: config validation, loading, generation (greedy, beams, cache), ids-only and vocab
// modes, and the `tinv caption` CLI on bad input. Uses ../shared/fixtures/tiny-blip.
#include <torch/torch.h>

#include <cstdio>
#include <fstream>

#include "common/fs.h"
#include "io/image.h"
#include "io/json_config.h"
#include "models/blip.h"
#include "pipelines/caption.h"
#include "test_util.h"

namespace tinv {
namespace {

const std::string kModel = test::fixture("tiny-blip/model");
const std::string kImage = test::fixture("tiny-blip/cases/image.png");

const BlipCaptioner& captioner() {
  torch::set_num_threads(1);  // the tiny model is all per-op overhead; threads only contend
  static BlipCaptioner cap = BlipCaptioner::load(kModel, torch::kCPU);
  return cap;
}

// A model folder in `dir` with the fixture's weights and the given config text.
void model_folder(const test::TempDir& dir, const std::string& config) {
  std::ofstream(dir.file("config.json")) << config;
  ASSERT_EQ(::symlink((kModel + "/model.safetensors").c_str(), dir.file("model.safetensors").c_str()), 0);
  ASSERT_EQ(::symlink((kModel + "/preprocessor_config.json").c_str(), dir.file("preprocessor_config.json").c_str()), 0);
}

nlohmann::json fixture_config() { return nlohmann::json::parse(read_text_file(kModel + "/config.json")); }

TEST(BlipConfig, PresetsAndFixture) {
  auto base = BlipConfig::base(), large = BlipConfig::large();
  EXPECT_EQ(base.vision.hidden_size, 768);
  EXPECT_EQ(base.vision.num_patches(), 576);
  EXPECT_EQ(large.vision.num_hidden_layers, 24);
  EXPECT_EQ(large.text.encoder_hidden_size, 1024);
  auto cfg = BlipConfig::load(kModel + "/config.json");
  EXPECT_EQ(cfg.vision.image_size, 32);
  EXPECT_EQ(cfg.vision.patch_size, 8);
  EXPECT_EQ(cfg.text.intermediate_size, 37);
}

TEST(BlipConfig, MissingPartsAndBadFieldsAreErrors) {
  auto j = fixture_config();
  j.erase("text_config");
  EXPECT_TINV_ERROR(BlipConfig::from_json(JsonConfig(j, "c.json")), "c.json: missing 'text_config'");
  j = fixture_config();
  j.erase("vision_config");
  EXPECT_TINV_ERROR(BlipConfig::from_json(JsonConfig(j, "c.json")), "missing 'vision_config'");
  j = fixture_config();
  j["vision_config"]["num_attention_heads"] = 5;
  EXPECT_TINV_ERROR(BlipConfig::from_json(JsonConfig(j, "c.json")), "num_attention_heads");
  j = fixture_config();
  j["vision_config"]["patch_size"] = 7;
  EXPECT_TINV_ERROR(BlipConfig::from_json(JsonConfig(j, "c.json")), "patch_size");
  j = fixture_config();
  j["text_config"]["hidden_act"] = "swish2";
  EXPECT_TINV_ERROR(BlipConfig::from_json(JsonConfig(j, "c.json")), "hidden_act");
  j = fixture_config();
  j["text_config"]["encoder_hidden_size"] = 64;
  EXPECT_TINV_ERROR(BlipConfig::from_json(JsonConfig(j, "c.json")), "encoder_hidden_size");
  j = fixture_config();
  j["text_config"]["hidden_size"] = "big";
  EXPECT_TINV_ERROR(BlipConfig::from_json(JsonConfig(j, "c.json")), "wrong type");
}

TEST(BlipModel, LoadTiesLmHeadAndRejectsMismatchedWeights) {
  auto cfg = BlipConfig::load(kModel + "/config.json");
  BlipForConditionalGeneration model(cfg);
  load_blip_weights(*model, kModel + "/model.safetensors");
  EXPECT_EQ(model->text_decoder->decoder->weight.data_ptr(), model->text_decoder->word_embeddings->weight.data_ptr());
  cfg.text.intermediate_size = 38;
  BlipForConditionalGeneration wrong(cfg);
  EXPECT_TINV_ERROR(load_blip_weights(*wrong, kModel + "/model.safetensors"), "intermediate.dense.weight");
}

TEST(BlipCaption, OptionsAreValidated) {
  CaptionOptions o;
  o.beams = 0;
  EXPECT_TINV_ERROR(o.validate(), "--beams must be >= 1");
  Image im = load_image(kImage);
  EXPECT_TINV_ERROR(captioner().caption(im, o), "--beams");
  o = {};
  o.repetition_penalty = 0;
  EXPECT_TINV_ERROR(o.validate(), "repetition");
  o = {};
  o.max_new_tokens = 100;  // fixture: max_position_embeddings 64
  EXPECT_TINV_ERROR(captioner().caption(im, o), "max_position_embeddings");
}

TEST(BlipCaption, PrefixIdsFollowBlip) {
  CaptionOptions o;
  EXPECT_EQ(captioner().prefix_ids(o), (std::vector<int64_t>{30522, 1037, 3861, 1997}));
  o.use_prompt = false;
  EXPECT_EQ(captioner().prefix_ids(o), (std::vector<int64_t>{30522}));
  o.use_prompt = true;
  o.prompt = "a photo of";  // no vocab.txt in the fixture: only ids or the default prompt work
  EXPECT_TINV_ERROR(captioner().prefix_ids(o), "no vocab.txt");
  o.prompt_ids = {1037, 6302, 1997};
  EXPECT_EQ(captioner().prefix_ids(o), (std::vector<int64_t>{30522, 1037, 6302, 1997}));
  o.prompt_ids = {40000};
  EXPECT_TINV_ERROR(captioner().prefix_ids(o), "outside the vocabulary");
}

std::vector<int64_t> run(const CaptionOptions& o, const torch::Tensor& embeds) {
  return captioner().generate(embeds, captioner().prefix_ids(o), o);
}

TEST(BlipCaption, CacheAndNoCacheGiveTheSameIds) {
  auto embeds = captioner().image_embeds(captioner().preprocess(load_image(kImage)));
  for (int beams : {1, 3}) {
    for (bool prompt : {true, false}) {
      CaptionOptions o;
      o.beams = beams;
      o.use_prompt = prompt;
      o.max_length = 24;
      o.repetition_penalty = 1.3;
      auto cached = run(o, embeds);
      o.use_cache = false;
      EXPECT_EQ(cached, run(o, embeds)) << "beams " << beams << " prompt " << prompt;
      EXPECT_LE(cached.size(), 24u);
      EXPECT_GE(cached.size(), 10u);  // min_length 10
    }
  }
}

TEST(BlipCaption, GreedyEqualsOneBeamWithEarlyStopping) {
  auto embeds = captioner().image_embeds(captioner().preprocess(load_image(kImage)));
  for (bool prompt : {true, false}) {
    CaptionOptions o;
    o.beams = 1;
    o.use_prompt = prompt;
    o.min_length = 0;
    o.max_new_tokens = 20;
    auto greedy = run(o, embeds);
    o.force_beam_search = true;
    o.early_stopping = true;
    EXPECT_EQ(greedy, run(o, embeds));
  }
}

TEST(BlipCaption, MinLengthAndBeamsShapeTheOutput) {
  auto embeds = captioner().image_embeds(captioner().preprocess(load_image(kImage)));
  CaptionOptions o;
  o.beams = 3;
  o.min_length = 12;
  o.max_length = 12;  // [SEP] forbidden until the end: exactly 12 ids, no [SEP]
  auto ids = run(o, embeds);
  EXPECT_EQ(ids.size(), 12u);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 102), 0);
  EXPECT_EQ(std::vector<int64_t>(ids.begin(), ids.begin() + 4), (std::vector<int64_t>{30522, 1037, 3861, 1997}));
}

TEST(BlipCaption, IdsOnlyModeAndVocabMode) {
  Image im = load_image(kImage);
  CaptionOptions o;
  o.beams = 1;
  o.max_new_tokens = 20;
  o.min_length = 0;
  CaptionResult r = captioner().caption(im, o);
  EXPECT_FALSE(captioner().has_tokenizer());
  EXPECT_TRUE(r.text.empty());
  ASSERT_GT(r.ids.size(), 4u);
  EXPECT_EQ(r.new_ids, std::vector<int64_t>(r.ids.begin() + 4, r.ids.end()));

  // With a vocab.txt (bert-base-uncased numbering for the prompt words, "wN" elsewhere).
  test::TempDir dir;
  model_folder(dir, read_text_file(kModel + "/config.json"));
  test::write_bert_test_vocab(dir.file("vocab.txt"));
  auto cap = BlipCaptioner::load(dir.path(), torch::kCPU);
  EXPECT_TRUE(cap.has_tokenizer());
  CaptionResult rv = cap.caption(im, o);
  EXPECT_EQ(rv.ids, r.ids);
  std::string expected;
  for (int64_t id : r.new_ids) {
    if (id == 102) continue;
    expected += (expected.empty() ? "" : " ") + (id < 30522 ? "w" + std::to_string(id) : std::string());
  }
  EXPECT_EQ(rv.text, expected);
  o.prompt = "A Picture, of";  // tokenised: a picture , of -> ',' is [UNK] here
  EXPECT_EQ(cap.prefix_ids(o), (std::vector<int64_t>{30522, 1037, 3861, 100, 1997}));
}

TEST(BlipCaption, BadModelFolders) {
  EXPECT_TINV_ERROR(BlipCaptioner::load("/nonexistent/blip"), "/nonexistent/blip: not a folder");
  auto j = fixture_config();
  j.erase("text_config");
  {
    test::TempDir dir;
    model_folder(dir, j.dump());
    EXPECT_TINV_ERROR(BlipCaptioner::load(dir.path()), "missing 'text_config'");
  }
  {
    test::TempDir dir;
    model_folder(dir, fixture_config().dump());
    std::ofstream(dir.file("vocab.txt")) << "[PAD]\n[UNK]\na\n";
    EXPECT_TINV_ERROR(BlipCaptioner::load(dir.path()), "lacks the special token [CLS]");
  }
  {
    test::TempDir dir;
    std::ofstream(dir.file("config.json")) << fixture_config().dump();
    EXPECT_TINV_ERROR(BlipCaptioner::load(dir.path()), "no model.safetensors");
  }
}

// ---- CLI ---------------------------------------------------------------------------------

test::CliResult run_tinv(const test::TempDir& dir, const std::string& args) {
  return test::run_tinv(args, dir, "OMP_NUM_THREADS=1");
}

// Exit status 1 (not a crash), and the last stderr line is the one error line.

void expect_one_line_error(const test::CliResult& r, const std::string& substr) {
  EXPECT_EQ(r.status, 1) << r.err;
  ASSERT_FALSE(r.err.empty());
  std::string last = r.err.substr(0, r.err.size() - 1);
  last = last.substr(last.find_last_of('\n') == std::string::npos ? 0 : last.find_last_of('\n') + 1);
  EXPECT_EQ(last.rfind("tinv: error: ", 0), 0u) << r.err;
  EXPECT_NE(last.find(substr), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("tinv: error"), r.err.rfind("tinv: error")) << r.err;
}

TEST(BlipCli, CaptionAndBadInput) {
  test::TempDir dir;
  test::CliResult ok = run_tinv(dir, "caption '" + kImage + "' --captioner '" + kModel + "' --beams 1 --json");
  EXPECT_EQ(ok.status, 0) << ok.err;
  auto j = nlohmann::json::parse(ok.out);
  EXPECT_TRUE(j["caption"].is_null());
  EXPECT_EQ(j["ids"][0], 30522);
  EXPECT_NE(ok.err.find("no vocab.txt"), std::string::npos);

  expect_one_line_error(run_tinv(dir, "caption '" + kImage + "' --captioner '" + kModel + "' --beams 0"),
                        "tinv: error: caption: --beams must be >= 1");
  std::ofstream(dir.file("bad.jpg")) << "not an image";
  expect_one_line_error(run_tinv(dir, "caption '" + dir.file("bad.jpg") + "' --captioner '" + kModel + "'"),
                        "bad.jpg: not a readable image");
  expect_one_line_error(run_tinv(dir, "caption '" + kImage + "' --captioner /nonexistent"), "not a folder");
  test::TempDir model;
  auto cfg = fixture_config();
  cfg.erase("vision_config");
  model_folder(model, cfg.dump());
  expect_one_line_error(run_tinv(dir, "caption '" + kImage + "' --captioner '" + model.path() + "'"),
                        "missing 'vision_config'");
}

}  // namespace
}  // namespace tinv
