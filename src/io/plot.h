// Line plots drawn with Cairo (PNG) or written as SVG markup: axes, ticks at rounded values
// (1, 2 or 5 x 10^k), axis labels, an optional title, up to a few curves, optional spread bands
// behind them and a legend. Text is set in DejaVu Sans (cairo's toy font API, found through
// fontconfig; Debian fonts-dejavu-core). Used for the training-loss picture next to the CSV log,
// the `tinv study` figures and the HTML reports (inline SVG).
//
//   tinv::PlotSeries raw{"loss", steps, losses, {31, 119, 180}};
//   tinv::save_line_plot("run.loss.png", {raw, fixed}, "step", 800, 480);
//   tinv::LinePlot p{{raw, fixed}, {}, "step", "loss", "Training"};
//   std::string svg = tinv::render_line_plot_svg(p);   // <svg ...>...</svg>, no external files
#pragma once
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace tinv {

struct PlotSeries {
  std::string label;         // legend text as typed (UTF-8; control characters become
                             // spaces); empty: not in the legend
  std::vector<double> x, y;  // same length; points where x or y is not finite are skipped
  std::array<uint8_t, 3> color{0, 0, 0};
};

// A spread band (e.g. min-max or +-1 sd around a mean curve): the area between lo and hi over
// x is tinted with `color` (20% over what is below), behind every curve. Points where x, lo or
// hi is not finite are skipped; lo, hi and x must have the same length (else ignored).
struct PlotBand {
  std::vector<double> x, lo, hi;
  std::array<uint8_t, 3> color{0, 0, 0};
};

// Everything one plot shows. Both axes span the finite data of every series and usable band
// (the y axis with 5% room above and below).
struct LinePlot {
  std::vector<PlotSeries> series;
  std::vector<PlotBand> bands;
  std::string x_label, y_label, title;  // empty: not drawn
  int64_t width = 800, height = 480;    // pixels, each 32..16384 (else tinv::Error)
};

// uint8 [height, width, 3], white background, antialiased.
torch::Tensor render_line_plot(const LinePlot& plot);
// A standalone SVG document (no XML declaration, so it can also be inlined in HTML): width,
// height and viewBox in pixels, one <polyline> per series with finite points, text as <text>
// elements (font-family "DejaVu Sans, sans-serif", XML-escaped). Same layout as the PNG.
std::string render_line_plot_svg(const LinePlot& plot);
// render_line_plot + save_png (atomic). Throws tinv::Error naming the path on failure.
void save_line_plot(const std::string& path, const LinePlot& plot);

// The same with positional arguments (no y label, no title).
torch::Tensor render_line_plot(const std::vector<PlotSeries>& series, const std::string& x_label, int64_t width = 800,
                               int64_t height = 480);
torch::Tensor render_line_plot(const std::vector<PlotSeries>& series, const std::vector<PlotBand>& bands,
                               const std::string& x_label, int64_t width = 800, int64_t height = 480);
std::string render_line_plot_svg(const std::vector<PlotSeries>& series, const std::vector<PlotBand>& bands,
                                 const std::string& x_label, int64_t width = 800, int64_t height = 480);
void save_line_plot(const std::string& path, const std::vector<PlotSeries>& series, const std::string& x_label,
                    int64_t width = 800, int64_t height = 480);

// The font file fontconfig picks for the plots' family "DejaVu Sans" (what cairo's toy API
// draws with), or "" when fontconfig finds no font at all. A fallback family's file when DejaVu
// is not installed: check the name.
std::string plot_font_file();

}  // namespace tinv
