// Parity case groups of the SDXL layout (see ../shared/fixtures/README.md, "SDXL fixtures"):
//   tokenizer     cases/tokenizer.json objects `tokenizer` and `tokenizer_2`, each run on a fresh
//                 copy of model/<folder> with its own added tokens, exact:
//                 tokenizer.config, tokenizer.<i>[.added], tokenizer_2.config, tokenizer_2.<i>[.added]
//   text_encoder  input_ids_1/2 -> last_hidden_state_1/2, penultimate_1/2, prompt_embeds, pooled;
//                 added.* with the rows of both encoders; text_encoder.added_grad (ours):
//                 backward reaches exactly the used rows of both encoders, no weight (abs 1e-4)
//   unet          sample, timestep, encoder_hidden_states, text_embeds, time_ids -> out (abs 1e-4);
//                 unet.grad (ours) as for SD1
//   single_file   model.safetensors (fp16, Stability's layout) with model/'s configs: the same
//                 text-encoder, UNet and VAE cases (no single file: no cases)
//   embedding     cases/embedding_sdxl.safetensors read back (clip_l/clip_g names and shapes
//                 exact, values = ti_train final_l/final_g), and our writer's file compared with it
// The vae and scheduler groups are the SD ones (same case files).
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>

#include "common/error.h"
#include "common/fs.h"
#include "io/embeddings.h"
#include "io/json_config.h"
#include "io/safetensors.h"
#include "models/stable_diffusion.h"
#include "parity/parity.h"
#include "text/clip_tokenizer.h"
#include "text/sdxl_text.h"

