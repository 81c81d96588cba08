// Image captioning with BLIP (HF BlipForConditionalGeneration folders:
// Salesforce/blip-image-captioning-base and -large, or any size).
//
//   auto cap = tinv::BlipCaptioner::load("blip-base", torch::kCPU);
//   tinv::CaptionResult r = cap.caption(tinv::load_image("cat.jpg"));  // r.text = "a cat on a sofa"
//
//   tinv::CaptionOptions o;          // defaults: original BLIP (prompt "a picture of", 3 beams,
//   o.beams = 1;                     //   max_length 30, min_length 10)
//   o.use_prompt = false;            // unconditional: decoding starts from [DEC] alone
//
// The folder holds config.json, model.safetensors, preprocessor_config.json (BLIP defaults
// when absent) and vocab.txt. Without vocab.txt the captioner still runs ("ids-only"): it needs
// prompt ids (CaptionOptions::prompt_ids, or the built-in bert-base-uncased ids of the default
// prompt) and returns token ids with an empty text; has_tokenizer() says which mode it is in.
//
// Generation follows transformers' generate() as BLIP calls it: the prompt is BERT-tokenised,
// [DEC] replaces [CLS] and the trailing [SEP] is dropped; decoding stops at [SEP]. Lengths
// count every token of the sequence, prompt included (HF max_length/min_length semantics);
// max_new_tokens, when > 0, replaces max_length by prompt length + max_new_tokens.
// Greedy (beams == 1) applies the repetition penalty to the logits; beam search applies it to
// the log-probabilities and scores finished hypotheses by sum_logprobs / length^length_penalty
// (length = tokens before [SEP], prompt included), as transformers <= 4.35 and original BLIP.
// Incremental decoding keeps each layer's keys/values (use_cache); without the cache every
// step reruns the whole sequence (same ids, kept for measurement).
#pragma once
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "io/image.h"

namespace tinv {

struct BlipConfig;

// preprocessor_config.json of a BlipImageProcessor.
struct BlipPreprocessConfig {
  bool do_resize = true, do_rescale = true, do_normalize = true;
  int64_t width = 384, height = 384;
  int resample = 3;  // PIL: 2 bilinear, 3 bicubic
  double rescale_factor = 1.0 / 255.0;
  std::vector<double> mean = {0.48145466, 0.4578275, 0.40821073};
  std::vector<double> std = {0.26862954, 0.26130258, 0.27577711};
  // Reads the file (fields absent keep the defaults); validated, errors name file and field.
  static BlipPreprocessConfig load(const std::string& path);
};

// RGB -> resize (PIL-exact) -> rescale -> normalise: float32 [1, 3, H, W] (CPU).
torch::Tensor blip_preprocess(const Image& image, const BlipPreprocessConfig& cfg);

struct CaptionOptions {
  std::string prompt = "a picture of";  // conditional captioning prefix
  bool use_prompt = true;               // false: unconditional (start from [DEC] only)
  std::vector<int64_t> prompt_ids;      // prompt as ids without [CLS]/[SEP]; overrides `prompt`
  int beams = 3;                        // 1 = greedy; must be >= 1
  int max_length = 30;                  // total tokens incl. the prompt and [DEC]
  int min_length = 10;                  // [SEP] is forbidden while the sequence is shorter
  int max_new_tokens = 0;               // > 0: overrides max_length (prompt length + this)
  double repetition_penalty = 1.0;      // > 0; 1 = off
  double length_penalty = 1.0;          // beam search: exponent of the length normaliser
  bool early_stopping = false;          // beam search: stop once `beams` hypotheses finished
  bool use_cache = true;                // incremental decoding with cached keys/values
  bool force_beam_search = false;       // run beam search even with beams == 1 (tests)
  // Throws tinv::Error for out-of-range values (beams 0, lengths < 1, penalty <= 0).
  void validate() const;
};

struct CaptionResult {
  std::string text;              // caption without the prompt; empty in ids-only mode
  std::vector<int64_t> ids;      // the whole sequence: [DEC], prompt, caption, [SEP] if emitted
  std::vector<int64_t> new_ids;  // the generated tokens only (after the prompt)
  double score = 0.0;            // greedy: sum of log-probs of new tokens; beams: normalised score
};

class BlipCaptioner {
 public:
  // Loads a BLIP folder. Throws tinv::Error naming the file on any problem. `dtype` is the
  // weights' compute dtype (float32 or bfloat16); inputs are cast to it, scores are float32.
  static BlipCaptioner load(const std::string& dir, torch::Device device = torch::kCPU,
                            torch::ScalarType dtype = torch::kFloat32);
  // Random weights (tests, benchmarks); no tokenizer.
  static BlipCaptioner random(const BlipConfig& cfg, const BlipPreprocessConfig& pre,
                              torch::Device device = torch::kCPU, uint64_t seed = 0);

  // Captions one image (preprocess, encode, generate, detokenise).
  CaptionResult caption(const Image& image, const CaptionOptions& opts = {}) const;

  // The steps, for parity checks and benchmarks.
  torch::Tensor preprocess(const Image& image) const;                                       // [1, 3, H, W]
  torch::Tensor image_embeds(const torch::Tensor& pixel_values) const;                      // [B, 1+P, D]
  torch::Tensor logits(const torch::Tensor& ids, const torch::Tensor& image_embeds) const;  // [B, N, V]
  // Decoder start: [DEC] + prompt ids (from options / tokenizer / built-in default).
  std::vector<int64_t> prefix_ids(const CaptionOptions& opts) const;
  // Generates from `prefix` for one image (image_embeds [1, 1+P, D]); returns ids incl. prefix.
  std::vector<int64_t> generate(const torch::Tensor& image_embeds, const std::vector<int64_t>& prefix,
                                const CaptionOptions& opts, double* score = nullptr) const;

  bool has_tokenizer() const;
  const BlipConfig& config() const;
  torch::Device device() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tinv
