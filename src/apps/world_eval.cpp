// `tinv world eval`: VAE reconstruction PSNR, captioner accuracy and prompt fidelity of the
// embedded world models on held-out scenes (see eval.h).
#include "apps/world_eval.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/strings.h"
#include "io/image.h"
#include "io/image_tensor.h"
#include "models/stable_diffusion.h"
#include "pipelines/caption.h"
#include "pipelines/generate.h"
#include "schedulers/sampler.h"

namespace tinv::world {
namespace {

constexpr const char* kAttributeNames[kNumAttributes] = {"shape",       "colour",     "size",    "position", "mark",
                                                         "mark_colour", "background", "pattern", "exact"};
constexpr int64_t kMaxBatch = 64;
constexpr int kCaptionImageSize = 64;  // the world's image size, as the captioner was trained

// Captions `image`, scores it against `truth` into `eval`, keeps it as a failure if not exact.
void caption_and_score(const BlipCaptioner& cap, const tinv::Image& image, const SceneSpec& truth, int64_t index,
                       CaptionEval& eval) {
  static const CaptionOptions kOptions = world_caption_options();
  const std::string text = cap.caption(image, kOptions).text;
  AttributeScore s = score_caption(text, truth);
  eval.score += s;
  if (s.correct[static_cast<int>(Attribute::kExact)] == 0 && eval.failures.size() < kMaxFailures)
    eval.failures.push_back({index, caption(truth), text, s.parsed == 1});
}

std::string percent_suffix(const AttributeScore& s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "mean=%.1f%% exact=%.1f%%", 100 * s.mean_accuracy(),
                100 * s.accuracy(Attribute::kExact));
  return buf;
}

VaeEval eval_vae(StableDiffusion& sd, const EvalOptions& o) {
  torch::NoGradGuard no_grad;
  const auto start = std::chrono::steady_clock::now();
  VaeEval r;
  r.scenes = o.vae_scenes;
  r.image_size = sd.vae_config.sample_size;
  Progress progress("vae", o.vae_scenes, o.progress);
  std::vector<torch::Tensor> all;
  for (int64_t first = 0; first < o.vae_scenes; first += o.batch) {
    const int64_t n = std::min(o.batch, o.vae_scenes - first);
    std::vector<torch::Tensor> items;
    for (int64_t i = first; i < first + n; ++i)
      items.push_back(image_to_unit_tensor(
          sample_at(o.seed, o.split, eval_scene_index(o.split, i), static_cast<int>(r.image_size), o.rules).image));
    auto x = torch::stack(items);                                          // [n, 3, H, W] in [0, 1]
    auto mean = sd.vae->encode((x * 2 - 1).to(sd.device, sd.dtype)).mean;  // [n, 4, H/f, W/f]
    auto y = to_unit_images(sd.vae->decode(mean).to(torch::kFloat32));     // [n, 3, H, W] in [0, 1]
    all.push_back(psnr_per_image(y, x));
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "psnr=%.2f dB", torch::cat(all).mean().item<double>());
    progress.update(first + n, suffix);
  }
  progress.finish();
  auto per_image = torch::cat(all);
  r.psnr_db = per_image.mean().item<double>();
  r.min_psnr_db = per_image.min().item<double>();
  r.seconds = seconds_since(start);
  return r;
}

CaptionEval eval_captioner(const BlipCaptioner& cap, const EvalOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  CaptionEval r;
  r.target = kCaptionerTarget;
  Progress progress("captioner", o.caption_scenes, o.progress);
  for (int64_t i = 0; i < o.caption_scenes; ++i) {
    Sample s = sample_at(o.seed, o.split, eval_scene_index(o.split, i), kCaptionImageSize, o.rules);
    caption_and_score(cap, s.image, s.scene, i, r);
    progress.update(i + 1, percent_suffix(r.score));
  }
  progress.finish(percent_suffix(r.score));
  r.seconds = seconds_since(start);
  return r;
}

