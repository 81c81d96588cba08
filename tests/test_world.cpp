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

constexpr const char* kGoldenCaption0 =
    "a small white striped square at the top right and a large gray checkered hexagon at the "
    "bottom right, on a cyan checkered background";
constexpr const char* kGoldenCaptionHeldOut0 =
    "a medium pink dotted ring at the bottom right, on a plain orange background";
constexpr uint64_t kGoldenPixelHash = 7166879271268854410ULL;  // FNV-1a

// Pins the exact pixels and captions: a change here means every machine-independent guarantee
// (and every dataset made so far) changes. Update only on purpose.
TEST(World, GoldenScenes) {
  EXPECT_EQ(sample_at(0, Split::kTrain, 0).caption, kGoldenCaption0);
  EXPECT_EQ(sample_at(0, Split::kHeldOut, 0).caption, kGoldenCaptionHeldOut0);
  uint64_t h = 0xCBF29CE484222325ULL;
  for (int i = 0; i < 8; ++i) h = fnv1a(sample_at(0, Split::kTrain, i).image.pixels, h);
  for (const Concept& c : concepts()) h = fnv1a(concept_at(0, c, 0).image.pixels, h);
  EXPECT_EQ(h, kGoldenPixelHash);
}

TEST(WorldCaption, Examples) {
  SceneSpec s;
  s.objects.push_back({Shape::kStar, Colour::kRed, Size::kLarge, Position::kLeft, Fill::kStriped});
  s.background = Colour::kBlue;
  s.background_pattern = Pattern::kCheckered;
  EXPECT_EQ(caption(s), "a large red striped star on the left, on a blue checkered background");
  s.objects = {{Shape::kCircle, Colour::kGreen, Size::kSmall, Position::kLeft, Fill::kSolid},
               {Shape::kSquare, Colour::kYellow, Size::kLarge, Position::kRight, Fill::kSolid}};
  s.background = Colour::kWhite;
  s.background_pattern = Pattern::kPlain;
  EXPECT_EQ(caption(s), "a small green circle on the left and a large yellow square on the right, "
                        "on a plain white background");
  s.background = Colour::kOrange;
  s.background_pattern = Pattern::kDotted;
  EXPECT_EQ(caption(s).substr(caption(s).find(", on")), ", on an orange dotted background");
}

TEST(WorldCaption, RoundTripThousandsOfScenes) {
  for (Split split : {Split::kTrain, Split::kHeldOut}) {
    for (int i = 0; i < 3000; ++i) {
      SceneSpec s = scene_at(3, split, i);
      ASSERT_EQ(validate(s), "") << caption(s);
      auto parsed = parse_caption(caption(s));
      ASSERT_TRUE(parsed.has_value()) << caption(s);
      ASSERT_EQ(*parsed, s) << caption(s);
    }
  }
}

TEST(WorldCaption, ParseIsCaseAndSpaceTolerantAndRejectsOtherText) {
  auto p = parse_caption("  A Large RED striped   star on the left,on a blue checkered background ");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->objects.at(0).shape, Shape::kStar);
  EXPECT_EQ(p->objects.at(0).fill, Fill::kStriped);
  EXPECT_EQ(p->background_pattern, Pattern::kCheckered);
  p = parse_caption("a small black moon at the top left, on a plain pink background");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->objects.at(0).position, Position::kTopLeft);  // longest place phrase wins
  for (const char* bad : {"", "a photo of a cat", "a large red star on the left",
                          "a large red solid star on the left, on a plain blue background",
                          "a large red star on the left, on a blue background",
                          "a large red star on the left, on a blue plain background",
                          "a large red star on the left, on a plain blue background please",
                          "a huge red star on the left, on a plain blue background",
                          "a large red star on the left and, on a plain blue background"})
    EXPECT_FALSE(parse_caption(bad).has_value()) << bad;
}

