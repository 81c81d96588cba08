// The concept judge (see judge.h). Deterministic: integer labels, doubles, no randomness except
// the renderings of the validation, which come from Rng.
#include "world/judge.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "common/error.h"
#include "world/render.h"

namespace tinv::world {
namespace {

enum Region : int { kOutside = 0, kBody = 1, kRing = 2, kDot = 3 };
constexpr int kToneLabel = kNumColours;  // label of the background's second tone
constexpr int kSub = 3;                  // sub-samples per pixel side for the expected regions

// The region of local point (u, v) of an object of shape s with a ring and a dot (render.h's
// marked_paint: the dot is painted over the ring).
int region_at(Shape s, double u, double v) {
  if (!inside_shape(s, u, v)) return kOutside;
  if (u * u + v * v <= kDotRadius * kDotRadius) return kDot;
  if (inside_shape(s, u / kRingOuter, v / kRingOuter) && !inside_shape(s, u / kRingInner, v / kRingInner)) return kRing;
  return kBody;
}

// Area and centroid of a shape in its unit frame (radius 1), on a fine grid, computed once each.
struct ShapeMoments {
  double area = 0, cu = 0, cv = 0;
};
const ShapeMoments& moments(Shape s) {
  static const std::array<ShapeMoments, kNumShapes> all = [] {
    std::array<ShapeMoments, kNumShapes> out{};
    constexpr int n = 400;
    constexpr double lo = -1.05, step = 2.1 / n;
    for (int k = 0; k < kNumShapes; ++k) {
      double count = 0, su = 0, sv = 0;
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i) {
          const double u = lo + (i + 0.5) * step, v = lo + (j + 0.5) * step;
          if (!inside_shape(static_cast<Shape>(k), u, v)) continue;
          count += 1, su += u, sv += v;
        }
      out[k] = {count * step * step, su / count, sv / count};
    }
    return out;
  }();
  return all[static_cast<int>(s)];
}

double distance2(Rgb a, Rgb b) {
  const double dr = a.r - b.r, dg = a.g - b.g, db = a.b - b.b;
  return dr * dr + dg * dg + db * db;
}

// Nearest palette entry of every pixel: a colour index, or kToneLabel for the background tone.
std::vector<int> label_pixels(const Image& im, Colour background) {
  std::vector<Rgb> palette;
  for (int k = 0; k < kNumColours; ++k) palette.push_back(rgb(static_cast<Colour>(k)));
  palette.push_back(background_tone(background));
  std::vector<int> labels(static_cast<size_t>(im.width) * im.height);
  for (int y = 0; y < im.height; ++y)
    for (int x = 0; x < im.width; ++x) {
      const Rgb c = im.pixel(x, y);
      int best = 0;
      for (int k = 1; k < static_cast<int>(palette.size()); ++k)
        if (distance2(c, palette[k]) < distance2(c, palette[best])) best = k;
      labels[static_cast<size_t>(y) * im.width + x] = best;
    }
  return labels;
}

// The largest 4-connected component of `mask` (row-major, w x h).
std::vector<uint8_t> largest_component(const std::vector<uint8_t>& mask, int w, int h) {
  std::vector<int> comp(mask.size(), -1);
  std::vector<size_t> stack;
  int best = -1;
  size_t best_size = 0;
  int id = 0;
  for (size_t start = 0; start < mask.size(); ++start) {
    if (!mask[start] || comp[start] >= 0) continue;
    size_t size = 0;
    stack.push_back(start);
    comp[start] = id;
    while (!stack.empty()) {
      const size_t p = stack.back();
      stack.pop_back();
      ++size;
      const int x = static_cast<int>(p % w), y = static_cast<int>(p / w);
      const int nx[4] = {x - 1, x + 1, x, x}, ny[4] = {y, y, y - 1, y + 1};
      for (int k = 0; k < 4; ++k) {
        if (nx[k] < 0 || nx[k] >= w || ny[k] < 0 || ny[k] >= h) continue;
        const size_t q = static_cast<size_t>(ny[k]) * w + nx[k];
        if (mask[q] && comp[q] < 0) comp[q] = id, stack.push_back(q);
      }
    }
    if (size > best_size) best_size = size, best = id;
    ++id;
  }
  std::vector<uint8_t> out(mask.size(), 0);
  for (size_t p = 0; p < mask.size(); ++p) out[p] = comp[p] == best && best >= 0;
  return out;
}

// Expected regions of the concept placed at (cx, cy) (pixels), radius r (pixels), angle a:
// per pixel, the region all kSub x kSub sub-samples agree on (-1 when they differ), and whether
// most sub-samples are inside the object (the silhouette).
struct Expected {
  std::vector<int> pure;
  std::vector<uint8_t> inside;
};
Expected expected_regions(Shape shape, int w, int h, double cx, double cy, double r, double a) {
  Expected e{std::vector<int>(static_cast<size_t>(w) * h, kOutside),
             std::vector<uint8_t>(static_cast<size_t>(w) * h, 0)};
  const double c = std::cos(a), s = std::sin(a);
  const int x0 = std::max(0, static_cast<int>(cx - 1.1 * r) - 1),
            x1 = std::min(w - 1, static_cast<int>(cx + 1.1 * r) + 1);
  const int y0 = std::max(0, static_cast<int>(cy - 1.1 * r) - 1),
            y1 = std::min(h - 1, static_cast<int>(cy + 1.1 * r) + 1);
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      int first = -2, in = 0;
      bool same = true;
      for (int j = 0; j < kSub; ++j)
        for (int i = 0; i < kSub; ++i) {
          const double dx = (x + (i + 0.5) / kSub - cx) / r, dy = (y + (j + 0.5) / kSub - cy) / r;
          const int reg = region_at(shape, c * dx + s * dy, c * dy - s * dx);
          in += reg != kOutside;
          if (first == -2)
            first = reg;
          else if (reg != first)
            same = false;
        }
      const size_t p = static_cast<size_t>(y) * w + x;
      e.pure[p] = same ? first : -1;
      e.inside[p] = 2 * in > kSub * kSub;
    }
  return e;
}

