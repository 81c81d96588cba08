// Held-out concepts of the procedural world: objects that no caption word names (two-tone, inner
// marks, unusual textures), for textual-inversion tests. Each paints in the local frame of
// render.h (radius 1, v down) and keeps its look under the scene jitter.
#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "world/render.h"

namespace tinv::world {
namespace {

double frac(double x) { return x - std::floor(x); }

std::vector<Concept> make_concepts() {
  std::vector<Concept> cs;
  cs.push_back({"two_tone_circle", "a circle, left half red and right half blue", "circle",
                Shape::kCircle, {Colour::kRed, Colour::kBlue},
                [](double u, double v, Rgb* out) {
                  *out = rgb(u < 0 ? Colour::kRed : Colour::kBlue);
                  return inside_shape(Shape::kCircle, u, v);
                }});
  cs.push_back({"marked_square", "a green square with a yellow dot in its middle", "square",
                Shape::kSquare, {Colour::kGreen, Colour::kYellow},
                [](double u, double v, Rgb* out) {
                  *out = rgb(u * u + v * v <= 0.28 * 0.28 ? Colour::kYellow : Colour::kGreen);
                  return inside_shape(Shape::kSquare, u, v);
                }});
  cs.push_back({"ringed_star", "an orange star inside a thin orange ring", "star", Shape::kStar,
                {Colour::kOrange},
                [](double u, double v, Rgb* out) {
                  *out = rgb(Colour::kOrange);
                  double r2 = u * u + v * v;
                  return inside_shape(Shape::kStar, u / 0.64, v / 0.64) ||
                         (r2 <= 1.0 && r2 >= 0.8 * 0.8);
                }});
  cs.push_back({"zigzag_triangle", "a cyan triangle crossed by black zigzag bands", "triangle",
                Shape::kTriangle, {Colour::kCyan, Colour::kBlack},
                [](double u, double v, Rgb* out) {
                  double w = v + 0.2 * std::abs(2 * frac(u / 0.4) - 1);
                  *out = rgb(frac(w / 0.4) < 0.42 ? Colour::kBlack : Colour::kCyan);
                  return inside_shape(Shape::kTriangle, u, v);
                }});
  cs.push_back({"crossed_heart", "a pink heart with a black X mark on it", "heart", Shape::kHeart,
                {Colour::kPink, Colour::kBlack},
                [](double u, double v, Rgb* out) {
                  double y = v + 0.05, d1 = std::abs(u - y), d2 = std::abs(u + y);
                  bool mark = u * u + y * y <= 0.45 * 0.45 && (d1 <= 0.14 || d2 <= 0.14);
                  *out = rgb(mark ? Colour::kBlack : Colour::kPink);
                  return inside_shape(Shape::kHeart, u, v);
                }});
  cs.push_back({"gradient_diamond", "a diamond fading from yellow at the top to purple at the bottom",
                "diamond", Shape::kDiamond, {Colour::kYellow, Colour::kPurple, Colour::kOrange},
                [](double u, double v, Rgb* out) {
                  *out = mix(rgb(Colour::kYellow), rgb(Colour::kPurple), std::min(1.0, std::max(0.0, (v + 1) / 2)));
                  return inside_shape(Shape::kDiamond, u, v);
                }});
  cs.push_back({"bullseye_hexagon", "a hexagon of concentric brown and white hexagonal bands",
                "hexagon", Shape::kHexagon, {Colour::kBrown, Colour::kWhite},
                [](double u, double v, Rgb* out) {
                  const double a = 0.8660254037844386;
                  double h = std::max(std::abs(v) / a, (a * std::abs(u) + 0.5 * std::abs(v)) / a);
                  *out = rgb(static_cast<int>(std::floor(h / 0.27)) % 2 == 0 ? Colour::kBrown : Colour::kWhite);
                  return inside_shape(Shape::kHexagon, u, v);
                }});
  return cs;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ULL;
  return h;
}

}  // namespace

const std::vector<Concept>& concepts() {
  static const std::vector<Concept> cs = make_concepts();
  return cs;
}

const Concept& find_concept(const std::string& name) {
  std::string known;
  for (const Concept& c : concepts()) {
    if (c.name == name) return c;
    known += (known.empty() ? "" : ", ") + c.name;
  }
  throw Error("world::find_concept", str_cat("unknown concept '", name, "' (known: ", known, ")"));
}

std::string ConceptSample::caption(const std::string& word) const {
  std::string bg = background_pattern == Pattern::kPlain
                       ? str_cat("plain ", name(background))
                       : str_cat(name(background), " ", name(background_pattern));
  const char* article = std::string("aeiou").find(bg[0]) != std::string::npos ? "an" : "a";
  return str_cat("a ", name(size), " ", word, " ", place_phrase(position), ", on ", article, " ",
                 bg, " background");
}

ConceptSample render_concept(const Concept& c, Rng& rng, int size) {
  ConceptSample s;
  std::vector<Colour> backgrounds;
  for (int k = 0; k < kNumColours; ++k)
    if (std::find(c.colours.begin(), c.colours.end(), static_cast<Colour>(k)) == c.colours.end())
      backgrounds.push_back(static_cast<Colour>(k));
  s.background = backgrounds[rng.below(static_cast<uint32_t>(backgrounds.size()))];
  s.background_pattern = rng.chance(0.7) ? Pattern::kPlain
                                         : static_cast<Pattern>(1 + rng.below(kNumPatterns - 1));
  s.position = static_cast<Position>(rng.below(kNumPositions));
  s.size = static_cast<Size>(rng.below(kNumSizes));
  Canvas canvas(size);
  const double px = rng.uniform(), py = rng.uniform();
  canvas.fill([&](double x, double y) {
    return background_at(s.background, s.background_pattern, x, y, px, py);
  });
  canvas.draw(jittered_placement(s.position, s.size, rng), c.paint);
  s.image = canvas.resolve();
  return s;
}

ConceptSample concept_at(uint64_t seed, const Concept& c, uint64_t index, int size) {
  Rng rng = Rng::derive(seed, fnv1a("concept:" + c.name), index);
  return render_concept(c, rng, size);
}

}  // namespace tinv::world