CaptionEval eval_fidelity(StableDiffusion& sd, const BlipCaptioner& cap, const EvalOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  CaptionEval r;
  r.target = kFidelityTarget;
  GenerateOptions g;
  g.sampler = o.sampler;
  g.steps = o.steps;
  g.cfg = o.cfg;
  Progress progress("fidelity", o.fidelity_prompts, o.progress);
  for (int64_t first = 0; first < o.fidelity_prompts; first += o.batch) {
    const int64_t n = std::min(o.batch, o.fidelity_prompts - first);
    std::vector<SceneSpec> scenes;
    std::vector<std::string> prompts;
    std::vector<uint64_t> seeds;
    for (int64_t i = first; i < first + n; ++i) {
      scenes.push_back(scene_at(o.seed, o.split, eval_scene_index(o.split, i), o.rules));
      prompts.push_back(caption(scenes.back()));
      seeds.push_back(o.seed + static_cast<uint64_t>(i));
    }
    torch::Tensor images = generate_prompts(sd, prompts, seeds, g);  // [n, 3, H, W]
    for (int64_t k = 0; k < n; ++k) caption_and_score(cap, unit_tensor_to_image(images[k]), scenes[k], first + k, r);
    progress.update(first + n, percent_suffix(r.score));
  }
  progress.finish(percent_suffix(r.score));
  r.seconds = seconds_since(start);
  return r;
}

}  // namespace

CaptionOptions world_caption_options() {
  CaptionOptions o;  // prompt "a picture of", as the world captioner was trained
  o.beams = 1;
  o.max_length = 40;
  o.min_length = 1;
  return o;
}

// ---- PSNR ----
torch::Tensor psnr_per_image(const torch::Tensor& a, const torch::Tensor& b) {
  TINV_CHECK(a.defined() && b.defined() && a.sizes() == b.sizes(), "psnr", "images must have the same shape, got ",
             a.sizes(), " and ", b.sizes());
  TINV_CHECK(a.dim() == 3 || a.dim() == 4, "psnr", "expected [C, H, W] or [B, C, H, W], got ", a.sizes());
  TINV_CHECK(a.numel() > 0, "psnr", "empty images ", a.sizes());
  auto x = a.to(torch::kCPU, torch::kFloat64), y = b.to(torch::kCPU, torch::kFloat64);
  if (x.dim() == 3) x = x.unsqueeze(0), y = y.unsqueeze(0);
  auto mse = (x - y).pow(2).flatten(1).mean(1).clamp_min(1e-10);  // [B]
  return -10.0 * mse.log10();
}

double psnr(const torch::Tensor& a, const torch::Tensor& b) { return psnr_per_image(a, b).mean().item<double>(); }

// ---- Attribute scoring ----
const char* name(Attribute a) { return kAttributeNames[static_cast<int>(a)]; }

double AttributeScore::accuracy(Attribute a) const {
  const int64_t n = scenes;
  return n > 0 ? static_cast<double>(correct[static_cast<int>(a)]) / n : 0.0;
}

double AttributeScore::mean_accuracy() const {
  double sum = 0.0;
  for (int k = 0; k < kNumScoredAttributes; ++k) sum += accuracy(static_cast<Attribute>(k));
  return sum / kNumScoredAttributes;
}

AttributeScore& AttributeScore::operator+=(const AttributeScore& o) {
  scenes += o.scenes;
  parsed += o.parsed;
  for (int k = 0; k < kNumAttributes; ++k) correct[k] += o.correct[k];
  return *this;
}

AttributeScore score_scene(const std::optional<SceneSpec>& predicted, const SceneSpec& truth) {
  AttributeScore s;
  s.scenes = 1;
  if (!predicted) return s;
  s.parsed = 1;
  auto add = [&](Attribute a, bool ok) { s.correct[static_cast<int>(a)] += ok ? 1 : 0; };
  const ObjectSpec &p = predicted->object, &t = truth.object;
  add(Attribute::kShape, p.shape == t.shape);
  add(Attribute::kColour, p.colour == t.colour);
  add(Attribute::kSize, p.size == t.size);
  add(Attribute::kPosition, p.position == t.position);
  add(Attribute::kMark, p.mark == t.mark);
  add(Attribute::kMarkColour,
      (p.mark == Mark::kNone) == (t.mark == Mark::kNone) && (t.mark == Mark::kNone || p.mark_colour == t.mark_colour));
  add(Attribute::kBackground, predicted->background == truth.background);
  add(Attribute::kPattern, predicted->background_pattern == truth.background_pattern);
  add(Attribute::kExact, *predicted == truth);
  return s;
}

