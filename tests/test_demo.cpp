// `tinv demo` and what it rests on: bundled-model lookup (default_models.h), the HTML report
// builder (html_report.h), the world-grammar pieces and bundled concept images (demo.h), an
// end-to-end run on the tiny fixture model, and the CLI (bad input; --model/--captioner
// defaults of generate, caption and invert through TINV_MODELS_DIR).
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>

#include "apps/demo.h"
#include "common/default_models.h"
#include "common/fs.h"
#include "io/html_report.h"
#include "io/image.h"
#include "io/image_write.h"
#include "io/plot.h"
#include "test_util.h"
#include "world/world.h"

namespace tinv {
namespace {

namespace fs = std::filesystem;

std::string source_models() { return std::string(TINV_SOURCE_DIR) + "/models"; }

// Sets or unsets TINV_MODELS_DIR for the scope, restoring the previous value.
class ModelsDirEnv {
 public:
  explicit ModelsDirEnv(const std::string* value) {
    if (const char* old = std::getenv("TINV_MODELS_DIR")) old_ = old, had_ = true;
    if (value)
      ::setenv("TINV_MODELS_DIR", value->c_str(), 1);
    else
      ::unsetenv("TINV_MODELS_DIR");
  }
  ~ModelsDirEnv() {
    if (had_)
      ::setenv("TINV_MODELS_DIR", old_.c_str(), 1);
    else
      ::unsetenv("TINV_MODELS_DIR");
  }

 private:
  std::string old_;
  bool had_ = false;
};

// A BLIP folder: the tiny fixture's weights plus the synthetic BERT vocabulary.
std::string make_blip(const test::TempDir& dir) {
  const std::string blip = dir.file("blip");
  EXPECT_EQ(::mkdir(blip.c_str(), 0755), 0);
  for (const char* f : {"config.json", "model.safetensors", "preprocessor_config.json"})
    EXPECT_EQ(::symlink(test::fixture(std::string("tiny-blip/model/") + f).c_str(), (blip + "/" + f).c_str()), 0);
  test::write_bert_test_vocab(blip + "/vocab.txt");
  return blip;
}

// A 32x32 picture: a red square on a grey background.
std::string write_picture(const test::TempDir& dir, const std::string& name = "x.png") {
  auto img = torch::full({32, 32, 3}, 120, torch::kUInt8);
  img.slice(0, 8, 24).slice(1, 8, 24).select(2, 0).fill_(230);
  save_png(dir.file(name), img);
  return dir.file(name);
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

std::vector<uint8_t> base64_decode(const std::string& s) {
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::vector<uint8_t> out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    auto v = kAlphabet.find(c);
    EXPECT_NE(v, std::string::npos) << "bad base64 character " << c;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) out.push_back(static_cast<uint8_t>(acc >> (bits -= 8)));
  }
  return out;
}

// Every non-void element is closed in order (inline SVG's self-closing elements count as
// closed); returns the first problem or "".
std::string check_tags(const std::string& html) {
  static const std::set<std::string> kVoid = {"img", "meta", "br", "hr", "link", "!DOCTYPE"};
  std::vector<std::string> stack;
  std::regex tag("<(/?)([!A-Za-z][A-Za-z0-9]*)[^>]*?(/?)>");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), tag); it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[2];
    if ((*it)[1] == "/") {
      if (stack.empty() || stack.back() != name) return "unexpected </" + name + ">";
      stack.pop_back();
    } else if (!kVoid.count(name) && (*it)[3] != "/") {
      stack.push_back(name);
    }
  }
  return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

// ---- default_model_dir ----------------------------------------------------------------------