double iou(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int64_t both = 0, either = 0;
  for (size_t p = 0; p < a.size(); ++p) both += a[p] && b[p], either += a[p] || b[p];
  return either ? static_cast<double>(both) / either : 0.0;
}

double clamp01(double x) { return std::min(1.0, std::max(0.0, x)); }

// Background colour share and pattern away from the object (distance > 1.25 r from its centre).
void score_background(const std::vector<int>& labels, int w, int h, double cx, double cy, double r,
                      const JudgeContext& ctx, JudgeScore& out) {
  const int base = static_cast<int>(ctx.background);
  std::vector<int> row_base(h, 0), row_tone(h, 0), col_base(w, 0), col_tone(w, 0);
  int64_t away = 0, bg = 0, tone = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      if (std::hypot(x + 0.5 - cx, y + 0.5 - cy) <= 1.25 * r) continue;
      ++away;
      const int l = labels[static_cast<size_t>(y) * w + x];
      if (l != base && l != kToneLabel) continue;
      ++bg;
      const bool t = l == kToneLabel;
      tone += t;
      (t ? row_tone : row_base)[y]++;
      (t ? col_tone : col_base)[x]++;
    }
  out.background = away ? static_cast<double>(bg) / away : 0.0;
  auto purity = [](const std::vector<int>& a, const std::vector<int>& b) {
    int64_t major = 0, all = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      if (a[k] + b[k] < 4) continue;
      major += std::max(a[k], b[k]), all += a[k] + b[k];
    }
    return all ? static_cast<double>(major) / all : 1.0;
  };
  Pattern read = Pattern::kPlain;
  if (bg > 0 && static_cast<double>(tone) / bg >= 0.15) {
    const double rows = purity(row_base, row_tone), cols = purity(col_base, col_tone);
    read = rows >= 0.8 && rows - cols >= 0.2 ? Pattern::kStriped : Pattern::kCheckered;
  }
  out.pattern = read == ctx.pattern ? 1.0 : 0.0;
}

