// Prompt templates for textual-inversion training: "{}" stands for the placeholder sentence.
//
//   auto t = tinv::load_templates(tinv::BuiltinTemplates::kObject);  // imagenet_templates_small
//   std::string p = tinv::fill_template(t[0], "<cat_0> <cat_1>");  // "a photo of a <cat_0> <cat_1>"
//   auto mine = tinv::load_templates(std::filesystem::path("templates.txt"));
#pragma once
#include <filesystem>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace tinv {

// The built-in sets: kObject (diffusers textual_inversion.py imagenet_templates_small), kStyle
// (imagenet_style_templates_small).
enum class BuiltinTemplates { kObject, kStyle };
// --templates: a built-in set, or a text file with one template per line (blank lines and lines
// starting with '#' skipped).
using TemplateSource = std::variant<BuiltinTemplates, std::filesystem::path>;
// "object" | "style" | any other text: a file.
TemplateSource parse_templates(const std::string& text);
// "object" | "style" | the file's path: the --templates text of `source`.
std::string to_string(const TemplateSource& source);

// The templates of `source`. Throws tinv::Error naming the file for a missing, unreadable or
// empty file, or a template without exactly one "{}".
std::vector<std::string> load_templates(const TemplateSource& source);
// Text is not a source ("object" would be a file): parse_templates reads the --templates text.
template <typename Text, typename = std::enable_if_t<std::is_constructible_v<std::string_view, const Text&>>>
std::vector<std::string> load_templates(const Text&) = delete;
// Replaces the single "{}" of `tmpl` by `sentence` (Python's str.format with one argument).
std::string fill_template(const std::string& tmpl, const std::string& sentence);

}  // namespace tinv