TEST(DefaultModels, EnvironmentFirstThenExecutableThenSourceTree) {
  test::TempDir dir;
  ASSERT_EQ(::mkdir(dir.file("world-sd").c_str(), 0755), 0);
  ModelsDirEnv env(&dir.path());
  auto c = default_model_candidates("world-sd");
  ASSERT_GE(c.size(), 3u);
  EXPECT_EQ(c[0], dir.file("world-sd"));
  const fs::path exe_dir = fs::path(executable_path()).parent_path();
  EXPECT_EQ(c[1], (exe_dir / ".." / "models" / "world-sd").lexically_normal().string());
  EXPECT_EQ(c.back(), source_models() + "/world-sd");
  EXPECT_EQ(default_model_dir("world-sd"), dir.file("world-sd"));
  // A folder missing under TINV_MODELS_DIR falls through to the next place (the source tree
  // holds the bundled concept images).
  EXPECT_EQ(default_model_dir("concepts"), source_models() + "/concepts");
}

TEST(DefaultModels, MissingModelIsAnErrorNamingEveryPlaceTried) {
  test::TempDir dir;
  ModelsDirEnv env(&dir.path());
  EXPECT_TINV_ERROR(default_model_dir("no-such-model"), "models/no-such-model: bundled model not found");
  EXPECT_TINV_ERROR(default_model_dir("no-such-model"), dir.file("no-such-model"));
  EXPECT_TINV_ERROR(default_model_dir("no-such-model"), source_models() + "/no-such-model");
  EXPECT_TINV_ERROR(default_model_dir("no-such-model"), "TINV_MODELS_DIR");
  EXPECT_TINV_ERROR(default_model_dir("a/b"), "invalid name");
  EXPECT_TINV_ERROR(default_model_dir(""), "invalid name");
  ModelsDirEnv unset(nullptr);
  EXPECT_EQ(default_model_candidates("world-sd").size(), 2u);
}

// ---- HTML report ----------------------------------------------------------------------------

TEST(HtmlReport, Base64MatchesRfc4648AndRoundTrips) {
  auto b64 = [](const std::string& s) { return base64_encode(reinterpret_cast<const uint8_t*>(s.data()), s.size()); };
  EXPECT_EQ(b64(""), "");
  EXPECT_EQ(b64("f"), "Zg==");
  EXPECT_EQ(b64("fo"), "Zm8=");
  EXPECT_EQ(b64("foo"), "Zm9v");
  EXPECT_EQ(b64("foob"), "Zm9vYg==");
  EXPECT_EQ(b64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode(std::vector<uint8_t>{0xff, 0xfe, 0xfd, 0x00, 0x3e, 0x3f}), "//79AD4/");
  std::mt19937 rng(1);
  for (size_t n = 0; n < 70; ++n) {
    std::vector<uint8_t> bytes(n);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    const std::string e = base64_encode(bytes);
    EXPECT_EQ(e.size(), (n + 2) / 3 * 4);
    EXPECT_EQ(base64_decode(e), bytes) << n;
  }
}

TEST(HtmlReport, EscapedWellFormedAndSelfContained) {
  const std::vector<uint8_t> png = encode_png(torch::full({2, 3, 3}, 200, torch::kUInt8));
  HtmlReport r("demo <script>alert(1)</script>");
  r.paragraph("a & b < c");
  r.heading("Input \"quoted\"");
  r.image(png, "alt with \"quotes\"", 256);
  r.key_values({{"caption", "it's <b>"}});
  r.table({"prompt", "before"}, {{HtmlReport::text("a {} <x>"), HtmlReport::images({png, png}, "p", 128)}});
  r.code("tinv demo --caption 'a <b>'");
  r.svg(render_line_plot_svg({{"loss <x> & y", {0, 1, 2}, {1, 0.5, 0.7}, {200, 0, 0}}}, {}, "step", 400, 240));
  const std::string html = r.html();
  EXPECT_EQ(html.rfind("<!DOCTYPE html>\n<html lang=\"en\">", 0), 0u);
  EXPECT_EQ(html.substr(html.size() - 8), "</html>\n");
  EXPECT_NE(html.find("<meta charset=\"utf-8\">"), std::string::npos);
  EXPECT_EQ(check_tags(html), "");
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<b>"), std::string::npos);
  EXPECT_NE(html.find("demo &lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("a &amp; b &lt; c"), std::string::npos);
  EXPECT_NE(html.find("it&#39;s &lt;b&gt;"), std::string::npos);
  EXPECT_NE(html.find("image-rendering:pixelated"), std::string::npos);
  // The plot inline, its text escaped.
  EXPECT_NE(html.find("<div class=\"plot\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"400\""),
            std::string::npos);
  EXPECT_NE(html.find(">loss &lt;x&gt; &amp; y</text>"), std::string::npos);
  EXPECT_NE(html.find("div.plot svg{max-width:100%"), std::string::npos);
  // No external references: every src is a data: URI holding exactly the PNG.
  std::regex src("src=\"([^\"]*)\"");
  int images = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), src); it != std::sregex_iterator(); ++it) {
    const std::string uri = (*it)[1];
    ASSERT_EQ(uri.rfind("data:image/png;base64,", 0), 0u) << uri.substr(0, 40);
    EXPECT_EQ(base64_decode(uri.substr(22)), png);
    ++images;
  }
  EXPECT_EQ(images, 3);
  EXPECT_EQ(html.find("href="), std::string::npos);
}