template <typename E, typename F>
E nearest_value(int n, F distance) {
  int best = 0;
  for (int k = 1; k < n; ++k)
    if (distance(static_cast<E>(k)) < distance(static_cast<E>(best))) best = k;
  return static_cast<E>(best);
}

Image draw_in_context(const LocalPaint& paint, const JudgeContext& ctx, Rng& rng, int size) {
  Canvas canvas(size);
  const double px = rng.uniform(), py = rng.uniform();
  canvas.fill([&](double x, double y) { return background_at(ctx.background, ctx.pattern, x, y, px, py); });
  canvas.draw(jittered_placement(ctx.position, ctx.size, rng), paint);
  return canvas.resolve();
}

}  // namespace

JudgeContext context_of(const ConceptSample& s) { return {s.size, s.position, s.background, s.background_pattern}; }

JudgeScore judge_concept(const Image& im, const Concept& c, const JudgeContext& ctx) {
  TINV_CHECK(
      im.width >= 16 && im.width == im.height && im.pixels.size() == static_cast<size_t>(im.width) * im.height * 3,
      "judge", "expected a square RGB image of at least 16 px, got ", im.width, "x", im.height);
  const int w = im.width, h = im.height;
  JudgeScore out;
  const std::vector<int> labels = label_pixels(im, ctx.background);
  std::vector<uint8_t> mask(labels.size());
  for (size_t p = 0; p < labels.size(); ++p)
    mask[p] = labels[p] != static_cast<int>(ctx.background) && labels[p] != kToneLabel;
  mask = largest_component(mask, w, h);
  double area = 0, mx = 0, my = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (mask[static_cast<size_t>(y) * w + x]) area += 1, mx += x + 0.5, my += y + 0.5;
  // Too small to be an object (under a tenth of the small size's area): nothing found.
  const ShapeMoments& m = moments(c.shape);
  const double min_area = 0.1 * m.area * std::pow(size_radius(Size::kSmall) * w, 2);
  double cx = w / 2.0, cy = h / 2.0, r = size_radius(ctx.size) * w;
  if (area >= min_area) {
    out.found = true;
    r = std::sqrt(area / m.area);
    cx = mx / area - r * m.cu;
    cy = my / area - r * m.cv;
  }
  if (out.found) {
    // The rotation and a one-pixel shift that overlap the object best.
    double best = -1;
    Expected fit;
    for (double deg : {-10.0, -5.0, 0.0, 5.0, 10.0})
      for (double sx : {-1.0, 0.0, 1.0})
        for (double sy : {-1.0, 0.0, 1.0}) {
          Expected e = expected_regions(c.shape, w, h, cx + sx, cy + sy, r, deg * kPi / 180);
          const double v = iou(mask, e.inside);
          if (v > best) best = v, fit = std::move(e);
        }
    out.shape = clamp01((best - 0.5) / 0.35);
    std::array<int64_t, 4> total{}, right{};
    const int want[4] = {-1, static_cast<int>(c.body), static_cast<int>(c.ring), static_cast<int>(c.dot)};
    for (size_t p = 0; p < labels.size(); ++p) {
      const int reg = fit.pure[p];
      if (reg <= kOutside) continue;
      ++total[reg];
      right[reg] += labels[p] == want[reg];
    }
    auto part = [&](int reg) { return total[reg] ? static_cast<double>(right[reg]) / total[reg] : 0.0; };
    out.body = part(kBody), out.ring = part(kRing), out.dot = part(kDot);
    out.identity = std::pow(out.shape * out.body * out.ring * out.dot, 0.25);
    const double fx = cx / w, fy = cy / h;
    out.position = nearest_value<Position>(kNumPositions, [&](Position p) {
                     auto [px, py] = position_centre(p);
                     return std::hypot(px - fx, py - fy);
                   }) == ctx.position;
    out.size = nearest_value<Size>(kNumSizes, [&](Size s) { return std::abs(size_radius(s) - r / w); }) == ctx.size;
  }
  score_background(labels, w, h, cx, cy, r, ctx, out);
  out.context = (out.background + out.pattern + out.position + out.size) / 4;
  return out;
}

