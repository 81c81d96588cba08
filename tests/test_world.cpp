// The procedural world (src/world/): determinism, the caption grammar, splits, renders, concepts,
// and the world's BPE tokenizer read back by ClipTokenizer.
#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/fs.h"
#include "test_util.h"
#include "text/clip_tokenizer.h"
#include "world/bpe_trainer.h"
#include "world/judge.h"
#include "world/render.h"
#include "world/world.h"

namespace tinv::world {
namespace {

uint64_t fnv1a(const std::vector<uint8_t>& bytes, uint64_t h = 0xCBF29CE484222325ULL) {
  for (uint8_t b : bytes) h = (h ^ b) * 0x100000001B3ULL;
  return h;
}

std::vector<std::string> train_captions(int n, uint64_t seed = 0) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(caption(scene_at(seed, Split::kTrain, i)));
  return out;
}

TEST(WorldRng, SplitMix64AndRanges) {
  Rng rng(0);
  EXPECT_EQ(rng.next_u64(), 0xE220A8397B1DCDAFULL);  // the reference splitmix64 sequence
  EXPECT_EQ(rng.next_u64(), 0x6E789E6AA1B965F4ULL);
  std::vector<int> hist(7, 0);
  for (int i = 0; i < 7000; ++i) {
    uint32_t k = rng.below(7);
    ASSERT_LT(k, 7u);
    ++hist[k];
    double u = rng.uniform();
    ASSERT_TRUE(u >= 0.0 && u < 1.0);
  }
  for (int h : hist) EXPECT_GT(h, 850);
  EXPECT_NE(Rng::derive(0, 0, 1).next_u64(), Rng::derive(0, 0, 2).next_u64());
  EXPECT_NE(Rng::derive(0, 0, 1).next_u64(), Rng::derive(0, 1, 1).next_u64());
  EXPECT_NE(Rng::derive(0, 0, 1).next_u64(), Rng::derive(1, 0, 1).next_u64());
}

TEST(WorldRender, DeterministicSineCosine) {
  for (double x = -7; x <= 7; x += 0.01) {
    EXPECT_NEAR(det_sin(x), std::sin(x), 1e-12);
    EXPECT_NEAR(det_cos(x), std::cos(x), 1e-12);
  }
}

TEST(World, SameSeedSamePixelsDifferentSeedsDiffer) {
  for (int i = 0; i < 5; ++i) {
    Sample a = sample_at(7, Split::kTrain, i), b = sample_at(7, Split::kTrain, i);
    EXPECT_EQ(a.caption, b.caption);
    EXPECT_EQ(a.scene, b.scene);
    EXPECT_EQ(a.image.pixels, b.image.pixels);
    EXPECT_EQ(scene_at(7, Split::kTrain, i), a.scene);
  }
  int differ = 0;
  for (int i = 0; i < 10; ++i) {
    Sample a = sample_at(7, Split::kTrain, i), b = sample_at(8, Split::kTrain, i);
    differ += a.image.pixels != b.image.pixels;
  }
  EXPECT_EQ(differ, 10);
  EXPECT_NE(train_captions(20, 7), train_captions(20, 8));
  // Same caption, different renderings: the jitter moves pixels between indices.
  SceneSpec s = scene_at(0, Split::kTrain, 0);
  Rng r1(1), r2(2);
  EXPECT_NE(render(s, r1).pixels, render(s, r2).pixels);
}

constexpr const char* kGoldenCaption0 = "a large blue heart in the center, on a plain black background";
constexpr const char* kGoldenCaptionHeldOut0 = "a small red heart at the bottom, on a plain blue background";
constexpr uint64_t kGoldenPixelHash = 4910453617582377509ULL;     // FNV-1a of 8 training scenes
constexpr uint64_t kGoldenConceptHash = 10834298593169686619ULL;  // FNV-1a of rendering 0 of every concept

// Pins the exact pixels and captions: a change of the scenes means every machine-independent
// guarantee (and every dataset made so far) changes; a change of the concepts changes the
// bundled concept images and every study. Update only on purpose.
TEST(World, GoldenScenes) {
  EXPECT_EQ(sample_at(0, Split::kTrain, 0).caption, kGoldenCaption0);
  EXPECT_EQ(sample_at(0, Split::kHeldOut, 0).caption, kGoldenCaptionHeldOut0);
  uint64_t h = 0xCBF29CE484222325ULL;
  for (int i = 0; i < 8; ++i) h = fnv1a(sample_at(0, Split::kTrain, i).image.pixels, h);
  EXPECT_EQ(h, kGoldenPixelHash);
  uint64_t hc = 0xCBF29CE484222325ULL;
  for (const Concept& c : concepts()) hc = fnv1a(concept_at(0, c, 0).image.pixels, hc);
  EXPECT_EQ(hc, kGoldenConceptHash);
}

TEST(WorldCaption, Examples) {
  SceneSpec s;
  s.object = {Shape::kStar, Colour::kRed, Size::kLarge, Position::kLeft, Mark::kRing, Colour::kWhite};
  s.background = Colour::kBlue;
  s.background_pattern = Pattern::kCheckered;
  EXPECT_EQ(caption(s), "a large red star with a white ring on the left, on a blue checkered background");
  EXPECT_EQ(object_words(s.object), "red star with a white ring");
  s.object = {Shape::kCircle, Colour::kGreen, Size::kSmall, Position::kCenter, Mark::kNone, Colour::kBlack};
  s.background = Colour::kWhite;
  s.background_pattern = Pattern::kPlain;
  EXPECT_EQ(caption(s), "a small green circle in the center, on a plain white background");
  s.object.mark = Mark::kDot;
  s.object.position = Position::kTop;
  EXPECT_EQ(caption(s), "a small green circle with a black dot at the top, on a plain white background");
  EXPECT_EQ(background_phrase(Colour::kYellow, Pattern::kStriped), "a yellow striped background");
}

TEST(WorldCaption, RoundTripThousandsOfScenes) {
  for (Split split : {Split::kTrain, Split::kHeldOut}) {
    for (int i = 0; i < 3000; ++i) {
      SceneSpec s = scene_at(3, split, i);
      ASSERT_EQ(validate(s), "") << caption(s);
      auto parsed = parse_caption(caption(s));
      ASSERT_TRUE(parsed.has_value()) << caption(s);
      ASSERT_EQ(*parsed, s) << caption(s);
      ASSERT_EQ(caption(*parsed), caption(s));
    }
  }
}

TEST(WorldCaption, ParseIsCaseAndSpaceTolerantAndRejectsOtherText) {
  auto p = parse_caption("  A Large RED star  With a WHITE dot on the left,on a blue checkered background ");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->object.shape, Shape::kStar);
  EXPECT_EQ(p->object.mark, Mark::kDot);
  EXPECT_EQ(p->object.mark_colour, Colour::kWhite);
  EXPECT_EQ(p->background_pattern, Pattern::kCheckered);
  p = parse_caption("a small black heart at the bottom, on a plain cyan background");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->object.position, Position::kBottom);
  EXPECT_EQ(p->object.mark, Mark::kNone);
  for (const char* bad : {"", "a photo of a cat", "a large red star on the left",
                          "a large red star with a none on the left, on a plain blue background",
                          "a large red star with a white on the left, on a plain blue background",
                          "a large red star with a white ring with a black dot on the left, on a plain blue background",
                          "a large red star on the left, on a blue background",
                          "a large red star on the left, on a blue plain background",
                          "a large red star on the left, on a plain blue background please",
                          "a huge red star on the left, on a plain blue background",
                          "a medium red star on the left, on a plain blue background",
                          "a large red star at the top left, on a plain blue background"})
    EXPECT_FALSE(parse_caption(bad).has_value()) << bad;
}

