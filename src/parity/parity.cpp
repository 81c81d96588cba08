#include "parity/parity.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <set>

#include "common/device.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/shape.h"
#include "io/safetensors.h"

namespace tinv::parity {
namespace {

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

CaseResult measure(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref) {
  CaseResult r;
  r.name = name;
  auto a = ours.detach().to(torch::kCPU, torch::kFloat64);
  auto b = ref.detach().to(torch::kCPU, torch::kFloat64);
  if (a.sizes() != b.sizes()) {
    r.max_abs = r.rel = INFINITY;
    r.note = "shape " + shape_str(a.sizes().vec()) + " vs reference " + shape_str(b.sizes().vec());
    return r;
  }
  if (a.numel() == 0) return r;
  auto diff = a - b;
  r.max_abs = diff.abs().max().item<double>();
  double norm = b.norm().item<double>();
  double dn = diff.norm().item<double>();
  r.rel = norm > 0 ? dn / norm : (dn == 0 ? 0.0 : INFINITY);
  if (!std::isfinite(r.max_abs)) r.max_abs = INFINITY;
  if (!std::isfinite(r.rel)) r.rel = INFINITY;
  return r;
}

}  // namespace

CaseResult compare_abs(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref, double tol) {
  CaseResult r = measure(name, ours, ref);
  r.tol = "abs " + fmt(tol);
  r.pass = r.note.empty() && r.max_abs <= tol;
  return r;
}

CaseResult compare_rel(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref, double tol) {
  CaseResult r = measure(name, ours, ref);
  r.tol = "rel " + fmt(tol);
  r.pass = r.note.empty() && r.rel <= tol;
  return r;
}

CaseResult compare_exact(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref) {
  CaseResult r = measure(name, ours.to(torch::kInt64), ref.to(torch::kInt64));
  r.tol = "exact";
  r.pass = r.note.empty() && r.max_abs == 0.0;
  if (r.note.empty() && !r.pass) {
    auto ne = (ours.to(torch::kCPU, torch::kInt64).flatten() != ref.to(torch::kCPU, torch::kInt64).flatten()).nonzero();
    r.note = str_cat(ne.size(0), " element(s) differ, first at flat index ", ne[0].item<int64_t>());
  }
  return r;
}

std::vector<CaseResult> all_failed(const std::vector<std::string>& names, const std::string& reason) {
  std::vector<CaseResult> out;
  for (const auto& n : names) out.push_back(failed(n, reason));
  return out;
}

CaseResult compare_model(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref, double fp32_abs,
                         torch::ScalarType dtype, double bf16_rel) {
  return dtype == torch::kBFloat16 ? compare_rel(name, ours, ref, bf16_rel) : compare_abs(name, ours, ref, fp32_abs);
}

CaseResult failed(const std::string& name, const std::string& reason) {
  CaseResult r;
  r.name = name;
  r.max_abs = r.rel = INFINITY;
  r.tol = "-";
  r.note = reason;
  return r;
}

double tol_at(torch::ScalarType dtype, double fp32, double bf16) { return dtype == torch::kBFloat16 ? bf16 : fp32; }

torch::Tensor input(const SafeTensors& file, const std::string& name, const torch::Device& device,
                    torch::ScalarType dtype) {
  return file.get(name, dtype).to(device);
}

CaseResult guarded(const std::string& name, const std::function<CaseResult()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (auto nl = what.find('\n'); nl != std::string::npos) what = what.substr(0, nl);
    return failed(name, what);
  }
}

const std::vector<Group>& groups() {
  static const std::vector<Group> kGroups = {
      {"tokenizer", "sd", run_tokenizer},
      {"text_encoder", "sd", run_text_encoder},
      {"unet", "sd", run_unet},
      {"vae", "sd", run_vae},
      {"single_file", "sd", run_single_file},
      {"scheduler", "sd", run_scheduler},
      {"pipeline", "sd", run_pipeline},
      {"ti_train", "sd", run_ti_train},
      {"blip", "blip", run_blip},
      {"tokenizer", "sdxl", run_sdxl_tokenizer},
      {"text_encoder", "sdxl", run_sdxl_text_encoder},
      {"unet", "sdxl", run_sdxl_unet},
      {"vae", "sdxl", run_vae},
      {"single_file", "sdxl", run_sdxl_single_file},
      {"scheduler", "sdxl", run_scheduler},
      {"pipeline", "sdxl", run_sdxl_pipeline},
      {"ti_train", "sdxl", run_sdxl_ti_train},
      {"embedding", "sdxl", run_sdxl_embedding},
  };
  return kGroups;
}

std::string detect_layout(const std::string& dir) {
  TINV_CHECK(dir_exists(dir), dir, "no such fixture folder");
  if (file_exists(join_path(dir, "model/model_index.json"))) {
    if (dir_exists(join_path(dir, "model/text_encoder_2"))) return "sdxl";
    auto index = read_text_file(join_path(dir, "model/model_index.json"));
    return index.find("\"text_encoder_2\"") != std::string::npos ? "sdxl" : "sd";
  }
  if (file_exists(join_path(dir, "cases/blip.safetensors"))) return "blip";
  throw Error(dir, "not a fixture folder (expected model/model_index.json or cases/blip.safetensors)");
}

int run(const std::string& dir, const std::vector<std::string>& only, std::ostream& out, const torch::Device& device,
        torch::ScalarType dtype) {
  TINV_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16, "--dtype", "parity runs at fp32 or bf16, not ",
             dtype_name(dtype));
  std::string layout = detect_layout(dir);
  std::set<std::string> known, here;
  std::string here_list;
  for (const auto& g : groups()) {
    known.insert(g.name);
    if (g.layout == layout && here.insert(g.name).second) here_list += (here_list.empty() ? "" : ", ") + g.name;
  }
  for (const auto& o : only) {
    TINV_CHECK(known.count(o), "--only", "unknown case group '", o, "' (groups of layout '", layout, "': ", here_list,
               ")");
    TINV_CHECK(here.count(o), "--only", "case group '", o, "' is not in layout '", layout, "' of ", dir,
               " (its groups: ", here_list, ")");
  }
  int passed = 0, failures = 0;
  for (const auto& g : groups()) {
    if (g.layout != layout) continue;
    if (!only.empty() && std::find(only.begin(), only.end(), g.name) == only.end()) continue;
    std::vector<CaseResult> results;
    try {
      results = g.run(dir, device, dtype);
    } catch (const std::exception& e) {
      results.push_back(failed(g.name, e.what()));
    }
    for (const auto& r : results) {
      out << (r.pass ? "PASS " : "FAIL ") << r.name << " max_abs=" << fmt(r.max_abs) << " rel=" << fmt(r.rel)
          << " tol=" << r.tol;
      if (!r.note.empty()) out << "  (" << r.note << ")";
      out << "\n";
      (r.pass ? passed : failures)++;
    }
    out.flush();
  }
  out << passed << " passed, " << failures << " failed\n";
  if (passed + failures == 0) {
    out << "FAIL no case ran (" << (only.empty() ? "" : "--only groups of ") << "layout '" << layout << "' in " << dir
        << ")\n";
    return 1;
  }
  return failures;
}

}  // namespace tinv::parity
