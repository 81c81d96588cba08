// Self-contained HTML reports: one file, images embedded as base64 `data:` URIs, no scripts, no
// external files. Used by `tinv demo` (src/apps/demo.h) and `tinv study` (src/apps/study_report.cpp).
//
//   tinv::HtmlReport r("tinv demo: bullseye_circle");
//   r.heading("Input");
//   r.image(tinv::encode_png(img), "input image", /*display_width=*/256);  // pixelated upscaling
//   r.table({"prompt", "before", "after"}, {{tinv::HtmlReport::text(p),
//                                            tinv::HtmlReport::images({png0, png1}, p, 128), ...}});
//   r.svg(tinv::render_line_plot_svg(plot));                 // a plot inline (io/plot.h)
//   r.code("tinv demo --concept bullseye_circle");
//   tinv::write_file_atomically("index.html", r.html().data(), r.html().size());
//
// Every text argument is escaped; the only markup taken as is comes from HtmlReport::text/images
// (cell builders), svg() and raw().
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tinv {

// RFC 4648 base64 with '=' padding, no line breaks.
std::string base64_encode(const uint8_t* data, size_t size);
std::string base64_encode(const std::vector<uint8_t>& bytes);
// Escapes & < > " ' for text and attribute values.
std::string html_escape(const std::string& text);
// "data:image/png;base64,..." for PNG file bytes.
std::string png_data_uri(const std::vector<uint8_t>& png);

class HtmlReport {
 public:
  explicit HtmlReport(std::string title);

  // Cell builders for table(): escaped text, or a row of embedded images.
  static std::string text(const std::string& s);
  // Images shown `display_width` CSS pixels wide (0: natural size), upscaled pixelated.
  static std::string images(const std::vector<std::vector<uint8_t>>& pngs, const std::string& alt,
                            int display_width = 0);

  void heading(const std::string& text, int level = 2);  // level 2 or 3
  void paragraph(const std::string& text);
  void image(const std::vector<uint8_t>& png, const std::string& alt, int display_width = 0);
  // Two-column table of names and values (both escaped).
  void key_values(const std::vector<std::pair<std::string, std::string>>& rows);
  // Header cells are escaped; body cells are HTML from text()/images().
  void table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);
  // An inline <svg> document (render_line_plot_svg), taken as is; scaled down to the page width.
  void svg(const std::string& svg_markup);
  void code(const std::string& text);  // preformatted, escaped
  void raw(const std::string& html);

  // The whole document: <!DOCTYPE html> ... </html>.
  std::string html() const;

 private:
  std::string title_, body_;
};

}  // namespace tinv
