// `tinv study` as a library call: options, the world-specific initialisation, the records and
// their summaries, and run_study (see study.h and docs/convergence.md). The figures, summary
// and HTML report are in study_report.cpp.
#include "apps/study.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "apps/world_eval.h"
#include "common/default_models.h"
#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/progress.h"
#include "inversion/image_input.h"
#include "inversion/templates.h"
#include "inversion/trainer.h"
#include "io/image.h"
#include "io/image_tensor.h"
#include "models/stable_diffusion.h"
#include "pipelines/caption.h"
#include "pipelines/generate.h"
#include "schedulers/noise_schedule.h"
#include "text/extra_tokens.h"

namespace tinv {
namespace {

const std::vector<std::string> kModes = {"caption", "class", "token"};
constexpr const char* kTrigger = "<tinv-study>";      // generation: one trigger, n rows
constexpr const char* kPlaceholder = "<tinv-study_";  // training: <tinv-study_0> ...

using Clock = std::chrono::steady_clock;

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

using world::world_caption_options;

// Whether some mode or variant of `o` starts from `init`.
bool uses_init(const StudyOptions& o, InitMode init) {
  return std::any_of(o.modes.begin(), o.modes.end(),
                     [&](const std::string& m) { return m.substr(0, m.find('+')) == to_string(init); });
}

std::vector<std::string> split_list(const std::string& list, const char* option) {
  std::vector<std::string> items;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    TINV_CHECK(!item.empty(), option, "empty entry in '", list, "'");
    items.push_back(item);
  }
  TINV_CHECK(!items.empty() && list.back() != ',', option, "expected a comma-separated list, got '", list, "'");
  return items;
}

// "500" -> 500; throws for anything but digits.
int64_t parse_step(const std::string& text, const std::string& variant) {
  TINV_CHECK(!text.empty() && text.size() <= 9 && text.find_first_not_of("0123456789") == std::string::npos,
             "--variants", "'", variant, "': '", text, "' is not a timestep (t500 or t200-800)");
  return std::stoll(text);
}

}  // namespace

// ---- Options ----
namespace {

void validate_modes(const StudyOptions& o) {
  TINV_CHECK(!o.modes.empty(), "--modes", "no mode selected (caption, class, token)");
  std::set<std::string> seen;
  for (const auto& m : o.modes) {
    const bool variant = m.find('+') != std::string::npos;
    const char* option = variant ? "--variants" : "--modes";
    if (variant)
      study_variant(m, o);
    else
      TINV_CHECK(std::find(kModes.begin(), kModes.end(), m) != kModes.end(), option, "unknown mode '", m,
                 "' (caption, class or token)");
    TINV_CHECK(seen.insert(m).second, option, "'", m, "' given twice");
  }
  MethodOptions method;  // the study-wide settings of the variants, with invert's messages
  method.sphere_norm = o.sphere_norm;
  method.vmf_kappa = o.vmf_kappa;
  // the prior applies to sphere variants only
  method.optimizer = o.vmf_kappa > 0 ? OptimizerKind::kSphere : OptimizerKind::kAdamW;
  method.reg_init = o.reg_init;
  method.stop_delta = o.stop_delta;
  method.stop_patience = o.stop_patience;
  method.validate();
}

void validate_concepts(const StudyOptions& o) {
  if (!o.images.empty()) {
    TINV_CHECK(o.concepts.empty(), "--concepts", "names world concepts; it cannot be combined with --images");
    const bool class_mode = uses_init(o, InitMode::kClass);
    TINV_CHECK(!class_mode || !o.class_name.empty(), "--class",
               "class mode with --images needs --class NAME (or leave class out of --modes)");
    return;
  }
  std::set<std::string> names;
  for (const auto& c : o.concepts) {
    try {
      world::find_concept(c);
    } catch (const Error& e) {
      std::string what = e.what();
      throw Error("--concepts", what.substr(what.find(": ") + 2));
    }
    TINV_CHECK(names.insert(c).second, "--concepts", "'", c, "' given twice");
  }
}

void validate_sampling(const StudyOptions& o) {
  GenerateOptions g;  // sampler, steps and cfg, with generate's messages
  g.sampler = o.sampler;
  g.steps = o.sample_steps;
  g.cfg = o.cfg;
  try {
    tinv::validate(g);
  } catch (const Error& e) {
    std::string what = e.what();
    if (what.rfind("--steps", 0) == 0) what = "--sample-steps" + what.substr(7);
    throw Error(what);
  }
}

}  // namespace

void StudyOptions::validate() const {
  validate_modes(*this);
  TINV_CHECK(seeds >= 1 && seeds <= 1000, "--seeds", "must be between 1 and 1000, got ", seeds);
  TINV_CHECK(steps >= 1 && steps <= 1000000, "--steps", "must be between 1 and 1000000, got ", steps);
  for (size_t i = 0; i < checkpoints.size(); ++i) {
    TINV_CHECK(checkpoints[i] >= 0 && checkpoints[i] <= steps, "--checkpoints", "step ", checkpoints[i],
               " is outside [0, --steps ", steps, "]");
    TINV_CHECK(i == 0 || checkpoints[i] > checkpoints[i - 1], "--checkpoints", "steps must be increasing, got ",
               checkpoints[i - 1], " then ", checkpoints[i]);
  }
  TINV_CHECK(std::isfinite(lr) && lr > 0, "--lr", "must be a positive number, got ", lr);
  TINV_CHECK(eval_every >= 1, "--eval-every", "must be >= 1, got ", eval_every);
  TINV_CHECK(eval_pairs >= 1 && eval_pairs <= 64, "--eval-pairs", "must be between 1 and 64, got ", eval_pairs);
  TINV_CHECK(edits >= 0 && edits <= 16, "--edits", "must be between 0 and 16, got ", edits);
  TINV_CHECK(!out.empty(), "--out", "required");
  TINV_CHECK(init_token.find_first_of(" \t") == std::string::npos && !init_token.empty(), "--init-token",
             "must be one token, got '", init_token, "'");
  validate_concepts(*this);
  validate_sampling(*this);
}

