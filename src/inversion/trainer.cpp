// The trainer core: InversionTrainer, the step sources and run_steps. The `tinv invert`
// driver is in invert.cpp.
#include "inversion/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "inversion/templates.h"
#include "models/stable_diffusion.h"
#include "text/sdxl_text.h"

namespace tinv {

uint64_t derive_seed(uint64_t seed, uint64_t index) {
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  return mix(seed ^ mix(index));
}

RandomStepSource::RandomStepSource(torch::Tensor latent_cache, int64_t num_templates, int64_t batch,
                                   int64_t num_train_timesteps, uint64_t seed, int64_t t_min, int64_t t_max)
    : cache_(std::move(latent_cache)),
      num_templates_(num_templates),
      batch_(batch),
      t_min_(t_min),
      t_max_(t_max < 0 ? num_train_timesteps - 1 : t_max),
      seed_(seed) {
  TINV_CHECK(cache_.dim() == 4 && cache_.size(0) >= 1, "latent cache", "expected [M, C, h, w], got ", cache_.sizes());
  TINV_CHECK(num_templates_ >= 1 && batch_ >= 1 && num_train_timesteps >= 1, "step source",
             "templates, batch and timesteps must be >= 1");
  TINV_CHECK(t_min_ >= 0 && t_min_ <= t_max_ && t_max_ < num_train_timesteps, "step source", "timestep range [", t_min_,
             ", ", t_max_, "] is not inside [0, ", num_train_timesteps - 1, "]");
}

StepInputs fixed_eval_inputs(const torch::Tensor& cache, int64_t pairs, int64_t num_timesteps, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(derive_seed(seed, 0xF1CEDull << 32));
  StepInputs in;
  std::vector<int64_t> ts;
  for (int64_t i = 0; i < pairs; ++i) ts.push_back((2 * i + 1) * num_timesteps / (2 * pairs));
  in.timesteps = torch::tensor(ts, torch::kInt64);
  in.noise = torch::randn({pairs, cache.size(1), cache.size(2), cache.size(3)}, gen);
  in.latents = cache.slice(0, 0, 1).expand({pairs, -1, -1, -1}).contiguous();
  in.template_index.assign(static_cast<size_t>(pairs), 0);
  return in;
}

StepInputs RandomStepSource::draw(int64_t step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(derive_seed(seed_, static_cast<uint64_t>(step)));
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto which = torch::randint(0, cache_.size(0), {batch_}, gen, i64);
  auto tmpl = torch::randint(0, num_templates_, {batch_}, gen, i64);
  StepInputs in;
  in.timesteps = torch::randint(t_min_, t_max_ + 1, {batch_}, gen, i64);  // [0, N) by default
  in.noise = torch::randn({batch_, cache_.size(1), cache_.size(2), cache_.size(3)}, gen);
  in.latents = cache_.index_select(0, which.to(cache_.device()));
  for (int64_t b = 0; b < batch_; ++b) in.template_index.push_back(tmpl[b].item<int64_t>());
  return in;
}

namespace {

// Checks the tokenizer(s) against the text encoder(s); returns the rows' width (h1, or h1 + h2).
// Reshapes the SDXL time_ids to [1, 6].
int64_t check_text_side(const ClipTokenizer& tokenizer, ClipTextModel& text_encoder,
                        std::optional<SecondTextEncoder>& second, const std::string& where) {
  TINV_CHECK(tokenizer.base_vocab_size() == text_encoder->config().vocab_size, where, "the tokenizer has ",
             tokenizer.base_vocab_size(), " tokens but the text encoder ", text_encoder->config().vocab_size);
  TINV_CHECK(tokenizer.vocab_size() == tokenizer.base_vocab_size(), where, "the tokenizer already has added tokens");
  int64_t width = text_encoder->config().hidden_size;
  if (second) {
    auto& s2 = *second;
    TINV_CHECK(s2.tokenizer.base_vocab_size() == s2.text_encoder->config().vocab_size &&
                   s2.tokenizer.base_vocab_size() == tokenizer.base_vocab_size(),
               where, "tokenizer_2 has ", s2.tokenizer.base_vocab_size(), " tokens, tokenizer ",
               tokenizer.base_vocab_size(), ", text_encoder_2 ", s2.text_encoder->config().vocab_size);
    TINV_CHECK(s2.tokenizer.vocab_size() == s2.tokenizer.base_vocab_size(), where,
               "tokenizer_2 already has added tokens");
    TINV_CHECK(s2.time_ids.defined() && s2.time_ids.numel() == 6, where, "SDXL needs 6 time_ids");
    s2.time_ids = s2.time_ids.to(torch::kFloat32).reshape({1, 6});
    width += s2.text_encoder->config().hidden_size;
  }
  return width;
}

// SphereAdam when the options fix the norms (rescaling `rows` onto the spheres), else AdamW.
std::unique_ptr<RowOptimizer> make_optimizer(const torch::Tensor& rows, const TrainerOptions& options,
                                             const std::vector<int64_t>& part_widths) {
  if (!options.sphere_norms.defined()) return std::make_unique<AdamW>(rows, options.adam);
  // SDXL: each encoder's part on its own sphere when the norms are [n, 2].
  return std::make_unique<SphereAdam>(rows, options.sphere_norms, options.sphere,
                                      options.sphere_norms.dim() == 2 ? part_widths : std::vector<int64_t>{});
}

}  // namespace

InversionTrainer::InversionTrainer(const ClipTokenizer& tokenizer, ClipTextModel text_encoder,
                                   UNet2DConditionModel unet, const SchedulerConfig& scheduler,
                                   const std::vector<std::string>& placeholder_tokens, const torch::Tensor& init_rows,
                                   std::vector<std::string> templates, const TrainerOptions& options,
                                   std::optional<SecondTextEncoder> second)
    : tokenizer_(tokenizer),
      second_(std::move(second)),
      text_encoder_(std::move(text_encoder)),
      unet_(std::move(unet)),
      schedule_(scheduler),
      prediction_type_(scheduler.prediction_type),
      templates_(std::move(templates)),
      options_(options) {
  const std::string where = "textual inversion";
  const int64_t n = static_cast<int64_t>(placeholder_tokens.size());
  TINV_CHECK(n >= 1, where, "no placeholder tokens");
  TINV_CHECK(!templates_.empty(), where, "no prompt templates");
  width_1_ = text_encoder_->config().hidden_size;
  const int64_t width = check_text_side(tokenizer_, text_encoder_, second_, where);
  TINV_CHECK(init_rows.dim() == 2 && init_rows.size(0) == n && init_rows.size(1) == width, where,
             "initial rows must be [", n, ", ", width, "], got ", init_rows.sizes());
  for (const auto& tok : placeholder_tokens) {
    if (tokenizer_.is_vocab_word(tok))
      throw Error("--name", str_cat("placeholder '", tok,
                                    "' collides with a vocabulary token; "
                                    "choose another --name"));
    int64_t id = tokenizer_.add_token(tok);
    if (second_) second_->tokenizer.add_token(tok, id);
    sentence_ += (sentence_.empty() ? "" : " ") + tok;
  }
  for (size_t i = 0; i < templates_.size(); ++i) {
    auto prompt = fill_template(templates_[i], sentence_);
    TINV_CHECK(!tokenizer_.encode(prompt).truncated && (!second_ || !second_->tokenizer.encode(prompt).truncated),
               where, "prompt '", prompt, "' is longer than ", tokenizer_.max_length(), " tokens");
  }
  auto device = text_encoder_->parameters().front().device();
  rows_ = init_rows.detach().to(device, torch::kFloat32).clone().requires_grad_(true);
  std::vector<int64_t> part_widths;  // SDXL: h1, h2
  if (second_) part_widths = {width_1_, second_->text_encoder->config().hidden_size};
  optimizer_ = make_optimizer(rows_, options_, part_widths);
  start_ = rows_.detach().clone();
}

torch::Tensor InversionTrainer::ids_of(const ClipTokenizer& tok, const std::vector<int64_t>& template_index) const {
  std::vector<torch::Tensor> rows;
  for (int64_t i : template_index) {
    TINV_CHECK(i >= 0 && i < static_cast<int64_t>(templates_.size()), "textual inversion", "template index ", i,
               " outside [0, ", templates_.size(), ")");
    rows.push_back(torch::tensor(tok.encode(fill_template(templates_[i], sentence_)).ids, torch::kInt64));
  }
  return torch::stack(rows);  // [B, 77]
}

torch::Tensor InversionTrainer::prompt_ids(const std::vector<int64_t>& template_index) const {
  return ids_of(tokenizer_, template_index);
}

torch::Tensor InversionTrainer::prompt_ids_2(const std::vector<int64_t>& template_index) const {
  TINV_CHECK(second_.has_value(), "textual inversion", "prompt_ids_2: not an SDXL trainer");
  return ids_of(second_->tokenizer, template_index);
}

torch::Tensor InversionTrainer::forward_loss(const StepInputs& in) {
  const int64_t b = static_cast<int64_t>(in.template_index.size());
  TINV_CHECK(in.latents.dim() == 4 && in.latents.size(0) == b && in.noise.sizes() == in.latents.sizes() &&
                 in.timesteps.dim() == 1 && in.timesteps.size(0) == b,
             "textual inversion", "step inputs disagree: ", b, " templates, latents ", in.latents.sizes(), ", noise ",
             in.noise.sizes(), ", timesteps ", in.timesteps.sizes());
  auto param = unet_->parameters().front();
  const auto device = param.device();
  const auto dtype = param.scalar_type();
  auto ids = prompt_ids(in.template_index).to(device);    // [B, 77]
  auto latents = in.latents.to(device, torch::kFloat32);  // [B, C, h, w]
  auto noise = in.noise.to(device, torch::kFloat32);
  auto t = in.timesteps.to(device, torch::kInt64);  // [B]
  auto noisy = schedule_.add_noise(latents, noise, t);
  torch::Tensor pred;
  if (second_) {  // SDXL: rows [:, :h1] -> text_encoder, [:, h1:] -> text_encoder_2
    auto rows = rows_.to(dtype);
    auto ids_2 = prompt_ids_2(in.template_index).to(device);
    auto s = encode_sdxl_text(text_encoder_, second_->text_encoder, ids, ids_2, rows.narrow(1, 0, width_1_),
                              rows.narrow(1, width_1_, rows.size(1) - width_1_));
    AddedConditions added{s.pooled, second_->time_ids.to(device).expand({b, 6})};
    pred = unet_->forward(noisy.to(dtype), t, s.prompt_embeds, added);  // [B, C, h, w]
  } else {
    auto states = text_encoder_->forward(ids, rows_.to(dtype));  // [B, 77, D]
    pred = unet_->forward(noisy.to(dtype), t, states);           // [B, C, h, w]
  }
  auto target = schedule_.target(latents, noise, t, prediction_type_);
  return torch::mse_loss(pred.to(torch::kFloat32), target.to(torch::kFloat32));
}

StepResult InversionTrainer::step(const StepInputs& in) {
  StepResult r;
  r.lr = options_.schedule.at(steps_done());
  auto loss = forward_loss(in);
  r.grad = torch::autograd::grad({loss}, {rows_})[0].detach();  // [n, d]
  r.loss = loss.item<double>();
  r.finite = std::isfinite(r.loss) && r.grad.isfinite().all().item<bool>();
  if (!r.finite) return r;
  auto g = r.grad;
  if (options_.reg_init > 0) g = g + (2 * options_.reg_init) * (rows_.detach() - start_);  // d/drows
  if (options_.max_grad_norm > 0) {  // torch.nn.utils.clip_grad_norm_
    double norm = g.norm().item<double>();
    double coef = options_.max_grad_norm / (norm + 1e-6);
    if (coef < 1) g = g * coef;
  }
  optimizer_->step(g, r.lr);
  return r;
}

double InversionTrainer::loss(const StepInputs& in) {
  torch::NoGradGuard no_grad;
  return forward_loss(in).item<double>();
}

torch::Tensor InversionTrainer::embeddings() const { return rows_.detach().to(torch::kCPU, torch::kFloat32).clone(); }

void InversionTrainer::restore(const torch::Tensor& rows, const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq,
                               int64_t steps_done) {
  TINV_CHECK(rows.sizes() == rows_.sizes(), "checkpoint", "embeddings ", rows.sizes(),
             " do not match the placeholders ", rows_.sizes());
  {
    torch::NoGradGuard no_grad;
    rows_.copy_(rows);
  }
  optimizer_->load_state(exp_avg.to(rows_.device()), exp_avg_sq.to(rows_.device()), steps_done);
}

bool run_steps(InversionTrainer& trainer, StepSource& source, int64_t end,
               const std::function<void(int64_t, const StepResult&)>& on_step, const std::function<bool()>& stop) {
  for (int64_t k = trainer.steps_done(); k < end; ++k) {
    StepResult r = trainer.step(source.draw(k));
    if (on_step) on_step(k, r);
    if (!r.finite) return false;
    if (stop && stop()) break;
  }
  return true;
}

torch::Tensor model_start_rows(StableDiffusion& sd, const std::vector<int64_t>& ids, InitSpace init_space) {
  torch::Tensor rows = start_rows(sd.text_encoder, *sd.tokenizer, ids, init_space);  // [n, h1]
  if (sd.is_xl()) rows = torch::cat({rows, start_rows(sd.text_encoder_2, *sd.tokenizer_2, ids, init_space)}, 1);
  return rows;
}

std::unique_ptr<InversionTrainer> make_trainer(StableDiffusion& sd, const std::vector<std::string>& placeholders,
                                               const torch::Tensor& init_rows, std::vector<std::string> templates,
                                               const MethodOptions& method, TrainerOptions topt, int64_t res) {
  std::optional<SecondTextEncoder> second;
  if (sd.is_xl()) {  // time_ids (res, res, 0, 0, res, res): square training images, no crop
    const float r = static_cast<float>(res);
    second = SecondTextEncoder{*sd.tokenizer_2, sd.text_encoder_2, torch::tensor({r, r, 0.f, 0.f, r, r})};
  }
  apply_method(method, sd.text_encoder, init_rows, topt, sd.is_xl() ? &sd.text_encoder_2 : nullptr);
  return std::make_unique<InversionTrainer>(*sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler, placeholders,
                                            init_rows, std::move(templates), topt, second);
}

}  // namespace tinv