TEST(World, EveryAttributeValueIsReachable) {
  std::set<int> shapes, colours, sizes, positions, marks, mark_colours, patterns, backgrounds;
  for (int i = 0; i < 3000; ++i) {
    SceneSpec s = scene_at(11, Split::kTrain, i);
    backgrounds.insert(static_cast<int>(s.background));
    patterns.insert(static_cast<int>(s.background_pattern));
    shapes.insert(static_cast<int>(s.object.shape));
    colours.insert(static_cast<int>(s.object.colour));
    sizes.insert(static_cast<int>(s.object.size));
    positions.insert(static_cast<int>(s.object.position));
    marks.insert(static_cast<int>(s.object.mark));
    if (s.object.mark != Mark::kNone) mark_colours.insert(static_cast<int>(s.object.mark_colour));
  }
  EXPECT_EQ(shapes.size(), size_t(kNumShapes));
  EXPECT_EQ(colours.size(), size_t(kNumColours));
  EXPECT_EQ(sizes.size(), size_t(kNumSizes));
  EXPECT_EQ(positions.size(), size_t(kNumPositions));
  EXPECT_EQ(marks.size(), size_t(kNumMarks));
  EXPECT_EQ(mark_colours.size(), size_t(kNumColours));
  EXPECT_EQ(patterns.size(), size_t(kNumPatterns));
  EXPECT_EQ(backgrounds.size(), size_t(kNumColours));
}

