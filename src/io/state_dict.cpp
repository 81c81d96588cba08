#include "io/state_dict.h"

#include <set>

#include "common/error.h"
#include "common/shape.h"

namespace tinv {

void load_state_dict(torch::nn::Module& module, const StateDict& sd, const std::string& source,
                     const std::vector<std::string>& ignore_prefixes) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> missing;
  std::set<std::string> used;
  auto fill = [&](const std::string& name, torch::Tensor& target) {
    auto it = sd.find(name);
    if (it == sd.end()) {
      missing.push_back(name);
      return;
    }
    used.insert(name);
    const torch::Tensor& src = it->second;
    TINV_CHECK(src.sizes() == target.sizes(), source, "tensor '", name, "' has shape ", shape_str(src.sizes().vec()),
               " but the model expects ", shape_str(target.sizes().vec()));
    target.copy_(src);
  };
  for (auto& p : module.named_parameters(/*recurse=*/true)) fill(p.key(), p.value());
  for (auto& b : module.named_buffers(/*recurse=*/true)) fill(b.key(), b.value());
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : sd) {
    if (used.count(name)) continue;
    bool ignored = false;
    for (const auto& p : ignore_prefixes) ignored |= name.compare(0, p.size(), p) == 0;
    if (!ignored) unexpected.push_back(name);
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 5; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 5) s += str_cat(", ... (", v.size(), " in all)");
    return s;
  };
  TINV_CHECK(missing.empty(), source, "missing tensor(s): ", list(missing));
  TINV_CHECK(unexpected.empty(), source, "unexpected tensor(s): ", list(unexpected));
}

StateDict strip_prefix(const StateDict& sd, const std::string& prefix) {
  StateDict out;
  for (const auto& [name, t] : sd)
    if (name.compare(0, prefix.size(), prefix) == 0) out.emplace(name.substr(prefix.size()), t);
  return out;
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

void freeze(torch::nn::Module& module) {
  for (auto& p : module.parameters()) p.set_requires_grad(false);
}

}  // namespace tinv
