// tinv.h: the tinv library in one header. Textual inversion with captioning initialisation on
// Stable Diffusion (SD 1.x, 2.x, SDXL): caption one image, learn placeholder tokens initialised
// from the caption's tokens, and use them in new prompts.
//
// This header needs nothing but the C++17 standard library: embed tinv without libtorch's
// headers. Link the `tinv_api` CMake target (it brings libtorch's libraries along).
//
// Usage:
//
//   #include "tinv/tinv.h"
//
//   // 1. Caption the concept image (BLIP in the HF layout; the bundled one when path is empty).
//   auto captioner = tinv::api::load_captioner({});
//   tinv::api::RgbImage img = tinv::api::read_image("my_toy.png");
//   std::string caption = tinv::api::caption(*captioner, img);    // "a red toy on a table"
//
//   // 2. Learn it: every caption token becomes a placeholder <toy_0> ... <toy_n>, initialised
//   //    from that token's embedding; 100 steps of the latent-diffusion loss.
//   tinv::api::InvertParams ip;
//   ip.model = "models/sd15";  ip.images = {"my_toy.png"};  ip.caption = caption;
//   ip.name = "toy";  ip.out = "toy.safetensors";
//   tinv::api::InvertOutput learned = tinv::api::invert(ip);   // writes toy.safetensors
//
//   // 3. Use the trigger <toy> in new prompts.
//   auto model = tinv::api::load_model({"models/sd15"});
//   tinv::api::GenerateParams gp;
//   gp.prompt = "a photo of <toy> on the beach";  gp.embeddings = learned.files;  gp.seed = 1;
//   tinv::api::GenerateOutput out = tinv::api::generate(*model, gp);
//   tinv::api::write_png("beach.png", out.images[0], out.parameters[0]);
//
// Errors: every function throws std::runtime_error (tinv's Error) whose message is one line
// naming the file or the field at fault ("--steps: must be >= 1, got 0", "cat.png: truncated
// PNG"). Nothing is left half-written: files are written to a temporary name and renamed.
//
// Threads: libtorch's intra-op pool; set_threads(n) before the first call (0: OMP_NUM_THREADS
// when set, else one per physical core; libtorch 1.13's own default is half the CPUs on x86-64).
// Devices: Device{} is auto (CUDA when this build of tinv and the machine have one, else the
// CPU); Device::cpu(), Device::cuda() (the current GPU), Device::cuda(n). Dtypes: Dtype::kFp32,
// kBf16, kFp16 (fp16 on CUDA only).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tinv::api {

// tinv's version and the libtorch it was built with, e.g. "tinv 0.1.0 (libtorch 1.13.0)".
std::string version();

// Sets libtorch's intra-op thread count (n >= 1), or leaves the default (n == 0).
void set_threads(int n);

// Training attention's memory against speed (libtorch 1.13, and bf16 on the CPU; libtorch 2.x
// runs the fused kernel otherwise): up to `bytes` of attention probabilities are kept for the
// backward (faster), the rest recomputed there. -1 (the default): from the memory available at
// the first training step, less max(2 GiB, a quarter of it); 0: recompute every layer.
void set_attention_store(int64_t bytes);

// ---- Images -------------------------------------------------------------------------------

// 8-bit RGB pixels, row-major and interleaved: rgb[(y * width + x) * 3 + c].
struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// Decodes PNG, JPEG (EXIF orientation applied), WebP, TIFF, BMP, GIF, TGA, PSD, PNM or HDR into
// 8-bit RGB (alpha composited over white). The same decoder the trainer and the captioner use.
RgbImage read_image(const std::string& path);

// Writes a PNG atomically; a non-empty `parameters` goes into a "parameters" text chunk (the
// AUTOMATIC1111 convention, which generate() fills in).
void write_png(const std::string& path, const RgbImage& image, const std::string& parameters = "");

// ---- Devices and dtypes -------------------------------------------------------------------

// Where the models run. A CUDA device that this build or the machine does not have is an error
// of the call that loads the model ("--device: CUDA was requested but ...").
struct Device {
  enum class Kind { kAuto, kCpu, kCuda };
  Kind kind = Kind::kAuto;  // kAuto: CUDA when available, else the CPU
  int index = -1;           // kCuda: the GPU's index; -1: the current GPU
  static Device cpu() { return {Kind::kCpu, -1}; }
  static Device cuda(int index = -1) { return {Kind::kCuda, index}; }
};