TEST(World, SplitsFollowTheHeldOutPairs) {
  std::set<std::pair<Colour, Colour>> seen_held_out;
  for (int i = 0; i < 2000; ++i) {
    SceneSpec t = scene_at(5, Split::kTrain, i);
    ASSERT_FALSE(is_held_out(t.object.colour, t.background)) << caption(t);
    SceneSpec h = scene_at(5, Split::kHeldOut, i);
    ASSERT_TRUE(is_held_out(h.object.colour, h.background)) << caption(h);
    seen_held_out.insert({h.object.colour, h.background});
  }
  EXPECT_EQ(seen_held_out.size(), kHeldOutPairs.size());
  std::set<Colour> objects, backgrounds;
  for (const auto& [o, b] : kHeldOutPairs) objects.insert(o), backgrounds.insert(b);
  EXPECT_EQ(objects.size(), kHeldOutPairs.size());      // one pair per object colour
  EXPECT_EQ(backgrounds.size(), kHeldOutPairs.size());  // and per background colour
}

TEST(World, ValidateRejectsImpossibleScenes) {
  SceneSpec s;
  s.object = {Shape::kStar, Colour::kRed, Size::kLarge, Position::kLeft, Mark::kNone, Colour::kRed};
  s.background = Colour::kRed;
  EXPECT_NE(validate(s), "");
  s.background = Colour::kBlue;
  EXPECT_EQ(validate(s), "");  // no mark: its colour does not matter
  s.object.mark = Mark::kRing;
  EXPECT_NE(validate(s), "");  // a red ring on a red star
  s.object.mark_colour = Colour::kBlue;
  EXPECT_NE(validate(s), "");  // a blue ring on a blue background
  s.object.mark_colour = Colour::kWhite;
  EXPECT_EQ(validate(s), "");
  s.object.shape = static_cast<Shape>(kNumShapes);
  EXPECT_NE(validate(s), "");
  Rng rng(0);
  EXPECT_TINV_ERROR(render(s, rng), "out of range");
}

// Renders are size x size, the background is untouched away from the object, and the object's
// colour and mark show where they should.
TEST(WorldRender, ObjectAndMarkColoursWhereExpected) {
  int checked = 0;
  for (int i = 0; i < 400 && checked < 60; ++i) {
    Sample smp = sample_at(21, Split::kTrain, i);
    const SceneSpec& s = smp.scene;
    ASSERT_EQ(smp.image.width, 64);
    ASSERT_EQ(smp.image.height, 64);
    ASSERT_EQ(smp.image.pixels.size(), size_t(64 * 64 * 3));
    if (s.background_pattern != Pattern::kPlain) continue;
    const ObjectSpec& o = s.object;
    auto [cx, cy] = position_centre(o.position);
    const double r = size_radius(o.size) * 64;
    int centre_px = 0, centre_mark = 0, centre_body = 0, far = 0, far_bg = 0, body_px = 0;
    for (int y = 0; y < 64; ++y) {
      for (int x = 0; x < 64; ++x) {
        double dx = x + 0.5 - cx * 64, dy = y + 0.5 - cy * 64, d = std::sqrt(dx * dx + dy * dy);
        Rgb p = smp.image.pixel(x, y);
        body_px += p == rgb(o.colour);
        if (d <= r * 0.15) {  // well inside the dot (radius 0.3) whatever the jitter
          ++centre_px;
          centre_mark += p == rgb(o.mark_colour);
          centre_body += p == rgb(o.colour);
        } else if (d > r * 1.1 + 2) {
          ++far;
          far_bg += p == rgb(s.background);
        }
      }
    }
    EXPECT_EQ(far_bg, far) << smp.caption;
    EXPECT_GT(body_px, 0.15 * r * r) << smp.caption;
    if (o.mark == Mark::kDot)
      EXPECT_EQ(centre_mark, centre_px) << smp.caption;
    else
      EXPECT_EQ(centre_body, centre_px) << smp.caption;
    ++checked;
  }
  EXPECT_GE(checked, 40);
  Rng rng(0);
  Image big = render(scene_at(0, Split::kTrain, 0), rng, 128);
  EXPECT_EQ(big.width, 128);
  EXPECT_EQ(big.pixels.size(), size_t(128 * 128 * 3));
}

