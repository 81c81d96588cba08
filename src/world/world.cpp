// The procedural world's attributes, scene sampling, splits, and the caption grammar (see
// world.h for the grammar and the split rule).
#include "world/world.h"

#include <algorithm>
#include <set>

#include "common/error.h"
#include "text/clip_tokenizer.h"

namespace tinv::world {
namespace {

constexpr const char* kShapeNames[kNumShapes] = {"circle", "square", "triangle", "star", "heart",
                                                 "cross",  "diamond", "hexagon", "ring", "moon"};
struct ColourInfo {
  const char* name;
  Rgb value;
};
constexpr ColourInfo kColours[kNumColours] = {
    {"red", {220, 40, 40}},     {"green", {40, 170, 60}},  {"blue", {40, 80, 220}},
    {"yellow", {245, 215, 40}}, {"orange", {245, 140, 30}}, {"purple", {140, 60, 190}},
    {"pink", {250, 140, 200}},  {"cyan", {40, 205, 215}},  {"brown", {130, 80, 40}},
    {"gray", {128, 128, 128}},  {"white", {245, 245, 245}}, {"black", {25, 25, 25}}};
constexpr const char* kSizeNames[kNumSizes] = {"small", "medium", "large"};
constexpr double kSizeRadius[kNumSizes] = {0.125, 0.165, 0.21};
constexpr const char* kPositionNames[kNumPositions] = {
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"};
constexpr const char* kPlacePhrases[kNumPositions] = {
    "at the top left", "at the top",    "at the top right",    "on the left",        "in the center",
    "on the right",    "at the bottom left", "at the bottom", "at the bottom right"};
constexpr const char* kFillNames[kNumFills] = {"solid", "striped", "checkered", "dotted", "outlined"};
constexpr const char* kPatternNames[kNumPatterns] = {"plain", "striped", "checkered", "dotted"};

constexpr double kNear = 0.27, kFar = 0.73;  // centres of the outer places
constexpr double kMinPairDistance = 0.45;    // two objects' centres, fraction of the image

template <typename E>
E pick(Rng& rng, int n) {
  return static_cast<E>(rng.below(static_cast<uint32_t>(n)));
}

uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

ObjectSpec sample_object(Rng& rng, Position position, Colour background) {
  ObjectSpec o;
  o.shape = pick<Shape>(rng, kNumShapes);
  do o.colour = pick<Colour>(rng, kNumColours);
  while (o.colour == background);
  o.size = pick<Size>(rng, kNumSizes);
  o.position = position;
  o.fill = pick<Fill>(rng, kNumFills);
  return o;
}

bool has_held_out_object(const SceneSpec& s) {
  for (const auto& o : s.objects)
    if (is_held_out(o.shape, o.colour)) return true;
  return false;
}

// A cursor over the caption's words; every parse_* consumes words or returns false.
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
};

bool accept_colour(Words& in, Colour* out) {
  if (in.done()) return false;
  for (int k = 0; k < kNumColours; ++k) {
    if (in.w[in.i] == kColours[k].name) {
      *out = static_cast<Colour>(k);
      ++in.i;
      return true;
    }
  }
  return false;
}

// Longest place phrase first ("at the top left" before "at the top").
bool accept_place(Words& in, Position* out) {
  int best = -1;
  size_t best_len = 0;
  for (int k = 0; k < kNumPositions; ++k) {
    std::vector<std::string> phrase = ClipTokenizer::pre_tokenize(kPlacePhrases[k]);
    if (phrase.size() <= best_len || in.i + phrase.size() > in.w.size()) continue;
    if (std::equal(phrase.begin(), phrase.end(), in.w.begin() + in.i)) {
      best = k;
      best_len = phrase.size();
    }
  }
  if (best < 0) return false;
  *out = static_cast<Position>(best);
  in.i += best_len;
  return true;
}

bool accept_object(Words& in, ObjectSpec* o) {
  if (!in.accept("a") && !in.accept("an")) return false;
  if (!in.accept_one(kSizeNames, &o->size) || !accept_colour(in, &o->colour)) return false;
  o->fill = Fill::kSolid;
  Fill fill;
  if (in.accept_one(kFillNames, &fill)) {
    if (fill == Fill::kSolid) return false;  // solid has no word
    o->fill = fill;
  }
  return in.accept_one(kShapeNames, &o->shape) && accept_place(in, &o->position);
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
const char* name(Fill f) { return kFillNames[static_cast<int>(f)]; }
const char* name(Pattern p) { return kPatternNames[static_cast<int>(p)]; }
const char* name(Split s) { return s == Split::kTrain ? "train" : "heldout"; }
const char* place_phrase(Position p) { return kPlacePhrases[static_cast<int>(p)]; }
Rgb rgb(Colour c) { return kColours[static_cast<int>(c)].value; }
double size_radius(Size s) { return kSizeRadius[static_cast<int>(s)]; }

std::pair<double, double> position_centre(Position p) {
  int k = static_cast<int>(p), col = k % 3, row = k / 3;  // the enum is a 3x3 grid, reading order
  const double at[3] = {kNear, 0.5, kFar};
  return {at[col], at[row]};
}

const std::array<std::pair<Shape, Colour>, kNumShapes> kHeldOutPairs = {{
    {Shape::kCircle, Colour::kBlue},    {Shape::kSquare, Colour::kCyan},
    {Shape::kTriangle, Colour::kRed},   {Shape::kStar, Colour::kPurple},
    {Shape::kHeart, Colour::kWhite},    {Shape::kCross, Colour::kYellow},
    {Shape::kDiamond, Colour::kBrown},  {Shape::kHexagon, Colour::kGreen},
    {Shape::kRing, Colour::kPink},      {Shape::kMoon, Colour::kBlack},
}};

bool is_held_out(Shape s, Colour c) {
  for (const auto& [hs, hc] : kHeldOutPairs)
    if (hs == s && hc == c) return true;
  return false;
}

bool ObjectSpec::operator==(const ObjectSpec& o) const {
  return shape == o.shape && colour == o.colour && size == o.size && position == o.position &&
         fill == o.fill;
}

bool SceneSpec::operator==(const SceneSpec& o) const {
  return objects == o.objects && background == o.background &&
         background_pattern == o.background_pattern;
}

// ---- Scenes ----
bool positions_compatible(Position a, Position b) {
  auto [ax, ay] = position_centre(a);
  auto [bx, by] = position_centre(b);
  double dx = ax - bx, dy = ay - by;
  return dx * dx + dy * dy >= kMinPairDistance * kMinPairDistance;
}

std::string validate(const SceneSpec& s) {
  if (s.objects.empty() || s.objects.size() > 2)
    return str_cat("a scene has 1 or 2 objects, got ", s.objects.size());
  for (const auto& o : s.objects) {
    if (static_cast<int>(o.shape) >= kNumShapes || static_cast<int>(o.colour) >= kNumColours ||
        static_cast<int>(o.size) >= kNumSizes || static_cast<int>(o.position) >= kNumPositions ||
        static_cast<int>(o.fill) >= kNumFills)
      return "attribute value out of range";
    if (o.colour == s.background) return str_cat("a ", name(o.colour), " object on a ", name(o.colour), " background");
  }
  if (static_cast<int>(s.background) >= kNumColours || static_cast<int>(s.background_pattern) >= kNumPatterns)
    return "background value out of range";
  if (s.objects.size() == 2) {
    const auto& a = s.objects[0];
    const auto& b = s.objects[1];
    if (!positions_compatible(a.position, b.position))
      return str_cat("objects at '", name(a.position), "' and '", name(b.position), "' are too close");
    if (a.position > b.position) return "two objects must be in reading order of their positions";
  }
  return "";
}

SceneSpec sample_scene(Rng& rng) {
  SceneSpec s;
  s.background = pick<Colour>(rng, kNumColours);
  // Plain 40%, each pattern 20%: patterned backgrounds hide small patterned objects.
  s.background_pattern = rng.chance(0.4) ? Pattern::kPlain : static_cast<Pattern>(1 + rng.below(kNumPatterns - 1));
  if (rng.chance(0.6)) {
    s.objects.push_back(sample_object(rng, pick<Position>(rng, kNumPositions), s.background));
    return s;
  }
  Position a, b;
  do {
    a = pick<Position>(rng, kNumPositions);
    b = pick<Position>(rng, kNumPositions);
  } while (!positions_compatible(a, b));
  if (a > b) std::swap(a, b);
  s.objects.push_back(sample_object(rng, a, s.background));
  s.objects.push_back(sample_object(rng, b, s.background));
  return s;
}

SceneSpec sample_scene(Rng& rng, Split split) {
  for (int attempt = 0; attempt < 100000; ++attempt) {
    SceneSpec s = sample_scene(rng);
    if (has_held_out_object(s) == (split == Split::kHeldOut)) return s;
  }
  throw Error("world::sample_scene", "no scene of the split after 100000 draws");  // unreachable
}

std::string caption(const SceneSpec& s) {
  std::string out;
  for (size_t k = 0; k < s.objects.size(); ++k) {
    const ObjectSpec& o = s.objects[k];
    if (k > 0) out += " and ";
    out += str_cat("a ", name(o.size), " ", name(o.colour), " ");
    if (o.fill != Fill::kSolid) out += str_cat(name(o.fill), " ");
    out += str_cat(name(o.shape), " ", place_phrase(o.position));
  }
  std::string bg = s.background_pattern == Pattern::kPlain
                       ? str_cat("plain ", name(s.background))
                       : str_cat(name(s.background), " ", name(s.background_pattern));
  const char* article = std::string("aeiou").find(bg[0]) != std::string::npos ? "an" : "a";
  return str_cat(out, ", on ", article, " ", bg, " background");
}

std::optional<SceneSpec> parse_caption(const std::string& text) {
  Words in{ClipTokenizer::pre_tokenize(ClipTokenizer::clean_text(text))};
  SceneSpec s;
  ObjectSpec o;
  if (!accept_object(in, &o)) return std::nullopt;
  s.objects.push_back(o);
  if (in.accept("and")) {
    if (!accept_object(in, &o)) return std::nullopt;
    s.objects.push_back(o);
  }
  if (!in.accept(",") || !in.accept("on") || !(in.accept("a") || in.accept("an"))) return std::nullopt;
  if (in.accept("plain")) {
    s.background_pattern = Pattern::kPlain;
    if (!accept_colour(in, &s.background)) return std::nullopt;
  } else {
    if (!accept_colour(in, &s.background) || !in.accept_one(kPatternNames, &s.background_pattern) ||
        s.background_pattern == Pattern::kPlain)
      return std::nullopt;
  }
  if (!in.accept("background") || !in.done()) return std::nullopt;
  return s;
}

std::vector<std::string> caption_words() {
  std::set<std::string> words = {"a", "an", "and", "on", "background", ",", "plain"};
  auto add = [&](const char* phrase) {
    for (auto& w : ClipTokenizer::pre_tokenize(phrase)) words.insert(w);
  };
  for (auto* n : kShapeNames) add(n);
  for (auto& c : kColours) add(c.name);
  for (auto* n : kSizeNames) add(n);
  for (auto* n : kPlacePhrases) add(n);
  for (int k = 1; k < kNumFills; ++k) add(kFillNames[k]);
  for (auto* n : kPatternNames) add(n);
  return {words.begin(), words.end()};
}

// ---- Images ----
Rgb Image::at(int x, int y) const {
  TINV_CHECK(x >= 0 && x < width && y >= 0 && y < height, "world::Image::at", "pixel (", x, ", ",
             y, ") outside ", width, "x", height);
  const uint8_t* p = &pixels[(static_cast<size_t>(y) * width + x) * 3];
  return {p[0], p[1], p[2]};
}

SceneSpec scene_at(uint64_t seed, Split split, uint64_t index) {
  Rng rng = Rng::derive(seed, static_cast<uint64_t>(split), index);
  return sample_scene(rng, split);
}

Sample sample_at(uint64_t seed, Split split, uint64_t index, int size) {
  Rng rng = Rng::derive(seed, static_cast<uint64_t>(split), index);
  Sample s;
  s.scene = sample_scene(rng, split);
  s.caption = caption(s.scene);
  s.image = render(s.scene, rng, size);
  return s;
}

}  // namespace tinv::world
