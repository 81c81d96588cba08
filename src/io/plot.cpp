#include "io/plot.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "io/image_write.h"

namespace tinv {
namespace {

// 3x5 glyphs, one row per 3-bit number (MSB = left pixel). Letters are capitals (3x5 is too
// small for lowercase with descenders): text is drawn case-insensitively.
const std::map<char, std::array<uint8_t, 5>>& font() {
  static const std::map<char, std::array<uint8_t, 5>> f = {
      {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}}, {'3', {7, 1, 3, 1, 7}},
      {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}}, {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 2, 2}},
      {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 7}}, {'.', {0, 0, 0, 0, 2}}, {'-', {0, 0, 7, 0, 0}},
      {'+', {0, 2, 7, 2, 0}}, {'_', {0, 0, 0, 0, 7}}, {' ', {0, 0, 0, 0, 0}}, {'(', {1, 2, 2, 2, 1}},
      {')', {4, 2, 2, 2, 4}}, {',', {0, 0, 0, 2, 4}}, {'a', {2, 5, 7, 5, 5}}, {'b', {6, 5, 6, 5, 6}},
      {'c', {3, 4, 4, 4, 3}}, {'d', {6, 5, 5, 5, 6}}, {'e', {7, 4, 6, 4, 7}}, {'f', {7, 4, 6, 4, 4}},
      {'g', {3, 4, 5, 5, 3}}, {'h', {5, 5, 7, 5, 5}}, {'i', {7, 2, 2, 2, 7}}, {'j', {1, 1, 1, 5, 2}},
      {'k', {5, 5, 6, 5, 5}}, {'l', {4, 4, 4, 4, 7}}, {'m', {5, 7, 7, 5, 5}}, {'n', {6, 5, 5, 5, 5}},
      {'o', {2, 5, 5, 5, 2}}, {'p', {6, 5, 6, 4, 4}}, {'q', {2, 5, 5, 7, 3}}, {'r', {6, 5, 6, 5, 5}},
      {'s', {3, 4, 2, 1, 6}}, {'t', {7, 2, 2, 2, 2}}, {'u', {5, 5, 5, 5, 3}}, {'v', {5, 5, 5, 2, 2}},
      {'w', {5, 5, 7, 7, 5}}, {'x', {5, 5, 2, 5, 5}}, {'y', {5, 5, 2, 2, 2}}, {'z', {7, 1, 2, 4, 7}},
      {'/', {1, 1, 2, 4, 4}}, {':', {0, 2, 0, 2, 0}}, {'%', {5, 1, 2, 4, 5}}, {'=', {0, 7, 0, 7, 0}},
      {'*', {0, 5, 2, 5, 0}}, {'<', {1, 2, 4, 2, 1}}, {'>', {4, 2, 1, 2, 4}}, {'\'', {2, 2, 0, 0, 0}},
  };
  return f;
}

class Canvas {
 public:
  Canvas(int64_t w, int64_t h) : w_(w), h_(h), px_(static_cast<size_t>(w * h * 3), 255) {}
  void set(int64_t x, int64_t y, std::array<uint8_t, 3> c) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
    for (int i = 0; i < 3; ++i) px_[static_cast<size_t>((y * w_ + x) * 3 + i)] = c[i];
  }
  void line(double x0, double y0, double x1, double y1, std::array<uint8_t, 3> c, int thick = 1) {
    const int n = static_cast<int>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (int i = 0; i <= n; ++i) {
      double t = static_cast<double>(i) / n;
      int64_t x = std::lround(x0 + (x1 - x0) * t), y = std::lround(y0 + (y1 - y0) * t);
      for (int dx = 0; dx < thick; ++dx)
        for (int dy = 0; dy < thick; ++dy) set(x + dx, y + dy, c);
    }
  }
  // Text at (x, y) top-left, glyphs scaled by `s`. Returns the width drawn.
  int64_t text(int64_t x, int64_t y, const std::string& s, std::array<uint8_t, 3> c, int sc = 2) {
    int64_t cx = x;
    for (char ch : s) {
      auto it = font().find(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
      if (it != font().end())
        for (int r = 0; r < 5; ++r)
          for (int col = 0; col < 3; ++col)
            if (it->second[r] & (4 >> col))
              for (int a = 0; a < sc; ++a)
                for (int b = 0; b < sc; ++b) set(cx + col * sc + a, y + r * sc + b, c);
      cx += 4 * sc;
    }
    return cx - x;
  }
  // Mixes colour c into every pixel of `mask` (w*h flags) with weight `alpha`.
  void tint(const std::vector<bool>& mask, std::array<uint8_t, 3> c, double alpha) {
    for (size_t p = 0; p < mask.size(); ++p)
      if (mask[p])
        for (size_t i = 0; i < 3; ++i) {
          uint8_t& v = px_[p * 3 + i];
          v = static_cast<uint8_t>(std::lround((1 - alpha) * v + alpha * c[i]));
        }
  }
  int64_t width() const { return w_; }
  int64_t height() const { return h_; }
  torch::Tensor tensor() const {
    return torch::from_blob(const_cast<uint8_t*>(px_.data()), {h_, w_, 3}, torch::kUInt8).clone();
  }

 private:
  int64_t w_, h_;
  std::vector<uint8_t> px_;
};

std::string tick_label(double v) {
  char buf[32];
  double a = std::abs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e5)) std::snprintf(buf, sizeof buf, "%.1e", v);
  else std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

bool usable(const PlotBand& b) { return b.lo.size() == b.x.size() && b.hi.size() == b.x.size(); }
bool band_point(const PlotBand& b, size_t i) {
  return std::isfinite(b.x[i]) && std::isfinite(b.lo[i]) && std::isfinite(b.hi[i]);
}