TEST(World, EveryAttributeValueIsReachable) {
  std::set<int> shapes, colours, sizes, positions, fills, patterns, backgrounds, counts;
  for (int i = 0; i < 3000; ++i) {
    SceneSpec s = scene_at(11, Split::kTrain, i);
    backgrounds.insert(static_cast<int>(s.background));
    patterns.insert(static_cast<int>(s.background_pattern));
    counts.insert(static_cast<int>(s.objects.size()));
    for (const auto& o : s.objects) {
      shapes.insert(static_cast<int>(o.shape));
      colours.insert(static_cast<int>(o.colour));
      sizes.insert(static_cast<int>(o.size));
      positions.insert(static_cast<int>(o.position));
      fills.insert(static_cast<int>(o.fill));
    }
  }
  EXPECT_EQ(shapes.size(), size_t(kNumShapes));
  EXPECT_EQ(colours.size(), size_t(kNumColours));
  EXPECT_EQ(sizes.size(), size_t(kNumSizes));
  EXPECT_EQ(positions.size(), size_t(kNumPositions));
  EXPECT_EQ(fills.size(), size_t(kNumFills));
  EXPECT_EQ(patterns.size(), size_t(kNumPatterns));
  EXPECT_EQ(backgrounds.size(), size_t(kNumColours));
  EXPECT_EQ(counts, (std::set<int>{1, 2}));
  EXPECT_GE(kNumShapes, 8);
  EXPECT_GE(kNumColours, 8);
}

TEST(World, SplitsFollowTheHeldOutPairs) {
  std::set<std::pair<Shape, Colour>> seen_held_out;
  for (int i = 0; i < 2000; ++i) {
    for (const auto& o : scene_at(5, Split::kTrain, i).objects)
      ASSERT_FALSE(is_held_out(o.shape, o.colour)) << caption(scene_at(5, Split::kTrain, i));
    SceneSpec h = scene_at(5, Split::kHeldOut, i);
    bool any = false;
    for (const auto& o : h.objects) {
      if (is_held_out(o.shape, o.colour)) seen_held_out.insert({o.shape, o.colour}), any = true;
    }
    ASSERT_TRUE(any) << caption(h);
  }
  EXPECT_EQ(seen_held_out.size(), kHeldOutPairs.size());
  std::set<Colour> held_colours;
  for (const auto& [s, c] : kHeldOutPairs) held_colours.insert(c);
  EXPECT_EQ(held_colours.size(), kHeldOutPairs.size());  // one pair per shape, all colours distinct
}

TEST(World, ValidateRejectsImpossibleScenes) {
  SceneSpec s;
  EXPECT_NE(validate(s), "");
  s.objects = {{Shape::kStar, Colour::kRed, Size::kLarge, Position::kLeft, Fill::kSolid}};
  s.background = Colour::kRed;
  EXPECT_NE(validate(s), "");
  s.background = Colour::kBlue;
  EXPECT_EQ(validate(s), "");
  s.objects.push_back({Shape::kStar, Colour::kRed, Size::kLarge, Position::kCenter, Fill::kSolid});
  EXPECT_NE(validate(s), "");  // too close
  s.objects[1].position = Position::kRight;
  EXPECT_EQ(validate(s), "");
  std::swap(s.objects[0], s.objects[1]);
  EXPECT_NE(validate(s), "");  // not in reading order
  Rng rng(0);
  EXPECT_TINV_ERROR(render(s, rng), "reading order");
}