std::string normalise_caption(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool space = std::isspace(static_cast<unsigned char>(c)) != 0;
    if (space) {
      if (!out.empty() && out.back() != ' ') out += ' ';
      continue;
    }
    if (c == ',' && !out.empty() && out.back() == ' ') out.pop_back();
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  out = trim(out);
  if (!out.empty() && out.back() == '.') out = trim(out.substr(0, out.size() - 1));
  return out;
}

AttributeScore score_caption(const std::string& text, const SceneSpec& truth) {
  return score_scene(parse_caption(normalise_caption(text)), truth);
}

// ---- Options ----
EvalParts parse_parts(const std::string& list) {
  EvalParts p{false, false, false, false};
  std::stringstream in(list);
  std::string item;
  bool any = false;
  while (std::getline(in, item, ',')) {
    item = trim(item);
    if (item == "all")
      p = EvalParts{};
    else if (item == "vae")
      p.vae = true;
    else if (item == "captioner")
      p.captioner = true;
    else if (item == "fidelity")
      p.fidelity = true;
    else if (item == "judge")
      p.judge = true;
    else
      throw Error("--only", str_cat("unknown part '", item, "' (known: vae, captioner, fidelity, judge, all)"));
    any = true;
  }
  TINV_CHECK(any && list.back() != ',', "--only",
             "expected a comma-separated list of vae, captioner, "
             "fidelity, judge, got '",
             list, "'");
  return p;
}

void EvalOptions::validate() const {
  TINV_CHECK(parts.vae || parts.captioner || parts.fidelity || parts.judge, "--only", "no part selected");
  TINV_CHECK(rules.unnamed_dot >= 0 && rules.unnamed_dot <= 1, "--unnamed-dot", "must be in [0, 1], got ",
             rules.unnamed_dot);
  TINV_CHECK(!parts.judge || judge_renders >= 1, "--judge-renders", "must be >= 1, got ", judge_renders);
  TINV_CHECK(!parts.vae || vae_scenes >= 1, "--vae-scenes", "must be >= 1, got ", vae_scenes);
  TINV_CHECK(!parts.captioner || caption_scenes >= 1, "--caption-scenes", "must be >= 1, got ", caption_scenes);
  TINV_CHECK(!parts.fidelity || fidelity_prompts >= 1, "--fidelity-prompts", "must be >= 1, got ", fidelity_prompts);
  TINV_CHECK(batch >= 1 && batch <= kMaxBatch, "--batch", "must be between 1 and ", kMaxBatch, ", got ", batch);
  GenerateOptions g;  // sampler, steps and cfg, with generate's messages
  g.sampler = sampler;
  g.steps = steps;
  g.cfg = cfg;
  tinv::validate(g);
}

bool CaptionEval::pass() const {
  for (int k = 0; k < kNumScoredAttributes; ++k)
    if (score.accuracy(static_cast<Attribute>(k)) < target) return false;
  return score.scenes > 0;
}

// ---- Generation ----
torch::Tensor generate_prompts(StableDiffusion& sd, const std::vector<std::string>& prompts,
                               const std::vector<uint64_t>& seeds, const GenerateOptions& o) {
  return generate_prompts(sd, ExtraTokens{}, prompts, seeds, o);
}