// World v2.1 (SceneRules::unnamed_dot): a ringed object may also carry a dot its caption does not
// name; with the default rules every scene is the v2 scene it always was.
TEST(World, UnnamedDotsOnlyInsideRingsAndNeverInCaptions) {
  for (uint64_t i = 0; i < 300; ++i) {
    const SceneSpec v2 = scene_at(5, Split::kTrain, i);
    EXPECT_EQ(scene_at(5, Split::kTrain, i, SceneRules{}), v2);
    EXPECT_FALSE(v2.object.unnamed_dot.has_value());
  }
  int ringed = 0, dotted = 0;
  for (uint64_t i = 0; i < 600; ++i) {
    const Sample smp = sample_at(5, Split::kTrain, i, 64, SceneRules{0.5});
    const ObjectSpec& o = smp.scene.object;
    EXPECT_EQ(validate(smp.scene), "") << smp.caption;
    const std::optional<SceneSpec> parsed = parse_caption(smp.caption);
    ASSERT_TRUE(parsed.has_value()) << smp.caption;
    EXPECT_FALSE(parsed->object.unnamed_dot.has_value());
    EXPECT_EQ(smp.caption, caption(*parsed));  // the caption is that of the scene without its dot
    if (o.mark != Mark::kRing) {
      EXPECT_FALSE(o.unnamed_dot.has_value()) << smp.caption;
      continue;
    }
    ++ringed;
    if (!o.unnamed_dot) continue;
    ++dotted;
    EXPECT_NE(*o.unnamed_dot, o.colour);
    EXPECT_NE(*o.unnamed_dot, smp.scene.background);
    // The dot is drawn: the pixels well inside it have its colour.
    auto [cx, cy] = position_centre(o.position);
    const double r = size_radius(o.size) * 64;
    int inside = 0, dot = 0;
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x) {
        const double dx = x + 0.5 - cx * 64, dy = y + 0.5 - cy * 64;
        if (std::sqrt(dx * dx + dy * dy) > r * 0.15) continue;
        ++inside;
        dot += smp.image.pixel(x, y) == rgb(*o.unnamed_dot);
      }
    EXPECT_GT(inside, 0);
    EXPECT_EQ(dot, inside) << smp.caption;
  }
  EXPECT_GT(ringed, 120);
  EXPECT_GT(dotted, ringed / 3);  // half of the ringed objects, within sampling error
  EXPECT_LT(dotted, 2 * ringed / 3);
  for (uint64_t i = 0; i < 300; ++i) {  // every ringed object gets one at chance 1
    const SceneSpec s = scene_at(6, Split::kHeldOut, i, SceneRules{1.0});
    EXPECT_EQ(s.object.unnamed_dot.has_value(), s.object.mark == Mark::kRing);
  }
  Rng rng(1);
  EXPECT_TINV_ERROR(sample_scene(rng, Split::kTrain, SceneRules{1.5}), "unnamed dot");
  SceneSpec s;
  s.object = {Shape::kCircle, Colour::kRed, Size::kLarge, Position::kLeft, Mark::kDot, Colour::kWhite};
  s.background = Colour::kBlue;
  s.object.unnamed_dot = Colour::kYellow;
  EXPECT_NE(validate(s), "");  // only inside a ring
  s.object.mark = Mark::kRing;
  EXPECT_EQ(validate(s), "");
  s.object.unnamed_dot = Colour::kRed;
  EXPECT_NE(validate(s), "");  // the body's colour
  s.object.unnamed_dot = Colour::kBlue;
  EXPECT_NE(validate(s), "");  // the background's colour
  s.object.unnamed_dot = Colour::kWhite;
  EXPECT_EQ(validate(s), "");  // the ring's colour is allowed (a bullseye)
}