// ---- World-grammar pieces and bundled concepts ----------------------------------------------

TEST(Demo, SplitWorldCaption) {
  auto s = split_world_caption("a large red star with a white ring on the left, on a blue checkered background");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->first, "red star with a white ring");
  EXPECT_EQ(s->second, "a large {} on the left, on a blue checkered background");
  s = split_world_caption("A small Green circle at the top , on a purple striped background");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->first, "green circle");
  EXPECT_EQ(s->second, "a small {} at the top, on a purple striped background");
  EXPECT_FALSE(split_world_caption("a red cube on a table"));
  EXPECT_FALSE(
      split_world_caption("a large red star on the left and a small blue circle at the "
                          "bottom, on a plain white background"));
  // Every caption of the world is its template filled with its object words.
  for (uint64_t i = 0; i < 200; ++i) {
    const auto sample = world::scene_at(3, world::Split::kTrain, i);
    const std::string cap = world::caption(sample);
    auto sp = split_world_caption(cap);
    ASSERT_TRUE(sp.has_value()) << cap;
    const auto p = sp->second.find("{}");
    EXPECT_EQ(sp->second.substr(0, p) + sp->first + sp->second.substr(p + 2), cap);
  }
}

TEST(Demo, PromptsFollowTheGrammarAndAvoidColours) {
  const auto all = demo_prompts();
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[0], "a large {} in the center, on a plain white background");
  EXPECT_EQ(all[1], "a small {} on the right, on a blue striped background");
  std::set<std::string> distinct(all.begin(), all.end());
  EXPECT_EQ(distinct.size(), all.size());
  const std::vector<world::Colour> avoid = {world::Colour::kWhite, world::Colour::kBlue, world::Colour::kYellow};
  for (const auto& p : demo_prompts(avoid)) {
    SCOPED_TRACE(p);
    const auto at = p.find("{}");
    auto scene = world::parse_caption(p.substr(0, at) + "red circle" + p.substr(at + 2));
    ASSERT_TRUE(scene);
    EXPECT_EQ(std::find(avoid.begin(), avoid.end(), scene->background), avoid.end());
    EXPECT_EQ(world::validate(*scene), "");
  }
}

TEST(Demo, BundledConceptImagesAreTheWorldsRenderings) {
  test::TempDir dir;
  const auto written = write_bundled_concepts(dir.path());
  ASSERT_EQ(written.size(), world::concepts().size());
  for (const auto& c : world::concepts()) {
    SCOPED_TRACE(c.name);
    uint64_t index = 0;
    const world::ConceptSample s = bundled_concept_sample(c, &index);
    EXPECT_EQ(s.size, world::Size::kLarge);
    EXPECT_EQ(s.background_pattern, world::Pattern::kPlain);
    EXPECT_EQ(s.image.pixels, world::concept_at(0, c, index).image.pixels);
    const std::string bundled = source_models() + "/concepts/" + c.name + ".png";
    ASSERT_TRUE(file_exists(bundled)) << "regenerate with: tinv demo --write-concepts models/concepts";
    const Image im = load_image(bundled);
    ASSERT_EQ(im.width, 64);
    ASSERT_EQ(im.height, 64);
    EXPECT_EQ(im.pixels, s.image.pixels) << "models/concepts/" << c.name << ".png differs from concept_at";
    EXPECT_EQ(read_all(bundled), read_all(dir.file(c.name + ".png")));  // byte-identical files
  }
}