// One band: between consecutive usable points, every pixel column from the interpolated hi to
// the interpolated lo, collected in a mask and tinted once (no darker seams where the columns of
// two segments meet).
template <typename PX, typename PY>
void draw_band(Canvas& cv, const PlotBand& b, const PX& px, const PY& py) {
  const int64_t w = cv.width(), h = cv.height();
  std::vector<bool> mask(static_cast<size_t>(w * h), false);
  auto column = [&](int64_t X, double lo, double hi) {
    if (X < 0 || X >= w) return;
    const int64_t y0 = std::lround(py(hi)), y1 = std::lround(py(lo));
    for (int64_t Y = std::max<int64_t>(0, std::min(y0, y1)); Y <= std::min(h - 1, std::max(y0, y1)); ++Y)
      mask[static_cast<size_t>(Y * w + X)] = true;
  };
  int64_t prev = -1;
  for (size_t i = 0; i < b.x.size(); ++i) {
    if (!band_point(b, i)) continue;
    if (prev < 0) {
      column(std::lround(px(b.x[i])), b.lo[i], b.hi[i]);
    } else {
      const size_t j = static_cast<size_t>(prev);
      const double X0 = px(b.x[j]), X1 = px(b.x[i]);
      for (int64_t X = std::lround(std::min(X0, X1)); X <= std::lround(std::max(X0, X1)); ++X) {
        const double t = X1 == X0 ? 1.0 : std::clamp((X - X0) / (X1 - X0), 0.0, 1.0);
        column(X, b.lo[j] + t * (b.lo[i] - b.lo[j]), b.hi[j] + t * (b.hi[i] - b.hi[j]));
      }
    }
    prev = static_cast<int64_t>(i);
  }
  cv.tint(mask, b.color, 0.2);
}

}  // namespace

torch::Tensor render_line_plot(const std::vector<PlotSeries>& series, const std::string& x_label,
                               int64_t width, int64_t height) {
  return render_line_plot(series, {}, x_label, width, height);
}

torch::Tensor render_line_plot(const std::vector<PlotSeries>& series, const std::vector<PlotBand>& bands,
                               const std::string& x_label, int64_t width, int64_t height) {
  const double inf = std::numeric_limits<double>::infinity();
  double xmin = inf, xmax = -inf, ymin = inf, ymax = -inf;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.x[i])) continue;
      xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
    }
  for (const auto& b : bands)
    if (usable(b))
      for (size_t i = 0; i < b.x.size(); ++i) {
        if (!band_point(b, i)) continue;
        xmin = std::min(xmin, b.x[i]), xmax = std::max(xmax, b.x[i]);
        ymin = std::min({ymin, b.lo[i], b.hi[i]}), ymax = std::max({ymax, b.lo[i], b.hi[i]});
      }
  if (!(xmin <= xmax)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax == ymin) ymax = ymin + 1;
  const double pad = 0.05 * (ymax - ymin);
  ymin -= pad, ymax += pad;

  Canvas cv(width, height);
  const int64_t left = 90, right = width - 20, top = 20, bottom = height - 50;
  const std::array<uint8_t, 3> black{0, 0, 0}, grid{225, 225, 225};
  auto px = [&](double x) { return left + (x - xmin) / (xmax - xmin) * (right - left); };
  auto py = [&](double y) { return bottom - (y - ymin) / (ymax - ymin) * (bottom - top); };
  for (int i = 0; i <= 4; ++i) {
    double xv = xmin + (xmax - xmin) * i / 4, yv = ymin + (ymax - ymin) * i / 4;
    cv.line(px(xv), top, px(xv), bottom, grid);
    cv.line(left, py(yv), right, py(yv), grid);
    cv.line(px(xv), bottom, px(xv), bottom + 5, black);
    cv.line(left - 5, py(yv), left, py(yv), black);
    std::string xl = tick_label(xv), yl = tick_label(yv);
    cv.text(static_cast<int64_t>(px(xv)) - static_cast<int64_t>(xl.size()) * 4, bottom + 10, xl, black);
    cv.text(left - 10 - static_cast<int64_t>(yl.size()) * 8, static_cast<int64_t>(py(yv)) - 5, yl, black);
  }
  for (const auto& b : bands)
    if (usable(b)) draw_band(cv, b, px, py);
  cv.line(left, top, left, bottom, black);
  cv.line(left, bottom, right, bottom, black);
  cv.text((left + right) / 2 - static_cast<int64_t>(x_label.size()) * 4, bottom + 30, x_label, black);
  int64_t ly = top + 10, longest = 0;
  for (const auto& s : series) longest = std::max<int64_t>(longest, static_cast<int64_t>(s.label.size()));
  const int64_t lx0 = right - 50 - longest * 8;  // legend: 30px swatch, gap, text
  for (const auto& s : series) {
    bool have = false;
    double lx = 0, lyv = 0;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      double X = px(s.x[i]), Y = py(s.y[i]);
      if (have) cv.line(lx, lyv, X, Y, s.color, 2);
      else cv.line(X, Y, X, Y, s.color, 2);
      lx = X, lyv = Y, have = true;
    }
    cv.line(lx0, ly + 5, lx0 + 30, ly + 5, s.color, 3);
    cv.text(lx0 + 40, ly, s.label, black);
    ly += 20;
  }
  return cv.tensor();
}

void save_line_plot(const std::string& path, const std::vector<PlotSeries>& series,
                    const std::string& x_label, int64_t width, int64_t height) {
  save_png(path, render_line_plot(series, x_label, width, height));
}

}  // namespace tinv
