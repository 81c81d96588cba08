// `tinv demo` as a library call (see demo.h): caption -> run_inversion -> generate -> HTML.
#include "apps/demo.h"

#include <torch/torch.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "apps/invert.h"
#include "apps/world_eval.h"
#include "common/default_models.h"
#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/strings.h"
#include "inversion/trainer.h"
#include "io/html_report.h"
#include "io/image.h"
#include "io/image_tensor.h"
#include "io/image_write.h"
#include "models/stable_diffusion.h"
#include "pipelines/caption.h"
#include "pipelines/generate.h"
#include "world/judge.h"

namespace tinv {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr int kStages = 4;
constexpr int kCaptionNewTokens = 40;  // world captions are about 20 tokens

void stage(int k, const std::string& msg) { std::fprintf(stderr, "demo [%d/%d] %s\n", k, kStages, msg.c_str()); }

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

// A placeholder name from a file stem: letters, digits, '_' and '-' kept, others -> '_'.
std::string name_from_stem(const std::string& path) {
  std::string s = file_stem(path).substr(0, 64);
  for (char& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) c = '_';
  return s.empty() ? "concept" : s;
}

void validate(const DemoOptions& o) {
  TINV_CHECK(o.concept_name.empty() || o.image.empty(), "--image", "give --concept or --image, not both");
  TINV_CHECK(o.steps >= 1 && o.steps <= 100000, "--steps", "must be in [1, 100000], got ", o.steps);
  TINV_CHECK(o.samples >= 1 && o.samples <= 16, "--samples", "must be in [1, 16], got ", o.samples);
  TINV_CHECK(o.sample_steps >= 1 && o.sample_steps <= 1000, "--sample-steps", "must be in [1, 1000], got ",
             o.sample_steps);
  TINV_CHECK(o.beams >= 1 && o.beams <= 16, "--beams", "must be in [1, 16], got ", o.beams);
  TINV_CHECK(std::isfinite(o.lr) && o.lr > 0, "--lr", "must be a positive number");
  TINV_CHECK(o.name.empty() || valid_name(o.name), "--name", "'", o.name, "' must be 1-64 letters, digits, '_' or '-'");
  TINV_CHECK(!o.out.empty(), "--out", "empty output folder");
  GenerateOptions g;  // sampler and cfg, checked as `tinv generate` checks them
  g.sampler = o.sampler;
  g.cfg = o.cfg;
  g.steps = o.sample_steps;
  validate(g);
}

const world::Concept* world_concept(const std::string& name) {
  for (const auto& c : world::concepts())
    if (c.name == name) return &c;
  return nullptr;
}

struct Input {
  std::string path, name;
  const world::Concept* concept_ptr = nullptr;  // a bundled world concept
};

std::vector<std::string> bundled_names(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".png") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

Input resolve_input(const DemoOptions& o) {
  Input in;
  if (!o.image.empty()) {
    in.path = o.image.string();
    in.name = o.name.empty() ? name_from_stem(o.image.string()) : o.name;
    return in;
  }
  const std::string dir = default_model_dir("concepts");
  const auto names = bundled_names(dir);
  std::string pick = o.concept_name;
  if (pick.empty()) {  // the first world concept with a bundled image, else the first image
    for (const auto& c : world::concepts())
      if (file_exists(join_path(dir, c.name + ".png"))) {
        pick = c.name;
        break;
      }
    if (pick.empty() && !names.empty()) pick = names.front();
    TINV_CHECK(!pick.empty(), dir, "no concept images (<name>.png) in the folder; use --image FILE");
  }
  in.path = join_path(dir, pick + ".png");
  if (!file_exists(in.path)) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    throw Error("--concept", str_cat("unknown concept '", pick, "' (bundled in ", dir, ": ",
                                     known.empty() ? "none" : known, "); or use --image FILE"));
  }
  in.name = o.name.empty() ? pick : o.name;
  TINV_CHECK(valid_name(in.name), "--name", "'", in.name, "' must be 1-64 letters, digits, '_' or '-'");
  in.concept_ptr = world_concept(pick);
  return in;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes, std::vector<std::string>& files) {
  write_file_atomically(path, bytes.data(), bytes.size());
  files.push_back(path);
}

std::string fill(const std::string& tmpl, const std::string& word) {
  auto p = tmpl.find("{}");
  return p == std::string::npos ? tmpl : tmpl.substr(0, p) + word + tmpl.substr(p + 2);
}

