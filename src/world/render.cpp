// Rendering of the procedural world: shapes in local coordinates, marks, backgrounds, and the
// supersampled canvas. Compiled with -ffp-contract=off (cmake/sources.cmake) so that the same
// doubles come out on every machine.
#include "world/render.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace tinv::world {
namespace {

double frac(double x) { return x - std::floor(x); }

double luminance(Rgb c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; }

// The star's 10 vertices (outer radius 1, inner 0.55, first point up), computed once.
struct StarPolygon {
  double u[10], v[10];
  StarPolygon() {
    for (int k = 0; k < 10; ++k) {
      double a = -kPi / 2 + k * kPi / 5, r = k % 2 == 0 ? 1.0 : 0.55;
      u[k] = r * det_cos(a);
      v[k] = r * det_sin(a);
    }
  }
};

bool inside_star(double u, double v) {
  static const StarPolygon star;
  bool in = false;  // crossing number
  for (int i = 0, j = 9; i < 10; j = i++) {
    if ((star.v[i] > v) != (star.v[j] > v) &&
        u < (star.u[j] - star.u[i]) * (v - star.v[i]) / (star.v[j] - star.v[i]) + star.u[i])
      in = !in;
  }
  return in;
}

}  // namespace

double det_sin(double x) {
  x -= std::floor(x / (2 * kPi) + 0.5) * (2 * kPi);  // [-pi, pi]
  double x2 = x * x, term = x, sum = x;
  for (int n = 1; n <= 12; ++n) {
    term *= -x2 / ((2.0 * n) * (2.0 * n + 1));
    sum += term;
  }
  return sum;
}

double det_cos(double x) { return det_sin(x + kPi / 2); }

bool inside_shape(Shape s, double u, double v) {
  const double au = std::abs(u), av = std::abs(v), r2 = u * u + v * v;
  switch (s) {
    case Shape::kCircle: return r2 <= 1.0;
    case Shape::kSquare: return au <= 0.72 && av <= 0.72;
    case Shape::kTriangle: return v <= 0.5 && v + 1.0 >= 1.7320508075688772 * au;  // up, circumradius 1
    case Shape::kStar: return inside_star(u, v);
    case Shape::kHeart: {  // (x^2 + y^2 - 1)^3 <= x^2 y^3, y up, scaled into the unit circle
      double x = u * 1.25, y = -v * 1.25 + 0.15, q = x * x + y * y - 1.0;
      return q * q * q <= x * x * y * y * y;
    }
  }
  return false;
}

Rgb mix(Rgb a, Rgb b, double t) {
  auto ch = [t](uint8_t x, uint8_t y) {
    return static_cast<uint8_t>(std::floor(x + (static_cast<double>(y) - x) * t + 0.5));
  };
  return {ch(a.r, b.r), ch(a.g, b.g), ch(a.b, b.b)};
}

Rgb background_tone(Colour c) {
  Rgb base = rgb(c);
  return luminance(base) < 140 ? mix(base, {255, 255, 255}, 0.3) : mix(base, {0, 0, 0}, 0.18);
}

Placement jittered_placement(Position p, Size s, Rng& rng) {
  auto [cx, cy] = position_centre(p);
  Placement out;
  out.cx = cx + rng.uniform(-0.02, 0.02);
  out.cy = cy + rng.uniform(-0.02, 0.02);
  out.radius = size_radius(s) * rng.uniform(0.94, 1.06);
  out.angle = rng.uniform(-10.0, 10.0) * (kPi / 180);
  return out;
}

LocalPaint marked_paint(Shape shape, Colour body, std::optional<Colour> ring, std::optional<Colour> dot) {
  const Rgb base = rgb(body);
  const std::optional<Rgb> ring_rgb = ring ? std::optional<Rgb>(rgb(*ring)) : std::nullopt;
  const std::optional<Rgb> dot_rgb = dot ? std::optional<Rgb>(rgb(*dot)) : std::nullopt;
  return [=](double u, double v, Rgb* out) {
    if (!inside_shape(shape, u, v)) return false;
    *out = base;
    if (ring_rgb && inside_shape(shape, u / kRingOuter, v / kRingOuter) &&
        !inside_shape(shape, u / kRingInner, v / kRingInner))
      *out = *ring_rgb;
    if (dot_rgb && u * u + v * v <= kDotRadius * kDotRadius) *out = *dot_rgb;
    return true;
  };
}

