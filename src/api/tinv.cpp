// The public header's functions (include/tinv/tinv.h), each a thin call into the layers below:
// plain structs in, library options built from them, plain structs out.
#include "tinv/tinv.h"

#include <torch/torch.h>
#include <torch/version.h>

#include "apps/invert.h"
#include "common/default_models.h"
#include "common/device.h"
#include "common/error.h"
#include "common/threads.h"
#include "io/image.h"
#include "io/image_tensor.h"
#include "io/image_write.h"
#include "models/stable_diffusion.h"
#include "nn/attention_ops.h"
#include "pipelines/caption.h"
#include "pipelines/generate.h"

namespace tinv::api {

struct Model {
  StableDiffusion sd;
};

struct Captioner {
  BlipCaptioner blip;
};

namespace {

Image to_internal(const RgbImage& im, const std::string& where) {
  TINV_CHECK(im.width > 0 && im.height > 0, where, "image is empty (", im.width, "x", im.height, ")");
  TINV_CHECK(im.rgb.size() == static_cast<size_t>(im.width) * im.height * 3, where, "image of ", im.width, "x",
             im.height, " needs ", static_cast<size_t>(im.width) * im.height * 3, " bytes of RGB, got ", im.rgb.size());
  Image out(im.width, im.height);
  out.pixels = im.rgb;
  return out;
}

RgbImage from_internal(const Image& im) { return RgbImage{im.width, im.height, im.pixels}; }

// The header's enums, each mapped onto the library's own.
DeviceChoice to_internal(const Device& d) {
  switch (d.kind) {
    case Device::Kind::kAuto: return std::nullopt;
    case Device::Kind::kCpu: return torch::Device(torch::kCPU);
    case Device::Kind::kCuda:
      TINV_CHECK(d.index >= -1, "--device", "GPU index must be >= 0 (or -1: the current one), got ", d.index);
      return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(d.index));
  }
  throw Error("--device", str_cat("unknown device kind ", static_cast<int>(d.kind)));
}

torch::ScalarType to_internal(Dtype dtype) {
  switch (dtype) {
    case Dtype::kFp32: return torch::kFloat32;
    case Dtype::kBf16: return torch::kBFloat16;
    case Dtype::kFp16: return torch::kHalf;
  }
  throw Error("--dtype", str_cat("unknown dtype ", static_cast<int>(dtype)));
}

tinv::InitMode to_internal(InitMode init) {
  switch (init) {
    case InitMode::kCaption: return tinv::InitMode::kCaption;
    case InitMode::kClass: return tinv::InitMode::kClass;
    case InitMode::kToken: return tinv::InitMode::kToken;
  }
  throw Error("--init", str_cat("unknown mode ", static_cast<int>(init)));
}

OutputFormat to_internal(EmbeddingFormat format) {
  switch (format) {
    case EmbeddingFormat::kDiffusers: return OutputFormat::kDiffusers;
    case EmbeddingFormat::kA1111: return OutputFormat::kA1111;
    case EmbeddingFormat::kKohya: return OutputFormat::kKohya;
    case EmbeddingFormat::kAll: return OutputFormat::kAll;
  }
  throw Error("--format", str_cat("unknown format ", static_cast<int>(format)));
}

}  // namespace

std::string version() { return "tinv 0.1.0 (libtorch " TORCH_VERSION ")"; }

void set_threads(int n) {
  TINV_CHECK(n >= 0, "set_threads", "thread count must be >= 0, got ", n);
  use_threads(n);
}

void set_attention_store(int64_t bytes) { ::tinv::set_attention_store(bytes); }

RgbImage read_image(const std::string& path) { return from_internal(load_image(path)); }

void write_png(const std::string& path, const RgbImage& image, const std::string& parameters) {
  TextChunks text;
  if (!parameters.empty()) text.emplace_back("parameters", parameters);
  save_png(path, to_internal(image, path), text);
}

std::shared_ptr<Model> load_model(const ModelParams& params) {
  SdLoadOptions lo;
  lo.device = resolve_device(to_internal(params.device));
  lo.dtype = to_internal(params.dtype);
  check_dtype(lo.dtype, lo.device);
  const std::string path = params.path.empty() ? default_model_dir("world-sd") : params.path;
  return std::make_shared<Model>(Model{load_stable_diffusion(path, lo)});
}

std::string model_family(const Model& model) { return model.sd.family; }

std::shared_ptr<Captioner> load_captioner(const CaptionerParams& params) {
  const std::string path = params.path.empty() ? default_model_dir("world-blip") : params.path;
  return std::make_shared<Captioner>(Captioner{BlipCaptioner::load(path, resolve_device(to_internal(params.device)))});
}

std::string caption(const Captioner& captioner, const RgbImage& image, const CaptionParams& params) {
  CaptionOptions o;
  o.prompt = params.prompt;
  o.use_prompt = !params.prompt.empty();
  o.beams = params.beams;
  o.max_length = params.max_length;
  o.min_length = params.min_length;
  o.validate();
  return captioner.blip.caption(to_internal(image, "caption"), o).text;
}

InvertOutput invert(const InvertParams& p) {
  InvertOptions o;
  o.model = p.model.empty() ? default_model_dir("world-sd") : p.model;
  o.images.assign(p.images.begin(), p.images.end());
  o.init = to_internal(p.init);
  o.caption = p.caption;
  o.captioner = p.captioner;
  if (o.init == tinv::InitMode::kCaption && o.caption.empty() && o.captioner.empty())
    o.captioner = default_model_dir("world-blip");
  o.class_name = p.class_name;
  o.init_token = p.init_token;
  o.num_vectors = p.num_vectors;
  o.name = p.name;
  o.steps = p.steps;
  o.lr = p.lr;
  o.batch = p.batch;
  o.resolution = p.resolution;
  o.seed = p.seed;
  o.out = p.out;
  o.format = to_internal(p.format);
  o.device = to_internal(p.device);
  o.dtype = to_internal(p.dtype);
  o.progress = p.progress;
  InvertResult r = run_inversion(o);
  InvertOutput out;
  out.trigger = "<" + p.name + ">";
  out.caption = r.caption;
  out.files = r.files;
  out.steps_done = static_cast<int>(r.steps_done);
  out.notes = r.notes;
  return out;
}

GenerateOutput generate(Model& model, const GenerateParams& p) {
  GenerateOptions o;
  o.prompt = p.prompt;
  o.negative_prompt = p.negative_prompt;
  o.sampler = p.sampler;
  o.steps = p.steps;
  o.cfg = p.cfg;
  o.seed = p.seed;
  o.width = p.width;
  o.height = p.height;
  o.batch = p.batch;
  o.progress = p.progress;
  validate(o);
  ExtraTokens extra = add_embeddings(model.sd, p.embeddings);
  GenerateResult r = tinv::generate(model.sd, extra, o);
  GenerateOutput out;
  for (int64_t i = 0; i < r.images.size(0); ++i) out.images.push_back(from_internal(unit_tensor_to_image(r.images[i])));
  out.parameters = r.image_parameters;
  return out;
}

}  // namespace tinv::api
