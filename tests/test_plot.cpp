// Line plots (io/plot.h): PNG through Cairo with DejaVu Sans, the same plot as SVG markup.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <regex>

#include "common/fs.h"
#include "io/image.h"
#include "io/plot.h"
#include "test_util.h"

namespace tinv {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

int64_t count(const std::string& s, const std::string& needle) {
  int64_t n = 0;
  for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
  return n;
}

// Pixels of exactly `c` in rows [y0, y1) and columns [x0, x1).
int64_t pixels_of(const torch::Tensor& img, std::array<int, 3> c, int64_t y0 = 0, int64_t y1 = -1, int64_t x0 = 0,
                  int64_t x1 = -1) {
  if (y1 < 0) y1 = img.size(0);
  if (x1 < 0) x1 = img.size(1);
  auto px = img.slice(0, y0, y1).slice(1, x0, x1).to(torch::kInt32);
  return ((px.select(2, 0) == c[0]) & (px.select(2, 1) == c[1]) & (px.select(2, 2) == c[2])).sum().item<int64_t>();
}

// Every element opened is closed in order (self-closing ones count as closed); "" when fine.
std::string check_tags(const std::string& xml) {
  std::vector<std::string> stack;
  std::regex tag("<(/?)([A-Za-z][A-Za-z0-9]*)[^>]*?(/?)>");
  for (auto it = std::sregex_iterator(xml.begin(), xml.end(), tag); it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[2];
    if ((*it)[1] == "/") {
      if (stack.empty() || stack.back() != name) return "unexpected </" + name + ">";
      stack.pop_back();
    } else if ((*it)[3] != "/") {
      stack.push_back(name);
    }
  }
  return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

TEST(Plot, FontIsDejaVuSansThroughFontconfig) {
  const std::string file = plot_font_file();
  ASSERT_FALSE(file.empty()) << "fontconfig finds no font at all (install fonts-dejavu-core)";
  EXPECT_NE(file.find("DejaVuSans"), std::string::npos) << file << " (install fonts-dejavu-core)";
}

TEST(Plot, SizeAndCurvesWhereTheDataIs) {
  PlotSeries flat{"flat", {0, 5, 10}, {1, 1, 1}, {200, 0, 0}};
  auto img = render_line_plot({flat}, "step", 320, 200);
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{200, 320, 3}));
  EXPECT_EQ(img.dtype(), torch::kUInt8);
  EXPECT_EQ(pixels_of(img, {255, 255, 255}, 0, 5, 0, 320), 5 * 320);  // white background at the top
  // A constant curve sits in the vertical middle of the plot area: its colour across the width,
  // in the middle rows only (the legend swatch is near the top).
  EXPECT_GT(pixels_of(img, {200, 0, 0}, 70, 130, 100, 300), 150);
  EXPECT_EQ(pixels_of(img, {200, 0, 0}, 150, 200), 0);
  // A second, rising curve in its own colour: low on the left, high on the right.
  PlotSeries rise{"rise", {0, 10}, {0, 2}, {0, 90, 200}};
  img = render_line_plot({flat, rise}, "step", 320, 200);
  EXPECT_GT(pixels_of(img, {0, 90, 200}), 100);
  EXPECT_GT(pixels_of(img, {0, 90, 200}, 100, 170, 60, 160), 10);
  EXPECT_GT(pixels_of(img, {0, 90, 200}, 15, 70, 230, 310), 10);
  // Deterministic.
  EXPECT_TRUE(torch::equal(img, render_line_plot({flat, rise}, "step", 320, 200)));
}

// Where two renderings of the same layout differ: the bounding box (rows, columns) and how many
// of the differing pixels are dark in `b` (glyph pixels).
struct Diff {
  int64_t y0 = -1, y1 = -1, x0 = -1, x1 = -1, dark = 0;
};
Diff diff(const torch::Tensor& a, const torch::Tensor& b) {
  Diff d;
  auto differs = (a != b).any(2);
  auto where = differs.nonzero();
  if (where.size(0) == 0) return d;
  d.y0 = where.select(1, 0).min().item<int64_t>(), d.y1 = where.select(1, 0).max().item<int64_t>();
  d.x0 = where.select(1, 1).min().item<int64_t>(), d.x1 = where.select(1, 1).max().item<int64_t>();
  d.dark = (differs & (b.to(torch::kInt32).amax(2) < 110)).sum().item<int64_t>();
  return d;
}

