#include "pipelines/caption.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "common/error.h"
#include "common/fs.h"
#include "io/image_tensor.h"
#include "io/json_config.h"
#include "io/state_dict.h"
#include "models/blip.h"
#include "text/wordpiece_tokenizer.h"

namespace tinv {
namespace {

// bert-base-uncased ids of BLIP's default prompt "a picture of" (used without vocab.txt).
const char* const kDefaultPrompt = "a picture of";
const std::vector<int64_t> kDefaultPromptIds = {1037, 3861, 1997};

std::vector<double> three_values(const JsonConfig& j, const std::string& key, std::vector<double> fallback) {
  if (!j.has(key)) return fallback;
  if (j.json()[key].is_number()) return std::vector<double>(3, j.require<double>(key));
  auto v = j.require<std::vector<double>>(key);
  if (v.size() != 3) j.fail(key, "must hold 3 values (one per RGB channel)");
  return v;
}

}  // namespace

// ---- preprocessing (HF BlipImageProcessor) ----------------------------------------------

BlipPreprocessConfig BlipPreprocessConfig::load(const std::string& path) {
  JsonConfig j = JsonConfig::load(path);
  BlipPreprocessConfig c;
  c.do_resize = j.get<bool>("do_resize", c.do_resize);
  c.do_rescale = j.get<bool>("do_rescale", c.do_rescale);
  c.do_normalize = j.get<bool>("do_normalize", c.do_normalize);
  c.resample = j.get<int>("resample", c.resample);
  c.rescale_factor = j.get<double>("rescale_factor", c.rescale_factor);
  if (j.has("size")) {
    const auto& s = j.json()["size"];
    if (s.is_number_integer()) {
      c.width = c.height = s.get<int64_t>();
    } else {
      JsonConfig size = j.sub("size");
      TINV_CHECK(size.has("height") && size.has("width"), path, "field 'size' must hold height and width");
      c.height = size.require<int64_t>("height");
      c.width = size.require<int64_t>("width");
    }
  }
  c.mean = three_values(j, "image_mean", c.mean);
  c.std = three_values(j, "image_std", c.std);
  TINV_CHECK(c.width >= 1 && c.height >= 1 && c.width <= 8192 && c.height <= 8192, path,
             "field 'size' is out of range (", c.width, "x", c.height, ")");
  TINV_CHECK(c.resample == 2 || c.resample == 3, path, "field 'resample' is ", c.resample,
             "; only 2 (bilinear) and 3 (bicubic) are supported");
  for (double s : c.std) TINV_CHECK(s > 0, path, "field 'image_std' must be > 0");
  return c;
}

torch::Tensor blip_preprocess(const Image& image, const BlipPreprocessConfig& cfg) {
  const Image& resized = cfg.do_resize ? resize_pil(image, static_cast<int>(cfg.width), static_cast<int>(cfg.height),
                                                    static_cast<ResampleFilter>(cfg.resample))
                                       : image;
  auto x = image_to_tensor(resized).to(torch::kFloat64);  // [3, H, W], 0..255
  if (cfg.do_rescale) x = x * cfg.rescale_factor;
  if (cfg.do_normalize) {
    auto mean = torch::tensor(cfg.mean, torch::kFloat64).view({3, 1, 1});
    auto std = torch::tensor(cfg.std, torch::kFloat64).view({3, 1, 1});
    x = (x - mean) / std;
  }
  return x.to(torch::kFloat32).unsqueeze(0);  // [1, 3, H, W]
}

void CaptionOptions::validate() const {
  TINV_CHECK(beams >= 1, "caption", "--beams must be >= 1 (got ", beams, ")");
  TINV_CHECK(max_length >= 1, "caption", "--max-length must be >= 1 (got ", max_length, ")");
  TINV_CHECK(min_length >= 0, "caption", "--min-length must be >= 0 (got ", min_length, ")");
  TINV_CHECK(max_new_tokens >= 0, "caption", "max_new_tokens must be >= 0 (got ", max_new_tokens, ")");
  TINV_CHECK(repetition_penalty > 0 && std::isfinite(repetition_penalty), "caption",
             "--repetition-penalty must be > 0 (got ", repetition_penalty, ")");
  TINV_CHECK(std::isfinite(length_penalty), "caption", "--length-penalty must be finite");
}

// ---- captioner -------------------------------------------------------------------------

struct BlipCaptioner::Impl {
  BlipForConditionalGeneration model{nullptr};
  BlipPreprocessConfig pre;
  std::optional<WordPieceTokenizer> tokenizer;
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;  // the weights' (and the model inputs') dtype
  std::string source;