// The initialisation: words, and the training templates (the object set or a file we write).
struct Init {
  DemoInit mode = DemoInit::kCaption;  // kCaption or kObject
  std::string text;
  TemplateSource templates = BuiltinTemplates::kObject;
  std::string world_template;          // object mode: the input's own caption with "{}"
  std::vector<world::Colour> colours;  // colours of the object words (backgrounds avoid them)
};

Init choose_init(const DemoOptions& o, const std::string& caption) {
  Init init;
  auto split = o.init_from == DemoInit::kCaption ? std::nullopt : split_world_caption(caption);
  TINV_CHECK(o.init_from != DemoInit::kObject || split, "--init-from object", "the caption '", caption,
             "' is not a one-object caption of the world grammar; "
             "use --init-from caption");
  if (!split) {
    init.mode = DemoInit::kCaption;
    init.text = caption;
    init.templates = BuiltinTemplates::kObject;
    return init;
  }
  init.mode = DemoInit::kObject;
  init.text = split->first;
  init.world_template = split->second;
  init.templates = fs::path(join_path(o.out.string(), "templates.txt"));
  if (auto scene = world::parse_caption(caption)) {
    init.colours = {scene->object.colour};
    if (scene->object.mark != world::Mark::kNone) init.colours.push_back(scene->object.mark_colour);
  }
  return init;
}

void write_templates(const Init& init, std::vector<std::string>& files) {
  if (init.mode != DemoInit::kObject) return;
  const std::string body =
      "# tinv demo: the input's caption with {} for its object words\n" + init.world_template + "\n";
  write_bytes(to_string(init.templates), std::vector<uint8_t>(body.begin(), body.end()), files);
}

// Throws unless `dir` exists or can be created under its nearest existing, writable ancestor.
std::string caption_image(const DemoOptions& o, const std::string& captioner, const Image& image) {
  auto cap = BlipCaptioner::load(captioner, resolve_device(o.device));
  TINV_CHECK(cap.has_tokenizer(), captioner,
             "the captioner has no vocab.txt, so its caption "
             "cannot be turned into text; add vocab.txt or pass --caption TEXT");
  CaptionOptions co;
  co.beams = o.beams;
  co.max_new_tokens = kCaptionNewTokens;
  CaptionResult r = cap.caption(image, co);
  TINV_CHECK(!r.text.empty(), captioner, "the captioner produced an empty caption");
  return r.text;
}

struct Generated {
  std::string tmpl;
  std::vector<std::vector<uint8_t>> before, after;  // PNG bytes, one per sample
  std::string before_prompt, after_prompt;
  std::vector<world::JudgeScore> before_scores, after_scores;  // bundled world concepts only
};

// The context a world-grammar template asks for (std::nullopt for other templates).
std::optional<world::JudgeContext> template_context(const std::string& tmpl) {
  auto p = tmpl.find("{}");
  if (p == std::string::npos) return std::nullopt;
  auto scene = world::parse_caption(tmpl.substr(0, p) + "red circle" + tmpl.substr(p + 2));
  if (!scene) return std::nullopt;
  return world::JudgeContext{scene->object.size, scene->object.position, scene->background, scene->background_pattern};
}

world::JudgeScore judge_image(const torch::Tensor& chw, const world::Concept& c, const world::JudgeContext& ctx) {
  return world::judge_concept(unit_tensor_to_image(chw), c, ctx);
}

// What the stages share.
struct Run {
  Run(const DemoOptions& options, Input input_spec) : o(options), in(std::move(input_spec)) {}
  const DemoOptions& o;
  Input in;
  Image input;
  std::vector<uint8_t> input_png;  // as shown in the report (at most 512 px)
  std::string model, captioner;    // resolved; captioner empty with --caption
  Init init;
  InvertOptions inv;
  InvertPaths paths;
  std::string embedding;  // the learned embedding file generate loads (trigger <name>)
  std::string loss_svg;   // the loss plot for the report (invert's, as SVG)
  std::vector<Generated> gen;
  int64_t image_size = 0;  // generated images' width
  std::string device;      // as resolved, for the report
  DemoResult res;
};

