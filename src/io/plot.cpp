// The layout is computed once into a list of drawing items (strokes, fills, texts in pixel
// coordinates); two back ends draw it: Cairo into an RGB image, and an SVG writer. Text widths
// for the layout come from Cairo with the same font, so both look alike.
#include "io/plot.h"

#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <variant>

#include "common/error.h"
#include "io/html_report.h"  // html_escape, also for the SVG text
#include "io/image_write.h"

namespace tinv {
namespace {

using Rgb = std::array<uint8_t, 3>;
constexpr const char* kFamily = "DejaVu Sans";
constexpr int64_t kMinSize = 32, kMaxSize = 16384;
constexpr double kTickFont = 12, kLabelFont = 13, kLegendFont = 12, kTitleFont = 15;
// Baseline offsets as fractions of the font size (DejaVu Sans: ascent of digits and capitals
// about 0.73 em, descent 0.24 em).
constexpr double kAscent = 0.75, kDescent = 0.24, kMiddle = 0.36;

struct Pt {
  double x, y;
};
enum class Anchor { Start, Middle, End };
struct Stroke {
  std::vector<std::vector<Pt>> paths;
  Rgb color;
  double width = 1;
  bool series = false;  // a data curve: one SVG <polyline>, round joins and caps
};
struct Fill {
  std::vector<Pt> polygon;
  Rgb color;
  double opacity = 1;
};
struct Text {
  std::string text;  // cleaned (valid UTF-8, no control characters)
  double x, y;       // the baseline's anchor point
  double size;
  Anchor anchor = Anchor::Start;
  bool bold = false, vertical = false;  // vertical: rotated 90 degrees counter-clockwise
  Rgb color{0, 0, 0};
};
using Item = std::variant<Stroke, Fill, Text>;
struct Scene {
  int64_t width, height;
  std::vector<Item> items;
};

// Valid UTF-8 is kept, control characters become spaces, bytes of broken sequences '?' (Cairo
// refuses invalid UTF-8 and XML control characters).
std::string clean_text(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += c < 0x20 || c == 0x7F ? ' ' : static_cast<char>(c);
      ++i;
      continue;
    }
    const size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && n == 3) {  // no overlongs, no surrogates
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
    }
    if (ok && n == 4) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
    }
    if (ok)
      out.append(s, i, n), i += n;
    else
      out += '?', ++i;
  }
  return out;
}

struct CairoDeleter {
  void operator()(cairo_t* cr) const { cairo_destroy(cr); }
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
  void operator()(cairo_font_options_t* f) const { cairo_font_options_destroy(f); }
};
using CairoPtr = std::unique_ptr<cairo_t, CairoDeleter>;
using SurfacePtr = std::unique_ptr<cairo_surface_t, CairoDeleter>;

void set_font(cairo_t* cr, double size, bool bold) {
  cairo_select_font_face(cr, kFamily, CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  std::unique_ptr<cairo_font_options_t, CairoDeleter> fo(cairo_font_options_create());
  cairo_font_options_set_antialias(fo.get(), CAIRO_ANTIALIAS_GRAY);
  cairo_font_options_set_hint_style(fo.get(), CAIRO_HINT_STYLE_SLIGHT);
  cairo_font_options_set_hint_metrics(fo.get(), CAIRO_HINT_METRICS_OFF);
  cairo_set_font_options(cr, fo.get());
}

// Text widths in pixels, measured by Cairo with the plots' font.
class Measure {
 public:
  Measure() : surface_(cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1)), cr_(cairo_create(surface_.get())) {}
  double width(const std::string& text, double size, bool bold = false) const {
    set_font(cr_.get(), size, bold);
    cairo_text_extents_t e;
    cairo_text_extents(cr_.get(), text.c_str(), &e);
    return e.x_advance;
  }

 private:
  SurfacePtr surface_;
  CairoPtr cr_;
};

// Ticks at multiples of 1, 2 or 5 x 10^k inside [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target, double* step_out) {
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  std::vector<double> ticks;
  const double first = std::ceil(lo / step - 1e-9);
  for (double k = first; k * step <= hi + 1e-9 * step && ticks.size() < 100; k += 1) {
    const double v = k * step;
    ticks.push_back(std::abs(v) < 1e-9 * step ? 0.0 : v);
  }
  *step_out = step;
  return ticks;
}