void JudgeMean::add(const JudgeScore& s) {
  ++n;
  found += s.found, identity += s.identity, context += s.context, background += s.background;
  pattern += s.pattern, position += s.position, size += s.size;
  shape += s.shape, body += s.body, ring += s.ring, dot += s.dot;
}

JudgeMean JudgeMean::mean() const {
  JudgeMean m = *this;
  if (n == 0) return m;
  const double d = static_cast<double>(n);
  for (double* v : {&m.found, &m.identity, &m.context, &m.background, &m.pattern, &m.position, &m.size, &m.shape,
                    &m.body, &m.ring, &m.dot})
    *v /= d;
  return m;
}

bool JudgeValidation::pass() const {
  for (const auto& r : rows)
    if (r.real < kJudgeRealTarget || r.other_max > kJudgeOtherTarget || r.nearest > kJudgeOtherTarget) return false;
  return !rows.empty();
}

JudgeValidation validate_judge(uint64_t seed, int64_t renders) {
  TINV_CHECK(renders >= 1, "--judge-renders", "must be >= 1, got ", renders);
  JudgeValidation v;
  v.renders = renders;
  const auto& cs = concepts();
  for (const Concept& c : cs) {
    JudgeValidationRow row;
    row.concept_name = c.name;
    JudgeMean real;
    std::vector<JudgeMean> others(cs.size());
    JudgeMean nearest;
    for (int64_t i = 0; i < renders; ++i) {
      ConceptSample s = concept_at(seed, c, static_cast<uint64_t>(i));
      const JudgeContext ctx = context_of(s);
      real.add(judge_concept(s.image, c, ctx));
      Rng rng = Rng::derive(seed, 0x6A75646765ULL, static_cast<uint64_t>(i));  // "judge"
      for (size_t k = 0; k < cs.size(); ++k)
        if (cs[k].name != c.name) others[k].add(judge_concept(draw_in_context(cs[k].paint, ctx, rng, 64), c, ctx));
      for (const ObjectSpec& o : c.nearest_objects())
        nearest.add(judge_concept(draw_in_context(object_paint(o), ctx, rng, 64), c, ctx));
    }
    row.real = real.mean().identity;
    row.real_context = real.mean().context;
    for (size_t k = 0; k < cs.size(); ++k) {
      if (cs[k].name == c.name) continue;
      const double m = others[k].mean().identity;
      if (row.other_max_name.empty() || m > row.other_max) row.other_max = m, row.other_max_name = cs[k].name;
    }
    row.nearest = nearest.mean().identity;
    v.rows.push_back(row);
  }
  return v;
}

std::string format_judge_validation(const JudgeValidation& v) {
  std::ostringstream out;
  char line[200];
  std::snprintf(line, sizeof line,
                "\nconcept judge: %lld renderings per concept (targets: real >= %.1f, others and closest "
                "captions <= %.1f)\n",
                static_cast<long long>(v.renders), kJudgeRealTarget, kJudgeOtherTarget);
  out << line;
  std::snprintf(line, sizeof line, "  %-16s %6s %8s  %-26s %8s\n", "concept", "real", "context", "best other concept",
                "closest");
  out << line;
  for (const auto& r : v.rows) {
    std::snprintf(line, sizeof line, "  %-16s %6.3f %8.3f  %-19s %6.3f %8.3f\n", r.concept_name.c_str(), r.real,
                  r.real_context, r.other_max_name.c_str(), r.other_max, r.nearest);
    out << line;
  }
  out << "  verdict          " << (v.pass() ? "PASS" : "FAIL") << "\n";
  return out.str();
}

}  // namespace tinv::world
