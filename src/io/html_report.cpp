#include "io/html_report.h"

namespace tinv {

std::string base64_encode(const uint8_t* data, size_t size) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    const uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8) | data[i + 2];
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (const size_t rest = size - i; rest > 0) {
    const uint32_t v = (uint32_t{data[i]} << 16) | (rest == 2 ? uint32_t{data[i + 1]} << 8 : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string base64_encode(const std::vector<uint8_t>& bytes) { return base64_encode(bytes.data(), bytes.size()); }

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string png_data_uri(const std::vector<uint8_t>& png) { return "data:image/png;base64," + base64_encode(png); }

HtmlReport::HtmlReport(std::string title) : title_(std::move(title)) {}

std::string HtmlReport::text(const std::string& s) { return html_escape(s); }

std::string HtmlReport::images(const std::vector<std::vector<uint8_t>>& pngs, const std::string& alt,
                               int display_width) {
  std::string out = "<div class=\"imgs\">";
  for (const auto& png : pngs) {
    out += "<img class=\"px\" alt=\"" + html_escape(alt) + "\" src=\"" + png_data_uri(png) + "\"";
    if (display_width > 0) out += " width=\"" + std::to_string(display_width) + "\"";
    out += ">";
  }
  return out + "</div>";
}

void HtmlReport::heading(const std::string& text, int level) {
  const std::string tag = level == 3 ? "h3" : "h2";
  body_ += "<" + tag + ">" + html_escape(text) + "</" + tag + ">\n";
}

void HtmlReport::paragraph(const std::string& text) { body_ += "<p>" + html_escape(text) + "</p>\n"; }

void HtmlReport::image(const std::vector<uint8_t>& png, const std::string& alt, int display_width) {
  body_ += images({png}, alt, display_width) + "\n";
}

void HtmlReport::key_values(const std::vector<std::pair<std::string, std::string>>& rows) {
  body_ += "<table class=\"kv\">\n";
  for (const auto& [k, v] : rows) body_ += "<tr><th>" + html_escape(k) + "</th><td>" + html_escape(v) + "</td></tr>\n";
  body_ += "</table>\n";
}

void HtmlReport::table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  body_ += "<table class=\"grid\">\n<tr>";
  for (const auto& h : header) body_ += "<th>" + html_escape(h) + "</th>";
  body_ += "</tr>\n";
  for (const auto& row : rows) {
    body_ += "<tr>";
    for (const auto& cell : row) body_ += "<td>" + cell + "</td>";
    body_ += "</tr>\n";
  }
  body_ += "</table>\n";
}

void HtmlReport::code(const std::string& text) { body_ += "<pre>" + html_escape(text) + "</pre>\n"; }

void HtmlReport::svg(const std::string& svg_markup) { body_ += "<div class=\"plot\">" + svg_markup + "</div>\n"; }

void HtmlReport::raw(const std::string& html) { body_ += html; }

std::string HtmlReport::html() const {
  static const char kStyle[] =
      "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;"
      "color:#222}\n"
      "img.px{image-rendering:pixelated;image-rendering:crisp-edges;margin:2px;"
      "border:1px solid #ccc}\n"
      "table{border-collapse:collapse;margin:0.5em 0}\n"
      "th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}\n"
      "table.kv th{background:#f4f4f4;white-space:nowrap}\n"
      "table.grid td:first-child{max-width:22em;font-size:90%}\n"
      "pre{background:#f6f6f6;padding:0.8em;overflow-x:auto;white-space:pre-wrap}\n"
      "div.imgs{display:flex;flex-wrap:wrap}\n"
      "div.plot svg{max-width:100%;height:auto}\n";
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + html_escape(title_) +
         "</title>\n<style>\n" + kStyle + "</style>\n</head>\n<body>\n<h1>" + html_escape(title_) + "</h1>\n" + body_ +
         "</body>\n</html>\n";
}

}  // namespace tinv