// Tick labels with as many decimals as the step needs ("0.25", "1500", "2.5e-05").
std::vector<std::string> tick_labels(const std::vector<double>& ticks, double step) {
  double biggest = 0;
  for (double v : ticks) biggest = std::max(biggest, std::abs(v));
  const int step_exp = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  const bool sci = biggest >= 1e6 || (biggest > 0 && biggest < 1e-3);
  std::vector<std::string> out;
  char buf[64];
  for (double v : ticks) {
    if (sci) {
      const int top = v == 0 ? step_exp : static_cast<int>(std::floor(std::log10(std::abs(v)) + 1e-9));
      std::snprintf(buf, sizeof buf, "%.*e", std::clamp(top - step_exp, 0, 6), v);
    } else {
      std::snprintf(buf, sizeof buf, "%.*f", std::clamp(-step_exp, 0, 10), v);
    }
    out.push_back(v == 0 ? (sci ? std::string("0") : std::string(buf)) : std::string(buf));
  }
  return out;
}

double snap(double v) { return std::floor(v) + 0.5; }  // 1-px lines on pixel centres

bool usable(const PlotBand& b) { return b.lo.size() == b.x.size() && b.hi.size() == b.x.size(); }
bool band_point(const PlotBand& b, size_t i) {
  return std::isfinite(b.x[i]) && std::isfinite(b.lo[i]) && std::isfinite(b.hi[i]);
}
bool series_point(const PlotSeries& s, size_t i) { return std::isfinite(s.x[i]) && std::isfinite(s.y[i]); }
size_t series_size(const PlotSeries& s) { return std::min(s.x.size(), s.y.size()); }

struct Range {
  double xmin, xmax, ymin, ymax;
};

// The data's x and y range over every finite point of the series and bands, widened where it is
// empty or a single value, and padded 5% in y.
Range data_range(const LinePlot& p) {
  const double inf = std::numeric_limits<double>::infinity();
  Range r{inf, -inf, inf, -inf};
  for (const auto& s : p.series)
    for (size_t i = 0; i < series_size(s); ++i) {
      if (!series_point(s, i)) continue;
      r.xmin = std::min(r.xmin, s.x[i]), r.xmax = std::max(r.xmax, s.x[i]);
      r.ymin = std::min(r.ymin, s.y[i]), r.ymax = std::max(r.ymax, s.y[i]);
    }
  for (const auto& b : p.bands)
    if (usable(b))
      for (size_t i = 0; i < b.x.size(); ++i) {
        if (!band_point(b, i)) continue;
        r.xmin = std::min(r.xmin, b.x[i]), r.xmax = std::max(r.xmax, b.x[i]);
        r.ymin = std::min({r.ymin, b.lo[i], b.hi[i]}), r.ymax = std::max({r.ymax, b.lo[i], b.hi[i]});
      }
  if (!(r.xmin <= r.xmax)) r.xmin = 0, r.xmax = 1;
  if (!(r.ymin <= r.ymax)) r.ymin = 0, r.ymax = 1;
  if (r.xmax == r.xmin) {
    const double d = std::max(0.5, 0.05 * std::abs(r.xmin));
    r.xmin -= d, r.xmax += d;
  }
  if (r.ymax == r.ymin) {
    const double d = std::max(0.5, 0.05 * std::abs(r.ymin));
    r.ymin -= d, r.ymax += d;
  }
  const double pad = 0.05 * (r.ymax - r.ymin);
  r.ymin -= pad, r.ymax += pad;
  return r;
}

// The plot area in pixels, its ticks and their labels, and the data-to-pixel mapping.
struct Frame {
  Range r;
  double left, right, top, bottom;
  std::vector<double> xticks, yticks;
  std::vector<std::string> xlabels, ylabels;
  double px(double x) const { return left + (x - r.xmin) / (r.xmax - r.xmin) * (right - left); }
  double py(double y) const { return bottom - (y - r.ymin) / (r.ymax - r.ymin) * (bottom - top); }
  double xtick_base() const { return bottom + 5 + 4 + kAscent * kTickFont; }
};

