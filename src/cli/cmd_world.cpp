// `tinv world render|tokenizer`: the procedural world of the embedded default model
// (src/world/world.h): rendered scenes with captions, held-out concepts, and the world's BPE.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "apps/world_train.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "io/image_tensor.h"
#include "io/image_write.h"
#include "text/clip_tokenizer.h"
#include "world/bpe_trainer.h"
#include "world/world.h"

namespace tinv::cli {
namespace {

using namespace tinv::world;

struct RenderArgs {
  std::string out, split = "train";
  int64_t count = 64, start = 0;
  uint64_t seed = 0;
  int size = 64;
  double unnamed_dot = bundled_rules().unnamed_dot;
  bool concepts = false;
};

struct TokenizerArgs {
  std::string out;
  int merges = 1000;
  int64_t captions = 10000;
  uint64_t seed = 0;
};

std::string numbered(int64_t i, const char* ext) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%06lld%s", static_cast<long long>(i), ext);
  return buf;
}

nlohmann::ordered_json background_json(Colour c, Pattern p) { return {{"colour", name(c)}, {"pattern", name(p)}}; }

void write_text(const std::string& path, const std::string& text) {
  write_file_atomically(path, text.data(), text.size());
}

// Up to 64 tiles, `cols` per row, as uint8 [H, W, 3].
void save_grid(const std::string& path, const std::vector<torch::Tensor>& hwc, int64_t cols) {
  std::vector<torch::Tensor> chw;
  for (const auto& t : hwc) chw.push_back(t.permute({2, 0, 1}));
  save_png(path, make_grid(chw, cols).permute({1, 2, 0}).contiguous());
}

void render_scenes(const RenderArgs& a) {
  const Split split = a.split == "train" ? Split::kTrain : Split::kHeldOut;
  std::string jsonl;
  std::vector<torch::Tensor> tiles;
  Progress progress("render", a.count);
  for (int64_t k = 0; k < a.count; ++k) {
    const int64_t index = a.start + k;
    Sample s = sample_at(a.seed, split, static_cast<uint64_t>(index), a.size, SceneRules{a.unnamed_dot});
    torch::Tensor t = image_to_hwc(s.image);
    const std::string file = numbered(index, ".png");
    save_png(join_path(a.out, file), t, {{"caption", s.caption}});
    if (tiles.size() < 64) tiles.push_back(t);
    nlohmann::ordered_json j = {{"file", file}, {"index", index}, {"split", name(split)}, {"caption", s.caption}};
    const ObjectSpec& o = s.scene.object;
    j["object"] = {{"shape", name(o.shape)},
                   {"colour", name(o.colour)},
                   {"size", name(o.size)},
                   {"position", name(o.position)},
                   {"mark", name(o.mark)}};
    if (o.mark != Mark::kNone) j["object"]["mark_colour"] = name(o.mark_colour);
    if (o.unnamed_dot) j["object"]["unnamed_dot"] = name(*o.unnamed_dot);  // world v2.1: not in the caption
    j["background"] = background_json(s.scene.background, s.scene.background_pattern);
    jsonl += j.dump() + "\n";
    progress.update(k + 1);
  }
  progress.finish();
  write_text(join_path(a.out, "captions.jsonl"), jsonl);
  save_grid(join_path(a.out, "grid.png"), tiles, 8);
  std::printf("wrote %lld %s scenes (seed %llu), captions.jsonl and grid.png to %s\n", static_cast<long long>(a.count),
              name(split), static_cast<unsigned long long>(a.seed), a.out.c_str());
}

void render_concepts(const RenderArgs& a) {
  std::string jsonl;
  std::vector<torch::Tensor> tiles;
  const int64_t cols = std::min<int64_t>(a.count, 8);
  Progress progress("concepts", a.count * static_cast<int64_t>(concepts().size()));
  int64_t done = 0;
  for (const Concept& c : concepts()) {
    make_dirs(join_path(a.out, c.name));
    for (int64_t k = 0; k < a.count; ++k) {
      const int64_t index = a.start + k;
      ConceptSample s = concept_at(a.seed, c, static_cast<uint64_t>(index), a.size);
      torch::Tensor t = image_to_hwc(s.image);
      const std::string file = c.name + "/" + numbered(index, ".png");
      save_png(join_path(a.out, file), t, {{"caption", s.caption(c.class_word)}});
      if (k < cols) tiles.push_back(t);
      nlohmann::ordered_json j = {{"file", file},
                                  {"index", index},
                                  {"concept", c.name},
                                  {"class_word", c.class_word},
                                  {"description", c.description},
                                  {"caption", s.caption(c.class_word)},
                                  {"template", s.caption("{}")},
                                  {"size", name(s.size)},
                                  {"position", name(s.position)},
                                  {"background", background_json(s.background, s.background_pattern)}};
      jsonl += j.dump() + "\n";
      progress.update(++done);
    }
  }
  progress.finish();
  write_text(join_path(a.out, "captions.jsonl"), jsonl);
  save_grid(join_path(a.out, "grid.png"), tiles, cols);
  std::printf(
      "wrote %lld renderings of each of %zu concepts (seed %llu), captions.jsonl and "
      "grid.png (a row per concept) to %s\n",
      static_cast<long long>(a.count), concepts().size(), static_cast<unsigned long long>(a.seed), a.out.c_str());
}

void run_render(const RenderArgs& a) {
  TINV_CHECK(a.count >= 1, "world render", "--count must be >= 1");
  TINV_CHECK(a.start >= 0, "world render", "--start must be >= 0");
  make_dirs(a.out);
  if (a.concepts)
    render_concepts(a);
  else
    render_scenes(a);
}

void run_tokenizer(const TokenizerArgs& a) {
  TINV_CHECK(a.captions >= 1, "world tokenizer", "--captions must be >= 1");
  std::vector<std::string> texts;
  for (int64_t i = 0; i < a.captions; ++i)
    texts.push_back(caption(scene_at(a.seed, Split::kTrain, static_cast<uint64_t>(i))));
  BpeTrainOptions opt;
  opt.num_merges = a.merges;
  BpeModel bpe = train_bpe(texts, opt);
  save_bpe(bpe, a.out);
  ClipTokenizer tok = ClipTokenizer::load(a.out);
  std::string split_words;
  for (const std::string& w : caption_words())
    if (tok.tokenize(w).size() != 1) split_words += " " + w;
  std::printf("trained %zu merges on %lld captions: %lld tokens, written to %s\n", bpe.merges.size(),
              static_cast<long long>(a.captions), static_cast<long long>(tok.base_vocab_size()), a.out.c_str());
  std::printf("caption words that are not one token:%s\n", split_words.empty() ? " none" : split_words.c_str());
}

void add_render(CLI::App* world) {
  auto* render = world->add_subcommand("render", "Render scenes (or held-out concepts) with captions");
  auto r = std::make_shared<RenderArgs>();
  render->add_option("--out", r->out, "Output folder (PNGs, captions.jsonl, grid.png)")->required();
  render->add_option("--count", r->count, "Images (per concept with --concepts)")->capture_default_str();
  render->add_option("--start", r->start, "First index")->capture_default_str();
  render->add_option("--seed", r->seed, "World seed")->capture_default_str();
  render->add_option("--size", r->size, "Image size in pixels")->capture_default_str()->check(CLI::Range(8, 1024));
  render->add_option("--split", r->split, "train or heldout (held-out object/background colour pairs)")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "heldout"}));
  add_unnamed_dot(render, r->unnamed_dot);
  render->add_flag("--concepts", r->concepts, "Render the held-out concepts instead, a folder each");
  render->callback([r] { run_render(*r); });
}