torch::Tensor generate_prompts(StableDiffusion& sd, const ExtraTokens& extra, const std::vector<std::string>& prompts,
                               const std::vector<uint64_t>& seeds, const GenerateOptions& o) {
  TINV_CHECK(!prompts.empty() && prompts.size() == seeds.size(), "generate_prompts", "need one seed per prompt, got ",
             prompts.size(), " prompts and ", seeds.size(), " seeds");
  GenerateOptions checked = o;
  checked.batch = static_cast<int64_t>(prompts.size());
  validate(checked);
  torch::NoGradGuard no_grad;
  const int64_t f = sd.vae_config.downscale();
  const int64_t width = o.width ? o.width : sd.vae_config.sample_size;
  const int64_t height = o.height ? o.height : sd.vae_config.sample_size;
  TINV_CHECK(width % f == 0 && height % f == 0, "generate_prompts", "size ", width, "x", height,
             " is not a multiple of ", f);

  std::vector<torch::Tensor> states, pooled;
  for (const auto& p : prompts) {
    Conditioning c = encode_text(sd, extra, p);  // [1, 77, D] (+ SDXL's pooled [1, P])
    states.push_back(c.states);
    if (c.pooled.defined()) pooled.push_back(c.pooled);
  }
  Conditioning cond{torch::cat(states), pooled.empty() ? torch::Tensor() : torch::cat(pooled)};  // [B, ...]
  // The empty negative prompt, as `tinv generate` has it (SDXL: zeros when the model says so).
  Conditioning uncond =
      sd.is_xl() && sd.force_zeros_for_empty_prompt
          ? Conditioning{torch::zeros_like(cond.states[0]).unsqueeze(0), torch::zeros_like(cond.pooled[0]).unsqueeze(0)}
          : encode_text(sd, extra, "");
  const torch::Tensor time_ids = sd.is_xl() ? sdxl_time_ids(o, width, height) : torch::Tensor();

  auto sampler = make_sampler(o.sampler, sd.scheduler, o.eta);  // fresh: multistep state
  sampler->set_timesteps(o.steps);
  NoiseSource noise = per_item_noise(seeds);
  auto like = torch::empty({checked.batch, sd.unet_config.in_channels, height / f, width / f},
                           torch::TensorOptions().device(sd.device).dtype(torch::kFloat32));
  auto latents = noise(like) * sampler->init_noise_sigma();  // [B, C, h, w]
  latents = denoise(sd, *sampler, latents, cond, uncond, o.cfg, noise, nullptr, time_ids);
  return to_unit_images(decode_latents(sd, latents));  // [B, 3, H, W]
}

// ---- The evaluation ----
EvalReport run_world_eval(const EvalOptions& o) {
  o.validate();
  const bool need_sd = o.parts.vae || o.parts.fidelity;
  const bool need_blip = o.parts.captioner || o.parts.fidelity;
  TINV_CHECK(!need_sd || dir_exists(o.sd_dir.string()), "--model", "no such folder: '", o.sd_dir.string(), "'");
  TINV_CHECK(!need_blip || dir_exists(o.blip_dir.string()), "--captioner", "no such folder: '", o.blip_dir.string(),
             "'");
  const torch::Device device = resolve_device(o.device);

  EvalReport r;
  r.options = o;
  const auto start = std::chrono::steady_clock::now();
  std::optional<StableDiffusion> sd;
  std::optional<BlipCaptioner> cap;
  if (need_sd) {
    SdLoadOptions lo;
    lo.device = device;
    sd = load_stable_diffusion(o.sd_dir.string(), lo);
  }
  if (need_blip) {
    cap = BlipCaptioner::load(o.blip_dir.string(), device);
    TINV_CHECK(cap->has_tokenizer(), join_path(o.blip_dir.string(), "vocab.txt"),
               "missing: captions are needed as text to be parsed");
  }
  r.load_seconds = seconds_since(start);

  if (o.parts.vae) r.vae = eval_vae(*sd, o);
  if (o.parts.captioner) r.captioner = eval_captioner(*cap, o);
  if (o.parts.fidelity) r.fidelity = eval_fidelity(*sd, *cap, o);
  if (o.parts.judge) {
    const auto judge_start = std::chrono::steady_clock::now();
    r.judge = validate_judge(o.seed, o.judge_renders);
    r.judge_seconds = seconds_since(judge_start);
  }
  return r;
}