std::vector<int64_t> StudyOptions::resolved_checkpoints() const {
  std::vector<int64_t> c = checkpoints;
  if (c.empty())
    for (int64_t s : kDefaultCheckpoints)
      if (s <= steps) c.push_back(s);
  c.push_back(steps);
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  return c;
}

StudyOptions study_quick_options() {
  StudyOptions o;
  o.concepts = {world::concepts().front().name};
  o.seeds = 1;
  o.steps = 10;
  o.checkpoints = {0, 5, 10};
  o.edits = 2;
  o.sample_steps = 4;
  o.out = "study-quick";
  return o;
}

std::vector<std::string> parse_modes(const std::string& list) {
  std::vector<std::string> modes = split_list(list, "--modes");
  for (const auto& m : modes)
    TINV_CHECK(std::find(kModes.begin(), kModes.end(), m) != kModes.end(), "--modes", "unknown mode '", m,
               "' (caption, class or token; --variants takes option sets such as caption+sphere)");
  StudyOptions o;
  o.modes = modes;
  o.validate();  // repeated modes, with --modes messages
  return modes;
}

StudyVariant study_variant(const std::string& name, const StudyOptions& o) {
  StudyVariant v;
  v.name = name;
  std::vector<std::string> parts;
  std::stringstream in(name);
  for (std::string part; std::getline(in, part, '+');) parts.push_back(part);
  TINV_CHECK(!parts.empty() && !name.empty() && name.back() != '+', "--variants", "'", name,
             "': expected <mode>[+<modifier>]... (caption+sphere)");
  TINV_CHECK(std::find(kModes.begin(), kModes.end(), parts[0]) != kModes.end(), "--variants", "'", name,
             "': unknown mode '", parts[0], "' (caption, class or token)");
  v.init = parse_init_mode(parts[0]);
  std::set<std::string> seen;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& m = parts[i];
    const bool numbered =
        m.size() > 1 && (m[0] == 't' || m[0] == 'v') && std::isdigit(static_cast<unsigned char>(m[1]));
    const std::string kind = numbered ? m.substr(0, 1) : m;
    TINV_CHECK(seen.insert(kind).second, "--variants", "'", name, "': modifier '", numbered ? kind + "N" : m,
               "' given twice");
    if (m == "sphere") {
      v.method.optimizer = OptimizerKind::kSphere;
      v.method.sphere_norm = o.sphere_norm;
      v.method.vmf_kappa = o.vmf_kappa;
    } else if (m == "cross") {
      v.method.init_space = InitSpace::kOutput;
      v.method.reg_init = o.reg_init;
    } else if (kind == "t") {
      const auto dash = m.find('-');
      v.method.t_min = parse_step(m.substr(1, dash == std::string::npos ? std::string::npos : dash - 1), name);
      if (dash != std::string::npos) v.method.t_max = parse_step(m.substr(dash + 1), name);
      TINV_CHECK(v.method.t_max < 0 || v.method.t_min <= v.method.t_max, "--variants", "'", name,
                 "': the range starts above its end");
    } else if (kind == "v") {
      TINV_CHECK(v.init == InitMode::kToken, "--variants", "'", name, "': vN needs token mode (token+v", m.substr(1),
                 ")");
      const std::string n = m.substr(1);
      TINV_CHECK(
          !n.empty() && n.size() <= 3 && n.find_first_not_of("0123456789") == std::string::npos && std::stoll(n) >= 1,
          "--variants", "'", name, "': '", n, "' is not a row count (v1 to v999)");
      v.num_vectors = std::stoll(n);
    } else {
      throw Error("--variants", str_cat("'", name, "': unknown modifier '", m, "' (sphere, cross, tN, tA-B or vN)"));
    }
  }
  return v;
}

std::vector<std::string> parse_variants(const std::string& list) {
  std::vector<std::string> names = split_list(list, "--variants");
  StudyOptions o;
  std::set<std::string> seen;
  for (const auto& n : names) {
    study_variant(n, o);
    TINV_CHECK(seen.insert(n).second, "--variants", "'", n, "' given twice");
  }
  return names;
}

// ---- World-specific initialisation ----
StudyInit world_init(const std::string& caption, const world::ConceptSample& sample) {
  StudyInit init;
  const std::string text = world::normalise_caption(caption);
  std::optional<world::SceneSpec> spec = world::parse_caption(text);
  init.parsed = spec.has_value();
  if (spec) {
    const world::ObjectSpec& obj = spec->object;
    world::ConceptSample context;  // the caption's own context, around "{}"
    context.size = obj.size;
    context.position = obj.position;
    context.background = spec->background;
    context.background_pattern = spec->background_pattern;
    init.init_text = world::object_words(obj);
    init.tmpl = context.caption("{}");
    return init;
  }
  init.fallback = true;
  init.tmpl = sample.caption("{}");
  init.init_text = text;
  init.note =
      "the caption does not follow the world grammar; all of it initialises and the "
      "rendering's own context is the template";
  return init;
}

