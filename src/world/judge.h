// The concept judge (world v2, docs/WORLD.md): scores how much of a concept's identity a
// generated image shows, in [0, 1], and whether the image follows the requested context
// (background colour and pattern, position, size). It reads pixels only, with what the procedural
// world knows: the palette, the background of the prompt, and the concept's geometry.
//
//   ConceptSample cs = concept_at(0, find_concept("bullseye_circle"), 3);
//   JudgeScore s = judge_concept(cs.image, find_concept("bullseye_circle"), context_of(cs));
//   s.identity;   // ~0.97 for a real rendering
//   s.context;    // ~1.0
//
// How it scores (judge_concept):
//   1. Every pixel is labelled with the nearest palette entry: the eight colours of world.h and
//      the background's second tone (render.h's background_tone). Pixels labelled the requested
//      background colour or its tone are background; the largest 4-connected rest is the object.
//   2. The object's placement: radius from its area (the concept shape's area in the unit frame),
//      centre from its centroid (minus the shape's own centroid offset), rotation searched over
//      -10..10 degrees for the best overlap.
//   3. shape = clamp((IoU(object, expected silhouette) - 0.5) / 0.35, 0, 1); body, ring, dot =
//      the fraction of pixels wholly inside each region of the expected concept (body, ring band,
//      central dot) whose label is that region's colour.
//   4. identity = geometric mean of shape, body, ring and dot: an image missing one part (the
//      ring or the dot, as the closest captions draw it) scores near 0.
//   5. context = mean of background (fraction of pixels away from the object labelled the
//      background colour or its tone), pattern (plain / striped / checkered read from the tone
//      pixels: 1 when right), position and size (the nearest of the grammar's values: 1 when right).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "world/world.h"

namespace tinv::world {

// The context a prompt asks for (what ConceptSample holds besides its image).
struct JudgeContext {
  Size size = Size::kLarge;
  Position position = Position::kCenter;
  Colour background = Colour::kWhite;
  Pattern pattern = Pattern::kPlain;
};
JudgeContext context_of(const ConceptSample& s);

struct JudgeScore {
  bool found = false;  // an object was found (else every object score is 0)
  double identity = 0, shape = 0, body = 0, ring = 0, dot = 0;
  double context = 0, background = 0, pattern = 0, position = 0, size = 0;
};

// Scores `image` (any size >= 16, square) for concept `c` in context `ctx` (see above).
JudgeScore judge_concept(const Image& image, const Concept& c, const JudgeContext& ctx);

// Mean of each field over several scores (found = fraction found, as 0/1 averaged).
struct JudgeMean {
  int64_t n = 0;
  double found = 0, identity = 0, context = 0, background = 0, pattern = 0, position = 0, size = 0;
  double shape = 0, body = 0, ring = 0, dot = 0;  // the parts of identity
  void add(const JudgeScore& s);
  JudgeMean mean() const;  // sums divided by n
};

// The judge's validation: for each concept, real renderings (concept_at(seed, c, i)), the
// renderings of every other concept in the same contexts, and the closest scenes a caption can
// name (the concept with only its ring, with only its dot) in the same contexts.
struct JudgeValidationRow {
  std::string concept_name;
  double real = 0;          // mean identity of its real renderings; target >= 0.9
  double real_context = 0;  // mean context of its real renderings
  double other_max = 0;     // the highest mean identity of another concept's renderings
  std::string other_max_name;
  double nearest = 0;  // mean identity of the closest captions' renderings; target <= 0.5
};
struct JudgeValidation {
  std::vector<JudgeValidationRow> rows;
  int64_t renders = 0;
  bool pass() const;  // every real >= 0.9, every other_max and nearest <= 0.5
};
constexpr double kJudgeRealTarget = 0.9, kJudgeOtherTarget = 0.5;
JudgeValidation validate_judge(uint64_t seed, int64_t renders);
std::string format_judge_validation(const JudgeValidation& v);

}  // namespace tinv::world