std::string demo_command(const DemoOptions& o, const Input& in, const std::string& model,
                         const std::string& captioner) {
  std::string c = o.program + " demo --model " + shell_quote(model);
  if (o.caption.empty())
    c += " --captioner " + shell_quote(captioner);
  else
    c += " --caption " + shell_quote(o.caption);
  if (!o.image.empty())
    c += " --image " + shell_quote(o.image.string());
  else
    c += " --concept " + shell_quote(file_stem(in.path));
  if (!o.name.empty()) c += " --name " + shell_quote(o.name);
  c += str_cat(" --init-from ", to_string(o.init_from), " --steps ", o.steps, " --lr ", format_number(o.lr), " --seed ",
               o.seed, " --samples ", o.samples, " --sample-steps ", o.sample_steps, " --sampler ", o.sampler,
               " --cfg ", format_number(o.cfg), " --beams ", o.beams);
  if (o.device) c += " --device " + shell_quote(device_name(o.device));
  return c + " --out " + shell_quote(o.out.string());
}

std::vector<uint8_t> display_png(const Image& im) {
  constexpr int kMax = 512;
  if (im.width <= kMax && im.height <= kMax) return encode_png(im);
  const double s = static_cast<double>(kMax) / std::max(im.width, im.height);
  Image small =
      resize_pil(im, std::max(1, static_cast<int>(im.width * s)), std::max(1, static_cast<int>(im.height * s)));
  return encode_png(small);
}

}  // namespace

std::optional<std::pair<std::string, std::string>> split_world_caption(const std::string& caption) {
  auto scene = world::parse_caption(caption);
  if (!scene) return std::nullopt;
  const world::ObjectSpec& ob = scene->object;
  const std::string words = world::object_words(ob);
  world::ConceptSample s;  // its caption() is the grammar's sentence around one word
  s.size = ob.size;
  s.position = ob.position;
  s.background = scene->background;
  s.background_pattern = scene->background_pattern;
  return std::make_pair(words, s.caption("{}"));
}

std::vector<std::string> demo_prompts(const std::vector<world::Colour>& avoid) {
  using world::Colour;
  using world::Pattern;
  using world::Position;
  using world::Size;
  struct Setting {
    Size size;
    Position position;
    Pattern pattern;
  };
  const Setting settings[] = {
      {Size::kLarge, Position::kCenter, Pattern::kPlain},  {Size::kSmall, Position::kRight, Pattern::kStriped},
      {Size::kLarge, Position::kTop, Pattern::kCheckered}, {Size::kLarge, Position::kBottom, Pattern::kPlain},
      {Size::kSmall, Position::kLeft, Pattern::kPlain},    {Size::kLarge, Position::kLeft, Pattern::kStriped},
  };
  // Background colours by preference; prompt k starts at entry k and skips avoided colours.
  const Colour pref[] = {Colour::kWhite, Colour::kBlue, Colour::kYellow, Colour::kBlack,
                         Colour::kGreen, Colour::kCyan, Colour::kPurple, Colour::kRed};
  constexpr size_t kPref = sizeof pref / sizeof pref[0];
  std::vector<std::string> out;
  size_t k = 0;
  for (const Setting& st : settings) {
    world::ConceptSample s;
    s.size = st.size;
    s.position = st.position;
    s.background_pattern = st.pattern;
    s.background = pref[k % kPref];
    for (size_t j = 0; j < kPref; ++j) {
      const Colour c = pref[(k + j) % kPref];
      if (std::find(avoid.begin(), avoid.end(), c) == avoid.end()) {
        s.background = c;
        break;
      }
    }
    out.push_back(s.caption("{}"));
    ++k;
  }
  return out;
}

world::ConceptSample bundled_concept_sample(const world::Concept& c, uint64_t* index) {
  const uint64_t k = world::portrait_index(0, c);
  if (index) *index = k;
  return world::concept_at(0, c, k);
}

std::vector<std::string> write_bundled_concepts(const std::string& dir) {
  make_dirs(dir, "--write-concepts");
  std::vector<std::string> files;
  for (const auto& c : world::concepts()) {
    uint64_t k = 0;
    world::ConceptSample s = bundled_concept_sample(c, &k);
    const std::string path = join_path(dir, c.name + ".png");
    save_png(path, s.image,
             {{"concept", c.name},
              {"description", c.description},
              {"caption", s.caption(c.class_word)},
              {"template", s.caption("{}")},
              {"source", str_cat("tinv::world::concept_at(seed 0, ", c.name, ", index ", k, ")")}});
    files.push_back(path);
  }
  return files;
}