TEST(Demo, ShellQuote) {
  EXPECT_EQ(shell_quote("out/demo"), "out/demo");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("<x>"), "'<x>'");
}

// ---- End to end on the tiny fixture model ---------------------------------------------------

DemoOptions tiny_demo(const test::TempDir& dir) {
  DemoOptions o;
  o.image = write_picture(dir, "red_square.png");
  o.model = test::fixture("tiny-sd15/model");
  o.steps = 2;
  o.samples = 1;
  o.sample_steps = 2;
  o.out = dir.file("out/demo");
  o.progress = false;
  o.device = torch::Device(torch::kCPU);
  return o;
}

void expect_outputs(const DemoResult& r, const DemoOptions& o, const std::string& name) {
  const std::string html = read_all(o.out.string() + "/index.html");
  ASSERT_FALSE(html.empty());
  EXPECT_EQ(r.report, o.out.string() + "/index.html");
  EXPECT_EQ(check_tags(html), "");
  // input and one image per prompt and variant; the loss curve inline as SVG; nothing else referenced.
  EXPECT_EQ(count(html, "src=\"data:image/png;base64,"), 1 + 2 * r.prompts.size());
  EXPECT_EQ(count(html, "src=\""), 1 + 2 * r.prompts.size());
  EXPECT_EQ(count(html, "<svg "), 1);
  EXPECT_EQ(count(html, "<polyline"), 2);  // the loss and the fixed-input loss
  EXPECT_NE(html.find(html_escape(r.caption)), std::string::npos);
  EXPECT_NE(html.find(html_escape(r.placeholders.front())), std::string::npos);
  EXPECT_NE(html.find(" invert --model "), std::string::npos);
  EXPECT_NE(html.find(" generate --model "), std::string::npos);
  for (const char* f : {"input.png", "commands.sh"}) EXPECT_TRUE(file_exists(o.out.string() + "/" + f)) << f;
  for (const std::string suffix : {".safetensors", ".loss.png", ".log.csv"})
    EXPECT_TRUE(file_exists(o.out.string() + "/" + name + suffix)) << suffix;
  for (size_t p = 0; p < r.prompts.size(); ++p)
    for (const char* v : {"before", "after"}) {
      const std::string png = o.out.string() + "/images/p" + std::to_string(p) + "-" + v + "-0.png";
      EXPECT_TRUE(file_exists(png)) << png;
      EXPECT_NE(read_all(png).find("parameters"), std::string::npos);
    }
  for (const auto& f : r.files) EXPECT_TRUE(file_exists(f)) << f;
  for (const auto& e : fs::recursive_directory_iterator(o.out))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  ASSERT_EQ(r.timings.back().first, "total");
  EXPECT_GT(r.timings.back().second, 0.0);
}

TEST(Demo, EndToEndWithTheCaptioner) {
  test::TempDir dir;
  DemoOptions o = tiny_demo(dir);
  o.captioner = make_blip(dir);
  const DemoResult r = run_demo(o);
  EXPECT_EQ(r.caption.rfind("w", 0), 0u) << r.caption;  // the synthetic vocabulary's words
  EXPECT_EQ(r.init_from, DemoInit::kCaption);           // not a world caption: the whole caption initialises
  EXPECT_EQ(r.trigger, "<red_square>");
  EXPECT_EQ(r.prompts, demo_prompts());
  expect_outputs(r, o, "red_square");
}