std::vector<EditPrompt> edit_prompts(const world::Concept& c, const world::ConceptSample& trained, int64_t n,
                                     uint64_t seed) {
  using namespace world;
  std::vector<EditPrompt> out;
  for (int64_t i = 0; i < n; ++i) {
    Rng rng = Rng::derive(seed, fnv1a("study-edit:" + c.name), static_cast<uint64_t>(i));
    auto other = [&](int count, int avoid) {  // uniform over [0, count) minus `avoid`
      int v = static_cast<int>(rng.below(static_cast<uint32_t>(count - 1)));
      return v >= avoid ? v + 1 : v;
    };
    ConceptSample ctx;
    // The grammar has two sizes: changing it in every prompt would ask for the one size the
    // training image does not show, every time. Even prompts change it, odd ones keep it.
    const auto other_size = static_cast<Size>(other(kNumSizes, static_cast<int>(trained.size)));
    ctx.size = i % 2 == 0 ? other_size : trained.size;
    ctx.position = static_cast<Position>(other(kNumPositions, static_cast<int>(trained.position)));
    ctx.background_pattern = static_cast<Pattern>(other(kNumPatterns, static_cast<int>(trained.background_pattern)));
    std::vector<Colour> backgrounds;
    for (int k = 0; k < kNumColours; ++k) {
      const auto col = static_cast<Colour>(k);
      if (col != trained.background && std::find(c.colours.begin(), c.colours.end(), col) == c.colours.end())
        backgrounds.push_back(col);
    }
    ctx.background = backgrounds[rng.below(static_cast<uint32_t>(backgrounds.size()))];
    EditPrompt e;
    e.tmpl = ctx.caption("{}");
    ObjectSpec obj;
    obj.shape = c.shape;
    obj.colour = c.body;
    obj.size = ctx.size;
    obj.position = ctx.position;
    e.truth.object = obj;
    e.truth.background = ctx.background;
    e.truth.background_pattern = ctx.background_pattern;
    out.push_back(e);
  }
  return out;
}

// ---- Records ----
std::string records_csv(const std::vector<StudyRecord>& records) {
  std::string s = std::string(kRecordsCsvHeader) + "\n";
  for (const StudyRecord& r : records)
    s += str_cat(csv_field(r.concept), ",", r.mode, ",", r.seed, ",", r.step, ",", r.metric, ",",
                 std::isfinite(r.value) ? format_number(r.value)
                                        : std::string(std::isnan(r.value) ? "nan"
                                                      : r.value > 0       ? "inf"
                                                                          : "-inf"),
                 "\n");
  return s;
}

std::vector<FidelityReachRow> fidelity_reach_table(const std::vector<StudyRecord>& records,
                                                   const std::vector<std::string>& modes, double threshold) {
  // Per run (concept, mode, seed): the checkpoints' fidelity in step order.
  std::map<std::tuple<std::string, std::string, int64_t>, std::vector<std::pair<int64_t, double>>> runs;
  for (const StudyRecord& r : records)
    if (r.metric == "fidelity") runs[{r.concept, r.mode, r.seed}].emplace_back(r.step, r.value);
  std::vector<FidelityReachRow> out;
  for (const std::string& mode : modes) {
    FidelityReachRow row{mode, threshold};
    double steps = 0, best = 0;
    for (auto& [key, curve] : runs) {
      if (std::get<1>(key) != mode) continue;
      std::sort(curve.begin(), curve.end());
      ++row.runs;
      double run_best = 0;
      int64_t at = -1;
      for (const auto& [step, v] : curve) {
        run_best = std::max(run_best, v);
        if (at < 0 && v >= threshold) at = step;
      }
      best += run_best;
      if (at >= 0) ++row.reached, steps += static_cast<double>(at);
    }
    if (row.runs == 0) continue;
    row.mean_steps = row.reached ? steps / row.reached : std::nan("");
    row.best = best / row.runs;
    out.push_back(row);
  }
  return out;
}

int64_t steps_to_reach(const std::vector<std::pair<int64_t, double>>& curve, double target) {
  for (const auto& [step, value] : curve)
    if (std::isfinite(value) && value <= target) return step;
  return -1;
}

namespace {

using RunKey = std::tuple<std::string, std::string, int64_t>;  // concept, mode, seed

std::map<RunKey, std::vector<std::pair<int64_t, double>>> curves(const std::vector<StudyRecord>& records,
                                                                 const std::string& metric) {
  std::map<RunKey, std::vector<std::pair<int64_t, double>>> c;
  for (const StudyRecord& r : records)
    if (r.metric == metric) c[{r.concept, r.mode, r.seed}].push_back({r.step, r.value});
  for (auto& [k, v] : c) std::stable_sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.first < b.first; });
  return c;
}

}  // namespace

std::vector<ReachRow> reach_table(const std::vector<StudyRecord>& records, const std::vector<std::string>& modes,
                                  const std::string& reference) {
  auto fixed = curves(records, "fixed_loss");
  std::vector<ReachRow> rows;
  for (const std::string& mode : modes) {
    ReachRow row;
    row.mode = mode;
    double steps_sum = 0, target_sum = 0, final_sum = 0;
    for (const auto& [key, curve] : fixed) {
      const auto& [concept, m, seed] = key;
      if (m != mode || curve.empty()) continue;
      auto ref = fixed.find({concept, reference, seed});
      if (ref == fixed.end() || ref->second.empty() || !std::isfinite(ref->second.back().second)) continue;
      const double target = ref->second.back().second;
      ++row.runs;
      target_sum += target;
      final_sum += curve.back().second;
      const int64_t k = steps_to_reach(curve, target);
      if (k >= 0) ++row.reached, steps_sum += static_cast<double>(k);
    }
    row.mean_steps = row.reached ? steps_sum / row.reached : NAN;
    row.mean_target = row.runs ? target_sum / row.runs : NAN;
    row.mean_final = row.runs ? final_sum / row.runs : NAN;
    rows.push_back(row);
  }
  return rows;
}

std::string format_reach(const ReachRow& row) {
  if (row.runs == 0) return "no runs";
  if (row.reached == 0) return "not reached";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f", row.mean_steps);
  std::string s = buf;
  if (row.reached < row.runs) s += str_cat(" (", row.reached, "/", row.runs, " runs)");
  return s;
}