std::string to_string(DemoInit init) {
  switch (init) {
    case DemoInit::kAuto: return "auto";
    case DemoInit::kCaption: return "caption";
    case DemoInit::kObject: return "object";
  }
  throw Error("--init-from", str_cat("unknown value ", static_cast<int>(init)));
}

DemoInit parse_demo_init(const std::string& name) {
  for (DemoInit i : {DemoInit::kAuto, DemoInit::kCaption, DemoInit::kObject})
    if (name == to_string(i)) return i;
  throw Error("--init-from", "unknown value '" + name + "' (auto, caption or object)");
}

std::string shell_quote(const std::string& s) {
  bool plain = !s.empty();
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string("_-./:=@%+,").find(c) != std::string::npos))
      plain = false;
  if (plain) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

namespace {

// Stage 1: the caption (BLIP, or --caption), the initialisation it gives, the first outputs.
void caption_stage(Run& r) {
  const DemoOptions& o = r.o;
  if (o.caption.empty()) {
    stage(1, "caption: " + r.in.path + " with " + r.captioner);
    r.res.caption = caption_image(o, r.captioner, r.input);
  } else {
    stage(1, "caption: given (--caption)");
    r.res.caption = o.caption;
  }
  std::fprintf(stderr, "caption: \"%s\"\n", r.res.caption.c_str());
  r.init = choose_init(o, r.res.caption);
  r.res.init_from = r.init.mode;
  r.res.init_text = r.init.text;
  make_dirs(join_path(o.out.string(), "images"), "--out");
  r.input_png = display_png(r.input);
  write_bytes(join_path(o.out.string(), "input.png"), r.input_png, r.res.files);
  write_templates(r.init, r.res.files);
}

// Stage 2: `tinv invert` as a library call.
void invert_stage(Run& r) {
  const DemoOptions& o = r.o;
  InvertOptions& io = r.inv;
  io.model = r.model;
  io.images = {r.in.path};
  io.init = InitMode::kCaption;
  io.caption = r.init.text;
  io.templates = r.init.templates;
  io.name = r.in.name;
  io.steps = o.steps;
  io.lr = o.lr;
  io.seed = o.seed;
  io.out = join_path(o.out.string(), r.in.name + ".safetensors");
  io.format = OutputFormat::kDiffusers;
  io.device = o.device;
  io.progress = o.progress;
  stage(2,
        str_cat("invert: ", o.steps, " steps, ", to_string(r.init.mode), " initialisation from \"", r.init.text, "\""));
  InvertResult inv = run_inversion(io);
  for (int64_t i = 0; i < inv.embeddings.size(0); ++i)
    r.res.placeholders.push_back(str_cat("<", r.in.name, "_", i, ">"));
  r.res.files.insert(r.res.files.end(), inv.files.begin(), inv.files.end());
  r.paths = invert_paths(io.out.string(), io.format, inv.xl);
  r.loss_svg = inv.loss_svg;
  // The file that `generate --embedding` loads with trigger <name>: SDXL's diffusers pair.
  r.embedding = inv.xl ? r.paths.diffusers_pair : r.paths.diffusers;
}

// Means of the judge's scores per prompt and over every prompt (DemoResult::scores).
void score_prompts(Run& r) {
  DemoPromptScore total{"mean"};
  int64_t n = 0;
  for (const Generated& g : r.gen) {
    if (g.before_scores.empty() || g.after_scores.empty()) continue;
    world::JudgeMean b, a;
    for (const auto& s : g.before_scores) b.add(s);
    for (const auto& s : g.after_scores) a.add(s);
    const world::JudgeMean am = a.mean();
    DemoPromptScore ps{g.tmpl,   b.mean().identity, b.mean().context, am.identity, am.context,
                       am.shape, am.body,           am.ring,          am.dot};
    total.before_identity += ps.before_identity, total.before_context += ps.before_context;
    total.after_identity += ps.after_identity, total.after_context += ps.after_context;
    total.after_shape += ps.after_shape, total.after_body += ps.after_body;
    total.after_ring += ps.after_ring, total.after_dot += ps.after_dot;
    ++n;
    r.res.scores.push_back(ps);
  }
  if (n == 0) return;
  for (double* v : {&total.before_identity, &total.before_context, &total.after_identity, &total.after_context,
                    &total.after_shape, &total.after_body, &total.after_ring, &total.after_dot})
    *v /= static_cast<double>(n);
  r.res.scores.push_back(total);
  std::fprintf(stderr,
               "concept judge (mean of %lld prompts): identity %.2f before -> %.2f after, context %.2f -> %.2f; "
               "after: shape %.2f, body %.2f, ring %.2f, dot %.2f\n",
               static_cast<long long>(n), total.before_identity, total.after_identity, total.before_context,
               total.after_context, total.after_shape, total.after_body, total.after_ring, total.after_dot);
}

// Stage 3: every prompt with the initialisation words (before) and the trigger (after).
void generate_stage(Run& r) {
  const DemoOptions& o = r.o;
  std::vector<world::Colour> avoid = r.init.colours;
  if (r.in.concept_ptr) avoid.insert(avoid.end(), r.in.concept_ptr->colours.begin(), r.in.concept_ptr->colours.end());
  r.res.prompts = demo_prompts(avoid);
  const std::string& own = r.init.world_template;
  if (!own.empty() && std::find(r.res.prompts.begin(), r.res.prompts.end(), own) == r.res.prompts.end())
    r.res.prompts.insert(r.res.prompts.begin(), own);  // the input's own setting first
  stage(3, str_cat("generate: ", r.res.prompts.size(), " prompts x (before, after) x ", o.samples, " images, ",
                   o.sample_steps, " steps each"));
  SdLoadOptions lo;
  lo.device = resolve_device(o.device);
  r.device = lo.device.str();
  StableDiffusion sd = load_stable_diffusion(r.model, lo);
  ExtraTokens extra = add_embeddings(sd, {r.embedding});
  r.image_size = sd.vae_config.sample_size;
  Progress bar("generate", static_cast<int64_t>(r.res.prompts.size()) * 2, o.progress);
  for (size_t p = 0; p < r.res.prompts.size(); ++p) {
    Generated g;
    g.tmpl = r.res.prompts[p];
    g.before_prompt = fill(g.tmpl, r.init.text);
    g.after_prompt = fill(g.tmpl, r.res.trigger);
    for (int variant = 0; variant < 2; ++variant) {
      GenerateOptions go;
      go.prompt = variant == 0 ? g.before_prompt : g.after_prompt;
      go.sampler = o.sampler;
      go.steps = o.sample_steps;
      go.cfg = o.cfg;
      go.seed = o.seed;
      go.batch = o.samples;
      go.progress = false;
      GenerateResult out = generate(sd, extra, go);
      const auto ctx = r.in.concept_ptr ? template_context(g.tmpl) : std::nullopt;
      for (int64_t i = 0; i < out.images.size(0); ++i) {
        if (ctx)
          (variant == 0 ? g.before_scores : g.after_scores)
              .push_back(judge_image(out.images[i], *r.in.concept_ptr, *ctx));
        const std::string path =
            join_path(o.out.string(), str_cat("images/p", p, variant == 0 ? "-before-" : "-after-", i, ".png"));
        auto png = encode_png(out.images[i], {{"parameters", out.image_parameters[i]}}, path);
        write_bytes(path, png, r.res.files);
        (variant == 0 ? g.before : g.after).push_back(std::move(png));
      }
      bar.update(static_cast<int64_t>(2 * p + variant + 1));
    }
    r.gen.push_back(std::move(g));
  }
  bar.finish();
  score_prompts(r);
}

// The commands that redo the run: `tinv demo`, then caption, invert and each generate.
std::string reproduce_commands(const Run& r) {
  const DemoOptions& o = r.o;
  std::error_code ec;
  std::string c = "cd " + shell_quote(fs::current_path(ec).string()) + "\n\n# The whole demo:\n" +
                  demo_command(o, r.in, r.model, r.captioner) + "\n\n# Step by step:\n";
  if (o.caption.empty())
    c += str_cat(o.program, " caption ", shell_quote(r.in.path), " --captioner ", shell_quote(r.captioner), " --beams ",
                 o.beams, " --max-new-tokens ", kCaptionNewTokens, "\n");
  const std::string dev = o.device ? " --device " + shell_quote(device_name(o.device)) : "";
  c += str_cat(o.program, " invert --model ", shell_quote(r.model), " --image ", shell_quote(r.in.path), " --caption ",
               shell_quote(r.init.text), " --templates ", shell_quote(to_string(r.init.templates)), " --name ",
               r.in.name, " --steps ", o.steps, " --lr ", format_number(o.lr), " --seed ", o.seed, dev, " --out ",
               shell_quote(r.inv.out.string()), "\n");
  for (size_t p = 0; p < r.gen.size(); ++p)
    for (int variant = 0; variant < 2; ++variant)
      c += str_cat(
          o.program, " generate --model ", shell_quote(r.model),
          variant == 1 ? " --embedding " + shell_quote(r.embedding) : std::string(), " --prompt ",
          shell_quote(variant == 0 ? r.gen[p].before_prompt : r.gen[p].after_prompt), " --steps ", o.sample_steps,
          " --sampler ", o.sampler, " --cfg ", format_number(o.cfg), " --seed ", o.seed, " --batch ", o.samples, dev,
          " --out ",
          shell_quote(join_path(o.out.string(), str_cat("reproduce/p", p, variant == 0 ? "-before" : "-after"))), "\n");
  return c;
}

void report_input(const Run& r, HtmlReport& rep) {
  const DemoOptions& o = r.o;
  std::string placeholders;
  for (const auto& ph : r.res.placeholders) placeholders += (placeholders.empty() ? "" : " ") + ph;
  rep.paragraph(
      "Textual inversion with captioning initialisation on one image: the captioner describes "
      "the image, the caption's words initialise the placeholder tokens, " +
      std::to_string(o.steps) + " optimisation steps adapt them, and the learned trigger " + r.res.trigger +
      " is then used in new prompts.");
  rep.heading("Input");
  rep.image(r.input_png, "input image", std::max(256, std::min(512, r.input.width)));
  const std::string init =
      r.init.mode == DemoInit::kObject
          ? "object words of the caption: \"" + r.init.text + "\"; training template \"" + r.init.world_template + "\""
          : "the whole caption: \"" + r.init.text + "\"; textual-inversion object templates";
  rep.key_values(
      {{"image", str_cat(r.in.path, " (", r.input.width, "x", r.input.height, ")")},
       {"concept", r.in.concept_ptr ? r.in.concept_ptr->name + ": " + r.in.concept_ptr->description : r.in.name},
       {"caption", r.res.caption + (o.caption.empty() ? "  (" + r.captioner + ")" : "  (--caption)")},
       {"initialisation", init},
       {"placeholders", placeholders},
       {"trigger", r.res.trigger},
       {"model", r.model},
       {"steps", str_cat(o.steps, " (lr ", format_number(o.lr), ", seed ", o.seed, ")")}});
  rep.heading("Learning");
  if (!r.loss_svg.empty())
    rep.svg(r.loss_svg);
  else if (file_exists(r.paths.plot_png))
    rep.image(read_binary_file(r.paths.plot_png), "loss curve");
  rep.paragraph(
      "Loss per step (random timestep and noise) and the fixed-input loss (the same timesteps and "
      "noise every 10 steps); the numbers are in " +
      r.paths.log_csv + ".");
}

std::string fmt2(double v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

void report_scores(const Run& r, HtmlReport& rep) {
  if (r.res.scores.empty()) return;
  rep.heading("Scores");
  rep.paragraph("The concept judge (world/judge.h) reads each generated image: concept fidelity is how much of " +
                r.in.concept_ptr->name + " (" + r.in.concept_ptr->description +
                ") the object shows, in [0, 1] (shape, body, ring and dot, geometric mean); context is the "
                "share of the requested background colour and pattern, place and size that the image follows. "
                "The parts of the after fidelity (shape, body, ring, dot) say what is missing. "
                "Targets after 100 steps: fidelity >= 0.7, context >= 0.8, before clearly lower.");
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : r.res.scores)
    rows.push_back({HtmlReport::text(s.tmpl), HtmlReport::text(fmt2(s.before_identity)),
                    HtmlReport::text(fmt2(s.after_identity)), HtmlReport::text(fmt2(s.before_context)),
                    HtmlReport::text(fmt2(s.after_context)),
                    HtmlReport::text(fmt2(s.after_shape) + " / " + fmt2(s.after_body) + " / " + fmt2(s.after_ring) +
                                     " / " + fmt2(s.after_dot))});
  rep.table({"prompt", "fidelity before", "fidelity after", "context before", "context after",
             "after: shape / body / ring / dot"},
            rows);
}

void report_generated(const Run& r, HtmlReport& rep) {
  const DemoOptions& o = r.o;
  rep.heading("Generated");
  rep.paragraph(str_cat(
      "Each row is a prompt of the world grammar with {} filled by the initialisation words "
      "(before: exactly the embedding at step 0) or by the learned trigger (after). ",
      o.samples, " image(s) each, seeds ", o.seed, "..", o.seed + o.samples - 1, ", the same for before and after; ",
      o.sample_steps, " steps, sampler ", o.sampler, ", CFG ", format_number(o.cfg), "."));
  const int shown = static_cast<int>(std::max<int64_t>(128, std::min<int64_t>(256, r.image_size)));
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : r.gen)
    rows.push_back({HtmlReport::text(g.tmpl), HtmlReport::images(g.before, g.before_prompt, shown),
                    HtmlReport::images(g.after, g.after_prompt, shown)});
  rep.table({"prompt ({} = the concept)", "before: \"" + r.init.text + "\"", "after: " + r.res.trigger}, rows);
  report_scores(r, rep);
}