// Margins: the title on top; x tick labels and the x label below; the y label and y tick labels
// on the left.
Frame make_frame(const LinePlot& p, const Range& r, const Measure& m, bool title, bool x_label, bool y_label) {
  const double W = static_cast<double>(p.width), H = static_cast<double>(p.height);
  Frame f{r, 0, 0, 0, 0, {}, {}, {}, {}};
  f.top = title ? 8 + kTitleFont + 12 : 12;
  const double bottom = H - (5 + 4 + (kAscent + kDescent) * kTickFont + (x_label ? 6 + kLabelFont + 8 : 6));
  double step_y = 1;
  f.yticks = nice_ticks(r.ymin, r.ymax, std::clamp(static_cast<int>((bottom - f.top) / 60), 2, 8), &step_y);
  f.ylabels = tick_labels(f.yticks, step_y);
  double ytick_w = 0;
  for (const auto& l : f.ylabels) ytick_w = std::max(ytick_w, m.width(l, kTickFont));
  f.left = std::ceil(8 + (y_label ? kLabelFont + 6 : 0) + ytick_w + 4 + 5);
  double right = W - 16, step_x = 1;
  auto x_ticks = [&] {
    f.xticks = nice_ticks(r.xmin, r.xmax, std::clamp(static_cast<int>((right - f.left) / 70), 2, 10), &step_x);
    f.xlabels = tick_labels(f.xticks, step_x);
  };
  x_ticks();
  if (!f.xlabels.empty() && f.xticks.back() == r.xmax) {  // the last label centred on the right edge
    right = std::min(right, W - 4 - m.width(f.xlabels.back(), kTickFont) / 2);
    x_ticks();
  }
  f.right = std::max(right, f.left + 1);
  f.bottom = std::max(bottom, f.top + 1);
  return f;
}

void add_grid_and_bands(Scene& sc, const LinePlot& p, const Frame& f) {
  Stroke g{{}, {228, 228, 228}, 1, false};
  for (double v : f.xticks) g.paths.push_back({{snap(f.px(v)), f.top}, {snap(f.px(v)), f.bottom}});
  for (double v : f.yticks) g.paths.push_back({{f.left, snap(f.py(v))}, {f.right, snap(f.py(v))}});
  sc.items.push_back(g);
  for (const auto& b : p.bands) {
    if (!usable(b)) continue;
    std::vector<Pt> hi, lo;
    for (size_t i = 0; i < b.x.size(); ++i)
      if (band_point(b, i)) hi.push_back({f.px(b.x[i]), f.py(b.hi[i])}), lo.push_back({f.px(b.x[i]), f.py(b.lo[i])});
    if (hi.empty()) continue;
    if (hi.size() == 1) {  // one point: a column 2 px wide
      hi = {{hi[0].x - 1, hi[0].y}, {hi[0].x + 1, hi[0].y}};
      lo = {{lo[0].x - 1, lo[0].y}, {lo[0].x + 1, lo[0].y}};
    }
    Fill fill{hi, b.color, 0.2};
    fill.polygon.insert(fill.polygon.end(), lo.rbegin(), lo.rend());
    sc.items.push_back(fill);
  }
}

void add_axes(Scene& sc, const Frame& f) {
  const Rgb dim{60, 60, 60};
  const double l = snap(f.left), b = snap(f.bottom);
  Stroke axes{{{{l, f.top}, {l, b}, {f.right, b}}}, {0, 0, 0}, 1, false};
  for (double v : f.xticks) axes.paths.push_back({{snap(f.px(v)), b}, {snap(f.px(v)), b + 5}});
  for (double v : f.yticks) axes.paths.push_back({{l - 5, snap(f.py(v))}, {l, snap(f.py(v))}});
  sc.items.push_back(axes);
  for (size_t i = 0; i < f.xticks.size(); ++i)
    sc.items.push_back(
        Text{f.xlabels[i], f.px(f.xticks[i]), f.xtick_base(), kTickFont, Anchor::Middle, false, false, dim});
  for (size_t i = 0; i < f.yticks.size(); ++i)
    sc.items.push_back(Text{f.ylabels[i], f.left - 5 - 4, f.py(f.yticks[i]) + kMiddle * kTickFont, kTickFont,
                            Anchor::End, false, false, dim});
}

// The curves; returns their points, and points every few pixels along their segments, for the
// legend's placement.
std::vector<Pt> add_curves(Scene& sc, const LinePlot& p, const Frame& f) {
  std::vector<Pt> all_points;
  for (const auto& s : p.series) {
    std::vector<Pt> pts;
    for (size_t i = 0; i < series_size(s); ++i)
      if (series_point(s, i)) pts.push_back({f.px(s.x[i]), f.py(s.y[i])});
    if (pts.empty()) continue;
    all_points.push_back(pts[0]);
    for (size_t i = 1; i < pts.size(); ++i) {
      const double len = std::hypot(pts[i].x - pts[i - 1].x, pts[i].y - pts[i - 1].y);
      const int n = std::min(200, static_cast<int>(len / 4) + 1);
      for (int k = 1; k <= n; ++k)
        all_points.push_back(
            {pts[i - 1].x + (pts[i].x - pts[i - 1].x) * k / n, pts[i - 1].y + (pts[i].y - pts[i - 1].y) * k / n});
    }
    sc.items.push_back(Stroke{{pts}, s.color, 2, true});
  }
  return all_points;
}