// The weights' and activations' compute dtype.
enum class Dtype { kFp32, kBf16, kFp16 /* CUDA only */ };

// ---- Models -------------------------------------------------------------------------------

struct ModelParams {
  std::string path;  // diffusers folder or single-file .safetensors; "": bundled world-sd
  Device device;     // auto
  Dtype dtype = Dtype::kFp32;
};

// A loaded Stable Diffusion (tokenizer(s), text encoder(s), UNet, VAE, scheduler).
struct Model;

std::shared_ptr<Model> load_model(const ModelParams& params);

// "sd1", "sd2" or "sdxl".
std::string model_family(const Model& model);

// ---- Captioning ---------------------------------------------------------------------------

struct CaptionerParams {
  std::string path;  // BLIP folder (HF layout, with vocab.txt); "": bundled world-blip
  Device device;     // auto
};

struct Captioner;

std::shared_ptr<Captioner> load_captioner(const CaptionerParams& params);

struct CaptionParams {
  std::string prompt = "a picture of";  // conditional captioning prefix; "" for unconditional
  int beams = 3;                        // 1: greedy
  int max_length = 30;                  // tokens, the prompt included
  int min_length = 10;
};

// The caption without the prompt, e.g. "a red toy on a table".
std::string caption(const Captioner& captioner, const RgbImage& image, const CaptionParams& params = {});

// ---- Textual inversion --------------------------------------------------------------------

// What the placeholder rows start from: kCaption (the caption's tokens, one row each), kClass
// (class_name's tokens), kToken (num_vectors copies of init_token).
enum class InitMode { kCaption, kClass, kToken };

// The embedding files invert() writes: diffusers safetensors, A1111 .pt, kohya emb_params
// safetensors, or kAll (the three). SDXL models always write the clip_l/clip_g safetensors;
// kDiffusers and kAll add the diffusers pair (<stem>.diffusers/).
enum class EmbeddingFormat { kDiffusers, kA1111, kKohya, kAll };

struct InvertParams {
  std::string model;                // diffusers folder or single file; "": bundled world-sd
  std::vector<std::string> images;  // files or folders (one image is enough)
  InitMode init = InitMode::kCaption;
  std::string caption;           // init caption: its tokens become the placeholders;
                                 // "": the captioner writes it
  std::string captioner;         // BLIP folder used when caption is ""; "": bundled world-blip
  std::string class_name;        // init class: the words that initialise the rows
  std::string init_token = "*";  // init token: one vocabulary token...
  int num_vectors = 1;           // ...copied into this many rows
  std::string name = "concept";  // placeholders <name_0> ...; the trigger is <name>
  int steps = 100;
  double lr = 5e-3;
  int batch = 1;
  int resolution = 0;  // training resolution; 0: the model's
  uint64_t seed = 0;
  std::string out;  // embedding file; "": <name>.safetensors (<name>.pt for kA1111)
  EmbeddingFormat format = EmbeddingFormat::kDiffusers;
  Device device;  // auto
  Dtype dtype = Dtype::kFp32;
  bool progress = false;  // a progress bar on stderr
};

struct InvertOutput {
  std::string trigger;             // "<name>": use it in prompts
  std::string caption;             // the initialisation text used
  std::vector<std::string> files;  // every file written (the embedding first)
  int steps_done = 0;
  std::vector<std::string> notes;  // warnings (e.g. a crop dropped much of an image)
};

// Runs the whole job: load, caption (if needed), initialise, train, write the embedding.
InvertOutput invert(const InvertParams& params);

// ---- Generation ---------------------------------------------------------------------------

struct GenerateParams {
  std::string prompt;  // may hold triggers of the loaded embeddings
  std::string negative_prompt;
  std::vector<std::string> embeddings;  // embedding files (diffusers, A1111 .pt, kohya, SDXL pairs)
  std::string sampler = "default";      // default (the model's) | ddim | euler | euler_a | dpmpp_2m | pndm
  int steps = 30;
  double cfg = 7.5;
  uint64_t seed = 0;          // image i uses seed + i
  int width = 0, height = 0;  // 0: the model's default size
  int batch = 1;
  bool progress = false;
};

struct GenerateOutput {
  std::vector<RgbImage> images;
  std::vector<std::string> parameters;  // A1111 "parameters" text of each image
};

GenerateOutput generate(Model& model, const GenerateParams& params);

}  // namespace tinv::api
