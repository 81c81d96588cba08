// Parity case group 'tokenizer' (see ../shared/fixtures/README.md): cases/tokenizer.json holds
// cases[] of {text, added_tokens: {placeholder: id}, ids: [max_length ids]} computed with the
// original CLIP tokenizer; each case runs on a fresh copy of model/tokenizer with its own added
// tokens, compared exactly.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "io/json_config.h"
#include "parity/parity.h"
#include "text/clip_tokenizer.h"

namespace tinv::parity {

std::vector<CaseResult> run_tokenizer(const std::string& dir, const torch::Device& /*device*/,
                                      torch::ScalarType /*dtype*/) {
  const std::string path = join_path(dir, "cases/tokenizer.json");
  nlohmann::json j = read_json_file(path);
  TINV_CHECK(j.is_object() && j.contains("cases") && j["cases"].is_array(), path,
             "expected an object with a 'cases' array");
  const ClipTokenizer base = ClipTokenizer::load(join_path(dir, "model/tokenizer"));

  std::vector<CaseResult> results;
  results.push_back(guarded("tokenizer.config", [&] {
    std::vector<int64_t> ours = {base.pad_id(), base.max_length()};
    std::vector<int64_t> ref = {j.value("pad_id", base.pad_id()), j.value("max_length", base.max_length())};
    return compare_exact("tokenizer.config", torch::tensor(ours), torch::tensor(ref));
  }));
  const auto& cases = j["cases"];
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    bool added = c.contains("added_tokens") && c["added_tokens"].is_object() && !c["added_tokens"].empty();
    std::string name = str_cat("tokenizer.", i, added ? ".added" : "");
    results.push_back(guarded(name, [&] {
      TINV_CHECK(
          c.is_object() && c.contains("text") && c["text"].is_string() && c.contains("ids") && c["ids"].is_array(),
          path, "case ", i, " needs 'text' (string) and 'ids' (array)");
      ClipTokenizer tok = base;  // fresh added tokens per case
      if (added)
        for (auto it = c["added_tokens"].begin(); it != c["added_tokens"].end(); ++it)
          tok.add_token(it.key(), it.value().get<int64_t>());
      ClipTokenizer::Encoding enc = tok.encode(c["text"].get<std::string>());
      auto ref = c["ids"].get<std::vector<int64_t>>();
      CaseResult r = compare_exact(name, torch::tensor(enc.ids), torch::tensor(ref));
      if (enc.truncated && r.pass) r.note = "truncated";
      return r;
    }));
  }
  return results;
}

}  // namespace tinv::parity