void add_labels(Scene& sc, const Frame& f, const std::string& title, const std::string& x_label,
                const std::string& y_label) {
  const Rgb black{0, 0, 0};
  if (!x_label.empty())
    sc.items.push_back(Text{x_label, (f.left + f.right) / 2,
                            f.xtick_base() + kDescent * kTickFont + 6 + kAscent * kLabelFont, kLabelFont,
                            Anchor::Middle, false, false, black});
  if (!y_label.empty())
    sc.items.push_back(Text{y_label, 8 + kAscent * kLabelFont, (f.top + f.bottom) / 2, kLabelFont, Anchor::Middle,
                            false, true, black});
  if (!title.empty())
    sc.items.push_back(
        Text{title, (f.left + f.right) / 2, 8 + kAscent * kTitleFont, kTitleFont, Anchor::Middle, true, false, black});
}

// The legend: in the corner of the plot area that covers the fewest curve points.
void add_legend(Scene& sc, const LinePlot& p, const Frame& f, const std::vector<Pt>& all_points, const Measure& m) {
  std::vector<std::pair<std::string, Rgb>> entries;
  for (const auto& s : p.series)
    if (!s.label.empty()) entries.emplace_back(clean_text(s.label), s.color);
  if (entries.empty()) return;
  const double row = 18, inner = 8, swatch = 22;
  double text_w = 0;
  for (const auto& e : entries) text_w = std::max(text_w, m.width(e.first, kLegendFont));
  const double bw = std::ceil(inner + swatch + 6 + text_w + inner), bh = 6 + row * entries.size() + 6;
  const double inset = 8;
  const Pt corners[] = {{f.right - inset - bw, f.top + inset},
                        {f.right - inset - bw, f.bottom - inset - bh},
                        {f.left + inset, f.top + inset},
                        {f.left + inset, f.bottom - inset - bh}};
  Pt at = corners[0];
  size_t best = std::numeric_limits<size_t>::max();
  for (const Pt& c : corners) {
    const size_t n = static_cast<size_t>(std::count_if(all_points.begin(), all_points.end(), [&](const Pt& q) {
      return q.x >= c.x - 4 && q.x <= c.x + bw + 4 && q.y >= c.y - 4 && q.y <= c.y + bh + 4;
    }));
    if (n < best) best = n, at = c;
  }
  at = {std::floor(at.x), std::floor(at.y)};
  const std::vector<Pt> box = {{at.x, at.y}, {at.x + bw, at.y}, {at.x + bw, at.y + bh}, {at.x, at.y + bh}};
  sc.items.push_back(Fill{box, {255, 255, 255}, 0.85});
  const double x0 = at.x + 0.5, y0 = at.y + 0.5, x1 = at.x + bw - 0.5, y1 = at.y + bh - 0.5;
  sc.items.push_back(Stroke{{{{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}, {x0, y0}}}, {200, 200, 200}, 1, false});
  for (size_t i = 0; i < entries.size(); ++i) {
    const double cy = at.y + 6 + row * (static_cast<double>(i) + 0.5);
    sc.items.push_back(Stroke{{{{at.x + inner, cy}, {at.x + inner + swatch, cy}}}, entries[i].second, 3, false});
    sc.items.push_back(Text{entries[i].first,
                            at.x + inner + swatch + 6,
                            cy + kMiddle * kLegendFont,
                            kLegendFont,
                            Anchor::Start,
                            false,
                            false,
                            {0, 0, 0}});
  }
}

Scene layout(const LinePlot& p, const char* where) {
  TINV_CHECK(p.width >= kMinSize && p.width <= kMaxSize && p.height >= kMinSize && p.height <= kMaxSize, where,
             "plot size ", p.width, "x", p.height, ": width and height must each be ", kMinSize, "..", kMaxSize,
             " pixels");
  Scene sc{p.width, p.height, {}};
  const Measure m;
  const std::string title = clean_text(p.title), x_label = clean_text(p.x_label), y_label = clean_text(p.y_label);
  const Frame f = make_frame(p, data_range(p), m, !title.empty(), !x_label.empty(), !y_label.empty());
  add_grid_and_bands(sc, p, f);
  add_axes(sc, f);
  const std::vector<Pt> all_points = add_curves(sc, p, f);
  add_labels(sc, f, title, x_label, y_label);
  add_legend(sc, p, f, all_points, m);
  return sc;
}