TEST(World, ResolveCfg) {
  EXPECT_EQ(resolve_cfg(0, true), kModelCfg);  // the bundled world model's guidance
  EXPECT_EQ(resolve_cfg(0, false), 7.5);       // any other model: the Stable Diffusion default
  EXPECT_EQ(resolve_cfg(5, true), 5.0);        // a given value is kept
  EXPECT_EQ(resolve_cfg(1, false), 1.0);
}

TEST(WorldConcepts, PortraitIsTheFirstLargeRenderingOnAPlainBackground) {
  for (uint64_t seed : {0u, 7u}) {
    for (const Concept& c : concepts()) {
      SCOPED_TRACE(c.name + " seed " + std::to_string(seed));
      const uint64_t k = portrait_index(seed, c);
      EXPECT_LT(k, 100u);  // 30% of the renderings qualify
      const ConceptSample p = concept_at(seed, c, k);
      EXPECT_EQ(p.size, Size::kLarge);
      EXPECT_EQ(p.background_pattern, Pattern::kPlain);
      for (uint64_t i = 0; i < k; ++i) {
        const ConceptSample s = concept_at(seed, c, i);
        EXPECT_FALSE(s.size == Size::kLarge && s.background_pattern == Pattern::kPlain) << i;
      }
    }
  }
}

TEST(WorldConcepts, NamedByNoCaptionAndRenderedInVaryingPlaces) {
  const auto& cs = concepts();
  ASSERT_GE(cs.size(), 6u);
  std::vector<std::string> words = caption_words();
  std::set<std::string> names;
  for (const Concept& c : cs) {
    names.insert(c.name);
    EXPECT_FALSE(c.description.empty());
    EXPECT_EQ(c.class_word, name(c.shape));
    EXPECT_NE(c.ring, c.body);
    EXPECT_NE(c.dot, c.body);
    EXPECT_EQ(std::find(words.begin(), words.end(), c.name), words.end()) << c.name;
    EXPECT_EQ(&find_concept(c.name), &c);
    // The closest captions name one mark; the grammar has no way to name both.
    auto nearest = c.nearest_objects();
    ASSERT_EQ(nearest.size(), 2u);
    EXPECT_EQ(nearest[0].mark, Mark::kRing);
    EXPECT_EQ(nearest[1].mark, Mark::kDot);
    const std::string both = str_cat("a large ", object_words(nearest[0]), " and a ", name(c.dot),
                                     " dot in the center, on a plain gray background");
    EXPECT_FALSE(parse_caption(both).has_value()) << both;
    std::set<std::pair<int, int>> centroids;
    std::set<int> areas;
    for (int i = 0; i < 12; ++i) {
      ConceptSample s = concept_at(0, c, i);
      ASSERT_EQ(s.image.width, 64);
      EXPECT_EQ(std::find(c.colours.begin(), c.colours.end(), s.background), c.colours.end());
      // The caption with the object words of a scene in place of the concept is a world caption.
      auto parsed = parse_caption(s.caption(object_words(nearest[0])));
      ASSERT_TRUE(parsed.has_value()) << s.caption(object_words(nearest[0]));
      EXPECT_EQ(parsed->object.position, s.position);
      EXPECT_EQ(parsed->object.size, s.size);
      if (s.background_pattern != Pattern::kPlain) continue;
      double sx = 0, sy = 0;
      int n = 0;
      for (int y = 0; y < 64; ++y)
        for (int x = 0; x < 64; ++x)
          if (!(s.image.pixel(x, y) == rgb(s.background))) sx += x, sy += y, ++n;
      ASSERT_GT(n, 30) << c.name;
      centroids.insert({static_cast<int>(sx / n / 8), static_cast<int>(sy / n / 8)});
      areas.insert(n / 300);
    }
    EXPECT_GE(centroids.size(), 2u) << c.name;
    EXPECT_GE(areas.size(), 2u) << c.name;
    EXPECT_EQ(concept_at(0, c, 3).image.pixels, concept_at(0, c, 3).image.pixels);
  }
  EXPECT_EQ(names.size(), cs.size());
  EXPECT_TINV_ERROR(find_concept("cat"), "unknown concept 'cat'");
}

