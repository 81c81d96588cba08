#include "inversion/templates.h"

#include <sstream>

#include "common/error.h"
#include "common/fs.h"

namespace tinv {
namespace {

// diffusers examples/textual_inversion/textual_inversion.py, imagenet_templates_small.
const std::vector<std::string> kObject = {
    "a photo of a {}",         "a rendering of a {}",      "a cropped photo of the {}", "the photo of a {}",
    "a photo of a clean {}",   "a photo of a dirty {}",    "a dark photo of the {}",    "a photo of my {}",
    "a photo of the cool {}",  "a close-up photo of a {}", "a bright photo of the {}",  "a cropped photo of a {}",
    "a photo of the {}",       "a good photo of the {}",   "a photo of one {}",         "a close-up photo of the {}",
    "a rendition of the {}",   "a photo of the clean {}",  "a rendition of a {}",       "a photo of a nice {}",
    "a good photo of a {}",    "a photo of the nice {}",   "a photo of the small {}",   "a photo of the weird {}",
    "a photo of the large {}", "a photo of a cool {}",     "a photo of a small {}",
};
// Same file, imagenet_style_templates_small.
const std::vector<std::string> kStyle = {
    "a painting in the style of {}",         "a rendering in the style of {}",
    "a cropped painting in the style of {}", "the painting in the style of {}",
    "a clean painting in the style of {}",   "a dirty painting in the style of {}",
    "a dark painting in the style of {}",    "a picture in the style of {}",
    "a cool painting in the style of {}",    "a close-up painting in the style of {}",
    "a bright painting in the style of {}",  "a cropped painting in the style of {}",
    "a good painting in the style of {}",    "a close-up painting in the style of {}",
    "a rendition in the style of {}",        "a nice painting in the style of {}",
    "a small painting in the style of {}",   "a weird painting in the style of {}",
    "a large painting in the style of {}",
};

size_t count_braces(const std::string& s) {
  size_t n = 0;
  for (size_t p = s.find("{}"); p != std::string::npos; p = s.find("{}", p + 2)) ++n;
  return n;
}

}  // namespace

TemplateSource parse_templates(const std::string& text) {
  if (text == "object") return BuiltinTemplates::kObject;
  if (text == "style") return BuiltinTemplates::kStyle;
  return std::filesystem::path(text);
}

std::string to_string(const TemplateSource& source) {
  if (const auto* file = std::get_if<std::filesystem::path>(&source)) return file->string();
  return std::get<BuiltinTemplates>(source) == BuiltinTemplates::kStyle ? "style" : "object";
}

std::vector<std::string> load_templates(const TemplateSource& source) {
  if (const auto* builtin = std::get_if<BuiltinTemplates>(&source))
    return *builtin == BuiltinTemplates::kStyle ? kStyle : kObject;
  const std::string spec = std::get<std::filesystem::path>(source).string();
  TINV_CHECK(file_exists(spec), "--templates", "'", spec, "' is neither 'object', 'style' nor a readable file");
  std::istringstream in(read_text_file(spec));
  std::vector<std::string> out;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    TINV_CHECK(count_braces(line) == 1, spec, "line ", lineno,
               ": a template needs exactly one '{}' (where the placeholder goes): '", line, "'");
    out.push_back(line);
  }
  TINV_CHECK(!out.empty(), spec, "no templates in the file");
  return out;
}

std::string fill_template(const std::string& tmpl, const std::string& sentence) {
  auto p = tmpl.find("{}");
  TINV_CHECK(p != std::string::npos, "template", "no '{}' in '", tmpl, "'");
  return tmpl.substr(0, p) + sentence + tmpl.substr(p + 2);
}

}  // namespace tinv