// ---- Cairo ----

void source(cairo_t* cr, const Rgb& c, double alpha = 1) {
  cairo_set_source_rgba(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0, alpha);
}

torch::Tensor draw_cairo(const Scene& sc) {
  SurfacePtr surface(
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, static_cast<int>(sc.width), static_cast<int>(sc.height)));
  CairoPtr holder(cairo_create(surface.get()));
  cairo_t* cr = holder.get();
  cairo_set_antialias(cr, CAIRO_ANTIALIAS_GRAY);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  for (const Item& item : sc.items) {
    if (const auto* s = std::get_if<Stroke>(&item)) {
      source(cr, s->color);
      cairo_set_line_width(cr, s->width);
      cairo_set_line_join(cr, s->series ? CAIRO_LINE_JOIN_ROUND : CAIRO_LINE_JOIN_MITER);
      cairo_set_line_cap(cr, s->series ? CAIRO_LINE_CAP_ROUND : CAIRO_LINE_CAP_BUTT);
      for (const auto& path : s->paths) {
        cairo_move_to(cr, path[0].x, path[0].y);
        if (path.size() == 1) cairo_line_to(cr, path[0].x, path[0].y);  // a dot (round caps)
        for (size_t i = 1; i < path.size(); ++i) cairo_line_to(cr, path[i].x, path[i].y);
      }
      cairo_stroke(cr);
    } else if (const auto* f = std::get_if<Fill>(&item)) {
      source(cr, f->color, f->opacity);
      cairo_move_to(cr, f->polygon[0].x, f->polygon[0].y);
      for (size_t i = 1; i < f->polygon.size(); ++i) cairo_line_to(cr, f->polygon[i].x, f->polygon[i].y);
      cairo_close_path(cr);
      cairo_fill(cr);
    } else {
      const auto& t = std::get<Text>(item);
      set_font(cr, t.size, t.bold);
      source(cr, t.color);
      cairo_text_extents_t e;
      cairo_text_extents(cr, t.text.c_str(), &e);
      const double shift = t.anchor == Anchor::Start ? 0 : t.anchor == Anchor::Middle ? e.x_advance / 2 : e.x_advance;
      cairo_save(cr);
      cairo_translate(cr, t.x, t.y);
      if (t.vertical) cairo_rotate(cr, -std::acos(-1.0) / 2);
      cairo_move_to(cr, -shift, 0);
      cairo_show_text(cr, t.text.c_str());
      cairo_restore(cr);
    }
  }
  TINV_CHECK(cairo_status(cr) == CAIRO_STATUS_SUCCESS, "render_line_plot",
             "cairo: ", cairo_status_to_string(cairo_status(cr)));
  cairo_surface_flush(surface.get());
  const unsigned char* data = cairo_image_surface_get_data(surface.get());
  const int stride = cairo_image_surface_get_stride(surface.get());
  auto out = torch::empty({sc.height, sc.width, 3}, torch::kUInt8);
  uint8_t* o = out.data_ptr<uint8_t>();
  for (int64_t y = 0; y < sc.height; ++y) {
    const auto* row = reinterpret_cast<const uint32_t*>(data + y * stride);
    for (int64_t x = 0; x < sc.width; ++x, o += 3) {
      const uint32_t v = row[x];  // 0x00RRGGBB in native byte order
      o[0] = static_cast<uint8_t>(v >> 16), o[1] = static_cast<uint8_t>(v >> 8), o[2] = static_cast<uint8_t>(v);
    }
  }
  return out;
}

// ---- SVG ----

std::string num(double v) {  // "12.5", "3", at most 2 decimals
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  std::string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

std::string hex(const Rgb& c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c[0], c[1], c[2]);
  return buf;
}