// ---- Reports ----
namespace {

std::string pct(double v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%5.1f%%", 100 * v);
  return buf;
}

// "PASS (8/8 attributes >= 90.0%)"
std::string verdict(const CaptionEval& e) {
  int ok = 0;
  for (int k = 0; k < kNumScoredAttributes; ++k) ok += e.score.accuracy(static_cast<Attribute>(k)) >= e.target;
  return str_cat(e.pass() ? "PASS" : "FAIL", " (", ok, "/", kNumScoredAttributes, " attributes >=", pct(e.target), ")");
}

void format_caption_eval(std::ostringstream& out, const std::string& title, const CaptionEval& e) {
  const AttributeScore& s = e.score;
  out << "\n"
      << title << "\n  " << s.scenes << " scenes, " << s.parsed << " captions parsed ("
      << pct(s.scenes ? double(s.parsed) / s.scenes : 0.0) << "), target " << pct(e.target) << " per attribute\n";
  char line[128];
  for (int k = 0; k < kNumAttributes; ++k) {
    const auto a = static_cast<Attribute>(k);
    const bool scored = k < kNumScoredAttributes;
    const bool ok = s.accuracy(a) >= e.target;
    std::snprintf(line, sizeof line, "  %-11s %s  %6lld/%-6lld %s\n", name(a), pct(s.accuracy(a)).c_str(),
                  static_cast<long long>(s.correct[k]), static_cast<long long>(s.total(a)),
                  scored ? (ok ? "PASS" : "FAIL") : "(no target)");
    out << line;
  }
  std::snprintf(line, sizeof line, "  %-11s %s  (of the 8 attributes, exact excluded)\n", "mean",
                pct(s.mean_accuracy()).c_str());
  out << line << "  verdict     " << verdict(e) << "\n";
  for (size_t i = 0; i < std::min<size_t>(e.failures.size(), 3); ++i) {
    const EvalFailure& f = e.failures[i];
    const std::string predicted = f.predicted.size() > 120 ? f.predicted.substr(0, 117) + "..." : f.predicted;
    out << "  e.g. #" << f.index << ": \"" << f.truth << "\"\n         -> \"" << predicted << "\""
        << (f.parsed ? "" : " (does not parse)") << "\n";
  }
  std::snprintf(line, sizeof line, "  time %s (%.2f images/s)\n", format_duration(e.seconds).c_str(),
                e.seconds > 0 ? s.scenes / e.seconds : 0.0);
  out << line;
}

nlohmann::ordered_json caption_eval_json(const CaptionEval& e) {
  const AttributeScore& s = e.score;
  nlohmann::ordered_json j = {{"scenes", s.scenes}, {"parsed", s.parsed}, {"target", e.target}};
  for (int k = 0; k < kNumAttributes; ++k) {
    const auto a = static_cast<Attribute>(k);
    nlohmann::ordered_json v = {{"correct", s.correct[k]}, {"total", s.total(a)}, {"accuracy", s.accuracy(a)}};
    if (k < kNumScoredAttributes) v["pass"] = s.accuracy(a) >= e.target;
    j["attributes"][name(a)] = v;
  }
  j["mean_accuracy"] = s.mean_accuracy();
  j["pass"] = e.pass();
  j["seconds"] = e.seconds;
  j["failures"] = nlohmann::ordered_json::array();
  for (const EvalFailure& f : e.failures)
    j["failures"].push_back({{"index", f.index}, {"truth", f.truth}, {"predicted", f.predicted}, {"parsed", f.parsed}});
  return j;
}

}  // namespace

uint64_t eval_scene_index(Split split, int64_t i) {
  return (split == Split::kTrain ? kUnseenIndex : 0) + static_cast<uint64_t>(i);
}

