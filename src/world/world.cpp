// The procedural world's attributes, scene sampling, splits, and the caption grammar (see
// world.h for the grammar and the split rule).
#include "world/world.h"

#include <algorithm>
#include <set>

#include "common/error.h"
#include "text/clip_tokenizer.h"

namespace tinv::world {
namespace {

constexpr const char* kShapeNames[kNumShapes] = {"circle", "square", "triangle", "star", "heart"};
struct ColourInfo {
  const char* name;
  Rgb value;
};
constexpr ColourInfo kColours[kNumColours] = {
    {"red", {220, 40, 40}},  {"yellow", {245, 215, 40}}, {"green", {40, 170, 60}},   {"cyan", {40, 205, 215}},
    {"blue", {40, 80, 220}}, {"purple", {150, 60, 200}}, {"white", {245, 245, 245}}, {"black", {25, 25, 25}}};
constexpr const char* kSizeNames[kNumSizes] = {"small", "large"};
constexpr double kSizeRadius[kNumSizes] = {0.2, 0.29};
constexpr const char* kPositionNames[kNumPositions] = {"center", "left", "right", "top", "bottom"};
constexpr const char* kPlacePhrases[kNumPositions] = {"in the center", "on the left", "on the right", "at the top",
                                                      "at the bottom"};
constexpr double kPositionCentres[kNumPositions][2] = {{0.5, 0.5}, {0.3, 0.5}, {0.7, 0.5}, {0.5, 0.3}, {0.5, 0.7}};
constexpr const char* kMarkNames[kNumMarks] = {"none", "dot", "ring"};
constexpr const char* kPatternNames[kNumPatterns] = {"plain", "striped", "checkered"};

template <typename E>
E pick(Rng& rng, int n) {
  return static_cast<E>(rng.below(static_cast<uint32_t>(n)));
}

uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// A colour other than every colour in `avoid`.
Colour pick_colour_except(Rng& rng, std::initializer_list<Colour> avoid) {
  Colour c;
  do c = pick<Colour>(rng, kNumColours);
  while (std::find(avoid.begin(), avoid.end(), c) != avoid.end());
  return c;
}

// A cursor over the caption's words; every accept* consumes words or returns false.
struct Words {
  std::vector<std::string> w;
  size_t i = 0;
  bool done() const { return i >= w.size(); }
  bool accept(const char* word) {
    if (done() || w[i] != word) return false;
    ++i;
    return true;
  }
  template <typename E, size_t N>
  bool accept_one(const char* const (&names)[N], E* out) {
    if (done()) return false;
    for (size_t k = 0; k < N; ++k) {
      if (w[i] == names[k]) {
        *out = static_cast<E>(k);
        ++i;
        return true;
      }
    }
    return false;
  }
  bool accept_colour(Colour* out) {
    if (done()) return false;
    for (int k = 0; k < kNumColours; ++k) {
      if (w[i] == kColours[k].name) {
        *out = static_cast<Colour>(k);
        ++i;
        return true;
      }
    }
    return false;
  }
  // Longest place phrase first (none is a prefix of another today; kept for safety).
  bool accept_place(Position* out) {
    int best = -1;
    size_t best_len = 0;
    for (int k = 0; k < kNumPositions; ++k) {
      std::vector<std::string> phrase = ClipTokenizer::pre_tokenize(kPlacePhrases[k]);
      if (phrase.size() <= best_len || i + phrase.size() > w.size()) continue;
      if (std::equal(phrase.begin(), phrase.end(), w.begin() + i)) best = k, best_len = phrase.size();
    }
    if (best < 0) return false;
    *out = static_cast<Position>(best);
    i += best_len;
    return true;
  }
};

bool accept_object(Words& in, ObjectSpec* o) {
  if (!in.accept("a") && !in.accept("an")) return false;
  if (!in.accept_one(kSizeNames, &o->size) || !in.accept_colour(&o->colour) || !in.accept_one(kShapeNames, &o->shape))
    return false;
  o->mark = Mark::kNone;
  o->mark_colour = ObjectSpec{}.mark_colour;
  if (in.accept("with")) {
    if (!in.accept("a") || !in.accept_colour(&o->mark_colour) || !in.accept_one(kMarkNames, &o->mark) ||
        o->mark == Mark::kNone)
      return false;
  }
  return in.accept_place(&o->position);
}

}  // namespace

// ---- Rng ----
uint64_t Rng::next_u64() {
  state_ += 0x9E3779B97F4A7C15ULL;
  return mix64(state_);
}

uint32_t Rng::below(uint32_t n) {
  TINV_CHECK(n >= 1, "world::Rng::below", "n must be >= 1");
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // reject the uneven tail
  uint64_t x;
  do x = next_u64();
  while (x >= limit);
  return static_cast<uint32_t>(x % n);
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

double Rng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

Rng Rng::derive(uint64_t seed, uint64_t stream, uint64_t index) {
  return Rng(mix64(mix64(mix64(seed) ^ (stream * 0xD1B54A32D192ED03ULL)) + index));
}

// ---- Attribute tables ----
const char* name(Shape s) { return kShapeNames[static_cast<int>(s)]; }
const char* name(Colour c) { return kColours[static_cast<int>(c)].name; }
const char* name(Size s) { return kSizeNames[static_cast<int>(s)]; }
const char* name(Position p) { return kPositionNames[static_cast<int>(p)]; }
const char* name(Mark m) { return kMarkNames[static_cast<int>(m)]; }
const char* name(Pattern p) { return kPatternNames[static_cast<int>(p)]; }
const char* name(Split s) { return s == Split::kTrain ? "train" : "heldout"; }
const char* place_phrase(Position p) { return kPlacePhrases[static_cast<int>(p)]; }
Rgb rgb(Colour c) { return kColours[static_cast<int>(c)].value; }
double size_radius(Size s) { return kSizeRadius[static_cast<int>(s)]; }

std::pair<double, double> position_centre(Position p) {
  const double* c = kPositionCentres[static_cast<int>(p)];
  return {c[0], c[1]};
}

const std::array<std::pair<Colour, Colour>, kNumColours> kHeldOutPairs = {{
    {Colour::kRed, Colour::kBlue},
    {Colour::kYellow, Colour::kPurple},
    {Colour::kGreen, Colour::kWhite},
    {Colour::kCyan, Colour::kBlack},
    {Colour::kBlue, Colour::kYellow},
    {Colour::kPurple, Colour::kGreen},
    {Colour::kWhite, Colour::kRed},
    {Colour::kBlack, Colour::kCyan},
}};

bool is_held_out(Colour object, Colour background) {
  for (const auto& [o, b] : kHeldOutPairs)
    if (o == object && b == background) return true;
  return false;
}

bool ObjectSpec::operator==(const ObjectSpec& o) const {
  return shape == o.shape && colour == o.colour && size == o.size && position == o.position && mark == o.mark &&
         (mark == Mark::kNone || mark_colour == o.mark_colour) && unnamed_dot == o.unnamed_dot;
}

bool SceneSpec::operator==(const SceneSpec& o) const {
  return object == o.object && background == o.background && background_pattern == o.background_pattern;
}

// ---- Scenes ----
std::string validate(const SceneSpec& s) {
  const ObjectSpec& o = s.object;
  if (static_cast<int>(o.shape) >= kNumShapes || static_cast<int>(o.colour) >= kNumColours ||
      static_cast<int>(o.size) >= kNumSizes || static_cast<int>(o.position) >= kNumPositions ||
      static_cast<int>(o.mark) >= kNumMarks || static_cast<int>(o.mark_colour) >= kNumColours)
    return "attribute value out of range";
  if (static_cast<int>(s.background) >= kNumColours || static_cast<int>(s.background_pattern) >= kNumPatterns)
    return "background value out of range";
  if (o.colour == s.background) return str_cat("a ", name(o.colour), " object on a ", name(o.colour), " background");
  if (o.mark != Mark::kNone && o.mark_colour == o.colour)
    return str_cat("a ", name(o.colour), " ", name(o.mark), " on a ", name(o.colour), " object");
  if (o.mark != Mark::kNone && o.mark_colour == s.background)
    return str_cat("a ", name(o.mark_colour), " ", name(o.mark), " on a ", name(s.background), " background");
  if (o.unnamed_dot) {
    if (static_cast<int>(*o.unnamed_dot) >= kNumColours) return "unnamed dot colour out of range";
    if (o.mark != Mark::kRing) return "an unnamed dot on an object without a ring";
    if (*o.unnamed_dot == o.colour || *o.unnamed_dot == s.background)
      return str_cat("an unnamed ", name(*o.unnamed_dot), " dot on a ", name(o.colour), " object on a ",
                     name(s.background), " background");
  }
  return "";
}

SceneRules bundled_rules() { return SceneRules{0.5}; }

SceneSpec sample_scene(Rng& rng, const SceneRules& rules) {
  SceneSpec s;
  s.background = pick<Colour>(rng, kNumColours);
  s.background_pattern = rng.chance(0.5) ? Pattern::kPlain : static_cast<Pattern>(1 + rng.below(kNumPatterns - 1));
  ObjectSpec& o = s.object;
  o.shape = pick<Shape>(rng, kNumShapes);
  o.colour = pick_colour_except(rng, {s.background});
  o.size = pick<Size>(rng, kNumSizes);
  o.position = pick<Position>(rng, kNumPositions);
  const double m = rng.uniform();
  o.mark = m < 0.4 ? Mark::kNone : m < 0.7 ? Mark::kDot : Mark::kRing;
  if (o.mark != Mark::kNone) o.mark_colour = pick_colour_except(rng, {s.background, o.colour});
  if (rules.unnamed_dot > 0 && o.mark == Mark::kRing && rng.chance(rules.unnamed_dot))
    o.unnamed_dot = pick_colour_except(rng, {s.background, o.colour});
  return s;
}

SceneSpec sample_scene(Rng& rng, Split split, const SceneRules& rules) {
  TINV_CHECK(rules.unnamed_dot >= 0 && rules.unnamed_dot <= 1, "unnamed dot", "must be in [0, 1], got ",
             rules.unnamed_dot);
  for (int attempt = 0; attempt < 100000; ++attempt) {
    SceneSpec s = sample_scene(rng, rules);
    if (is_held_out(s.object.colour, s.background) == (split == Split::kHeldOut)) return s;
  }
  throw Error("world::sample_scene", "no scene of the split after 100000 draws");  // unreachable
}

std::string object_words(const ObjectSpec& o) {
  std::string out = str_cat(name(o.colour), " ", name(o.shape));
  if (o.mark != Mark::kNone) out += str_cat(" with a ", name(o.mark_colour), " ", name(o.mark));
  return out;
}

std::string background_phrase(Colour c, Pattern p) {
  std::string bg = p == Pattern::kPlain ? str_cat("plain ", name(c)) : str_cat(name(c), " ", name(p));
  const char* article = std::string("aeiou").find(bg[0]) != std::string::npos ? "an" : "a";
  return str_cat(article, " ", bg, " background");
}

std::string caption(const SceneSpec& s) {
  const ObjectSpec& o = s.object;
  return str_cat("a ", name(o.size), " ", object_words(o), " ", place_phrase(o.position), ", on ",
                 background_phrase(s.background, s.background_pattern));
}

std::optional<SceneSpec> parse_caption(const std::string& text) {
  Words in{ClipTokenizer::pre_tokenize(ClipTokenizer::clean_text(text))};
  SceneSpec s;
  if (!accept_object(in, &s.object)) return std::nullopt;
  if (!in.accept(",") || !in.accept("on") || !(in.accept("a") || in.accept("an"))) return std::nullopt;
  if (in.accept("plain")) {
    s.background_pattern = Pattern::kPlain;
    if (!in.accept_colour(&s.background)) return std::nullopt;
  } else {
    if (!in.accept_colour(&s.background) || !in.accept_one(kPatternNames, &s.background_pattern) ||
        s.background_pattern == Pattern::kPlain)
      return std::nullopt;
  }
  if (!in.accept("background") || !in.done()) return std::nullopt;
  return s;
}

std::vector<std::string> caption_words() {
  std::set<std::string> words = {"a", "an", "on", "background", ",", "plain", "with"};
  auto add = [&](const char* phrase) {
    for (auto& w : ClipTokenizer::pre_tokenize(phrase)) words.insert(w);
  };
  for (auto* n : kShapeNames) add(n);
  for (auto& c : kColours) add(c.name);
  for (auto* n : kSizeNames) add(n);
  for (auto* n : kPlacePhrases) add(n);
  for (int k = 1; k < kNumMarks; ++k) add(kMarkNames[k]);
  for (auto* n : kPatternNames) add(n);
  return {words.begin(), words.end()};
}

SceneSpec scene_at(uint64_t seed, Split split, uint64_t index, const SceneRules& rules) {
  Rng rng = Rng::derive(seed, static_cast<uint64_t>(split), index);
  return sample_scene(rng, split, rules);
}

Sample sample_at(uint64_t seed, Split split, uint64_t index, int size, const SceneRules& rules) {
  Rng rng = Rng::derive(seed, static_cast<uint64_t>(split), index);
  Sample s;
  s.scene = sample_scene(rng, split, rules);
  s.caption = caption(s.scene);
  s.image = render(s.scene, rng, size);
  return s;
}

}  // namespace tinv::world