namespace tinv::parity {
namespace {

constexpr double kTol = 1e-4;

std::vector<CaseResult> tokenizer_cases(const std::string& dir, const nlohmann::json& j, const std::string& label,
                                        const std::string& path) {
  TINV_CHECK(j.is_object() && j.contains("cases") && j["cases"].is_array(), path, "'", label,
             "' must be an object with a 'cases' array");
  const std::string folder = j.value("folder", label);
  const ClipTokenizer base = ClipTokenizer::load(join_path(dir, "model/" + folder));
  std::vector<CaseResult> results;
  results.push_back(guarded(label + ".config", [&] {
    std::vector<int64_t> ours = {base.pad_id(), base.max_length()};
    std::vector<int64_t> ref = {j.value("pad_id", base.pad_id()), j.value("max_length", base.max_length())};
    return compare_exact(label + ".config", torch::tensor(ours), torch::tensor(ref));
  }));
  const auto& cases = j["cases"];
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    bool added = c.contains("added_tokens") && c["added_tokens"].is_object() && !c["added_tokens"].empty();
    std::string name = str_cat(label, ".", i, added ? ".added" : "");
    results.push_back(guarded(name, [&] {
      TINV_CHECK(
          c.is_object() && c.contains("text") && c["text"].is_string() && c.contains("ids") && c["ids"].is_array(),
          path, label, " case ", i, " needs 'text' (string) and 'ids' (array)");
      ClipTokenizer tok = base;
      if (added)
        for (auto it = c["added_tokens"].begin(); it != c["added_tokens"].end(); ++it)
          tok.add_token(it.key(), it.value().get<int64_t>());
      auto enc = tok.encode(c["text"].get<std::string>());
      return compare_exact(name, torch::tensor(enc.ids), torch::tensor(c["ids"].get<std::vector<int64_t>>()));
    }));
  }
  return results;
}

// Both encoders' cases of text_encoder.safetensors, labelled with `prefix`.
std::vector<CaseResult> text_cases(const std::string& prefix, ClipTextModel& te1, ClipTextModel& te2,
                                   const SafeTensors& c, const torch::Device& device, torch::ScalarType dtype) {
  std::vector<CaseResult> out;
  torch::NoGradGuard no_grad;
  auto ids1 = input(c, "input_ids_1", device, torch::kInt64), ids2 = input(c, "input_ids_2", device, torch::kInt64);
  std::optional<ClipTextOutputs> o1, o2;
  std::optional<SdxlTextStates> s;
  auto run = [&] {
    if (!o1) o1 = te1->forward_all(ids1), o2 = te2->forward_all(ids2), s = encode_sdxl_text(te1, te2, ids1, ids2);
  };
  // One case: `prepare` runs the encoders once (the first case that needs them), `ours` picks the output.
  auto add = [&](const std::string& key, const std::function<void()>& prepare,
                 const std::function<torch::Tensor()>& ours) {
    out.push_back(guarded(prefix + key, [&] {
      prepare();
      return compare_model(prefix + key, ours(), c.get(key), kTol, dtype);
    }));
  };
  add("last_hidden_state_1", run, [&] { return o1->last_hidden_state; });
  add("last_hidden_state_2", run, [&] { return o2->last_hidden_state; });
  add("penultimate_1", run, [&] { return o1->penultimate; });
  add("penultimate_2", run, [&] { return o2->penultimate; });
  add("prompt_embeds", run, [&] { return s->prompt_embeds; });
  add("pooled", run, [&] { return s->pooled; });
  // Added tokens: rows for ids >= 49408 from added.embeddings_l (te1) and _g (te2).
  auto a1 = input(c, "added.input_ids_1", device, torch::kInt64),
       a2 = input(c, "added.input_ids_2", device, torch::kInt64);
  auto el = input(c, "added.embeddings_l", device, dtype), eg = input(c, "added.embeddings_g", device, dtype);
  std::optional<ClipTextOutputs> p1, p2;
  std::optional<SdxlTextStates> sa;
  auto run_added = [&] {
    if (!p1)
      p1 = te1->forward_all(a1, el), p2 = te2->forward_all(a2, eg), sa = encode_sdxl_text(te1, te2, a1, a2, el, eg);
  };
  add("added.penultimate_1", run_added, [&] { return p1->penultimate; });
  add("added.penultimate_2", run_added, [&] { return p2->penultimate; });
  add("added.prompt_embeds", run_added, [&] { return sa->prompt_embeds; });
  add("added.pooled", run_added, [&] { return sa->pooled; });
  return out;
}

// Backward from prompt_embeds and pooled reaches exactly the used rows of both encoders.
CaseResult added_grad_case(ClipTextModel& te1, ClipTextModel& te2, const SafeTensors& c, const torch::Device& device,
                           torch::ScalarType dtype) {
  const std::string name = "text_encoder.added_grad";
  auto a1 = c.get("added.input_ids_1", torch::kInt64), a2 = c.get("added.input_ids_2", torch::kInt64);
  auto el = input(c, "added.embeddings_l", device, dtype).clone().requires_grad_(true);
  auto eg = input(c, "added.embeddings_g", device, dtype).clone().requires_grad_(true);
  auto s = encode_sdxl_text(te1, te2, a1.to(device), a2.to(device), el, eg);
  (s.prompt_embeds.sum() + s.pooled.sum()).backward();
  for (auto* m : {&te1, &te2})
    for (const auto& p : (*m)->named_parameters())
      if (p.value().requires_grad() || p.value().grad().defined())
        return failed(name, "parameter '" + p.key() + "' requires or received a gradient");
  const int64_t vocab = te1->config().vocab_size;
  for (auto [ids, rows] : {std::pair{a1, el}, std::pair{a2, eg}}) {
    if (!rows.grad().defined()) return failed(name, "no gradient reached the added rows");
    auto flat = ids.flatten();
    auto used = torch::zeros({rows.size(0)}, torch::kBool);
    used.index_fill_(0, flat.masked_select(flat >= vocab) - vocab, true);
    auto norm = rows.grad().norm(2, {1}).cpu();
    if (!(norm.masked_select(used) > 0).all().item<bool>() ||
        !(norm.masked_select(used.logical_not()) == 0).all().item<bool>())
      return failed(name, "gradient rows do not match the added ids used");
  }
  CaseResult r;
  r.name = name;
  r.tol = "exact";
  r.pass = true;
  r.note = "both encoders";
  return r;
}

torch::Tensor unet_out(UNet2DConditionModel& unet, const SafeTensors& c, const torch::Device& device,
                       torch::ScalarType dtype, bool grad_ehs = false) {
  auto ehs = input(c, "encoder_hidden_states", device, dtype);
  if (grad_ehs) ehs.requires_grad_(true);
  return unet->forward(input(c, "sample", device, dtype), input(c, "timestep", device, torch::kInt64), ehs,
                       {input(c, "text_embeds", device, dtype), input(c, "time_ids", device)});
}

}  // namespace