  // HF RepetitionPenaltyLogitsProcessor on one row of scores.
  static void repetition_penalty(torch::Tensor row, const std::vector<int64_t>& ids, double penalty) {
    if (penalty == 1.0 || ids.empty()) return;
    auto index = torch::tensor(ids, torch::kLong).to(row.device());
    auto s = row.gather(0, index);
    s = torch::where(s < 0, s * penalty, s / penalty);
    row.scatter_(0, index, s);
  }

  // Decoder state for one generation: the cache, or the whole sequence when not caching.
  struct Stepper {
    Impl& impl;
    torch::Tensor embeds;  // [B, M, E]
    bool use_cache;
    BlipKVCache cache;
    // ids: the rows so far ([B, T]); new_len: how many trailing positions are new.
    torch::Tensor last_logits(const torch::Tensor& ids, int64_t new_len) {
      auto& lm = *impl.model->text_decoder;
      torch::Tensor hidden = use_cache ? lm.forward(ids.narrow(1, ids.size(1) - new_len, new_len), embeds, &cache)
                                       : lm.forward(ids, embeds);  // [B, n, D]
      return lm.logits(hidden.select(1, hidden.size(1) - 1));      // [B, V]
    }
  };

  std::vector<int64_t> greedy(const torch::Tensor& embeds, std::vector<int64_t> ids, const CaptionOptions& o,
                              int64_t max_len, double* score);
  std::vector<int64_t> beam_search(const torch::Tensor& embeds, const std::vector<int64_t>& prefix,
                                   const CaptionOptions& o, int64_t max_len, double* score);
};

BlipCaptioner BlipCaptioner::load(const std::string& dir, torch::Device device, torch::ScalarType dtype) {
  TINV_CHECK(dir_exists(dir), dir, "not a folder (expected a BLIP model folder with config.json)");
  auto impl = std::make_shared<Impl>();
  impl->source = dir;
  impl->device = device;
  BlipConfig cfg = BlipConfig::load(join_path(dir, "config.json"));
  std::string weights = join_path(dir, "model.safetensors");
  if (!file_exists(weights) && file_exists(weights + ".index.json")) weights += ".index.json";
  TINV_CHECK(file_exists(weights), dir, "no model.safetensors (PyTorch .bin weights are not supported)");
  impl->model = BlipForConditionalGeneration(cfg);
  load_blip_weights(*impl->model, weights);
  impl->model->eval();
  freeze(*impl->model);
  impl->dtype = dtype;
  impl->model->to(device, dtype);

  std::string pre = join_path(dir, "preprocessor_config.json");
  if (file_exists(pre)) {
    impl->pre = BlipPreprocessConfig::load(pre);
  } else {
    impl->pre.width = impl->pre.height = cfg.vision.image_size;
  }
  std::string vocab = join_path(dir, "vocab.txt");
  if (file_exists(vocab)) {
    auto tok = WordPieceTokenizer::load(vocab);
    TINV_CHECK(tok.vocab_size() <= cfg.text.vocab_size, vocab, "has ", tok.vocab_size(),
               " tokens, more than the model's vocab_size ", cfg.text.vocab_size);
    tok.add_special_token("[DEC]", cfg.text.bos_token_id);
    if (tok.vocab_size() < cfg.text.vocab_size) tok.add_special_token("[ENC]", tok.vocab_size());
    TINV_CHECK(tok.sep_id() == cfg.text.sep_token_id, vocab, "[SEP] has id ", tok.sep_id(),
               " but config.json says sep_token_id ", cfg.text.sep_token_id);
    impl->tokenizer = std::move(tok);
  }
  BlipCaptioner c;
  c.impl_ = impl;
  return c;
}

BlipCaptioner BlipCaptioner::random(const BlipConfig& cfg, const BlipPreprocessConfig& pre, torch::Device device,
                                    uint64_t seed) {
  cfg.vision.validate("random BLIP vision config");
  cfg.text.validate("random BLIP text config");
  torch::manual_seed(seed);
  auto impl = std::make_shared<Impl>();
  impl->source = "random BLIP";
  impl->device = device;
  impl->pre = pre;
  impl->model = BlipForConditionalGeneration(cfg);
  impl->model->eval();
  freeze(*impl->model);
  impl->model->to(device);
  BlipCaptioner c;
  c.impl_ = impl;
  return c;
}

bool BlipCaptioner::has_tokenizer() const { return impl_->tokenizer.has_value(); }
const BlipConfig& BlipCaptioner::config() const { return impl_->model->config; }
torch::Device BlipCaptioner::device() const { return impl_->device; }

torch::Tensor BlipCaptioner::preprocess(const Image& image) const { return blip_preprocess(image, impl_->pre); }

torch::Tensor BlipCaptioner::image_embeds(const torch::Tensor& pixel_values) const {
  torch::NoGradGuard no_grad;
  return impl_->model->vision_model->forward(pixel_values.to(impl_->device, impl_->dtype));
}

torch::Tensor BlipCaptioner::logits(const torch::Tensor& ids, const torch::Tensor& image_embeds) const {
  torch::NoGradGuard no_grad;
  auto& lm = *impl_->model->text_decoder;
  auto embeds = image_embeds.to(impl_->device, impl_->dtype);
  return lm.logits(lm.forward(ids.to(impl_->device, torch::kLong), embeds));
}

std::vector<int64_t> BlipCaptioner::prefix_ids(const CaptionOptions& o) const {
  const BlipTextConfig& t = config().text;
  std::vector<int64_t> ids = {t.bos_token_id};
  if (!o.use_prompt) return ids;
  std::vector<int64_t> prompt = o.prompt_ids;
  if (prompt.empty() && !o.prompt.empty()) {
    if (impl_->tokenizer) {
      prompt = impl_->tokenizer->encode(o.prompt, /*add_special_tokens=*/false);
    } else if (o.prompt == kDefaultPrompt) {
      prompt = kDefaultPromptIds;
    } else {
      throw Error(impl_->source,
                  "no vocab.txt: cannot tokenise the prompt '" + o.prompt + "' (give prompt ids or no prompt)");
    }
  }
  for (int64_t id : prompt)
    TINV_CHECK(id >= 0 && id < t.vocab_size, "caption", "prompt id ", id, " is outside the vocabulary");
  ids.insert(ids.end(), prompt.begin(), prompt.end());
  return ids;
}

std::vector<int64_t> BlipCaptioner::Impl::greedy(const torch::Tensor& embeds, std::vector<int64_t> ids,
                                                 const CaptionOptions& o, int64_t max_len, double* score) {
  const int64_t sep = model->config.text.sep_token_id;
  Stepper step{*this, embeds, o.use_cache, {}};
  double total = 0.0;
  int64_t new_len = static_cast<int64_t>(ids.size());
  while (static_cast<int64_t>(ids.size()) < max_len) {
    auto ids_t = torch::tensor(ids, torch::kLong).to(device).unsqueeze(0);  // [1, T]
    auto logits = step.last_logits(ids_t, new_len)[0].to(torch::kFloat32);  // [V]
    repetition_penalty(logits, ids, o.repetition_penalty);
    if (static_cast<int64_t>(ids.size()) < o.min_length) logits[sep] = -INFINITY;
    int64_t next = logits.argmax().item<int64_t>();
    total += torch::log_softmax(logits, 0)[next].item<double>();
    ids.push_back(next);
    new_len = 1;
    if (next == sep) break;
  }
  if (score) *score = total;
  return ids;
}

namespace {

// transformers' BeamHypotheses: the best `beams` finished sequences.
struct Hypotheses {
  int beams;
  double length_penalty;
  bool early_stopping;
  std::vector<std::pair<double, std::vector<int64_t>>> items;
  double worst = 1e9;

