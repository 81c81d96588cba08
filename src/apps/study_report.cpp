// `tinv study` outputs: the figures (plot.h, with spread bands), summary.txt and the
// self-contained report.html (figures as inline SVG, sample images as base64 data URIs).
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

#include "apps/study.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "io/html_report.h"
#include "io/image_write.h"
#include "io/plot.h"

namespace tinv {
namespace {

struct Figure {
  std::string file, title, caption;
  std::vector<uint8_t> png;  // the file, titled
  std::string svg;           // the same plot for the report (under its heading: no title)
};

const std::vector<std::string> kQualityMetrics = {
    "recon_psnr",      "recon_mse",    "recon_latent_mse", "edit_mean", "edit_parsed",    "edit_size", "edit_position",
    "edit_background", "edit_pattern", "edit_shape",       "fidelity",  "fidelity_train", "context"};

// The three modes keep their colours; variants take the next free colour of a palette in the
// order of o.modes.
std::array<uint8_t, 3> mode_colour(const StudyOptions& o, const std::string& mode) {
  if (mode == "caption") return {214, 64, 32};
  if (mode == "class") return {40, 110, 200};
  if (mode == "token") return {50, 150, 60};
  static const std::array<uint8_t, 3> kPalette[] = {{150, 70, 190}, {230, 150, 20}, {30, 170, 170}, {200, 60, 140},
                                                    {120, 120, 40}, {90, 90, 90},   {160, 100, 60}, {20, 60, 140}};
  size_t i = 0;
  for (const std::string& m : o.modes) {
    if (m == mode) break;
    if (m.find('+') != std::string::npos) ++i;
  }
  return kPalette[i % (sizeof kPalette / sizeof kPalette[0])];
}

// "caption+sphere: optimizer=sphere sphere_norm=mean; ..." for the variants among the modes.
std::string variants_text(const StudyOptions& o) {
  std::string s;
  for (const std::string& m : o.modes) {
    if (m.find('+') == std::string::npos) continue;
    const StudyVariant variant = study_variant(m, o);
    std::string opts = variant.num_vectors > 1 ? "num_vectors=" + std::to_string(variant.num_vectors) : "";
    for (const auto& [k, v] : variant.method.non_default()) opts += (opts.empty() ? "" : " ") + k + "=" + v;
    s += (s.empty() ? "" : "; ") + m + ": " + opts;
  }
  return s;
}

// Width of the mode column of the text tables.
int mode_width(const StudyOptions& o) {
  size_t w = 8;
  for (const std::string& m : o.modes) w = std::max(w, m.size() + 1);
  return static_cast<int>(w);
}

bool has_metric(const std::vector<StudyRecord>& records, const std::string& metric) {
  return std::any_of(records.begin(), records.end(), [&](const StudyRecord& r) { return r.metric == metric; });
}

std::string num(double v, const char* f = "%.4g") {
  if (!std::isfinite(v)) return "-";
  char buf[48];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// One curve per mode: the mean over concepts x seeds, with a +-1 sd band.
Figure mode_figure(const StudyOptions& o, const std::vector<StudyRecord>& records, const std::string& metric,
                   const std::string& file, const std::string& title, const std::string& caption) {
  std::vector<PlotSeries> series;
  std::vector<PlotBand> bands;
  for (const std::string& mode : o.modes) {
    Aggregate a = aggregate(records, mode, metric);
    if (a.steps.empty()) continue;
    PlotSeries p;
    p.label = str_cat(mode, " (", a.n.front(), a.n.front() == 1 ? " run)" : " runs)");
    p.color = mode_colour(o, mode);
    PlotBand b;
    b.color = p.color;
    for (size_t i = 0; i < a.steps.size(); ++i) {
      p.x.push_back(static_cast<double>(a.steps[i]));
      p.y.push_back(a.mean[i]);
      b.lo.push_back(a.mean[i] - a.sd[i]);
      b.hi.push_back(a.mean[i] + a.sd[i]);
    }
    b.x = p.x;
    series.push_back(p);
    bands.push_back(b);
  }
  Figure f{file, title, caption, {}, {}};
  LinePlot plot{series, bands, "step", "", title, 800, 420};
  f.png = encode_png(render_line_plot(plot), {}, file);
  plot.title.clear();
  f.svg = render_line_plot_svg(plot);
  return f;
}

std::vector<Figure> make_figures(const StudyOptions& o, const StudyResult& r) {
  const int64_t window = std::clamp<int64_t>(o.steps / 20, 1, 50);
  std::vector<Figure> figs;
  figs.push_back(mode_figure(o, smoothed(r.records, "loss", window), "loss", "loss_raw.png", "Training loss",
                             str_cat("Loss of each update (random timestep and noise), trailing mean over ", window,
                                     " steps per run; mean over concepts x seeds, band +-1 sd.")));
  figs.push_back(mode_figure(o, r.records, "fixed_loss", "loss_fixed.png", "Fixed-input loss",
                             str_cat("Loss on ", o.eval_pairs, " fixed (timestep, noise) pairs, every ", o.eval_every,
                                     " steps; mean over concepts x seeds, band +-1 sd.")));
  figs.push_back(mode_figure(o, relative_to_start(r.records, "fixed_loss"), "fixed_loss", "loss_fixed_relative.png",
                             "Fixed-input loss relative to the start",
                             "Each run's fixed-input loss divided by the mean step-0 fixed-input loss of its "
                             "(concept, seed) over the modes: paired, so the concepts' different loss levels "
                             "do not hide the modes' differences; mean, band +-1 sd."));
  figs.push_back(mode_figure(o, r.records, "recon_psnr", "recon_psnr.png", "Reconstruction PSNR (dB)",
                             "The training prompt with the learned trigger, generated and compared with the "
                             "training image (higher is better)."));
  figs.push_back(mode_figure(o, r.records, "recon_latent_mse", "recon_latent_mse.png", "Reconstruction latent MSE",
                             "MSE between the VAE latents (posterior means, scaled) of the generated and the "
                             "training image (lower is better)."));
  if (has_metric(r.records, "fidelity"))
    figs.push_back(mode_figure(o, r.records, "fidelity", "fidelity.png", "Concept fidelity",
                               "The concept judge's identity score (world/judge.h: shape, body, ring and dot of the "
                               "concept, geometric mean) of images of re-contextualised prompts with the learned "
                               "trigger; mean over concepts x seeds, band +-1 sd (higher is better)."));
  if (has_metric(r.records, "fidelity_train"))
    figs.push_back(mode_figure(o, r.records, "fidelity_train", "fidelity_train.png",
                               "Concept fidelity of the training prompt",
                               "The judge's identity score of images of the training prompt with the learned "
                               "trigger, on fresh sampling seeds: whether the concept is reached at all "
                               "(reachability); mean over concepts x seeds, band +-1 sd (higher is better)."));
  if (has_metric(r.records, "context"))
    figs.push_back(mode_figure(o, r.records, "context", "context.png", "Context (editability)",
                               "The judge's context score of the same images: the requested background colour and "
                               "pattern, place and size, read from the pixels (higher is better)."));
  if (has_metric(r.records, "edit_mean"))
    figs.push_back(mode_figure(o, r.records, "edit_mean", "edit_accuracy.png", "Editability",
                               "Share of the requested size, place, background colour and pattern that the "
                               "captioner reads back from images of re-contextualised prompts (higher is better)."));
  return figs;
}

std::string reach_text(const StudyOptions& o, const StudyResult& r) {
  std::ostringstream out;
  if (r.reach.empty()) {
    out << "steps to reach the token run's final fixed-input loss: token mode not run\n";
    return out.str();
  }
  out << "steps to reach the token-initialised run's final fixed-input loss (per concept and seed; mean over "
         "the runs that reach it):\n";
  char line[300];
  const int w = mode_width(o);
  std::snprintf(line, sizeof line, "  %-*s %5s %8s  %-22s %12s %12s\n", w, "mode", "runs", "reached", "steps", "target",
                "final");
  out << line;
  for (const ReachRow& row : r.reach) {
    std::snprintf(line, sizeof line, "  %-*s %5lld %8lld  %-22s %12s %12s%s\n", w, row.mode.c_str(),
                  static_cast<long long>(row.runs), static_cast<long long>(row.reached), format_reach(row).c_str(),
                  num(row.mean_target).c_str(), num(row.mean_final).c_str(),
                  row.mode == "token" ? "  (reference: first time at its own final value)" : "");
    out << line;
  }
  return out.str();
}

// The mean of `metric` at `step` over the seeds of (concept, mode); std::nullopt without records.
std::optional<double> seed_mean(const StudyResult& r, const std::string& concept, const std::string& mode,
                                const std::string& metric, int64_t step) {
  double sum = 0;
  int n = 0;
  for (const StudyRecord& rec : r.records)
    if (rec.concept == concept && rec.mode == mode && rec.metric == metric && rec.step == step) sum += rec.value, ++n;
  if (n == 0) return std::nullopt;
  return sum / n;
}

// One cell of a per-mode column `w` wide, right-aligned after a space: a text, or a value to 3
// decimals ("-" without one).
std::string mode_cell(int w, const std::string& text) {
  return " " + std::string(std::max<int>(0, w - static_cast<int>(text.size())), ' ') + text;
}
std::string mode_cell(int w, std::optional<double> v) { return mode_cell(w, v ? num(*v, "%.3f") : std::string("-")); }

// Per concept: the closest caption's fidelity against each mode's final fidelity (mean over seeds).
std::string closest_text(const StudyOptions& o, const StudyResult& r) {
  if (r.closest.empty()) return "";
  std::ostringstream out;
  out << "concept fidelity of the edit prompts at the last step, per mode, against the best caption the grammar "
         "can write (the concept's closest captions, same prompts and seeds):\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %-16s %-34s %8s", "concept", "best caption (object words)", "closest");
  out << line;
  const int w = mode_width(o);
  for (const std::string& mode : o.modes) out << mode_cell(w, mode);
  out << "\n";
  for (const ClosestCaption& c : r.closest) {
    std::snprintf(line, sizeof line, "  %-16s %-34s %8.3f", c.concept.c_str(), c.words.c_str(), c.fidelity);
    out << line;
    for (const std::string& mode : o.modes) out << mode_cell(w, seed_mean(r, c.concept, mode, "fidelity", o.steps));
    out << "\n";
  }
  return out.str();
}

// Reachability: the judge's identity of the training prompt's images at the last step, per
// concept and mode (mean over seeds), with the mean and the count of concepts at >= 0.8.
std::string train_fidelity_text(const StudyOptions& o, const StudyResult& r) {
  if (!has_metric(r.records, "fidelity_train")) return "";
  constexpr double kReached = 0.8;  // issue 14's reachability target
  std::ostringstream out;
  out << "concept fidelity of the training prompt at the last step (the learned trigger in the training "
         "image's context, fresh sampling seeds; mean over seeds), per mode:\n";
  char line[256];
  const int w = mode_width(o);
  std::snprintf(line, sizeof line, "  %-16s", "concept");
  out << line;
  for (const std::string& mode : o.modes) out << mode_cell(w, mode);
  out << "\n";
  std::map<std::string, std::vector<double>> per_mode;  // mode -> concept means
  for (const StudyConcept& c : r.concepts) {
    std::snprintf(line, sizeof line, "  %-16s", c.name.c_str());
    out << line;
    for (const std::string& mode : o.modes) {
      const auto m = seed_mean(r, c.name, mode, "fidelity_train", o.steps);
      if (m) per_mode[mode].push_back(*m);
      out << mode_cell(w, m);
    }
    out << "\n";
  }
  std::snprintf(line, sizeof line, "  %-16s", "mean");
  out << line;
  for (const std::string& mode : o.modes) {
    const auto& v = per_mode[mode];
    out << mode_cell(
        w, v.empty() ? std::nullopt : std::optional<double>(std::accumulate(v.begin(), v.end(), 0.0) / v.size()));
  }
  out << "\n";
  std::snprintf(line, sizeof line, "  %-16s", str_cat("concepts >= ", kReached).c_str());
  out << line;
  for (const std::string& mode : o.modes) {
    const auto& v = per_mode[mode];
    const auto reached = std::count_if(v.begin(), v.end(), [](double x) { return x >= kReached; });
    out << mode_cell(w, str_cat(reached, "/", v.size()));
  }
  out << "\n";
  return out.str();
}

std::string fidelity_reach_text(const StudyOptions& o, const StudyResult& r) {
  if (r.fidelity_reach.empty()) return "";
  std::ostringstream out;
  out << "checkpoint steps until the concept fidelity of re-contextualised images first reaches a threshold "
         "(mean over the runs that reach it):\n";
  char line[200];
  const int w = mode_width(o);
  std::snprintf(line, sizeof line, "  %-*s %9s %5s %8s %12s %10s\n", w, "mode", "threshold", "runs", "reached", "steps",
                "best");
  out << line;
  for (const FidelityReachRow& row : r.fidelity_reach) {
    std::snprintf(line, sizeof line, "  %-*s %9.1f %5lld %8lld %12s %10.3f\n", w, row.mode.c_str(), row.threshold,
                  static_cast<long long>(row.runs), static_cast<long long>(row.reached),
                  row.reached ? num(row.mean_steps, "%.1f").c_str() : "not reached", row.best);
    out << line;
  }
  return out.str();
}

// metric -> mode -> "mean+-sd" per checkpoint
std::string quality_text(const StudyOptions& o, const StudyResult& r) {
  std::ostringstream out;
  const auto cps = o.resolved_checkpoints();
  out << "quality at checkpoints (mean +- sd over concepts x seeds):\n  " << std::string(18, ' ')
      << std::string(static_cast<size_t>(mode_width(o)), ' ');
  char cell[64];
  for (int64_t c : cps) std::snprintf(cell, sizeof cell, " %14lld", static_cast<long long>(c)), out << cell;
  out << "\n";
  for (const std::string& metric : kQualityMetrics) {
    if (!has_metric(r.records, metric)) continue;
    for (const std::string& mode : o.modes) {
      Aggregate a = aggregate(r.records, mode, metric);
      std::snprintf(cell, sizeof cell, "  %-18s%-*s", metric.c_str(), mode_width(o), mode.c_str());
      out << cell;
      for (int64_t c : cps) {
        auto it = std::find(a.steps.begin(), a.steps.end(), c);
        std::string v = "-";
        if (it != a.steps.end()) {
          const size_t i = static_cast<size_t>(it - a.steps.begin());
          v = num(a.mean[i], "%.3f") + "+-" + num(a.sd[i], "%.3f");
        }
        std::snprintf(cell, sizeof cell, " %14s", v.c_str());
        out << cell;
      }
      out << "\n";
    }
  }
  return out.str();
}

// The early-stop table: where --stop-patience would have stopped each mode's runs, the steps it
// saves and the quality there against the end of the run.
std::string stop_text(const StudyOptions& o, const StudyResult& r) {
  if (r.stops.empty()) return "";
  std::ostringstream out;
  out << "early stop (fixed-input loss not " << num(100 * o.stop_delta) << "% below its best for " << o.stop_patience
      << " evaluations; runs continue, the rule is only recorded): mean over the stopped runs, at the stop -> at step "
      << o.steps << "\n";
  char line[400];
  const int w = mode_width(o);
  std::snprintf(line, sizeof line, "  %-*s %5s %8s %9s %8s  %-22s %-22s %-22s\n", w, "mode", "runs", "stopped", "stop",
                "saved", "fixed_loss", "recon_psnr", "edit_mean");
  out << line;
  auto pair = [](double a, double b) { return num(a) + " -> " + num(b); };
  for (const StopRow& row : r.stops) {
    std::snprintf(line, sizeof line, "  %-*s %5lld %8lld %9s %8s  %-22s %-22s %-22s\n", w, row.mode.c_str(),
                  static_cast<long long>(row.runs), static_cast<long long>(row.stopped),
                  num(row.mean_stop, "%.1f").c_str(), num(row.mean_saved, "%.1f").c_str(),
                  pair(row.fixed_at_stop, row.fixed_final).c_str(), pair(row.psnr_at_stop, row.psnr_final).c_str(),
                  pair(row.edit_at_stop, row.edit_final).c_str());
    out << line;
  }
  return out.str();
}

std::string timing_text(const StudyResult& r) {
  const StudyTimings& t = r.timings;
  char buf[600];
  std::snprintf(buf, sizeof buf,
                "total %s; model load %s; captions %s; %lld training steps %s (%.1f ms/step); %lld "
                "fixed-input evaluations %s (%.1f ms each); %lld quality checkpoints %s (%.2f s each)",
                format_duration(t.total).c_str(), format_duration(t.load).c_str(), format_duration(t.captions).c_str(),
                static_cast<long long>(t.train_steps), format_duration(t.train).c_str(), 1000 * t.per_step(),
                static_cast<long long>(t.fixed_evals), format_duration(t.fixed_eval).c_str(), 1000 * t.per_fixed_eval(),
                static_cast<long long>(t.quality_evals), format_duration(t.quality).c_str(), t.per_quality_eval());
  return buf;
}

// The sample images of one concept (seed 0): rows = checkpoints, columns = modes, each cell the
// reconstruction followed by the edit images, and what the captioner read from the edits.
void add_samples(HtmlReport& h, const StudyOptions& o, const StudyResult& r, const StudyConcept& c) {
  h.heading(c.name, 3);
  std::string prompts = "prompts ({} = the learned trigger): " + c.init.tmpl;
  for (const auto& e : c.edits) prompts += " | " + e.tmpl;
  h.paragraph(prompts);
  h.image(encode_png(c.target), c.name + ": training image", 96);
  std::vector<std::string> header = {"step"};
  for (const std::string& mode : o.modes) header.push_back(mode);
  std::vector<std::vector<std::string>> rows;
  for (int64_t cp : o.resolved_checkpoints()) {
    std::vector<std::string> row = {HtmlReport::text(std::to_string(cp))};
    for (const std::string& mode : o.modes) {
      auto it = std::find_if(r.samples.begin(), r.samples.end(), [&](const StudySample& s) {
        return s.concept == c.name && s.mode == mode && s.step == cp;
      });
      std::string cell;
      if (it != r.samples.end()) {
        std::vector<torch::Tensor> tiles;
        for (int64_t i = 0; i < it->images.size(0); ++i) tiles.push_back(it->images[i]);
        cell = HtmlReport::images({encode_png(make_grid(tiles, static_cast<int64_t>(tiles.size())))},
                                  str_cat(c.name, " ", mode, " step ", cp));
        if (!it->captions.empty()) {
          std::string read;
          for (const auto& cap : it->captions) read += (read.empty() ? "" : " | ") + cap;
          cell += "<details><summary>captions</summary>" + HtmlReport::text(read) + "</details>";
        }
      }
      row.push_back(cell);
    }
    rows.push_back(row);
  }
  h.table(header, rows);
}

std::string report_html(const StudyOptions& o, const StudyResult& r, const std::vector<Figure>& figs) {
  HtmlReport h("tinv study: caption vs class vs token initialisation");
  std::string checkpoints;
  for (int64_t c : o.resolved_checkpoints()) checkpoints += (checkpoints.empty() ? "" : ", ") + std::to_string(c);
  h.key_values({{"model", o.model.string()},
                {"captioner", o.captioner.empty() ? "(not used)" : o.captioner.string()},
                {"runs", str_cat(r.concepts.size(), " concepts x ", o.modes.size(), " modes x ", o.seeds, " seeds")},
                {"training", str_cat(o.steps, " steps, lr ", o.lr, ", fixed-input loss every ", o.eval_every,
                                     " steps on ", o.eval_pairs, " pairs")},
                {"quality", str_cat("at steps ", checkpoints, "; ", o.sampler, ", ", o.sample_steps, " steps, cfg ",
                                    o.cfg, ", ", o.edits, " edit prompts")},
                {"records", str_cat("records.csv (", kRecordsCsvHeader, ")")},
                {"variants", variants_text(o).empty() ? "(none: init modes only)" : variants_text(o)},
                {"time", timing_text(r)}});

  h.heading("Concepts");
  std::vector<std::vector<std::string>> rows;
  for (const StudyConcept& c : r.concepts)
    rows.push_back({HtmlReport::text(c.name + " (" + c.source + ")"),
                    HtmlReport::images({encode_png(c.target)}, c.name, 96), HtmlReport::text(c.caption),
                    HtmlReport::text(c.init.init_text), HtmlReport::text(c.class_word),
                    HtmlReport::text(c.init.tmpl + (c.init.fallback ? " (fallback: " + c.init.note + ")" : ""))});
  h.table({"concept", "image", "caption", "caption init", "class", "template"}, rows);

  h.heading("Convergence");
  for (const Figure& f : figs) {
    if (f.file == "recon_psnr.png") h.heading("Quality");
    h.heading(f.title, 3);
    h.paragraph(f.caption);
    h.svg(f.svg);
    if (f.file == "loss_fixed_relative.png") h.code(reach_text(o, r) + stop_text(o, r));
    if (f.file == "fidelity.png") h.code(fidelity_reach_text(o, r) + "\n" + closest_text(o, r));
    if (f.file == "fidelity_train.png") h.code(train_fidelity_text(o, r));
  }
  h.code(quality_text(o, r));

  h.heading("Samples (seed 0)");
  h.paragraph(
      "Each cell: the reconstruction, then the images of the edit prompts; under it what the "
      "captioner read from the edit images.");
  for (const StudyConcept& c : r.concepts) add_samples(h, o, r, c);
  if (!r.notes.empty()) {
    h.heading("Notes");
    std::string notes;
    for (const auto& n : r.notes) notes += n + "\n";
    h.code(notes);
  }
  return h.html();
}

}  // namespace

std::string study_summary(const StudyOptions& o, const StudyResult& r) {
  std::ostringstream out;
  out << "tinv study: " << r.concepts.size() << " concepts x " << o.modes.size() << " modes x " << o.seeds << " seeds, "
      << o.steps << " steps, lr " << o.lr << "\n  model " << o.model.string() << "\n  captioner "
      << (o.captioner.empty() ? "(not used)" : o.captioner.string()) << "\n  quality images " << o.sampler << ", "
      << o.sample_steps << " steps, cfg " << o.cfg << ", " << o.edits << " edit prompts\n";
  if (!variants_text(o).empty()) out << "  variants " << variants_text(o) << "\n";
  for (const StudyConcept& c : r.concepts)
    out << "  " << c.name << " (" << c.source << "): caption \"" << c.caption << "\" -> init \"" << c.init.init_text
        << "\", class \"" << c.class_word << "\", template \"" << c.init.tmpl << "\""
        << (c.init.fallback ? " (fallback)" : "") << "\n";
  out << "\n" << reach_text(o, r) << "\n";
  if (!r.stops.empty()) out << stop_text(o, r) << "\n";
  if (!r.fidelity_reach.empty()) out << fidelity_reach_text(o, r) << "\n";
  if (!r.closest.empty()) out << closest_text(o, r) << "\n";
  if (has_metric(r.records, "fidelity_train")) out << train_fidelity_text(o, r) << "\n";
  out << quality_text(o, r) << "\n";
  for (const auto& n : r.notes) out << "note: " << n << "\n";
  out << "timing: " << timing_text(r) << "\n";
  return out.str();
}

void write_study_report(const StudyOptions& o, StudyResult& r) {
  const std::vector<Figure> figs = make_figures(o, r);
  for (const Figure& f : figs) {
    const std::string path = join_path(o.out.string(), f.file);
    write_file_atomically(path, f.png.data(), f.png.size());
    r.files.push_back(path);
  }
  r.summary = study_summary(o, r);
  const std::string summary_path = join_path(o.out.string(), "summary.txt");
  write_file_atomically(summary_path, r.summary.data(), r.summary.size());
  r.files.push_back(summary_path);
  const std::string html = report_html(o, r, figs);
  const std::string html_path = join_path(o.out.string(), "report.html");
  write_file_atomically(html_path, html.data(), html.size());
  r.files.push_back(html_path);
}

}  // namespace tinv