std::vector<CaseResult> run_sdxl_tokenizer(const std::string& dir, const torch::Device& /*device*/,
                                           torch::ScalarType /*dtype*/) {
  const std::string path = join_path(dir, "cases/tokenizer.json");
  nlohmann::json j = read_json_file(path);
  TINV_CHECK(j.is_object() && j.contains("tokenizer") && j.contains("tokenizer_2"), path,
             "expected objects 'tokenizer' and 'tokenizer_2'");
  auto out = tokenizer_cases(dir, j["tokenizer"], "tokenizer", path);
  auto second = tokenizer_cases(dir, j["tokenizer_2"], "tokenizer_2", path);
  out.insert(out.end(), second.begin(), second.end());
  return out;
}

std::vector<CaseResult> run_sdxl_text_encoder(const std::string& dir, const torch::Device& device,
                                              torch::ScalarType dtype) {
  ClipTextModel te1 = load_clip_text_model(join_path(dir, "model/text_encoder"));
  ClipTextModel te2 = load_clip_text_model(join_path(dir, "model/text_encoder_2"));
  te1->to(device, dtype);
  te2->to(device, dtype);
  SafeTensors c = SafeTensors::open(join_path(dir, "cases/text_encoder.safetensors"));
  auto out = text_cases("text_encoder.", te1, te2, c, device, dtype);
  out.push_back(guarded("text_encoder.added_grad", [&] { return added_grad_case(te1, te2, c, device, dtype); }));
  return out;
}

std::vector<CaseResult> run_sdxl_unet(const std::string& dir, const torch::Device& device, torch::ScalarType dtype) {
  const std::string case_file = join_path(dir, "cases/unet.safetensors");
  std::shared_ptr<UNet2DConditionModel> unet;
  std::vector<CaseResult> results;
  results.push_back(guarded("unet", [&] {
    unet = std::make_shared<UNet2DConditionModel>(load_unet_folder(join_path(dir, "model/unet")));
    TINV_CHECK((*unet)->config().text_time(), dir, "the SDXL UNet has no text_time addition embedding");
    (*unet)->to(device, dtype);
    torch::NoGradGuard no_grad;
    auto c = SafeTensors::open(case_file);
    return compare_model("unet", unet_out(*unet, c, device, dtype), c.get("out"), kTol, dtype);
  }));
  results.push_back(guarded("unet.grad", [&] {
    if (!unet) return failed("unet.grad", "model did not load");
    auto c = SafeTensors::open(case_file);
    auto ehs = input(c, "encoder_hidden_states", device, dtype).requires_grad_(true);
    auto out = (*unet)->forward(input(c, "sample", device, dtype), input(c, "timestep", device, torch::kInt64), ehs,
                                {input(c, "text_embeds", device, dtype), input(c, "time_ids", device)});
    out.square().mean().backward();
    int64_t with_grad = 0;
    for (const auto& p : (*unet)->parameters()) with_grad += p.grad().defined() ? 1 : 0;
    CaseResult r;
    r.name = "unet.grad";
    r.tol = "exact";
    bool ok =
        ehs.grad().defined() && ehs.grad().isfinite().all().item<bool>() && ehs.grad().abs().sum().item<double>() > 0;
    r.pass = ok && with_grad == 0;
    r.note = str_cat("encoder_hidden_states grad ", ok ? "finite, non-zero" : "MISSING or bad", "; ", with_grad,
                     " parameter(s) with a grad");
    return r;
  }));
  return results;
}