void add_tokenizer(CLI::App* world) {
  auto* tokenizer = world->add_subcommand("tokenizer", "Train the world's CLIP-format BPE tokenizer");
  auto t = std::make_shared<TokenizerArgs>();
  tokenizer->add_option("--out", t->out, "Output folder (vocab.json, merges.txt, configs)")->required();
  tokenizer->add_option("--merges", t->merges, "Maximum number of merges")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  tokenizer->add_option("--captions", t->captions, "Training captions (train split)")->capture_default_str();
  tokenizer->add_option("--seed", t->seed, "World seed")->capture_default_str();
  tokenizer->callback([t] { run_tokenizer(*t); });
}

void add_train(CLI::App* world) {
  auto* train = world->add_subcommand(
      "train", "Train a part of the world model (vae, then diffusion; captioner any time); resumes");
  auto o = std::make_shared<TrainOptions>();
  add_parsed(train, "part", o->part, parse_train_part,
             "vae | decoder (fine-tune, encoder frozen) | diffusion | captioner")
      ->required()
      ->check(CLI::IsMember({"vae", "decoder", "diffusion", "captioner"}));
  train->add_option("--work", o->work, "Work folder (checkpoints, logs, tokenizer, latents)")->required();
  train->add_option("--steps", o->steps, "Total optimisation steps (a resumed run continues to this)")->required();
  train
      ->add_option("--stop-at", o->stop_at,
                   "Stop after this step; the schedule still spans --steps (0: run to --steps)")
      ->capture_default_str();
  train->add_option("--batch", o->batch, "Batch size (0: the part's default)")->capture_default_str();
  train->add_option("--lr", o->lr, "Peak learning rate (0: the part's default)")->capture_default_str();
  train->add_option("--seed", o->seed, "Seed of the weights and of the data stream")->capture_default_str();
  train->add_option("--save-every", o->save_every, "Checkpoint every N steps")->capture_default_str();
  train->add_option("--dataset", o->dataset, "diffusion: training scenes encoded by the VAE")->capture_default_str();
  add_parsed(train, "--prediction", o->prediction, parse_prediction,
             "diffusion: the UNet's target, epsilon or v_prediction")
      ->default_str(to_string(o->prediction))
      ->check(CLI::IsMember({"epsilon", "v_prediction"}));
  train->add_option("--init", o->init,
                    "diffusion, captioner: start from this checkpoint's weights (when the work folder has none)");
  add_unnamed_dot(train, o->rules.unnamed_dot);
  add_threads(train);
  add_attention_store(train);
  add_device(train, o->device);
  train->add_flag("!--no-progress", o->progress, "No progress bar");
  train->callback([o] { train_part(*o); });
}

void add_export(CLI::App* world) {
  auto* exp = world->add_subcommand("export", "Write the trained world as fp16 diffusers and BLIP folders");
  auto e = std::make_shared<std::pair<std::string, std::string>>("", "models");
  exp->add_option("--work", e->first, "Work folder of `tinv world train`")->required();
  exp->add_option("--out", e->second, "Folder receiving world-sd/ and world-blip/")->capture_default_str();
  exp->callback([e] {
    export_models(e->first, e->second);
    std::printf("wrote %s/world-sd and %s/world-blip\n", e->second.c_str(), e->second.c_str());
  });
}

}  // namespace

void add_world(CLI::App& app) {
  auto* world = app.add_subcommand("world", "The procedural world of the embedded default model");
  world->require_subcommand(1);
  add_render(world);
  add_tokenizer(world);
  add_train(world);
  add_export(world);
  add_world_eval(world);
}

}  // namespace tinv::cli