// Stage 4: commands.sh and index.html (the timings so far, "report" and "total" included).
void report_stage(Run& r, Clock::time_point t_start) {
  const DemoOptions& o = r.o;
  const auto t = Clock::now();
  r.res.report = join_path(o.out.string(), "index.html");
  stage(4, "report: " + r.res.report);
  const std::string cmds = reproduce_commands(r);
  const std::string sh = "#!/bin/sh\n# Written by tinv demo: the commands behind " + r.res.report + "\nset -e\n" + cmds;
  write_bytes(join_path(o.out.string(), "commands.sh"), std::vector<uint8_t>(sh.begin(), sh.end()), r.res.files);

  HtmlReport rep("tinv demo: " + r.in.name);
  report_input(r, rep);
  report_generated(r, rep);
  r.res.timings.emplace_back("report", seconds_since(t));
  r.res.timings.emplace_back("total", seconds_since(t_start));
  rep.heading("Timings");
  std::vector<std::pair<std::string, std::string>> tt;
  for (const auto& [k, v] : r.res.timings) tt.emplace_back(k, fmt_seconds(v));
  tt.emplace_back("device", str_cat(r.device, ", ", at::get_num_threads(), " threads"));
  rep.key_values(tt);
  rep.heading("Reproduce");
  rep.paragraph("Also in " + join_path(o.out.string(), "commands.sh") + ". Image i of each prompt uses seed + i.");
  rep.code(cmds);
  rep.heading("Files");
  std::string listing;
  for (const auto& f : r.res.files) listing += f + "\n";
  rep.code(listing + r.res.report + "\n");
  const std::string html = rep.html();
  write_file_atomically(r.res.report, html.data(), html.size());
  r.res.files.push_back(r.res.report);
}

}  // namespace