// ---- The concept judge ----

TEST(WorldJudge, ValidationMeetsItsTargets) {
  JudgeValidation v = validate_judge(0, 12);
  ASSERT_EQ(v.rows.size(), concepts().size());
  for (const auto& r : v.rows) {
    EXPECT_GE(r.real, kJudgeRealTarget) << r.concept_name;
    EXPECT_GE(r.real_context, 0.95) << r.concept_name;
    EXPECT_LE(r.other_max, kJudgeOtherTarget) << r.concept_name << " vs " << r.other_max_name;
    EXPECT_LE(r.nearest, kJudgeOtherTarget) << r.concept_name;
  }
  EXPECT_TRUE(v.pass());
  EXPECT_NE(format_judge_validation(v).find("PASS"), std::string::npos);
}

TEST(WorldJudge, MeanAveragesEveryField) {
  JudgeScore a, b;
  a.found = true, a.identity = 0.5, a.shape = 1, a.body = 0.5, a.ring = 0.25, a.dot = 0, a.context = 1;
  b.identity = 0, b.shape = 0, b.body = 0.5, b.ring = 0.75, b.dot = 1, b.size = 0.5;
  JudgeMean m;
  m.add(a);
  m.add(b);
  const JudgeMean r = m.mean();
  EXPECT_EQ(r.n, 2);
  EXPECT_DOUBLE_EQ(r.found, 0.5);
  EXPECT_DOUBLE_EQ(r.identity, 0.25);
  EXPECT_DOUBLE_EQ(r.shape, 0.5);
  EXPECT_DOUBLE_EQ(r.body, 0.5);
  EXPECT_DOUBLE_EQ(r.ring, 0.5);
  EXPECT_DOUBLE_EQ(r.dot, 0.5);
  EXPECT_DOUBLE_EQ(r.context, 0.5);
  EXPECT_DOUBLE_EQ(r.size, 0.25);
}

TEST(WorldJudge, PartsAndContextReadBack) {
  const Concept& c = find_concept("eye_square");
  ConceptSample s = concept_at(0, c, 0);
  JudgeContext ctx = context_of(s);
  JudgeScore real = judge_concept(s.image, c, ctx);
  EXPECT_TRUE(real.found);
  EXPECT_GT(real.shape, 0.9);
  EXPECT_GT(real.body, 0.9);
  EXPECT_GT(real.ring, 0.9);
  EXPECT_GT(real.dot, 0.9);
  EXPECT_DOUBLE_EQ(real.context, 1.0);
  // The same image judged for another place, size and background: only the context drops.
  JudgeContext wrong = ctx;
  wrong.position = ctx.position == Position::kLeft ? Position::kRight : Position::kLeft;
  wrong.size = ctx.size == Size::kLarge ? Size::kSmall : Size::kLarge;
  JudgeScore moved = judge_concept(s.image, c, wrong);
  EXPECT_DOUBLE_EQ(moved.position, 0.0);
  EXPECT_DOUBLE_EQ(moved.size, 0.0);
  EXPECT_NEAR(moved.identity, real.identity, 1e-12);
  // A blank image of the background: nothing found, identity 0, background 1.
  Image blank = s.image;
  for (size_t p = 0; p < blank.pixels.size(); p += 3) {
    Rgb b = rgb(ctx.background);
    blank.pixels[p] = b.r, blank.pixels[p + 1] = b.g, blank.pixels[p + 2] = b.b;
  }
  JudgeScore none = judge_concept(blank, c, {ctx.size, ctx.position, ctx.background, Pattern::kPlain});
  EXPECT_FALSE(none.found);
  EXPECT_DOUBLE_EQ(none.identity, 0.0);
  EXPECT_DOUBLE_EQ(none.background, 1.0);
  EXPECT_DOUBLE_EQ(none.pattern, 1.0);
  // Every background pattern is read back from real scenes.
  for (int i = 0; i < 60; ++i) {
    Sample smp = sample_at(2, Split::kTrain, i);
    JudgeContext sc{smp.scene.object.size, smp.scene.object.position, smp.scene.background,
                    smp.scene.background_pattern};
    JudgeScore js = judge_concept(smp.image, c, sc);
    EXPECT_DOUBLE_EQ(js.pattern, 1.0) << smp.caption;
    EXPECT_GT(js.background, 0.95) << smp.caption;
  }
  Image tiny;
  tiny.width = tiny.height = 8;
  tiny.pixels.assign(8 * 8 * 3, 0);
  EXPECT_TINV_ERROR(judge_concept(tiny, c, ctx), "at least 16");
}