TEST(Plot, TextIsRenderedAsTyped) {
  // Labels of one space keep the layout; the typed text then only adds glyphs, in its own area.
  LinePlot p{{}, {}, " ", " ", " ", 400, 300};
  const auto blank = render_line_plot(p);
  p.x_label = "Training Step";  // centred under the axis, in the bottom rows
  Diff d = diff(blank, render_line_plot(p));
  EXPECT_GT(d.dark, 60) << "no glyphs: is a font installed (fonts-dejavu-core)?";
  EXPECT_GE(d.y0, 270);
  EXPECT_GE(d.x0, 120);
  EXPECT_LE(d.x1, 290);
  EXPECT_LT(d.x1 - d.x0, 150);
  p.x_label = " ";
  p.title = "Loss (mean +- sd)";  // on top
  d = diff(blank, render_line_plot(p));
  EXPECT_GT(d.dark, 60);
  EXPECT_LE(d.y1, 30);
  p.title = " ";
  p.y_label = "loss";  // rotated, at the left edge
  d = diff(blank, render_line_plot(p));
  EXPECT_GT(d.dark, 15);
  EXPECT_LE(d.x1, 24);
  EXPECT_GT(d.y1 - d.y0, d.x1 - d.x0);  // vertical text is taller than wide
  // Mixed case stays mixed case: "caPtion" and "CAPTION" are different pictures.
  p.x_label = "caPtion";
  const auto mixed = render_line_plot(p);
  p.x_label = "CAPTION";
  EXPECT_FALSE(torch::equal(mixed, render_line_plot(p)));
  // Legend text: every printable ASCII character is accepted.
  std::string ascii;
  for (char c = 0x20; c < 0x7F; ++c) ascii += c;
  PlotSeries s{ascii, {0, 1}, {0, 1}, {0, 0, 0}};
  EXPECT_EQ(render_line_plot({s}, "x", 900, 300).size(1), 900);
  EXPECT_NE(render_line_plot_svg({s}, {}, "x", 900, 300).find("&lt;=&gt;?@ABC"), std::string::npos);
  // Control characters and broken UTF-8 do not break the drawing (Cairo refuses invalid UTF-8).
  p.x_label = " ";
  p.title = "bad\x01\xff text";
  d = diff(blank, render_line_plot(p));
  EXPECT_GT(d.dark, 30);
  EXPECT_NE(render_line_plot_svg(p).find(">bad ? text</text>"), std::string::npos);
}

TEST(Plot, TickValuesAreRounded) {
  PlotSeries s{"loss", {0, 250, 1000}, {0.13, 0.5, 0.87}, {200, 0, 0}};
  const std::string svg = render_line_plot_svg({s}, {}, "step", 800, 480);
  for (const char* tick : {">0</text>", ">500</text>", ">1000</text>", ">0.2</text>", ">0.4</text>", ">0.8</text>"})
    EXPECT_NE(svg.find(tick), std::string::npos) << tick << "\n" << svg;
  EXPECT_EQ(svg.find("333"), std::string::npos);
  // Tiny and huge values switch to exponents.
  PlotSeries tiny{"lr", {0, 1}, {1e-5, 3e-5}, {0, 0, 0}};
  EXPECT_NE(render_line_plot_svg({tiny}, {}, "step").find("e-05</text>"), std::string::npos);
}

TEST(Plot, SvgDocument) {
  PlotSeries a{"a<b & c", {0, 1, 2}, {1.0, 0.5, 0.7}, {200, 0, 0}};
  PlotSeries b{"Fixed-input loss", {0, 2}, {0.2, 0.3}, {0, 90, 200}};
  PlotBand band{{0, 1, 2}, {0.1, 0.2, 0.3}, {1.1, 0.9, 0.8}, {200, 0, 0}};
  LinePlot p{{a, b}, {band}, "Step \"t\"", "it's the loss", "Title <1>", 640, 360};
  const std::string svg = render_line_plot_svg(p);
  EXPECT_EQ(
      svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"360\" viewBox=\"0 0 640 360\"", 0),
      0u)
      << svg.substr(0, 200);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  EXPECT_EQ(svg.find("<?xml"), std::string::npos);  // inlinable in HTML
  EXPECT_EQ(check_tags(svg), "");
  EXPECT_EQ(count(svg, "<polyline"), 2);
  EXPECT_NE(svg.find("stroke=\"#c80000\""), std::string::npos);
  EXPECT_NE(svg.find("stroke=\"#005ac8\""), std::string::npos);
  EXPECT_NE(svg.find("fill=\"#c80000\" fill-opacity=\"0.2\""), std::string::npos);  // the band
  EXPECT_NE(svg.find("font-family=\"DejaVu Sans, sans-serif\""), std::string::npos);
  for (const char* text : {">a&lt;b &amp; c</text>", ">Fixed-input loss</text>", ">Step &quot;t&quot;</text>",
                           ">it&#39;s the loss</text>", ">Title &lt;1&gt;</text>"})
    EXPECT_NE(svg.find(text), std::string::npos) << text;
  EXPECT_EQ(svg.find("a<b"), std::string::npos);
  EXPECT_NE(svg.find("rotate(-90"), std::string::npos);  // the y label
  // Deterministic, and the PNG of the same plot draws.
  EXPECT_EQ(svg, render_line_plot_svg(p));
  EXPECT_EQ(render_line_plot(p).sizes(), (std::vector<int64_t>{360, 640, 3}));
}