std::vector<StopRow> stop_table(const std::vector<StudyRecord>& records, const std::vector<std::string>& modes,
                                int64_t steps) {
  // Per run: the stop step, and the value of each metric at the stop and at the run's last step.
  struct Run {
    int64_t stop = -1;
    std::map<std::string, std::pair<int64_t, double>> last;  // metric -> (step, value)
    std::map<std::string, double> at_stop;                   // metric -> value
  };
  std::map<RunKey, Run> runs;
  for (const StudyRecord& r : records) {
    Run& run = runs[{r.concept, r.mode, r.seed}];
    if (r.metric == "stop_step")
      run.stop = r.step;
    else if (r.metric.rfind("stop_", 0) == 0)
      run.at_stop[r.metric.substr(5)] = r.value;
    else if (run.last.count(r.metric) == 0 || r.step >= run.last[r.metric].first)
      run.last[r.metric] = {r.step, r.value};
  }
  std::vector<StopRow> rows;
  for (const std::string& mode : modes) {
    StopRow row;
    row.mode = mode;
    std::map<std::string, std::pair<double, int>> stop_sum, final_sum;  // metric -> (sum, n)
    double stop_steps = 0, saved = 0;
    for (const auto& [key, run] : runs) {
      if (std::get<1>(key) != mode || run.last.count("fixed_loss") == 0) continue;
      ++row.runs;
      if (run.stop < 0) continue;
      ++row.stopped;
      stop_steps += static_cast<double>(run.stop);
      saved += static_cast<double>(steps - run.stop);
      for (const char* m : {"fixed_loss", "recon_psnr", "edit_mean"}) {
        auto a = run.at_stop.find(m);
        auto b = run.last.find(m);
        if (a == run.at_stop.end() || b == run.last.end()) continue;
        stop_sum[m].first += a->second, ++stop_sum[m].second;
        final_sum[m].first += b->second.second, ++final_sum[m].second;
      }
    }
    auto mean = [](const std::map<std::string, std::pair<double, int>>& m, const char* k) {
      auto it = m.find(k);
      return it == m.end() || it->second.second == 0 ? NAN : it->second.first / it->second.second;
    };
    row.mean_stop = row.stopped ? stop_steps / static_cast<double>(row.stopped) : NAN;
    row.mean_saved = row.runs ? saved / static_cast<double>(row.runs) : NAN;
    row.fixed_at_stop = mean(stop_sum, "fixed_loss"), row.fixed_final = mean(final_sum, "fixed_loss");
    row.psnr_at_stop = mean(stop_sum, "recon_psnr"), row.psnr_final = mean(final_sum, "recon_psnr");
    row.edit_at_stop = mean(stop_sum, "edit_mean"), row.edit_final = mean(final_sum, "edit_mean");
    rows.push_back(row);
  }
  return rows;
}

Aggregate aggregate(const std::vector<StudyRecord>& records, const std::string& mode, const std::string& metric) {
  std::map<int64_t, std::vector<double>> by_step;
  for (const StudyRecord& r : records)
    if (r.mode == mode && r.metric == metric && std::isfinite(r.value)) by_step[r.step].push_back(r.value);
  Aggregate a;
  for (const auto& [step, v] : by_step) {
    double sum = 0, sq = 0;
    for (double x : v) sum += x;
    const double mean = sum / static_cast<double>(v.size());
    for (double x : v) sq += (x - mean) * (x - mean);
    a.steps.push_back(step);
    a.mean.push_back(mean);
    a.sd.push_back(std::sqrt(sq / static_cast<double>(v.size())));
    a.min.push_back(*std::min_element(v.begin(), v.end()));
    a.max.push_back(*std::max_element(v.begin(), v.end()));
    a.n.push_back(static_cast<int64_t>(v.size()));
  }
  return a;
}

std::vector<StudyRecord> smoothed(const std::vector<StudyRecord>& records, const std::string& metric, int64_t window) {
  std::vector<StudyRecord> out;
  for (const auto& [key, curve] : curves(records, metric)) {
    double sum = 0;
    for (size_t i = 0; i < curve.size(); ++i) {
      sum += curve[i].second;
      if (i >= static_cast<size_t>(window)) sum -= curve[i - static_cast<size_t>(window)].second;
      const double n = static_cast<double>(std::min<size_t>(i + 1, static_cast<size_t>(window)));
      out.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), curve[i].first, metric, sum / n});
    }
  }
  return out;
}

std::vector<StudyRecord> relative_to_start(const std::vector<StudyRecord>& records, const std::string& metric) {
  std::map<std::pair<std::string, int64_t>, std::pair<double, int>> start;  // (concept, seed) -> sum, n
  for (const StudyRecord& r : records)
    if (r.metric == metric && r.step == 0 && std::isfinite(r.value)) {
      auto& [sum, n] = start[{r.concept, r.seed}];
      sum += r.value, ++n;
    }
  std::vector<StudyRecord> out;
  for (const StudyRecord& r : records) {
    if (r.metric != metric) continue;
    auto it = start.find({r.concept, r.seed});
    if (it == start.end() || it->second.first == 0) continue;
    StudyRecord x = r;
    x.value = r.value / (it->second.first / it->second.second);
    out.push_back(x);
  }
  return out;
}

