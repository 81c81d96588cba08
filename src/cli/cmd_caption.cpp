// `tinv caption IMAGE... --captioner DIR`: BLIP captions, as text or JSON lines.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/options.h"
#include "common/default_models.h"
#include "common/device.h"
#include "common/error.h"
#include "common/progress.h"
#include "io/image.h"
#include "pipelines/caption.h"

namespace tinv::cli {
namespace {

struct CaptionArgs {
  std::vector<std::string> images;
  std::string captioner;
  DeviceChoice device;  // auto
  std::string prompt = "a picture of";
  std::vector<int64_t> prompt_ids;
  bool no_prompt = false, json = false, no_cache = false;
  CaptionOptions opts;
};

void run_caption(CaptionArgs& a) {
  CaptionOptions o = a.opts;
  o.prompt = a.prompt;
  o.prompt_ids = a.prompt_ids;
  o.use_prompt = !a.no_prompt;
  o.use_cache = !a.no_cache;
  o.validate();  // before the (slow) model load
  if (a.captioner.empty()) a.captioner = default_model_dir("world-blip");
  auto cap = BlipCaptioner::load(a.captioner, resolve_device(a.device));
  if (!cap.has_tokenizer()) {
    std::fprintf(stderr, "tinv: warning: %s has no vocab.txt: printing token ids instead of captions%s\n",
                 a.captioner.c_str(),
                 o.use_prompt && o.prompt_ids.empty() ? " (prompt 'a picture of' as bert-base-uncased ids)" : "");
  }
  cap.prefix_ids(o);  // prompt errors before any image work
  Progress progress("caption", static_cast<int64_t>(a.images.size()), a.images.size() > 1);
  for (size_t i = 0; i < a.images.size(); ++i) {
    const std::string& path = a.images[i];
    CaptionResult r = cap.caption(load_image(path), o);
    if (a.json) {
      nlohmann::json j = {{"image", path}, {"ids", r.ids}, {"new_ids", r.new_ids}, {"score", r.score}};
      j["caption"] = cap.has_tokenizer() ? nlohmann::json(r.text) : nlohmann::json(nullptr);
      std::cout << j.dump() << std::endl;
    } else if (cap.has_tokenizer()) {
      std::cout << (a.images.size() > 1 ? path + ": " : "") << r.text << std::endl;
    } else {
      std::string ids;
      for (int64_t id : r.ids) ids += (ids.empty() ? "" : " ") + std::to_string(id);
      std::cout << (a.images.size() > 1 ? path + ": " : "") << ids << std::endl;
    }
    progress.update(static_cast<int64_t>(i + 1));
  }
  progress.finish();
}

}  // namespace

void add_caption(CLI::App& app) {
  auto* cmd = app.add_subcommand("caption", "Caption images with BLIP");
  auto a = std::make_shared<CaptionArgs>();
  cmd->add_option("images", a->images, "Image files (PNG, JPEG, WebP, TIFF, BMP, GIF, ...)")->required();
  cmd->add_option("--captioner", a->captioner,
                  "BLIP folder (config.json, model.safetensors, "
                  "preprocessor_config.json, vocab.txt); default: the bundled world-blip");
  cmd->add_option("--prompt", a->prompt, "Conditional prefix, removed from the output")->capture_default_str();
  cmd->add_option("--prompt-ids", a->prompt_ids, "Prompt as token ids (comma-separated; no vocab.txt needed)")
      ->delimiter(',');
  cmd->add_flag("--no-prompt", a->no_prompt, "Unconditional captioning (start from [DEC] only)");
  cmd->add_option("--beams", a->opts.beams, "Beam count (1 = greedy)")->capture_default_str();
  cmd->add_option("--max-length", a->opts.max_length, "Maximum tokens, prompt included")->capture_default_str();
  cmd->add_option("--min-length", a->opts.min_length, "Minimum tokens, prompt included")->capture_default_str();
  cmd->add_option("--max-new-tokens", a->opts.max_new_tokens, "Maximum generated tokens (overrides --max-length)");
  cmd->add_option("--repetition-penalty", a->opts.repetition_penalty, "1 = off")->capture_default_str();
  cmd->add_option("--length-penalty", a->opts.length_penalty, "Beam score length exponent")->capture_default_str();
  cmd->add_flag("--no-cache", a->no_cache, "Recompute every position at each step (slower; for measurement)");
  cmd->add_flag("--json", a->json, "One JSON object per image: image, caption, ids, new_ids, score");
  add_device(cmd, a->device);
  add_threads(cmd);
  cmd->callback([a] { run_caption(*a); });
}

}  // namespace tinv::cli