TEST(Plot, NonFiniteValuesAreSkipped) {
  PlotSeries gaps{"loss", {0, 1, 2, 3, kNaN}, {1, kNaN, 3, kInf, 5}, {200, 0, 0}};
  PlotSeries clean{"loss", {0, 2}, {1, 3}, {200, 0, 0}};
  EXPECT_TRUE(torch::equal(render_line_plot({gaps}, "step", 300, 200), render_line_plot({clean}, "step", 300, 200)));
  const std::string svg = render_line_plot_svg({gaps}, {}, "step");
  EXPECT_EQ(svg, render_line_plot_svg({clean}, {}, "step"));
  for (const char* bad : {"nan", "inf", "NaN"}) EXPECT_EQ(svg.find(bad), std::string::npos) << bad;
  // No finite point at all: no curve, axes over [0, 1], still a picture.
  PlotSeries empty{"none", {0, 1}, {kNaN, kNaN}, {200, 0, 0}};
  EXPECT_EQ(count(render_line_plot_svg({empty}, {}, "step"), "<polyline"), 0);
  EXPECT_EQ(pixels_of(render_line_plot({empty}, "step", 300, 200), {200, 0, 0}, 0, 200, 0, 200), 0);
  // Mismatched lengths: the common prefix is drawn.
  PlotSeries ragged{"r", {0, 1, 2}, {1, 2}, {200, 0, 0}};
  EXPECT_EQ(count(render_line_plot_svg({ragged}, {}, "step"), "<polyline"), 1);
}

TEST(Plot, BadSizesAreErrors) {
  PlotSeries s{"loss", {0, 1}, {0, 1}, {200, 0, 0}};
  EXPECT_TINV_ERROR(render_line_plot({s}, "step", 0, 100), "render_line_plot: plot size 0x100");
  EXPECT_TINV_ERROR(render_line_plot({s}, "step", 100, -5), "must each be 32..16384 pixels");
  EXPECT_TINV_ERROR(render_line_plot({s}, "step", 100000, 100), "plot size 100000x100");
  EXPECT_TINV_ERROR(render_line_plot_svg({s}, {}, "step", 10, 10), "render_line_plot_svg: plot size 10x10");
  test::TempDir dir;
  EXPECT_TINV_ERROR(save_line_plot(dir.file("p.png"), {s}, "step", 8, 8), "p.png: plot size 8x8");
  EXPECT_FALSE(file_exists(dir.file("p.png")));
  // The smallest allowed size still draws.
  EXPECT_EQ(render_line_plot({s}, "step", 32, 32).sizes(), (std::vector<int64_t>{32, 32, 3}));
}

TEST(Plot, SaveWritesThePngAtomically) {
  test::TempDir dir;
  PlotSeries s{"loss", {0, 1, 2}, {1.0, 0.5, 0.7}, {200, 0, 0}};
  const std::string path = dir.file("run.loss.png");
  save_line_plot(path, {s}, "step", 320, 200);
  Image back = load_image(path);
  auto expected = render_line_plot({s}, "step", 320, 200);
  ASSERT_EQ(back.width, 320);
  ASSERT_EQ(back.height, 200);
  EXPECT_TRUE(std::equal(back.pixels.begin(), back.pixels.end(), expected.data_ptr<uint8_t>()));
  EXPECT_FALSE(file_exists(path + ".tmp"));
  EXPECT_TINV_ERROR(save_line_plot(dir.file("no/such/dir/x.png"), {s}, "step"), "x.png");
}

TEST(Plot, BandIsTintedBehindTheCurveAndWidensTheRange) {
  PlotSeries s{"mean", {0, 10}, {1, 1}, {200, 0, 0}};
  auto plain = render_line_plot({s}, "step", 200, 120);
  EXPECT_TRUE(torch::equal(render_line_plot({s}, {}, "step", 200, 120), plain));
  PlotBand band{{0, 10}, {0, 0}, {2, 2}, {200, 0, 0}};
  auto banded = render_line_plot({s}, {band}, "step", 200, 120);
  ASSERT_EQ(banded.sizes(), plain.sizes());
  // Red at 20% over white is (244, 204, 204); over the grid lines a little darker.
  EXPECT_GT(pixels_of(banded, {244, 204, 204}), 1000);
  EXPECT_EQ(pixels_of(plain, {244, 204, 204}), 0);
  EXPECT_FALSE(torch::equal(banded, plain));
  // Bands of the wrong length are ignored; non-finite points of a band are skipped.
  PlotBand wrong = band;
  wrong.lo = {0};
  EXPECT_TRUE(torch::equal(render_line_plot({s}, {wrong}, "step", 200, 120), plain));
  PlotBand holes{{0, 5, 10}, {0, kNaN, 0}, {2, 7, 2}, {200, 0, 0}};
  EXPECT_TRUE(torch::equal(render_line_plot({s}, {holes}, "step", 200, 120), banded));
}

}  // namespace
}  // namespace tinv
