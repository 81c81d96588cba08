// A small PNG line plot drawn by hand (no plotting library): axes, ticks with labels, up to a
// few curves, optional spread bands behind them, a legend. Used for the training-loss picture
// next to the CSV log and the `tinv study` figures.
//
//   tinv::PlotSeries raw{"loss", steps, losses, {31, 119, 180}};
//   tinv::save_line_plot("run.loss.png", {raw, fixed}, "step", 800, 480);
#pragma once
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace tinv {

struct PlotSeries {
  std::string label;               // legend text (lowercase letters, digits, - . _ and spaces)
  std::vector<double> x, y;        // same length; non-finite y values are skipped
  std::array<uint8_t, 3> color{0, 0, 0};
};

// A spread band (e.g. min-max or +-1 sd around a mean curve): the area between lo and hi over
// x is tinted with `color` (20% over what is below), behind every curve. Points where x, lo or
// hi is not finite are skipped; lo, hi and x must have the same length (else ignored).
struct PlotBand {
  std::vector<double> x, lo, hi;
  std::array<uint8_t, 3> color{0, 0, 0};
};

// Renders the series into uint8 [height, width, 3] (white background; both axes span the data
// of all series; 5 ticks per axis labelled in a built-in 3x5 pixel font).
torch::Tensor render_line_plot(const std::vector<PlotSeries>& series, const std::string& x_label,
                               int64_t width = 800, int64_t height = 480);
// render_line_plot + save_png (atomic). Throws tinv::Error naming the path on failure.
// The same with bands; the axes span the bands too.
torch::Tensor render_line_plot(const std::vector<PlotSeries>& series, const std::vector<PlotBand>& bands,
                               const std::string& x_label, int64_t width = 800, int64_t height = 480);
void save_line_plot(const std::string& path, const std::vector<PlotSeries>& series,
                    const std::string& x_label, int64_t width = 800, int64_t height = 480);

}  // namespace tinv