TEST(WorldBpe, TiesGoToTheSmallestPairAndTrainingStopsEarly) {
  BpeModel bpe = train_bpe({"ab ab cd cd"}, {100});
  ASSERT_EQ(bpe.merges.size(), 2u);  // then no pair occurs twice
  EXPECT_EQ(bpe.merges[0], std::make_pair(std::string("a"), std::string("b</w>")));
  EXPECT_EQ(bpe.merges[1], std::make_pair(std::string("c"), std::string("d</w>")));
  EXPECT_EQ(bpe.vocab.size(), 512u + 2 + 2);
  EXPECT_EQ(bpe.vocab[512], "ab</w>");
  EXPECT_EQ(bpe.vocab.back(), "<|endoftext|>");
  EXPECT_EQ(train_bpe({"ab ab cd cd"}, {1}).merges.size(), 1u);
  EXPECT_TINV_ERROR(train_bpe({}, {-1}), "num_merges");
}

TEST(WorldBpe, ByteSymbolsMatchClipsVocabulary) {
  BpeModel bpe = train_bpe({}, {});
  ASSERT_EQ(bpe.vocab.size(), 514u);
  auto clip = nlohmann::json::parse(read_text_file(test::fixture("tiny-sd15/model/tokenizer/vocab.json")));
  for (int i = 0; i < 512; ++i) ASSERT_EQ(clip.at(bpe.vocab[i]).get<int>(), i) << bpe.vocab[i];
  EXPECT_EQ(merges_txt(bpe), "#version: 0.2\n");
}

TEST(WorldBpe, ClipTokenizerLoadsItAndCaptionWordsAreSingleTokens) {
  test::TempDir dir1, dir2;
  std::vector<std::string> texts = train_captions(2000);
  texts.push_back("un café, un café");  // non-ASCII bytes go through the byte symbols
  BpeModel bpe = train_bpe(texts, {1000});
  EXPECT_LT(bpe.merges.size(), 1000u);  // the world's words are few: training stops early
  save_bpe(bpe, dir1.path() + "/tok");
  save_bpe(train_bpe(texts, {1000}), dir2.path() + "/tok");
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
    EXPECT_EQ(read_text_file(dir1.path() + "/tok/" + f), read_text_file(dir2.path() + "/tok/" + f)) << f;

  ClipTokenizer tok = ClipTokenizer::load(dir1.path() + "/tok");
  const int64_t n = static_cast<int64_t>(bpe.vocab.size());
  EXPECT_EQ(tok.base_vocab_size(), n);
  EXPECT_EQ(tok.bos_id(), n - 2);
  EXPECT_EQ(tok.eos_id(), n - 1);
  EXPECT_EQ(tok.pad_id(), n - 1);
  for (const std::string& w : caption_words()) {
    auto ids = tok.tokenize(w);
    ASSERT_EQ(ids.size(), 1u) << w;
    EXPECT_EQ(tok.token_string(ids[0]), w + "</w>");
  }
  EXPECT_EQ(tok.tokenize("café").size(), 1u);
  for (const std::string& c : train_captions(50, 99)) {
    std::vector<int64_t> ids = tok.tokenize(c);
    EXPECT_EQ(ids.size(), ClipTokenizer::pre_tokenize(c).size()) << c;  // one token per word
    EXPECT_EQ(tok.tokenize(tok.decode(ids)), ids) << c;
    auto enc = tok.encode(c);
    EXPECT_FALSE(enc.truncated);
    EXPECT_EQ(enc.ids.front(), tok.bos_id());
  }
  // Words outside the world still tokenise (to byte-level pieces) and decode back.
  std::vector<int64_t> ids = tok.tokenize("a photo of a zebra");
  EXPECT_EQ(tok.decode(ids), "a photo of a zebra");
}

}  // namespace
}  // namespace tinv::world