LocalPaint object_paint(const ObjectSpec& obj) {
  std::optional<Colour> ring, dot;
  if (obj.mark == Mark::kRing) ring = obj.mark_colour;
  if (obj.mark == Mark::kDot) dot = obj.mark_colour;
  if (obj.unnamed_dot) dot = obj.unnamed_dot;
  return marked_paint(obj.shape, obj.colour, ring, dot);
}

Rgb background_at(Colour c, Pattern p, double x, double y, double phase_x, double phase_y) {
  constexpr double kCells = 4;  // pattern cells across the image (16-pixel cells at 64 px)
  bool second = false;
  switch (p) {
    case Pattern::kPlain: break;
    case Pattern::kStriped: second = frac(y * kCells + phase_y) >= 0.5; break;
    case Pattern::kCheckered:
      second = (static_cast<long>(std::floor(x * kCells + phase_x) + std::floor(y * kCells + phase_y)) & 1) != 0;
      break;
  }
  return second ? background_tone(c) : rgb(c);
}

Canvas::Canvas(int size, int supersample) : size_(size), ss_(supersample), n_(size * supersample) {
  TINV_CHECK(size >= 8 && size <= 4096, "world::Canvas", "size must be in [8, 4096], got ", size);
  TINV_CHECK(supersample >= 1 && supersample <= 16, "world::Canvas", "supersample must be in [1, 16]");
  samples_.assign(static_cast<size_t>(n_) * n_ * 3, 0);
}

void Canvas::fill(const std::function<Rgb(double x, double y)>& paint) {
  for (int j = 0; j < n_; ++j) {
    for (int i = 0; i < n_; ++i) {
      Rgb c = paint((i + 0.5) / n_, (j + 0.5) / n_);
      uint8_t* s = &samples_[(static_cast<size_t>(j) * n_ + i) * 3];
      s[0] = c.r, s[1] = c.g, s[2] = c.b;
    }
  }
}

void Canvas::draw(const Placement& p, const LocalPaint& paint) {
  const double c = det_cos(p.angle), s = det_sin(p.angle), reach = p.radius * 1.02;
  const int i0 = std::max(0, static_cast<int>(std::floor((p.cx - reach) * n_)));
  const int i1 = std::min(n_ - 1, static_cast<int>(std::floor((p.cx + reach) * n_)));
  const int j0 = std::max(0, static_cast<int>(std::floor((p.cy - reach) * n_)));
  const int j1 = std::min(n_ - 1, static_cast<int>(std::floor((p.cy + reach) * n_)));
  for (int j = j0; j <= j1; ++j) {
    for (int i = i0; i <= i1; ++i) {
      double dx = ((i + 0.5) / n_ - p.cx) / p.radius, dy = ((j + 0.5) / n_ - p.cy) / p.radius;
      double u = c * dx + s * dy, v = c * dy - s * dx;  // rotate by -angle into the local frame
      Rgb col;
      if (!paint(u, v, &col)) continue;
      uint8_t* px = &samples_[(static_cast<size_t>(j) * n_ + i) * 3];
      px[0] = col.r, px[1] = col.g, px[2] = col.b;
    }
  }
}

Image Canvas::resolve() const {
  Image img;
  img.width = img.height = size_;
  img.pixels.resize(static_cast<size_t>(size_) * size_ * 3);
  const int count = ss_ * ss_;
  for (int y = 0; y < size_; ++y) {
    for (int x = 0; x < size_; ++x) {
      int sum[3] = {0, 0, 0};
      for (int j = y * ss_; j < (y + 1) * ss_; ++j)
        for (int i = x * ss_; i < (x + 1) * ss_; ++i)
          for (int ch = 0; ch < 3; ++ch) sum[ch] += samples_[(static_cast<size_t>(j) * n_ + i) * 3 + ch];
      for (int ch = 0; ch < 3; ++ch)
        img.pixels[(static_cast<size_t>(y) * size_ + x) * 3 + ch] = static_cast<uint8_t>((sum[ch] + count / 2) / count);
    }
  }
  return img;
}

Image render(const SceneSpec& scene, Rng& rng, int size) {
  std::string problem = validate(scene);
  TINV_CHECK(problem.empty(), "world::render", "invalid scene: ", problem);
  TINV_CHECK(size >= 8 && size <= 4096, "world::render", "size must be in [8, 4096], got ", size);
  Canvas canvas(size);
  const double px = rng.uniform(), py = rng.uniform();
  canvas.fill(
      [&](double x, double y) { return background_at(scene.background, scene.background_pattern, x, y, px, py); });
  canvas.draw(jittered_placement(scene.object.position, scene.object.size, rng), object_paint(scene.object));
  return canvas.resolve();
}

}  // namespace tinv::world