TEST(Demo, EndToEndWithAWorldCaption) {
  test::TempDir dir;
  DemoOptions o = tiny_demo(dir);
  o.caption = "a small red square at the bottom, on a plain cyan background";
  o.name = "sq";
  const DemoResult r = run_demo(o);
  EXPECT_EQ(r.init_from, DemoInit::kObject);
  EXPECT_EQ(r.init_text, "red square");
  ASSERT_EQ(r.prompts.size(), 7u);
  EXPECT_EQ(r.prompts[0], "a small {} at the bottom, on a plain cyan background");  // the input's own
  EXPECT_EQ(read_all(o.out.string() + "/templates.txt").find(r.prompts[0]) != std::string::npos, true);
  for (const auto& p : r.prompts) {  // no red background: the object is red
    const auto at = p.find("{}");
    auto scene = world::parse_caption(p.substr(0, at) + "green circle" + p.substr(at + 2));
    ASSERT_TRUE(scene) << p;
    EXPECT_NE(scene->background, world::Colour::kRed) << p;
  }
  expect_outputs(r, o, "sq");
  const std::string cmds = read_all(o.out.string() + "/commands.sh");
  EXPECT_NE(cmds.find("--caption 'red square' --templates "), std::string::npos) << cmds;
  EXPECT_NE(cmds.find(" --cfg 7.5 "), std::string::npos) << cmds;  // cfg 0: SD's 7.5 with --model
  EXPECT_NE(cmds.find("--prompt 'a small <sq> at the bottom, on a plain cyan background'"), std::string::npos);
  EXPECT_NE(cmds.find("--prompt 'a small red square at the bottom, on a plain cyan background'"), std::string::npos);
  o.init_from = DemoInit::kCaption;  // the whole caption, TI object templates
  o.out = dir.file("out/caption");
  EXPECT_EQ(run_demo(o).init_from, DemoInit::kCaption);
}

TEST(Demo, BadOptions) {
  test::TempDir dir;
  DemoOptions o = tiny_demo(dir);
  o.caption = "x";
  auto bad = [&](auto change, const std::string& needle) {
    DemoOptions b = o;
    change(b);
    EXPECT_TINV_ERROR(run_demo(b), needle);
  };
  bad([](DemoOptions& b) { b.steps = 0; }, "--steps");
  bad([](DemoOptions& b) { b.samples = 0; }, "--samples");
  bad([](DemoOptions& b) { b.sample_steps = 0; }, "--sample-steps");
  bad([](DemoOptions& b) { b.init_from = DemoInit::kObject; }, "--init-from object");
  bad([](DemoOptions& b) { b.sampler = "lms"; }, "--sampler");
  bad([](DemoOptions& b) { b.name = "a b"; }, "--name");
  bad([&](DemoOptions& b) { b.image = dir.file("missing.png"); }, "missing.png");
  bad([](DemoOptions& b) { b.concept_name = "bullseye_circle"; }, "not both");
  bad([](DemoOptions& b) { b.image.clear(), b.concept_name = "no_such_concept"; }, "unknown concept");
  EXPECT_FALSE(fs::exists(o.out)) << "nothing is written on bad input";
  for (auto i : {DemoInit::kAuto, DemoInit::kCaption, DemoInit::kObject}) EXPECT_EQ(parse_demo_init(to_string(i)), i);
  EXPECT_EQ(to_string(DemoInit::kObject), "object");
  EXPECT_TINV_ERROR_IS(parse_demo_init("words"), "--init-from: unknown value 'words' (auto, caption or object)");
}

// ---- CLI ------------------------------------------------------------------------------------

using test::quote;
using test::run_tinv;