// ---- The study ----
namespace {

// Everything one study holds while it runs.
struct Study {
  const StudyOptions& o;
  StudyResult& result;
  StableDiffusion sd;
  std::optional<BlipCaptioner> cap;
  std::vector<int64_t> checkpoints;
  std::vector<torch::Tensor> latents;               // per concept: [1, C, h, w] scaled
  std::vector<std::vector<std::string>> templates;  // per concept: training templates
  int64_t res = 0, num_timesteps = 1000;
  std::string csv_path;
};

void note(StudyResult& r, const std::string& msg) {
  std::fprintf(stderr, "tinv: note: %s\n", msg.c_str());
  r.notes.push_back(msg);
}

void prepare_out(const std::string& out) {
  TINV_CHECK(!file_exists(out) || dir_exists(out), "--out", "'", out, "' is a file, not a folder");
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  TINV_CHECK(dir_exists(out), "--out", "cannot create folder '", out, "'", ec ? ": " + ec.message() : "");
  TINV_CHECK(::access(out.c_str(), W_OK) == 0, "--out", "folder '", out, "' is not writable");
}

torch::Tensor encode_latent(StableDiffusion& sd, const torch::Tensor& unit) {  // [B,3,H,W] in [0,1]
  torch::NoGradGuard no_grad;
  auto post = sd.vae->encode((unit * 2 - 1).to(sd.device, sd.dtype));
  return (post.mean.to(torch::kFloat32) * sd.vae_config.scaling_factor).to(torch::kCPU);  // [B, C, h, w]
}

std::string caption_image(const BlipCaptioner& cap, const Image& im, bool world_style) {
  return cap.caption(im, world_style ? world_caption_options() : CaptionOptions{}).text;
}

// Targets, captions, init texts and templates of the world concepts.
void setup_world_concepts(Study& s) {
  const auto t0 = Clock::now();
  std::vector<const world::Concept*> list;
  if (s.o.concepts.empty())
    for (const auto& c : world::concepts()) list.push_back(&c);
  else
    for (const auto& n : s.o.concepts) list.push_back(&world::find_concept(n));
  for (size_t i = 0; i < list.size(); ++i) {
    const world::Concept& c = *list[i];
    const uint64_t index = s.o.concept_index ? *s.o.concept_index : world::portrait_index(s.o.world_seed, c);
    const world::ConceptSample sample = world::concept_at(s.o.world_seed, c, index, static_cast<int>(s.res));
    StudyConcept sc;
    sc.name = c.name;
    sc.source =
        str_cat("rendering ", index, " of world seed ", s.o.world_seed, s.o.concept_index ? "" : ", its portrait");
    sc.world_concept = &c;
    sc.train_context = world::context_of(sample);
    sc.class_word = c.class_word;
    sc.target = image_to_unit_tensor(sample.image);  // [3, res, res]
    if (!s.o.captions.empty()) {
      sc.caption = s.o.captions[i];
    } else {  // run_study loaded the captioner: the template comes from the caption
      // The captioner reads 64-pixel world images, as it was trained.
      const world::ConceptSample at64 = world::concept_at(s.o.world_seed, c, index, 64);
      sc.caption = caption_image(*s.cap, at64.image, true);
    }
    sc.init = world_init(sc.caption, sample);
    if (sc.init.fallback) note(s.result, c.name + ": " + sc.init.note + " (caption \"" + sc.caption + "\")");
    sc.edits = edit_prompts(c, sample, s.o.edits, s.o.world_seed);
    s.latents.push_back(encode_latent(s.sd, sc.target.unsqueeze(0)));
    s.templates.push_back({sc.init.tmpl});
    s.result.concepts.push_back(sc);
  }
  s.result.timings.captions = seconds_since(t0);
}

// User images: one concept per image, caption = init text, diffusers' object templates.
void setup_user_concepts(Study& s) {
  const auto t0 = Clock::now();
  auto files = collect_image_files(std::vector<std::string>(s.o.images.begin(), s.o.images.end()));
  const auto templates = load_templates(BuiltinTemplates::kObject);
  for (size_t i = 0; i < files.size(); ++i) {
    std::string msg;
    const Image im = load_image(files[i]);
    auto x = prepare_training_image(im, s.res, &msg);  // [3, res, res] in [-1, 1]
    if (!msg.empty()) note(s.result, files[i] + ": " + msg);
    StudyConcept sc;
    sc.name = file_stem(files[i]);
    sc.source = files[i];
    sc.class_word = s.o.class_name;
    sc.target = ((x + 1) / 2).clamp(0, 1);
    if (!s.o.captions.empty())
      sc.caption = s.o.captions[i];
    else if (s.cap)
      sc.caption = caption_image(*s.cap, im, false);  // caption mode only
    const bool caption_mode = uses_init(s.o, InitMode::kCaption);
    TINV_CHECK(!caption_mode || !sc.caption.empty(), files[i], "the captioner produced an empty caption");
    sc.init.init_text = sc.caption;
    sc.init.tmpl = templates.front();
    s.latents.push_back(encode_latent(s.sd, sc.target.unsqueeze(0)));
    s.templates.push_back(templates);
    s.result.concepts.push_back(sc);
  }
  s.result.timings.captions = seconds_since(t0);
}

// The init token ids of one mode for concept i, trimmed to what the prompts leave free.
std::vector<int64_t> init_ids(Study& s, size_t i, InitMode mode, int64_t num_vectors) {
  const ClipTokenizer& tok = *s.sd.tokenizer;
  const StudyConcept& c = s.result.concepts[i];
  const std::string& text = mode == InitMode::kToken   ? s.o.init_token
                            : mode == InitMode::kClass ? c.class_word
                                                       : c.init.init_text;
  std::vector<int64_t> ids = tok.tokenize(text);
  if (mode == InitMode::kToken) {
    TINV_CHECK(ids.size() == 1, "--init-token", "'", text, "' is ", ids.size(),
               " tokens; it must be exactly one vocabulary token");
    ids.assign(static_cast<size_t>(num_vectors), ids[0]);  // token+vN: N rows from the same token
  }
  TINV_CHECK(!ids.empty(), mode == InitMode::kClass ? "--class" : c.name, "'", text, "' has no tokens");
  int64_t longest = 0;
  std::vector<std::string> prompts = s.templates[i];
  for (const auto& e : c.edits) prompts.push_back(e.tmpl);
  for (const auto& t : prompts)
    longest = std::max<int64_t>(longest, static_cast<int64_t>(tok.tokenize(fill_template(t, "")).size()));
  const int64_t budget = tok.max_length() - 2 - longest;
  TINV_CHECK(budget >= 1, c.name, "a template alone fills the ", tok.max_length(), " tokens");
  if (static_cast<int64_t>(ids.size()) > budget) {
    note(s.result, str_cat(c.name, ": the ", to_string(mode), " init '", text, "' has ", ids.size(),
                           " tokens; trimmed to ", budget, " to fit the prompts in ", tok.max_length(), " tokens"));
    ids.resize(static_cast<size_t>(budget));
  }
  return ids;
}

// [1 + E, 3, H, W]: the init prompt and each edit prompt with the rows as the trigger, on
// the seed's images (the same for every mode and checkpoint of a seed).
torch::Tensor quality_images(Study& s, const StudyConcept& c, int64_t seed, const torch::Tensor& rows) {
  StableDiffusion view = s.sd;  // modules shared; its own copy of the base tokenizer
  ExtraTokens extra;
  add_rows_trigger(view, extra, kTrigger, rows);  // rows [n, h1 + h2] on SDXL
  std::vector<std::string> prompts = {fill_template(c.init.tmpl, kTrigger)};
  for (const auto& e : c.edits) prompts.push_back(fill_template(e.tmpl, kTrigger));
  std::vector<uint64_t> seeds;  // the same images for every mode and checkpoint of a seed
  for (size_t j = 0; j < prompts.size(); ++j) seeds.push_back(static_cast<uint64_t>(seed) * 1000 + j);
  GenerateOptions g;
  g.sampler = s.o.sampler;
  g.steps = s.o.sample_steps;
  g.cfg = s.o.cfg;
  g.progress = false;
  return world::generate_prompts(view, extra, prompts, seeds, g);  // [1+E, 3, H, W]
}

using AddRecord = std::function<void(const std::string& metric, double value)>;

// edit_*: the captioner's reading of each edit image against the edit's truth.
void add_edit_scores(Study& s, const StudyConcept& c, const torch::Tensor& images, StudySample& sample,
                     const AddRecord& add) {
  world::AttributeScore total;
  for (size_t j = 0; j < c.edits.size(); ++j) {
    const std::string text = caption_image(*s.cap, unit_tensor_to_image(images[static_cast<int64_t>(j) + 1]), true);
    sample.captions.push_back(text);
    total += world::score_caption(text, c.edits[j].truth);
  }
  using world::Attribute;
  const double n = static_cast<double>(c.edits.size());
  add("edit_parsed", total.parsed / n);
  add("edit_size", total.accuracy(Attribute::kSize));
  add("edit_position", total.accuracy(Attribute::kPosition));
  add("edit_background", total.accuracy(Attribute::kBackground));
  add("edit_pattern", total.accuracy(Attribute::kPattern));
  add("edit_shape", total.accuracy(Attribute::kShape));
  add("edit_mean", (total.accuracy(Attribute::kSize) + total.accuracy(Attribute::kPosition) +
                    total.accuracy(Attribute::kBackground) + total.accuracy(Attribute::kPattern)) /
                       4);
}

// fidelity_train, fidelity, context: the judge on the init image and the edit images.
void add_fidelity(const StudyConcept& c, const torch::Tensor& images, const AddRecord& add) {
  auto judge = [&](int64_t k, const world::JudgeContext& ctx) {
    return world::judge_concept(unit_tensor_to_image(images[k]), *c.world_concept, ctx);
  };
  add("fidelity_train", judge(0, c.train_context).identity);
  world::JudgeMean edits;
  for (size_t j = 0; j < c.edits.size(); ++j) {
    const world::SceneSpec& t = c.edits[j].truth;
    edits.add(
        judge(static_cast<int64_t>(j) + 1, {t.object.size, t.object.position, t.background, t.background_pattern}));
  }
  if (edits.n > 0) {
    add("fidelity", edits.mean().identity);
    add("context", edits.mean().context);
  }
}

// Quality of the rows at one checkpoint: reconstruction and editability.
void measure_quality(Study& s, size_t ci, const std::string& mode, int64_t seed, int64_t step,
                     const torch::Tensor& rows) {
  const auto t0 = Clock::now();
  const StudyConcept& c = s.result.concepts[ci];
  torch::Tensor images = quality_images(s, c, seed, rows);
  const AddRecord add = [&](const std::string& metric, double v) {
    s.result.records.push_back({c.name, mode, seed, step, metric, v});
  };
  auto recon = images.slice(0, 0, 1);  // [1, 3, H, W]
  const auto target = c.target.unsqueeze(0);
  if (recon.sizes() == target.sizes()) {
    add("recon_psnr", world::psnr(recon, target));
    add("recon_mse", (recon - target).pow(2).mean().item<double>());
  }
  auto latent = encode_latent(s.sd, recon);
  if (latent.sizes() == s.latents[ci].sizes())
    add("recon_latent_mse", (latent - s.latents[ci]).pow(2).mean().item<double>());

  StudySample sample{c.name, mode, step, images, {}};
  if (!c.edits.empty()) add_edit_scores(s, c, images, sample, add);
  if (c.world_concept) add_fidelity(c, images, add);
  if (seed == 0) s.result.samples.push_back(std::move(sample));
  s.result.timings.quality += seconds_since(t0);
  ++s.result.timings.quality_evals;
}

// The best the grammar can say: each closest caption's object words (the concept with only its
// ring, with only its dot) in the edit prompts, on the edit images' seeds, scored by the judge.
void closest_caption_baseline(Study& s, size_t ci) {
  const StudyConcept& c = s.result.concepts[ci];
  if (!c.world_concept || c.edits.empty()) return;
  const auto t0 = Clock::now();
  GenerateOptions g;
  g.sampler = s.o.sampler;
  g.steps = s.o.sample_steps;
  g.cfg = s.o.cfg;
  g.progress = false;
  ClosestCaption best;
  best.concept = c.name;
  for (const world::ObjectSpec& near : c.world_concept->nearest_objects()) {
    const std::string words = world::object_words(near);
    world::JudgeMean m;
    for (int64_t seed = 0; seed < s.o.seeds; ++seed) {
      std::vector<std::string> prompts;
      std::vector<uint64_t> seeds;
      for (size_t j = 0; j < c.edits.size(); ++j) {
        prompts.push_back(fill_template(c.edits[j].tmpl, words));
        seeds.push_back(static_cast<uint64_t>(seed) * 1000 + j + 1);  // the edit images' seeds
      }
      torch::Tensor images = world::generate_prompts(s.sd, prompts, seeds, g);
      for (size_t j = 0; j < c.edits.size(); ++j) {
        const world::SceneSpec& t = c.edits[j].truth;
        m.add(world::judge_concept(unit_tensor_to_image(images[static_cast<int64_t>(j)]), *c.world_concept,
                                   {t.object.size, t.object.position, t.background, t.background_pattern}));
      }
    }
    const world::JudgeMean mean = m.mean();
    if (best.words.empty() || mean.identity > best.fidelity) best = {c.name, words, mean.identity, mean.context};
  }
  s.result.closest.push_back(best);
  s.result.timings.quality += seconds_since(t0);
}

// The quality at the early-stop step, recorded as stop_<metric> (the report's curves and
// samples stay those of the checkpoints).
void measure_quality_at_stop(Study& s, size_t ci, const std::string& mode, int64_t seed, int64_t step,
                             const torch::Tensor& rows) {
  const size_t first = s.result.records.size(), samples = s.result.samples.size();
  measure_quality(s, ci, mode, seed, step, rows);
  for (size_t i = first; i < s.result.records.size(); ++i)
    s.result.records[i].metric = "stop_" + s.result.records[i].metric;
  s.result.samples.resize(samples);
}

// The trainer of one run: placeholders from the variant's init, constant learning rate.
std::unique_ptr<InversionTrainer> study_trainer(Study& s, size_t ci, const StudyVariant& variant) {
  const auto ids = init_ids(s, ci, variant.init, variant.num_vectors);
  std::vector<std::string> placeholders;
  for (size_t i = 0; i < ids.size(); ++i) placeholders.push_back(str_cat(kPlaceholder, i, ">"));
  const torch::Tensor init_rows = model_start_rows(s.sd, ids, variant.method.init_space);  // [n, d] / [n, h1 + h2]
  TrainerOptions topt;
  topt.adam.lr = s.o.lr;
  topt.schedule = LrSchedule::make(LrScheduleKind::kConstant, s.o.lr, s.o.steps, -1);
  return make_trainer(s.sd, placeholders, init_rows, s.templates[ci], variant.method, topt, s.res);
}

void run_one(Study& s, size_t ci, const std::string& mode, int64_t seed, Progress& bar, int64_t run_index) {
  const StudyConcept& c = s.result.concepts[ci];
  const StudyVariant variant = study_variant(mode, s.o);  // a plain mode: default method options
  std::unique_ptr<InversionTrainer> owned = study_trainer(s, ci, variant);
  InversionTrainer& trainer = *owned;
  const torch::Tensor& cache = s.latents[ci];
  RandomStepSource source(cache.to(s.sd.device), static_cast<int64_t>(s.templates[ci].size()), 1, s.num_timesteps,
                          static_cast<uint64_t>(seed), variant.method.t_min,
                          variant.method.resolved_t_max(s.num_timesteps));
  EarlyStop early(s.o.stop_delta, s.o.stop_patience);
  bool stop_recorded = false;
  const StepInputs fixed =
      fixed_eval_inputs(cache.to(s.sd.device), s.o.eval_pairs, s.num_timesteps, static_cast<uint64_t>(seed));
  StudyTimings& tm = s.result.timings;
  auto add = [&](int64_t step, const std::string& metric, double v) {
    s.result.records.push_back({c.name, mode, seed, step, metric, v});
  };
  auto fixed_loss = [&](int64_t step) {
    const auto t0 = Clock::now();
    const double value = trainer.loss(fixed);
    add(step, "fixed_loss", value);
    tm.fixed_eval += seconds_since(t0);
    ++tm.fixed_evals;
    if (!stop_recorded && early.update(value)) {  // where --stop-patience would stop this run
      stop_recorded = true;
      add(step, "stop_step", static_cast<double>(step));
      add(step, "stop_fixed_loss", value);
      measure_quality_at_stop(s, ci, mode, seed, step, trainer.embeddings());
    }
  };
  auto checkpoint = [&](int64_t step) {
    if (std::binary_search(s.checkpoints.begin(), s.checkpoints.end(), step))
      measure_quality(s, ci, mode, seed, step, trainer.embeddings());
  };
  fixed_loss(0);
  checkpoint(0);
  const std::string label = str_cat(c.name, " ", mode, " s", seed);
  auto mark = Clock::now();
  const bool finite = run_steps(trainer, source, s.o.steps, [&](int64_t k, const StepResult& r) {
    tm.train += seconds_since(mark);
    ++tm.train_steps;
    if (!r.finite) return;
    add(k, "loss", r.loss);
    const int64_t done = k + 1;
    if (done % s.o.eval_every == 0 || done == s.o.steps) fixed_loss(done);
    checkpoint(done);
    char loss[32];
    std::snprintf(loss, sizeof loss, "%.4f", r.loss);
    bar.update(run_index * s.o.steps + done, label + " loss=" + loss);
    mark = Clock::now();
  });
  if (!finite)
    note(s.result, str_cat(c.name, " ", mode, " seed ", seed, ": the loss became NaN/inf at step ",
                           trainer.steps_done(), "; the run stopped there (its records so far are kept)"));
}

// The options with the bundled models filled in, checked against the files; `need_captioner`
// says whether the captioner is used.
StudyOptions resolve_study_options(const StudyOptions& options, bool& need_captioner) {
  StudyOptions o = options;
  o.cfg = world::resolve_cfg(o.cfg, o.model.empty());
  if (o.model.empty()) o.model = default_model_dir("world-sd");
  TINV_CHECK(dir_exists(o.model.string()) || file_exists(o.model.string()), "--model", "no such model: '",
             o.model.string(), "'");
  const bool world_concepts = o.images.empty();
  const bool caption_mode = uses_init(o, InitMode::kCaption);
  // World concepts take their template from the caption, whatever the mode; user images need
  // it only as caption-mode init text. Editability reads the generated images back.
  const bool need_captions = o.captions.empty() && (world_concepts || caption_mode);
  need_captioner = need_captions || (world_concepts && o.edits > 0);
  if (need_captioner && o.captioner.empty()) o.captioner = default_model_dir("world-blip");
  if (!need_captioner) o.captioner.clear();  // not used: the report says so
  if (need_captioner)
    TINV_CHECK(dir_exists(o.captioner.string()), "--captioner", "no such folder: '", o.captioner.string(), "'",
               need_captions ? " (the init captions come from it; --caption TEXT gives them)"
                             : " (editability needs it; --edits 0 skips it)");
  const std::vector<std::string> images(o.images.begin(), o.images.end());
  const size_t num_concepts = !world_concepts      ? collect_image_files(images).size()  // fails early
                              : o.concepts.empty() ? world::concepts().size()
                                                   : o.concepts.size();
  TINV_CHECK(o.captions.empty() || o.captions.size() == num_concepts, "--caption", "got ", o.captions.size(),
             " captions for ", num_concepts, world_concepts ? " concepts" : " images", " (one per ",
             world_concepts ? "concept" : "image", ", in order)");
  if (!world_concepts && o.edits > 0)
    std::fprintf(stderr, "tinv: note: --images: editability is measured on world concepts only\n");
  return o;
}

// The model, the captioner and the timestep range every variant must fit.
void load_study_models(Study& s, bool need_captioner) {
  const StudyOptions& o = s.o;
  SdLoadOptions lo;
  lo.device = resolve_device(o.device);
  s.sd = load_stable_diffusion(o.model.string(), lo);
  TINV_CHECK(s.sd.tokenizer.has_value(), o.model.string(), "the model has no tokenizer");
  if (need_captioner) {
    s.cap = BlipCaptioner::load(o.captioner.string(), lo.device);
    TINV_CHECK(s.cap->has_tokenizer(), join_path(o.captioner.string(), "vocab.txt"),
               "missing: captions are needed as text");
  }
  s.res = s.sd.vae_config.sample_size;
  s.num_timesteps = NoiseSchedule(s.sd.scheduler).num_train_timesteps();
  for (const std::string& m : o.modes) {
    try {
      study_variant(m, o).method.validate_timesteps(s.num_timesteps);
    } catch (const Error& e) {
      throw Error("--variants", str_cat("'", m, "': ", e.what()));
    }
  }
}

}  // namespace

