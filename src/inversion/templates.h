// Prompt templates for textual-inversion training: "{}" stands for the placeholder sentence.
//
//   auto t = tinv::load_templates("object");          // diffusers' imagenet_templates_small
//   std::string p = tinv::fill_template(t[0], "<cat_0> <cat_1>");  // "a photo of a <cat_0> <cat_1>"
#pragma once
#include <string>
#include <vector>

namespace tinv {

// "object" (diffusers textual_inversion.py imagenet_templates_small), "style"
// (imagenet_style_templates_small), or a text file with one template per line (blank lines and
// lines starting with '#' skipped). Throws tinv::Error naming the file for an unreadable or
// empty file, or a template without exactly one "{}".
std::vector<std::string> load_templates(const std::string& spec);
// Replaces the single "{}" of `tmpl` by `sentence` (Python's str.format with one argument).
std::string fill_template(const std::string& tmpl, const std::string& sentence);

}  // namespace tinv