std::string draw_svg(const Scene& sc) {
  const std::string w = std::to_string(sc.width), h = std::to_string(sc.height);
  std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + w + "\" height=\"" + h +
                    "\" viewBox=\"0 0 " + w + " " + h +
                    "\" font-family=\"DejaVu Sans, sans-serif\" class=\"plot\">\n"
                    "<rect width=\"" +
                    w + "\" height=\"" + h + "\" fill=\"#ffffff\"/>\n";
  for (const Item& item : sc.items) {
    if (const auto* s = std::get_if<Stroke>(&item)) {
      const std::string style = "fill=\"none\" stroke=\"" + hex(s->color) + "\" stroke-width=\"" + num(s->width) + "\"";
      if (s->series) {
        out += "<polyline " + style + " stroke-linejoin=\"round\" stroke-linecap=\"round\" points=\"";
        for (size_t i = 0; i < s->paths[0].size(); ++i)
          out += (i ? " " : "") + num(s->paths[0][i].x) + "," + num(s->paths[0][i].y);
        out += "\"/>\n";
      } else {
        out += "<path " + style + " d=\"";
        for (const auto& path : s->paths)
          for (size_t i = 0; i < path.size(); ++i) out += (i ? "L" : "M") + num(path[i].x) + " " + num(path[i].y);
        out += "\"/>\n";
      }
    } else if (const auto* f = std::get_if<Fill>(&item)) {
      out += "<path fill=\"" + hex(f->color) + "\"" +
             (f->opacity < 1 ? " fill-opacity=\"" + num(f->opacity) + "\"" : std::string()) + " d=\"";
      for (size_t i = 0; i < f->polygon.size(); ++i)
        out += (i ? "L" : "M") + num(f->polygon[i].x) + " " + num(f->polygon[i].y);
      out += "Z\"/>\n";
    } else {
      const auto& t = std::get<Text>(item);
      out += "<text x=\"" + num(t.x) + "\" y=\"" + num(t.y) + "\" font-size=\"" + num(t.size) + "\"";
      if (t.anchor != Anchor::Start)
        out += t.anchor == Anchor::Middle ? " text-anchor=\"middle\"" : " text-anchor=\"end\"";
      if (t.bold) out += " font-weight=\"bold\"";
      if (t.vertical) out += " transform=\"rotate(-90 " + num(t.x) + " " + num(t.y) + ")\"";
      if (t.color != Rgb{0, 0, 0}) out += " fill=\"" + hex(t.color) + "\"";
      out += ">" + html_escape(t.text) + "</text>\n";
    }
  }
  return out + "</svg>\n";
}

}  // namespace

torch::Tensor render_line_plot(const LinePlot& plot) { return draw_cairo(layout(plot, "render_line_plot")); }

std::string render_line_plot_svg(const LinePlot& plot) { return draw_svg(layout(plot, "render_line_plot_svg")); }

void save_line_plot(const std::string& path, const LinePlot& plot) {
  save_png(path, draw_cairo(layout(plot, path.c_str())));
}

torch::Tensor render_line_plot(const std::vector<PlotSeries>& series, const std::string& x_label, int64_t width,
                               int64_t height) {
  return render_line_plot(LinePlot{series, {}, x_label, "", "", width, height});
}

torch::Tensor render_line_plot(const std::vector<PlotSeries>& series, const std::vector<PlotBand>& bands,
                               const std::string& x_label, int64_t width, int64_t height) {
  return render_line_plot(LinePlot{series, bands, x_label, "", "", width, height});
}

std::string render_line_plot_svg(const std::vector<PlotSeries>& series, const std::vector<PlotBand>& bands,
                                 const std::string& x_label, int64_t width, int64_t height) {
  return render_line_plot_svg(LinePlot{series, bands, x_label, "", "", width, height});
}

void save_line_plot(const std::string& path, const std::vector<PlotSeries>& series, const std::string& x_label,
                    int64_t width, int64_t height) {
  save_line_plot(path, LinePlot{series, {}, x_label, "", "", width, height});
}

std::string plot_font_file() {
  FcPattern* pattern = FcNameParse(reinterpret_cast<const FcChar8*>(kFamily));
  if (!pattern) return "";
  FcConfigSubstitute(nullptr, pattern, FcMatchPattern);
  FcDefaultSubstitute(pattern);
  FcResult result = FcResultNoMatch;
  FcPattern* match = FcFontMatch(nullptr, pattern, &result);
  std::string file;
  FcChar8* f = nullptr;
  if (match && FcPatternGetString(match, FC_FILE, 0, &f) == FcResultMatch && f) file = reinterpret_cast<char*>(f);
  if (match) FcPatternDestroy(match);
  FcPatternDestroy(pattern);
  return file;
}

}  // namespace tinv
