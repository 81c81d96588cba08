// Held-out concepts of the procedural world: objects with both a ring and a dot, which no caption
// names (world.h), for textual-inversion tests. Each paints in the local frame of render.h
// (radius 1, v down) and keeps its look under the scene jitter.
#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "common/hash.h"
#include "world/render.h"

namespace tinv::world {
namespace {

Concept make_concept(const char* name, Shape shape, Colour body, Colour ring, Colour dot) {
  Concept c;
  c.name = name;
  c.shape = shape;
  c.body = body, c.ring = ring, c.dot = dot;
  c.description = str_cat("a ", world::name(body), " ", world::name(shape), " with a ", world::name(ring),
                          " ring and a ", world::name(dot), " dot");
  c.class_word = world::name(shape);
  c.colours = {body, ring};
  if (dot != ring) c.colours.push_back(dot);
  c.paint = marked_paint(shape, body, ring, dot);
  return c;
}

// Each concept is an object with BOTH a ring and a dot: every part occurs in training scenes
// (objects of that shape and colour, rings and dots of that colour), the combination never does
// and the grammar cannot say it.
std::vector<Concept> make_concepts() {
  return {make_concept("bullseye_circle", Shape::kCircle, Colour::kRed, Colour::kWhite, Colour::kWhite),
          make_concept("eye_square", Shape::kSquare, Colour::kRed, Colour::kYellow, Colour::kWhite),
          make_concept("badge_star", Shape::kStar, Colour::kYellow, Colour::kRed, Colour::kRed),
          make_concept("jewel_heart", Shape::kHeart, Colour::kPurple, Colour::kWhite, Colour::kYellow),
          make_concept("shield_triangle", Shape::kTriangle, Colour::kGreen, Colour::kBlack, Colour::kWhite),
          make_concept("coin_circle", Shape::kCircle, Colour::kYellow, Colour::kBlack, Colour::kCyan),
          make_concept("tile_square", Shape::kSquare, Colour::kCyan, Colour::kPurple, Colour::kYellow)};
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

std::vector<ObjectSpec> Concept::nearest_objects() const {
  ObjectSpec with_ring{shape, body, Size::kLarge, Position::kCenter, Mark::kRing, ring, std::nullopt};
  ObjectSpec with_dot{shape, body, Size::kLarge, Position::kCenter, Mark::kDot, dot, std::nullopt};
  return {with_ring, with_dot};
}

std::string ConceptSample::caption(const std::string& word) const {
  return str_cat("a ", name(size), " ", word, " ", place_phrase(position), ", on ",
                 background_phrase(background, background_pattern));
}

ConceptSample render_concept(const Concept& c, Rng& rng, int size) {
  ConceptSample s;
  std::vector<Colour> backgrounds;
  for (int k = 0; k < kNumColours; ++k)
    if (std::find(c.colours.begin(), c.colours.end(), static_cast<Colour>(k)) == c.colours.end())
      backgrounds.push_back(static_cast<Colour>(k));
  s.background = backgrounds[rng.below(static_cast<uint32_t>(backgrounds.size()))];
  s.background_pattern = rng.chance(0.6) ? Pattern::kPlain : static_cast<Pattern>(1 + rng.below(kNumPatterns - 1));
  s.position = static_cast<Position>(rng.below(kNumPositions));
  s.size = static_cast<Size>(rng.below(kNumSizes));
  Canvas canvas(size);
  const double px = rng.uniform(), py = rng.uniform();
  canvas.fill([&](double x, double y) { return background_at(s.background, s.background_pattern, x, y, px, py); });
  canvas.draw(jittered_placement(s.position, s.size, rng), c.paint);
  s.image = canvas.resolve();
  return s;
}

ConceptSample concept_at(uint64_t seed, const Concept& c, uint64_t index, int size) {
  Rng rng = Rng::derive(seed, fnv1a("concept:" + c.name), index);
  return render_concept(c, rng, size);
}

uint64_t portrait_index(uint64_t seed, const Concept& c) {
  constexpr uint64_t kDraws = 10000;
  for (uint64_t k = 0; k < kDraws; ++k) {
    const ConceptSample s = concept_at(seed, c, k);
    if (s.size == Size::kLarge && s.background_pattern == Pattern::kPlain) return k;
  }
  throw Error(c.name, str_cat("no large rendering on a plain background in ", kDraws, " draws"));
}

}  // namespace tinv::world