DemoResult run_demo(const DemoOptions& options) {
  const auto t_start = Clock::now();
  DemoOptions o = options;
  o.cfg = world::resolve_cfg(o.cfg, o.model.empty());
  validate(o);
  // Everything that can be wrong with the input fails here, before any model loads or any
  // file is written.
  Run r(o, resolve_input(o));
  r.input = load_image(r.in.path);
  r.model = o.model.empty() ? default_model_dir("world-sd") : o.model.string();
  if (o.caption.empty()) r.captioner = o.captioner.empty() ? default_model_dir("world-blip") : o.captioner.string();
  TINV_CHECK(file_exists(r.model) || dir_exists(r.model), "--model", "no such file or folder '", r.model, "'");
  TINV_CHECK(r.captioner.empty() || dir_exists(r.captioner), "--captioner", "no such folder '", r.captioner, "'");
  check_creatable_dir(o.out.string(), "--out");
  r.res.image = r.in.path;
  r.res.trigger = "<" + r.in.name + ">";

  auto timed = [&](const char* name, void (*fn)(Run&)) {
    const auto t = Clock::now();
    fn(r);
    r.res.timings.emplace_back(name, seconds_since(t));
  };
  timed("caption", caption_stage);
  timed("invert", invert_stage);
  timed("generate", generate_stage);
  report_stage(r, t_start);
  r.res.timings.back().second = seconds_since(t_start);  // "total", now with the report written
  return std::move(r.res);
}

}  // namespace tinv