std::string format_report(const EvalReport& r) {
  const EvalOptions& o = r.options;
  std::ostringstream out;
  out << "world eval: seed " << o.seed << ", "
      << (o.split == Split::kHeldOut ? "held-out split (unseen object/background colour pairs)"
                                     : "unseen scenes of the training distribution")
      << "\n";
  if (o.parts.vae || o.parts.fidelity) out << "  model     " << o.sd_dir.string() << "\n";
  if (o.parts.captioner || o.parts.fidelity) out << "  captioner " << o.blip_dir.string() << "\n";
  out << "  loading   " << format_duration(r.load_seconds) << "\n";
  if (r.vae) {
    char line[160];
    std::snprintf(line, sizeof line, "\nvae: %lld scenes at %lldx%lld: PSNR %.2f dB (worst %.2f dB), time %s\n",
                  static_cast<long long>(r.vae->scenes), static_cast<long long>(r.vae->image_size),
                  static_cast<long long>(r.vae->image_size), r.vae->psnr_db, r.vae->min_psnr_db,
                  format_duration(r.vae->seconds).c_str());
    out << line;
  }
  if (r.captioner) format_caption_eval(out, "captioner: BLIP captions of rendered evaluation scenes", *r.captioner);
  if (r.fidelity)
    format_caption_eval(out,
                        str_cat("prompt fidelity: BLIP captions of images generated from the "
                                "scenes' captions (",
                                o.sampler, ", ", o.steps, " steps, cfg ", o.cfg, ", seed + i)"),
                        *r.fidelity);

  if (r.judge) out << format_judge_validation(*r.judge) << "  time " << format_duration(r.judge_seconds) << "\n";

  double total = r.load_seconds;
  out << "\nsummary:";
  if (r.vae) {
    char psnr_text[32];
    std::snprintf(psnr_text, sizeof psnr_text, " vae PSNR %.2f dB;", r.vae->psnr_db);
    out << psnr_text;
    total += r.vae->seconds;
  }
  if (r.captioner) {
    out << " captioner " << verdict(*r.captioner) << ";";
    total += r.captioner->seconds;
  }
  if (r.fidelity) {
    out << " fidelity " << verdict(*r.fidelity) << ";";
    total += r.fidelity->seconds;
  }
  if (r.judge) {
    out << " concept judge " << (r.judge->pass() ? "PASS" : "FAIL") << ";";
    total += r.judge_seconds;
  }
  out << " total time " << format_duration(total) << "\n";
  return out.str();
}

std::string report_json(const EvalReport& r) {
  const EvalOptions& o = r.options;
  nlohmann::ordered_json j;
  j["options"] = {{"model", o.sd_dir.string()},
                  {"captioner", o.blip_dir.string()},
                  {"seed", o.seed},
                  {"split", name(o.split)},
                  {"vae_scenes", o.vae_scenes},
                  {"caption_scenes", o.caption_scenes},
                  {"fidelity_prompts", o.fidelity_prompts},
                  {"judge_renders", o.judge_renders},
                  {"sampler", o.sampler},
                  {"steps", o.steps},
                  {"cfg", o.cfg},
                  {"batch", o.batch}};
  j["load_seconds"] = r.load_seconds;
  if (r.vae)
    j["vae"] = {{"scenes", r.vae->scenes},
                {"image_size", r.vae->image_size},
                {"psnr_db", r.vae->psnr_db},
                {"min_psnr_db", r.vae->min_psnr_db},
                {"seconds", r.vae->seconds}};
  if (r.captioner) j["captioner"] = caption_eval_json(*r.captioner);
  if (r.fidelity) j["fidelity"] = caption_eval_json(*r.fidelity);
  if (r.judge) {
    auto& jj = j["judge"];
    jj["renders"] = r.judge->renders;
    jj["pass"] = r.judge->pass();
    jj["seconds"] = r.judge_seconds;
    for (const auto& row : r.judge->rows)
      jj["concepts"].push_back({{"concept", row.concept_name},
                                {"real", row.real},
                                {"real_context", row.real_context},
                                {"best_other", row.other_max_name},
                                {"best_other_identity", row.other_max},
                                {"closest_captions", row.nearest}});
  }
  return j.dump(2) + "\n";
}

}  // namespace tinv::world
