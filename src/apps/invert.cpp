// `tinv invert` as a library call: run_inversion (see apps/invert.h and docs/INVERSION.md).
#include "apps/invert.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/progress.h"
#include "common/strings.h"
#include "inversion/image_input.h"
#include "inversion/method.h"
#include "inversion/templates.h"
#include "inversion/trainer.h"
#include "io/checkpoint.h"
#include "io/embeddings.h"
#include "io/image.h"
#include "io/image_write.h"
#include "io/plot.h"
#include "io/safetensors.h"
#include "models/stable_diffusion.h"
#include "pipelines/caption.h"
#include "pipelines/generate.h"
#include "text/extra_tokens.h"

namespace tinv {
namespace {

constexpr const char* kCheckpointKind = "tinv-invert-checkpoint-1";

void note(InvertResult& res, const std::string& msg) {
  std::fprintf(stderr, "tinv: note: %s\n", msg.c_str());
  res.notes.push_back(msg);
}

void validate(const InvertOptions& o) {
  TINV_CHECK(!o.model.empty(), "--model", "required");
  if (o.init == InitMode::kCaption)
    TINV_CHECK(!o.caption.empty() || !o.captioner.empty(), "--init caption", "needs --caption TEXT or --captioner DIR");
  if (o.init == InitMode::kClass) TINV_CHECK(!o.class_name.empty(), "--init class", "needs --class NAME");
  TINV_CHECK(valid_name(o.name), "--name", "'", o.name,
             "' must be 1-64 letters, digits, '_' or '-' (placeholders are <name_0>, <name_1>, ...)");
  TINV_CHECK(o.steps >= 1, "--steps", "must be >= 1");
  TINV_CHECK(o.batch >= 1, "--batch", "must be >= 1");
  TINV_CHECK(o.num_vectors >= 1 && o.num_vectors <= 64, "--num-vectors", "must be in [1, 64]");
  TINV_CHECK(o.save_every >= 0 && o.preview_every >= 0 && o.eval_every >= 0, "options",
             "--save-every, --preview-every and --eval-every must be >= 0");
  TINV_CHECK(o.eval_pairs >= 1, "--eval-pairs", "must be >= 1");
  TINV_CHECK(o.max_grad_norm >= 0, "--max-grad-norm", "must be >= 0");
  o.method.validate();
  TINV_CHECK(o.method.stop_patience == 0 || o.eval_every > 0, "--stop-patience",
             "early stopping watches the fixed-input loss: it needs --eval-every > 0");
}

// The initialisation text's token ids (no BOS/EOS) and the text itself.
// The caption of the first training image, by the BLIP captioner in `o.captioner` (the
// method starts from one image; with several, the first one is described).
std::string caption_with_blip(const InvertOptions& o, const std::vector<std::string>& files) {
  TINV_CHECK(!o.captioner.empty(), "--init caption", "needs --caption TEXT or --captioner DIR");
  auto captioner = BlipCaptioner::load(o.captioner.string(), resolve_device(o.device));
  TINV_CHECK(captioner.has_tokenizer(), o.captioner.string(),
             "the captioner has no vocab.txt, so its "
             "caption cannot be turned into text; add vocab.txt or pass --caption TEXT");
  CaptionResult r = captioner.caption(load_image(files.front()));
  TINV_CHECK(!r.text.empty(), o.captioner.string(), "the captioner produced an empty caption for ", files.front());
  std::fprintf(stderr, "caption: \"%s\" (%s)\n", r.text.c_str(), files.front().c_str());
  return r.text;
}

// A preview image of the embedding so far: the preview prompt through the model with the
// current rows as a trigger word, at the training resolution, always the same seed.
void write_preview(const StableDiffusion& sd, const PreviewRequest& req, int64_t res, uint64_t seed) {
  StableDiffusion view = sd;  // modules shared; its own copy of the base tokenizer(s)
  ExtraTokens extra;
  add_rows_trigger(view, extra, req.trigger, req.vectors);
  GenerateOptions g;
  g.prompt = req.prompt;
  g.steps = 20;
  g.seed = seed;
  g.width = g.height = (res / 8) * 8;
  g.progress = false;
  GenerateResult out = generate(view, extra, g);
  save_png(req.path, out.images[0], {{"parameters", out.parameters}});
}

std::pair<std::string, std::vector<int64_t>> init_tokens(const InvertOptions& o, const ClipTokenizer& tok,
                                                         const std::vector<std::string>& files) {
  if (o.init == InitMode::kToken) {
    auto ids = tok.tokenize(o.init_token);
    TINV_CHECK(ids.size() == 1, "--init-token", "'", o.init_token, "' is ", ids.size(),
               " tokens; it must be exactly one vocabulary token");
    return {o.init_token, std::vector<int64_t>(static_cast<size_t>(o.num_vectors), ids[0])};
  }
  std::string text = o.init == InitMode::kClass ? o.class_name : o.caption;
  if (o.init == InitMode::kCaption && text.empty()) {
    text = caption_with_blip(o, files);
  }
  auto ids = tok.tokenize(text);
  TINV_CHECK(!ids.empty(), o.init == InitMode::kClass ? "--class" : "--caption", "'", text,
             "' has no tokens after cleanup");
  return {text, ids};
}

// Longest template in tokens, with the placeholder sentence empty.
int64_t max_template_tokens(const ClipTokenizer& tok, const std::vector<std::string>& templates) {
  int64_t m = 0;
  for (const auto& t : templates)
    m = std::max<int64_t>(m, static_cast<int64_t>(tok.tokenize(fill_template(t, "")).size()));
  return m;
}

struct LatentCache {
  torch::Tensor latents;  // [M, C, h, w]
  uint64_t image_hash = 0;
};

LatentCache encode_images(StableDiffusion& sd, const std::vector<std::string>& files, int64_t res, bool flip,
                          InvertResult& result) {
  torch::NoGradGuard no_grad;
  LatentCache c;
  std::vector<torch::Tensor> out;
  for (const auto& f : files) {
    const Image im = load_image(f);  // alpha over white, as the captioner sees it
    c.image_hash = fnv1a_bytes(im.pixels.data(), im.pixels.size(), c.image_hash ^ 0x9e37u);
    std::string msg;
    auto x = prepare_training_image(im, res, &msg).unsqueeze(0);  // [1, 3, R, R]
    if (!msg.empty()) note(result, f + ": " + msg);
    if (flip) x = torch::cat({x, x.flip({3})});
    // Deterministic latents: the posterior mean, scaled (see docs/INVERSION.md).
    auto post = sd.vae->encode(x.to(sd.device, sd.vae_dtype));
    out.push_back(post.mean.to(torch::kFloat32) * sd.vae_config.scaling_factor);  // [1|2, C, h, w]
  }
  c.latents = torch::cat(out).contiguous();
  return c;
}

// The option values a checkpoint must share with the run resuming it.
std::map<std::string, std::string> run_identity(const InvertOptions& o, const StableDiffusion& sd, uint64_t image_hash,
                                                const std::string& init_text, int64_t n, int64_t res,
                                                const std::vector<std::string>& templates) {
  std::string joined;
  for (const auto& t : templates) joined += t + "\n";
  return {{"model", sd.fingerprint},
          {"images", hex64(image_hash)},
          {"init", to_string(o.init)},
          {"init_text", init_text},
          {"vectors", std::to_string(n)},
          {"name", o.name},
          {"steps", std::to_string(o.steps)},
          {"lr", format_number(o.lr)},
          {"lr_schedule", to_string(o.lr_schedule)},
          {"warmup_steps", std::to_string(o.warmup_steps)},
          {"batch", std::to_string(o.batch)},
          {"templates", hex64(fnv1a(joined))},
          {"resolution", std::to_string(res)},
          {"flip", o.flip ? "1" : "0"},
          {"seed", std::to_string(o.seed)},
          {"max_grad_norm", format_number(o.max_grad_norm)},
          {"dtype", dtype_name(o.dtype)},
          {"prediction_type", sd.scheduler.prediction_type}};
}

// run_identity plus the method options that differ from the defaults (a default run keeps the
// identity of checkpoints written before the method options existed).
std::map<std::string, std::string> full_identity(std::map<std::string, std::string> id, const MethodOptions& m) {
  for (const auto& [k, v] : m.non_default()) id[k] = v;
  return id;
}

std::string encode_identity(const std::map<std::string, std::string>& id) {
  std::string s;
  for (const auto& [k, v] : id) s += k + "=" + v + "\x1f";
  return s;
}

std::map<std::string, std::string> decode_identity(const std::string& s) {
  std::map<std::string, std::string> id;
  std::istringstream in(s);
  std::string item;
  while (std::getline(in, item, '\x1f')) {
    auto eq = item.find('=');
    if (eq != std::string::npos) id[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return id;
}

struct Log {
  std::vector<double> loss, lr, fixed;  // one row per update; fixed NaN where not evaluated
  double final_fixed = NAN;
  bool early_stop = false;  // --stop-patience given: the CSV has a `stop` column
  int64_t stopped_at = -1;  // the step the early stop fired at (-1: ran to the end)
};

torch::Tensor vec_tensor(const std::vector<double>& v) {
  return torch::tensor(v.empty() ? std::vector<double>{} : v, torch::kFloat64);
}

std::vector<double> tensor_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

void save_invert_checkpoint(const std::string& path, const InversionTrainer& tr, const Log& log,
                            const std::string& identity) {
  const auto& opt = tr.optimizer();
  save_checkpoint(path, tr.steps_done(),
                  {{"embeddings", tr.embeddings()},
                   {"exp_avg", opt.exp_avg()},
                   {"exp_avg_sq", opt.exp_avg_sq()},
                   {"log_loss", vec_tensor(log.loss)},
                   {"log_lr", vec_tensor(log.lr)},
                   {"log_fixed", vec_tensor(log.fixed)}},
                  {{"kind", kCheckpointKind},
                   {"options", identity},
                   {"options_hash", hex64(fnv1a(identity))},
                   {"rng", "per-step generators seeded from (seed, step); no state to carry"}});
}

// "model 'a' -> 'b', steps '10' -> '20'": the options that differ between two identities.
std::string identity_diff(const std::string& saved, const std::string& current) {
  auto ours = decode_identity(current), theirs = decode_identity(saved);
  std::string diff;
  for (const auto& [k, v] : theirs)  // keys of non-default method options may be on one side only
    if (!ours.count(k)) ours[k] = "";
  for (const auto& [k, v] : ours)
    if (theirs[k] != v) diff += str_cat(diff.empty() ? "" : ", ", k, " '", theirs[k], "' -> '", v, "'");
  return diff;
}

void load_invert_checkpoint(const std::string& path, InversionTrainer& tr, Log& log, const std::string& identity) {
  TINV_CHECK(file_exists(path), "--resume", "no checkpoint at '", path,
             "' (run without --resume, or with the same --out as the interrupted run)");
  Checkpoint ck = open_checkpoint(path, "not a tinv invert checkpoint");
  auto md = ck.metadata();
  TINV_CHECK(md["kind"] == kCheckpointKind, path, "not a tinv invert checkpoint");
  if (md["options"] != identity)
    throw Error(path, "checkpoint was written with different options (" + identity_diff(md["options"], identity) +
                          "); resume with the same options or start afresh without --resume");
  const auto& f = ck.file;
  tr.restore(f.get("embeddings"), f.get("exp_avg"), f.get("exp_avg_sq"), ck.step);
  log.loss = tensor_vec(f.get("log_loss", torch::kFloat64));
  log.lr = tensor_vec(f.get("log_lr", torch::kFloat64));
  log.fixed = tensor_vec(f.get("log_fixed", torch::kFloat64));
  TINV_CHECK(static_cast<int64_t>(log.loss.size()) == ck.step, path, "log has ", log.loss.size(), " rows for step ",
             ck.step);
}

// With early stopping a `stop` column is added: empty except on the last row, which says
// `early` (the rule stopped the run at that step) or `end` (it ran every step).
void write_log_csv(const std::string& path, const Log& log) {
  const std::string extra = log.early_stop ? "," : "";
  std::string s = "step,loss,lr,fixed_loss" + std::string(log.early_stop ? ",stop" : "") + "\n";
  auto cell = [](double v) { return std::isfinite(v) ? format_number(v) : std::string(); };
  for (size_t k = 0; k < log.loss.size(); ++k)
    s += str_cat(k, ",", cell(log.loss[k]), ",", cell(log.lr[k]), ",", cell(log.fixed[k]), extra, "\n");
  const std::string stop = !log.early_stop ? "" : log.stopped_at >= 0 ? ",early" : ",end";
  if (std::isfinite(log.final_fixed) || log.early_stop)
    s += str_cat(log.loss.size(), ",,,", cell(log.final_fixed), stop, "\n");
  write_file_atomically(path, s.data(), s.size());
}

// Writes the loss plot (PNG) and returns the same plot as SVG (InvertResult::loss_svg).
std::string write_plot(const std::string& path, const Log& log) {
  PlotSeries raw{"loss (random t, noise)", {}, {}, {120, 160, 220}};
  PlotSeries fixed{"fixed-input loss", {}, {}, {220, 60, 30}};
  for (size_t k = 0; k < log.loss.size(); ++k) {
    raw.x.push_back(static_cast<double>(k)), raw.y.push_back(log.loss[k]);
    if (std::isfinite(log.fixed[k])) fixed.x.push_back(static_cast<double>(k)), fixed.y.push_back(log.fixed[k]);
  }
  if (std::isfinite(log.final_fixed))
    fixed.x.push_back(static_cast<double>(log.loss.size())), fixed.y.push_back(log.final_fixed);
  const LinePlot plot{{raw, fixed}, {}, "step", "loss", "", 800, 480};
  save_line_plot(path, plot);
  return render_line_plot_svg(plot);
}

}  // namespace

std::string to_string(InitMode mode) {
  switch (mode) {
    case InitMode::kCaption: return "caption";
    case InitMode::kClass: return "class";
    case InitMode::kToken: return "token";
  }
  throw Error("--init", str_cat("unknown mode ", static_cast<int>(mode)));
}

InitMode parse_init_mode(const std::string& name) {
  for (InitMode m : {InitMode::kCaption, InitMode::kClass, InitMode::kToken})
    if (name == to_string(m)) return m;
  throw Error("--init", "unknown mode '" + name + "' (caption, class or token)");
}

std::string to_string(OutputFormat format) {
  switch (format) {
    case OutputFormat::kDiffusers: return "diffusers";
    case OutputFormat::kA1111: return "a1111";
    case OutputFormat::kKohya: return "kohya";
    case OutputFormat::kAll: return "all";
  }
  throw Error("--format", str_cat("unknown format ", static_cast<int>(format)));
}

OutputFormat parse_output_format(const std::string& name) {
  for (OutputFormat f : {OutputFormat::kDiffusers, OutputFormat::kA1111, OutputFormat::kKohya, OutputFormat::kAll})
    if (name == to_string(f)) return f;
  throw Error("--format", "unknown format '" + name + "' (diffusers, a1111, kohya or all)");
}

InvertPaths invert_paths(const std::string& out, OutputFormat format, bool xl) {
  const std::string stem = strip_extension(out), base = file_stem(stem.empty() ? out : stem);
  InvertPaths p;
  if (xl) {  // one {clip_l, clip_g} file for A1111/ComfyUI/kohya, the diffusers pair beside it
    p.sdxl = stem + ".safetensors";
    if (format == OutputFormat::kDiffusers || format == OutputFormat::kAll)
      p.diffusers_pair = stem + ".diffusers/learned_embeds.safetensors";
  } else if (format == OutputFormat::kAll) {
    p.diffusers = stem + ".safetensors";
    p.a1111 = stem + ".pt";
    p.kohya = stem + ".kohya/" + base + ".safetensors";  // own folder: trigger = file stem
  } else if (format == OutputFormat::kDiffusers) {
    p.diffusers = out;
  } else if (format == OutputFormat::kA1111) {
    p.a1111 = out;
  } else {
    p.kohya = out;
  }
  p.checkpoint = stem + ".checkpoint.safetensors";
  p.log_csv = stem + ".log.csv";
  p.plot_png = stem + ".loss.png";
  p.previews_dir = stem + ".previews";
  return p;
}

namespace {

// What a run derives from its options before training: the model, the paths, the images'
// latents and the placeholder rows' start.
struct RunSetup {
  StableDiffusion sd;
  bool xl = false;
  InvertPaths paths;
  std::string trigger;  // "<name>": the diffusers file's key
  std::vector<std::string> files, templates, placeholders;
  std::string init_text;          // the initialisation text (after trimming)
  std::vector<int64_t> init_ids;  // its token ids: one row each
  torch::Tensor init_rows;        // [n, d] (SDXL [n, h1 + h2])
  int64_t res = 0;                // training resolution
  LatentCache cache;
};

StableDiffusion load_model(const InvertOptions& o) {
  SdLoadOptions lo;
  lo.device = resolve_device(o.device);
  check_dtype(o.dtype, lo.device);
  lo.dtype = o.dtype;
  StableDiffusion sd = load_stable_diffusion(o.model.string(), lo);
  TINV_CHECK(sd.tokenizer.has_value(), o.model.string(), "the model has no tokenizer");
  TINV_CHECK(!sd.is_xl() || sd.tokenizer_2.has_value(), o.model.string(), "the SDXL model has no tokenizer_2");
  o.method.validate_timesteps(NoiseSchedule(sd.scheduler).num_train_timesteps());
  return sd;
}

// Trigger words users type must not be vocabulary words: the diffusers file's "<name>", and
// the file stem A1111/kohya (and SDXL clip_l/clip_g readers) take as the trigger.
void check_triggers(const RunSetup& s) {
  const ClipTokenizer& tok = *s.sd.tokenizer;
  const InvertPaths& p = s.paths;
  const std::string stem_trigger = file_stem(s.xl ? p.sdxl : p.a1111.empty() ? p.kohya : p.a1111);
  if (tok.is_vocab_word(s.trigger))
    throw Error("--name", str_cat("trigger '", s.trigger, "' is a vocabulary token; choose another name"));
  if (!stem_trigger.empty() && tok.is_vocab_word(stem_trigger))
    throw Error("--out", str_cat("A1111/kohya files take their trigger from the file name, and '", stem_trigger,
                                 "' is a vocabulary token of the model: it would collide "
                                 "with it; choose another --name or --out (e.g. '",
                                 stem_trigger, "-ti')"));
}

// The initialisation tokens, trimmed so that a template and the placeholders fit the text
// encoder's length, and one placeholder per token.
void choose_init_tokens(const InvertOptions& o, RunSetup& s, InvertResult& result) {
  const ClipTokenizer& tok = *s.sd.tokenizer;
  std::tie(s.init_text, s.init_ids) = init_tokens(o, tok, s.files);
  const int64_t budget = tok.max_length() - 2 - max_template_tokens(tok, s.templates);
  TINV_CHECK(budget >= 1, "--templates", "a template alone fills the ", tok.max_length(), " tokens");
  if (static_cast<int64_t>(s.init_ids.size()) > budget) {
    note(result, str_cat("warning: the ", to_string(o.init), " has ", s.init_ids.size(),
                         " tokens; template + "
                         "placeholders must fit in ",
                         tok.max_length(), " tokens, so it is trimmed to ", budget));
    s.init_ids.resize(static_cast<size_t>(budget));
    if (o.init != InitMode::kToken) s.init_text = tok.decode(s.init_ids);
  }
  for (size_t i = 0; i < s.init_ids.size(); ++i) s.placeholders.push_back(str_cat("<", o.name, "_", i, ">"));
}

// Validates the options, loads the model, checks the images and names, picks the start.
RunSetup set_up(const InvertOptions& o, InvertResult& result) {
  validate(o);
  RunSetup s;
  s.trigger = "<" + o.name + ">";
  s.files = collect_image_files(std::vector<std::string>(o.images.begin(), o.images.end()));
  for (const auto& f : s.files) load_image(f);  // every image decodes before the model loads
  s.sd = load_model(o);
  s.xl = s.sd.is_xl();
  const std::string out =
      !o.out.empty() ? o.out.string() : o.name + (o.format == OutputFormat::kA1111 && !s.xl ? ".pt" : ".safetensors");
  s.paths = invert_paths(out, o.format, s.xl);
  check_triggers(s);
  s.templates = load_templates(o.templates);
  choose_init_tokens(o, s, result);
  result.caption = s.init_text;
  result.xl = s.xl;
  // [n, d]: token embeddings, or the text encoder's outputs (--init-space output); SDXL: each
  // encoder's own start of the same tokens, [n, h1 + h2]
  s.init_rows = model_start_rows(s.sd, s.init_ids, o.method.init_space);
  s.res = o.resolution > 0 ? o.resolution : s.sd.vae_config.sample_size;
  s.cache = encode_images(s.sd, s.files, s.res, o.flip, result);
  // Training needs only the cached latents: without previews the VAE goes (0.33 GB of fp32
  // weights at SD size), lowering the step's peak.
  if (o.preview_every == 0) s.sd.vae = AutoencoderKL(nullptr);
  return s;
}

std::unique_ptr<InversionTrainer> trainer_for(const InvertOptions& o, RunSetup& s) {
  TrainerOptions topt;
  topt.adam.lr = o.lr;
  topt.schedule = LrSchedule::make(o.lr_schedule, o.lr, o.steps, o.warmup_steps);
  topt.max_grad_norm = o.max_grad_norm;
  return make_trainer(s.sd, s.placeholders, s.init_rows, s.templates, o.method, topt, s.res);
}

// The metadata of the embedding files (the step is added when they are written).
std::map<std::string, std::string> embedding_metadata(const InvertOptions& o, const RunSetup& s,
                                                      const InversionTrainer& trainer) {
  return {{"caption", s.init_text},
          {"init", to_string(o.init)},
          {"name", o.name},
          {"placeholders", trainer.placeholder_sentence()},
          {"model", o.model.string()},
          {"model_fingerprint", s.sd.fingerprint},
          {"lr", format_number(o.lr)},
          {"seed", std::to_string(o.seed)},
          {"resolution", std::to_string(s.res)},
          {"images", std::to_string(s.files.size())},
          {"tool", "tinv invert 0.1.0"}};
}

void add_file(InvertResult& result, const std::string& path) {
  if (std::find(result.files.begin(), result.files.end(), path) == result.files.end()) result.files.push_back(path);
}

// Writes the embedding files of `rows` in every format the paths name.
void write_embeddings(const InvertOptions& o, const RunSetup& s, const torch::Tensor& rows,
                      std::map<std::string, std::string> md, int64_t steps_done, InvertResult& result) {
  const InvertPaths& paths = s.paths;
  md["steps"] = std::to_string(steps_done);
  if (s.xl) {  // rows [:, :h1] are text_encoder's (clip_l), [:, h1:] text_encoder_2's (clip_g)
    const int64_t h1 = s.sd.text_config.hidden_size;
    auto l = rows.narrow(1, 0, h1), g = rows.narrow(1, h1, rows.size(1) - h1);
    save_sdxl_embedding(paths.sdxl, l, g, md), add_file(result, paths.sdxl);
    if (!paths.diffusers_pair.empty()) {
      make_dirs(parent_dir(paths.diffusers_pair));
      save_diffusers_pair(paths.diffusers_pair, s.trigger, l, g, md);
      add_file(result, paths.diffusers_pair), add_file(result, pair_path(paths.diffusers_pair));
    }
    return;
  }
  if (!paths.diffusers.empty()) {
    save_embedding(paths.diffusers, EmbeddingFormat::Diffusers, s.trigger, rows, md);
    add_file(result, paths.diffusers);
  }
  if (!paths.a1111.empty()) {
    save_embedding(paths.a1111, EmbeddingFormat::A1111, file_stem(paths.a1111), rows,
                   {{"step", std::to_string(steps_done)},
                    {"sd_checkpoint", s.sd.fingerprint},
                    {"sd_checkpoint_name", file_stem(o.model.string())},
                    {"caption", s.init_text}});
    add_file(result, paths.a1111);
  }
  if (!paths.kohya.empty()) {
    make_dirs(parent_dir(paths.kohya));
    save_embedding(paths.kohya, EmbeddingFormat::Kohya, file_stem(paths.kohya), rows, md);
    add_file(result, paths.kohya);
  }
}

// The training loop's bookkeeping: the log, the fixed-input evaluations, the early-stop rule,
// checkpoints and previews.
struct TrainLoop {
  const InvertOptions& o;
  const RunSetup& s;
  InversionTrainer& trainer;
  const std::string& identity;
  Log log{};
  StepInputs fixed{};
  EarlyStop early{o.method.stop_delta, o.method.stop_patience};
  std::vector<int64_t> eval_steps{};  // the step of each evaluation fed to `early`
  double pending = NAN;               // fixed-input loss of the current rows (NaN: not due)
  bool stopped = false;

  bool eval_due(int64_t done) const { return o.eval_every > 0 && done % o.eval_every == 0; }
  // The rule sees every fixed-input evaluation in order; true once it stops the run.
  bool feed(int64_t done, double value) {
    if (!std::isfinite(value)) return false;
    eval_steps.push_back(done);
    return early.update(value);
  }
  // A resumed run replays the logged evaluations.
  void replay() {
    for (size_t k = 0; k < log.fixed.size(); ++k) stopped = feed(static_cast<int64_t>(k), log.fixed[k]) || stopped;
  }
  void preview(int64_t done) const {
    make_dirs(s.paths.previews_dir);
    PreviewRequest req{done, s.trigger, trainer.embeddings(), o.preview_prompt,
                       join_path(s.paths.previews_dir, str_cat("step", done, ".png"))};
    auto p = req.prompt.find("{}");
    if (p != std::string::npos) req.prompt = req.prompt.substr(0, p) + s.trigger + req.prompt.substr(p + 2);
    write_preview(s.sd, req, s.res, o.seed);
  }
  // After update k: log it, evaluate, checkpoint and preview when due.
  void record(int64_t k, const StepResult& r) {
    log.loss.push_back(r.loss);
    log.lr.push_back(r.lr);
    log.fixed.push_back(pending);
    const int64_t done = k + 1;
    pending = eval_due(done) ? trainer.loss(fixed) : NAN;
    stopped = feed(done, pending);
    if (o.save_every > 0 && done % o.save_every == 0 && done < o.steps)
      save_invert_checkpoint(s.paths.checkpoint, trainer, log, identity);
    if (o.preview_every > 0 && done % o.preview_every == 0) preview(done);
  }
  // Runs the updates up to --steps (or the early stop); false when the loss became non-finite.
  bool run(StepSource& source) {
    const char* delay_env = std::getenv("TINV_TEST_STEP_DELAY_MS");  // test hook: slow steps down
    const int delay_ms = delay_env ? std::atoi(delay_env) : 0;
    Progress bar("invert", o.steps, o.progress);
    bar.start_at(trainer.steps_done());
    // fixed.at(row k) is measured on the same rows as the loss of row k (before update k).
    pending = eval_due(trainer.steps_done()) ? trainer.loss(fixed) : NAN;
    if (!stopped) stopped = feed(trainer.steps_done(), pending);
    auto on_step = [&](int64_t k, const StepResult& r) {
      if (!r.finite) return;
      record(k, r);
      bar.update(k + 1, str_cat("loss=", format_number(r.loss).substr(0, 7)));
      if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    };
    const bool finite = stopped || run_steps(trainer, source, o.steps, on_step, [&] { return stopped; });
    bar.finish();
    return finite;
  }
};

// After the loop: the final evaluation, the early-stop note and every output file.
void finish_run(const InvertOptions& o, const RunSetup& s, TrainLoop& loop, std::map<std::string, std::string> meta,
                InvertResult& result) {
  InversionTrainer& trainer = loop.trainer;
  Log& log = loop.log;
  if (o.eval_every > 0) log.final_fixed = std::isfinite(loop.pending) ? loop.pending : trainer.loss(loop.fixed);
  if (loop.stopped) {
    log.stopped_at = trainer.steps_done();
    result.stopped_at = log.stopped_at;
    meta["stopped_at"] = std::to_string(log.stopped_at);
    note(result, str_cat("early stop at step ", log.stopped_at, " of ", o.steps,
                         ": the fixed-input loss has not "
                         "improved by ",
                         format_number(100 * o.method.stop_delta), "% in ", o.method.stop_patience,
                         " evaluations (best ", format_number(loop.early.best()), " at step ",
                         loop.eval_steps[static_cast<size_t>(loop.early.best_evaluation())], ")"));
  }
  for (const auto& [k, v] : o.method.non_default()) meta[k] = v;
  write_embeddings(o, s, trainer.embeddings(), meta, trainer.steps_done(), result);
  save_invert_checkpoint(s.paths.checkpoint, trainer, log, loop.identity);
  write_log_csv(s.paths.log_csv, log);
  result.loss_svg = write_plot(s.paths.plot_png, log);
  result.files.push_back(s.paths.checkpoint);
  result.files.push_back(s.paths.log_csv);
  result.files.push_back(s.paths.plot_png);
  result.embeddings = trainer.embeddings();
  result.steps_done = trainer.steps_done();
}

}  // namespace

InvertResult run_inversion(const InvertOptions& o) {
  InvertResult result;
  RunSetup s = set_up(o, result);
  std::unique_ptr<InversionTrainer> trainer = trainer_for(o, s);
  const int64_t n = static_cast<int64_t>(s.init_ids.size());
  const std::string identity = encode_identity(
      full_identity(run_identity(o, s.sd, s.cache.image_hash, s.init_text, n, s.res, s.templates), o.method));
  TrainLoop loop{o, s, *trainer, identity};
  loop.log.early_stop = o.method.stop_patience > 0;
  if (o.resume) {
    load_invert_checkpoint(s.paths.checkpoint, *trainer, loop.log, identity);
    note(result, str_cat("resuming from ", s.paths.checkpoint, " at step ", trainer->steps_done()));
  }
  const int64_t num_t = NoiseSchedule(s.sd.scheduler).num_train_timesteps();
  RandomStepSource source(s.cache.latents, static_cast<int64_t>(s.templates.size()), o.batch, num_t, o.seed,
                          o.method.t_min, o.method.resolved_t_max(num_t));
  loop.fixed = fixed_eval_inputs(s.cache.latents, o.eval_pairs, num_t, o.seed);
  loop.replay();
  const auto meta = embedding_metadata(o, s, *trainer);
  if (!loop.run(source))
    throw Error("invert", str_cat("the loss became NaN/inf at step ", trainer->steps_done(),
                                  " (learning rate too high?); stopped. The last good checkpoint (",
                                  file_exists(s.paths.checkpoint) ? s.paths.checkpoint : "none written yet",
                                  ") and earlier outputs are kept"));
  finish_run(o, s, loop, meta, result);
  return result;
}

}  // namespace tinv