  void add(const std::vector<int64_t>& hyp, double sum_logprobs) {
    double score = sum_logprobs / std::pow(static_cast<double>(hyp.size()), length_penalty);
    if (static_cast<int>(items.size()) < beams || score > worst) {
      items.emplace_back(score, hyp);
      if (static_cast<int>(items.size()) > beams) {
        auto it = std::min_element(items.begin(), items.end(),
                                   [](const auto& a, const auto& b) { return a.first < b.first; });
        items.erase(it);
        worst = std::min_element(items.begin(), items.end(), [](const auto& a, const auto& b) {
                  return a.first < b.first;
                })->first;
      } else {
        worst = std::min(score, worst);
      }
    }
  }
  bool done(double best_sum_logprobs, int64_t cur_len) const {
    if (static_cast<int>(items.size()) < beams) return false;
    if (early_stopping) return true;
    return worst >= best_sum_logprobs / std::pow(static_cast<double>(cur_len), length_penalty);
  }
};

}  // namespace

std::vector<int64_t> BlipCaptioner::Impl::beam_search(const torch::Tensor& embeds, const std::vector<int64_t>& prefix,
                                                      const CaptionOptions& o, int64_t max_len, double* score) {
  const int64_t sep = model->config.text.sep_token_id, K = o.beams;
  const int64_t V = model->config.text.vocab_size;
  Stepper step{*this, embeds.expand({K, embeds.size(1), embeds.size(2)}), o.use_cache, {}};
  std::vector<std::vector<int64_t>> seqs(K, prefix);
  std::vector<double> beam_scores(K, -1e9);
  beam_scores[0] = 0.0;  // only the first copy of the prefix expands at the first step
  Hypotheses hyps{o.beams, o.length_penalty, o.early_stopping, {}};
  bool done = false;
  int64_t cur_len = static_cast<int64_t>(prefix.size()), new_len = cur_len;
  while (cur_len < max_len) {
    std::vector<int64_t> flat;
    for (const auto& s : seqs) flat.insert(flat.end(), s.begin(), s.end());
    auto ids_t = torch::tensor(flat, torch::kLong).view({K, cur_len}).to(device);              // [K, T]
    auto logp = torch::log_softmax(step.last_logits(ids_t, new_len).to(torch::kFloat32), -1);  // [K, V]
    for (int64_t k = 0; k < K; ++k) repetition_penalty(logp[k], seqs[k], o.repetition_penalty);
    if (cur_len < o.min_length) logp.select(1, sep).fill_(-INFINITY);
    auto total = logp + torch::tensor(beam_scores, torch::kFloat64).to(device, torch::kFloat32).unsqueeze(1);
    auto [top_scores, top_idx] = total.view({-1}).topk(2 * K);  // sorted, best first
    auto scores_c = top_scores.to(torch::kCPU, torch::kFloat64);
    auto idx_c = top_idx.to(torch::kCPU);
    std::vector<int64_t> parents, tokens;
    std::vector<double> next_scores;
    for (int64_t r = 0; r < 2 * K && static_cast<int64_t>(tokens.size()) < K; ++r) {
      int64_t flat_i = idx_c[r].item<int64_t>(), beam = flat_i / V, tok = flat_i % V;
      double s = scores_c[r].item<double>();
      if (tok == sep) {
        if (r < K) hyps.add(seqs[beam], s);
      } else {
        parents.push_back(beam), tokens.push_back(tok), next_scores.push_back(s);
      }
    }
    done = hyps.done(scores_c[0].item<double>(), cur_len);
    if (done) break;
    std::vector<std::vector<int64_t>> next(K);
    for (int64_t k = 0; k < K; ++k) {
      next[k] = seqs[parents[k]];
      next[k].push_back(tokens[k]);
    }
    seqs = std::move(next);
    beam_scores = next_scores;
    step.cache.reorder(torch::tensor(parents, torch::kLong).to(device));
    ++cur_len;
    new_len = 1;
  }
  if (!done)
    for (int64_t k = 0; k < K; ++k) hyps.add(seqs[k], beam_scores[k]);
  auto best = std::max_element(hyps.items.begin(), hyps.items.end(),
                               [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<int64_t> out = best->second;
  if (static_cast<int64_t>(out.size()) < max_len) out.push_back(sep);
  if (score) *score = best->first;
  return out;
}

std::vector<int64_t> BlipCaptioner::generate(const torch::Tensor& image_embeds, const std::vector<int64_t>& prefix,
                                             const CaptionOptions& o, double* score) const {
  o.validate();
  TINV_CHECK(!prefix.empty(), "caption", "empty decoder prefix");
  TINV_CHECK(image_embeds.dim() == 3 && image_embeds.size(0) == 1, "caption",
             "generate() takes the embeddings of one image, got ", image_embeds.sizes());
  const int64_t max_len = o.max_new_tokens > 0 ? static_cast<int64_t>(prefix.size()) + o.max_new_tokens : o.max_length;
  TINV_CHECK(max_len <= config().text.max_position_embeddings, "caption", "maximum length ", max_len,
             " exceeds the decoder's max_position_embeddings (", config().text.max_position_embeddings, ")");
  if (static_cast<int64_t>(prefix.size()) >= max_len) return prefix;
  torch::NoGradGuard no_grad;
  auto embeds = image_embeds.to(impl_->device, impl_->dtype);
  return o.beams == 1 && !o.force_beam_search ? impl_->greedy(embeds, prefix, o, max_len, score)
                                              : impl_->beam_search(embeds, prefix, o, max_len, score);
}

CaptionResult BlipCaptioner::caption(const Image& image, const CaptionOptions& o) const {
  o.validate();
  CaptionResult r;
  auto prefix = prefix_ids(o);
  r.ids = generate(image_embeds(preprocess(image)), prefix, o, &r.score);
  r.new_ids.assign(r.ids.begin() + static_cast<std::ptrdiff_t>(prefix.size()), r.ids.end());
  if (impl_->tokenizer) r.text = impl_->tokenizer->decode(r.new_ids);
  return r;
}

}  // namespace tinv