std::vector<CaseResult> run_sdxl_single_file(const std::string& dir, const torch::Device& device,
                                             torch::ScalarType dtype) {
  const std::string file = join_path(dir, "model.safetensors");
  if (!file_exists(file)) return {};
  std::optional<StableDiffusion> sd;
  std::string load_error;
  try {
    sd = load_fixture_single_file(file, dir, device, dtype);
    TINV_CHECK(sd->is_xl(), file, "loaded as ", sd->family, ", not SDXL");
  } catch (const std::exception& e) {
    load_error = e.what();
  }
  const std::string cases = join_path(dir, "cases");
  if (!sd) return {failed("single_file", load_error)};
  std::vector<CaseResult> results;
  results.push_back(guarded("single_file.family", [&] {
    CaseResult r;
    r.name = "single_file.family";
    r.tol = "exact";
    r.pass = sd->is_xl() && sd->tokenizer_2.has_value();
    r.note = sd->family + ", " + sd->file_dtypes["unet"];
    return r;
  }));
  try {
    auto c = SafeTensors::open(join_path(cases, "text_encoder.safetensors"));
    auto tc = text_cases("single_file.text_encoder.", sd->text_encoder, sd->text_encoder_2, c, device, dtype);
    results.insert(results.end(), tc.begin(), tc.end());
  } catch (const std::exception& e) {
    results.push_back(failed("single_file.text_encoder", e.what()));
  }
  torch::NoGradGuard no_grad;
  results.push_back(guarded("single_file.unet", [&] {
    auto c = SafeTensors::open(join_path(cases, "unet.safetensors"));
    return compare_model("single_file.unet", unet_out(sd->unet, c, device, dtype), c.get("out"), kTol, dtype);
  }));
  std::optional<Posterior> post;
  auto vae = [&] { return SafeTensors::open(join_path(cases, "vae.safetensors")); };
  results.push_back(guarded("single_file.vae.encode.mean", [&] {
    auto c = vae();
    post = sd->vae->encode(input(c, "image", device, dtype));
    return compare_model("single_file.vae.encode.mean", post->mean, c.get("posterior_mean"), kTol, dtype);
  }));
  results.push_back(guarded("single_file.vae.encode.logvar", [&] {
    if (!post) return failed("single_file.vae.encode.logvar", "encode failed");
    return compare_model("single_file.vae.encode.logvar", post->logvar, vae().get("posterior_logvar"), kTol, dtype);
  }));
  results.push_back(guarded("single_file.vae.decode", [&] {
    auto c = vae();
    return compare_model("single_file.vae.decode", sd->vae->decode(input(c, "latent", device, dtype)), c.get("decoded"),
                         kTol, dtype);
  }));
  return results;
}