// Renders are size x size, the background is untouched away from the objects, and the object's
// colour fills a good part of its box.
TEST(WorldRender, ObjectColourDominatesItsRegion) {
  int checked = 0;
  for (int i = 0; i < 400 && checked < 60; ++i) {
    Sample smp = sample_at(21, Split::kTrain, i);
    const SceneSpec& s = smp.scene;
    ASSERT_EQ(smp.image.width, 64);
    ASSERT_EQ(smp.image.height, 64);
    ASSERT_EQ(smp.image.pixels.size(), size_t(64 * 64 * 3));
    if (s.objects.size() != 1 || s.background_pattern != Pattern::kPlain) continue;
    const ObjectSpec& o = s.objects[0];
    auto [cx, cy] = position_centre(o.position);
    const double r = size_radius(o.size) * 64;
    int inside = 0, object_px = 0, bg_px = 0, far = 0, far_bg = 0;
    for (int y = 0; y < 64; ++y) {
      for (int x = 0; x < 64; ++x) {
        double dx = x + 0.5 - cx * 64, dy = y + 0.5 - cy * 64, d = std::sqrt(dx * dx + dy * dy);
        Rgb p = smp.image.at(x, y);
        if (d <= r * 0.9) {
          ++inside;
          object_px += p == rgb(o.colour);
          bg_px += p == rgb(s.background);
        } else if (d > r * 1.15 + 2) {
          ++far;
          far_bg += p == rgb(s.background);
        }
      }
    }
    EXPECT_EQ(far_bg, far) << smp.caption;
    const double share = double(object_px) / inside;
    if (o.fill == Fill::kSolid) {
      EXPECT_GT(share, 0.25) << smp.caption;
      if (o.shape != Shape::kRing && o.shape != Shape::kMoon) EXPECT_GT(object_px, bg_px) << smp.caption;
    } else {
      EXPECT_GT(share, 0.04) << smp.caption;
    }
    ++checked;
  }
  EXPECT_GE(checked, 40);
  Rng rng(0);
  Image big = render(scene_at(0, Split::kTrain, 0), rng, 128);
  EXPECT_EQ(big.width, 128);
  EXPECT_EQ(big.pixels.size(), size_t(128 * 128 * 3));
}

TEST(WorldConcepts, NamedByNoCaptionWordAndRenderedInVaryingPlaces) {
  const auto& cs = concepts();
  ASSERT_GE(cs.size(), 6u);
  std::vector<std::string> words = caption_words();
  std::set<std::string> names;
  for (const Concept& c : cs) {
    names.insert(c.name);
    EXPECT_FALSE(c.description.empty());
    EXPECT_EQ(c.class_word, name(c.class_shape));
    EXPECT_EQ(std::find(words.begin(), words.end(), c.name), words.end()) << c.name;
    EXPECT_EQ(&find_concept(c.name), &c);
    std::set<std::pair<int, int>> centroids;
    std::set<int> areas;
    for (int i = 0; i < 12; ++i) {
      ConceptSample s = concept_at(0, c, i);
      ASSERT_EQ(s.image.width, 64);
      EXPECT_EQ(std::find(c.colours.begin(), c.colours.end(), s.background), c.colours.end());
      // The caption with a plain colour + shape in place of the concept is a world caption.
      auto parsed = parse_caption(s.caption("red " + c.class_word));
      ASSERT_TRUE(parsed.has_value()) << s.caption("red " + c.class_word);
      EXPECT_EQ(parsed->objects.at(0).position, s.position);
      EXPECT_EQ(parsed->objects.at(0).size, s.size);
      if (s.background_pattern != Pattern::kPlain) continue;
      double sx = 0, sy = 0;
      int n = 0;
      for (int y = 0; y < 64; ++y)
        for (int x = 0; x < 64; ++x)
          if (!(s.image.at(x, y) == rgb(s.background))) sx += x, sy += y, ++n;
      ASSERT_GT(n, 30) << c.name;
      centroids.insert({static_cast<int>(sx / n / 8), static_cast<int>(sy / n / 8)});
      areas.insert(n / 100);
    }
    EXPECT_GE(centroids.size(), 3u) << c.name;
    EXPECT_GE(areas.size(), 2u) << c.name;
    EXPECT_EQ(concept_at(0, c, 3).image.pixels, concept_at(0, c, 3).image.pixels);
  }
  EXPECT_EQ(names.size(), cs.size());
  EXPECT_TINV_ERROR(find_concept("cat"), "unknown concept 'cat'");
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