StudyResult run_study(const StudyOptions& options) {
  options.validate();
  const auto t_start = Clock::now();
  bool need_captioner = false;
  const StudyOptions o = resolve_study_options(options, need_captioner);
  const bool world_concepts = o.images.empty();
  prepare_out(o.out.string());

  StudyResult result;
  Study s{o, result, {}, {}, o.resolved_checkpoints(), {}, {}, 0, 1000, join_path(o.out.string(), "records.csv")};
  load_study_models(s, need_captioner);
  result.timings.load = seconds_since(t_start);

  if (world_concepts)
    setup_world_concepts(s);
  else
    setup_user_concepts(s);
  for (size_t ci = 0; ci < result.concepts.size(); ++ci) closest_caption_baseline(s, ci);

  const int64_t runs = static_cast<int64_t>(result.concepts.size()) * o.seeds * static_cast<int64_t>(o.modes.size());
  Progress bar("study", runs * o.steps, o.progress);
  int64_t run_index = 0;
  for (size_t ci = 0; ci < result.concepts.size(); ++ci)
    for (int64_t seed = 0; seed < o.seeds; ++seed)
      for (const std::string& mode : o.modes) {
        run_one(s, ci, mode, seed, bar, run_index++);
        const std::string csv = records_csv(result.records);  // partial results survive a kill
        write_file_atomically(s.csv_path, csv.data(), csv.size());
      }
  bar.finish();
  result.files.push_back(s.csv_path);
  if (std::find(o.modes.begin(), o.modes.end(), "token") != o.modes.end())
    result.reach = reach_table(result.records, o.modes, "token");
  for (double th : kFidelityThresholds)
    for (const auto& row : fidelity_reach_table(result.records, o.modes, th)) result.fidelity_reach.push_back(row);
  if (o.stop_patience > 0) result.stops = stop_table(result.records, o.modes, o.steps);
  const auto t_report = Clock::now();
  result.timings.total = seconds_since(t_start);
  write_study_report(o, result);
  result.timings.report = seconds_since(t_report);
  result.timings.total = seconds_since(t_start);
  return result;
}

}  // namespace tinv