TEST(DemoCli, BadInputIsOneLineAndWritesNothing) {
  test::TempDir dir;
  {
    std::ofstream f(dir.file("corrupt.png"));
    f << "not an image";
  }
  const std::string img = quote(write_picture(dir)), out = " --out " + quote(dir.file("out"));
  const std::string model = " --model " + quote(test::fixture("tiny-sd15/model")) + " --caption x";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--concept no_such_concept" + model + out, "unknown concept 'no_such_concept'"},
      {"--image " + img + " --init-from words" + model + out,
       "--init-from: unknown value 'words' (auto, caption or object)"},
      {"--image " + quote(dir.file("missing.png")) + model + out, "missing.png"},
      {"--image " + quote(dir.file("corrupt.png")) + model + out, "corrupt.png"},
      {"--image " + img + " --steps 0" + model + out, "--steps"},
      {"--image " + img + " --steps abc" + model + out, "--steps"},
      {"--image " + img + " --samples 0" + model + out, "--samples"},
      {"--image " + img + " --concept bullseye_circle" + model + out, "--image"},
      {"--image " + img + " --model " + quote(dir.file("no-model")) + " --caption x" + out, "no-model"},
  };
  for (const auto& [args, needle] : cases) {
    SCOPED_TRACE(args);
    auto r = run_tinv("demo " + args + " --no-progress", dir);
    EXPECT_NE(r.status, 0);
    ASSERT_EQ(r.err_lines.size(), 1u) << r.err_lines[0] << " / " << r.err_lines.back();
    EXPECT_EQ(r.err_lines[0].rfind("tinv: error:", 0), 0u) << r.err_lines[0];
    EXPECT_NE(r.err_lines[0].find(needle), std::string::npos) << r.err_lines[0];
  }
  EXPECT_FALSE(fs::exists(dir.file("out"))) << "nothing is written on bad input";
}

// generate, caption and invert take the bundled models when --model / --captioner are omitted.
TEST(DemoCli, CommandsDefaultToTheBundledModels) {
  test::TempDir dir;
  const std::string models = dir.file("models");
  ASSERT_EQ(::mkdir(models.c_str(), 0755), 0);
  ASSERT_EQ(::symlink(test::fixture("tiny-sd15/model").c_str(), (models + "/world-sd").c_str()), 0);
  ASSERT_EQ(::rename(make_blip(dir).c_str(), (models + "/world-blip").c_str()), 0);
  const std::string env = "TINV_MODELS_DIR=" + quote(models);
  const std::string img = quote(write_picture(dir));

  auto r = run_tinv("generate --prompt 'a cat' --steps 1 --seed 3 --quiet --out " + quote(dir.file("gen")), dir, env);
  ASSERT_EQ(r.status, 0) << (r.err_lines.empty() ? "" : r.err_lines.back());
  EXPECT_TRUE(file_exists(dir.file("gen/3-0.png")));

  r = run_tinv("caption " + img, dir, env);
  ASSERT_EQ(r.status, 0) << (r.err_lines.empty() ? "" : r.err_lines.back());
  EXPECT_EQ(r.out.rfind("w", 0), 0u) << r.out;  // a caption in the synthetic vocabulary

  r = run_tinv("invert --image " + img + " --steps 1 --no-progress --out " + quote(dir.file("inv.safetensors")), dir,
               env);
  ASSERT_EQ(r.status, 0) << (r.err_lines.empty() ? "" : r.err_lines.back());
  EXPECT_NE(r.out.find("caption: w"), std::string::npos) << r.out;  // captioned by the default BLIP
  EXPECT_TRUE(file_exists(dir.file("inv.safetensors")));

  // An empty models folder: the error names the model and where it looked (unless the bundled
  // models exist next to the binary or in the source tree).
  ASSERT_EQ(::mkdir(dir.file("empty").c_str(), 0755), 0);
  if (!dir_exists(source_models() + "/world-sd") &&
      !dir_exists((fs::path(TINV_BINARY).parent_path() / ".." / "models" / "world-sd").string())) {
    r = run_tinv("generate --prompt x --steps 1 --out " + quote(dir.file("g2")), dir,
                 "TINV_MODELS_DIR=" + quote(dir.file("empty")));
    EXPECT_NE(r.status, 0);
    ASSERT_EQ(r.err_lines.size(), 1u);
    EXPECT_NE(r.err_lines[0].find("models/world-sd: bundled model not found"), std::string::npos) << r.err_lines[0];
  }
}

}  // namespace
}  // namespace tinv