namespace {

// The widths h1, h2 of the model's two text encoders (from their configs).
std::pair<int64_t, int64_t> text_widths(const std::string& dir) {
  auto te1 = ClipTextConfig::from_json(JsonConfig::load(join_path(dir, "model/text_encoder/config.json")));
  auto te2 = ClipTextConfig::from_json(JsonConfig::load(join_path(dir, "model/text_encoder_2/config.json")));
  return {te1.hidden_size, te2.hidden_size};
}

// The reference file's layout: exactly clip_l [n, h1] and clip_g [n, h2], fp32.
CaseResult embedding_layout(const std::string& dir, const SafeTensors& ref) {
  auto keys = ref.keys();
  std::sort(keys.begin(), keys.end());
  if (keys != std::vector<std::string>{"clip_g", "clip_l"})
    return failed("embedding.layout", "tensors are not exactly clip_g, clip_l");
  const auto [h1, h2] = text_widths(dir);
  auto l = ref.view("clip_l"), g = ref.view("clip_g");
  std::vector<int64_t> ours = {l.dim(),
                               g.dim(),
                               l.size(1),
                               g.size(1),
                               l.size(0) - g.size(0),
                               l.scalar_type() == torch::kFloat32,
                               g.scalar_type() == torch::kFloat32};
  std::vector<int64_t> want = {2, 2, h1, h2, 0, 1, 1};
  return compare_exact("embedding.layout", torch::tensor(ours), torch::tensor(want));
}

// Our writer: same names, shapes, dtype and values as the reference; read back equal.
CaseResult embedding_write(const std::string& path, const SafeTensors& ref, const std::optional<Embedding>& read) {
  TINV_CHECK(read.has_value(), path, "read failed");
  const std::string tmp = str_cat("/tmp/tinv-parity-sdxl-", ::getpid(), ".safetensors");
  save_sdxl_embedding(tmp, read->vectors, read->vectors_2);
  struct Remove {
    std::string p;
    ~Remove() { std::remove(p.c_str()); }
  } remove_tmp{tmp};
  auto ours = SafeTensors::open(tmp);
  auto keys = ours.keys();
  std::sort(keys.begin(), keys.end());
  if (keys != std::vector<std::string>{"clip_g", "clip_l"})
    return failed("embedding.write", "written tensors are not exactly clip_g, clip_l");
  for (const char* k : {"clip_l", "clip_g"})
    if (ours.view(k).sizes() != ref.view(k).sizes() || ours.view(k).scalar_type() != torch::kFloat32)
      return failed("embedding.write", std::string(k) + ": shape or dtype differs from the reference");
  return compare_abs("embedding.write", torch::cat({ours.get("clip_l"), ours.get("clip_g")}, 1),
                     torch::cat({ref.get("clip_l"), ref.get("clip_g")}, 1), 0.0);
}

}  // namespace

std::vector<CaseResult> run_sdxl_embedding(const std::string& dir, const torch::Device& /*device*/,
                                           torch::ScalarType /*dtype*/) {
  const std::string path = join_path(dir, "cases/embedding_sdxl.safetensors");
  const std::string train = join_path(dir, "cases/ti_train.safetensors");
  std::vector<CaseResult> out;
  std::optional<SafeTensors> ref;
  try {
    ref = SafeTensors::open(path);
  } catch (const std::exception& e) {
    return {failed("embedding", e.what())};
  }
  out.push_back(guarded("embedding.layout", [&] { return embedding_layout(dir, *ref); }));
  // Our reader, on an SDXL model's widths.
  std::optional<Embedding> read;
  out.push_back(guarded("embedding.read", [&] {
    const auto [h1, h2] = text_widths(dir);
    auto embs = load_embeddings(path, h1, h2);
    TINV_CHECK(embs.size() == 1 && embs[0].is_xl(), path, "expected one SDXL embedding");
    read = embs[0];
    return compare_abs("embedding.read", torch::cat({read->vectors, read->vectors_2}, 1),
                       torch::cat({ref->get("clip_l"), ref->get("clip_g")}, 1), 0.0);
  }));
  // Values: the ti_train run's final rows.
  if (file_exists(train)) {
    out.push_back(guarded("embedding.values", [&] {
      auto t = SafeTensors::open(train);
      return compare_rel("embedding.values", torch::cat({ref->get("clip_l"), ref->get("clip_g")}, 1),
                         torch::cat({t.get("final_l"), t.get("final_g")}, 1), 1e-3);
    }));
  }
  out.push_back(guarded("embedding.write", [&] { return embedding_write(path, *ref, read); }));
  return out;
}

}  // namespace tinv::parity
