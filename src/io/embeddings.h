// Textual-inversion embedding files: every format users have, and the ones the tools load.
//
//   auto embs = tinv::load_embeddings("cat-toy.pt", /*expected_width=*/768);
//   // embs[0].trigger == "cat-toy", embs[0].vectors: [n, 768] float32
//   tinv::save_embedding("cat-toy.safetensors", tinv::EmbeddingFormat::Diffusers, "<cat-toy>", v);
//
// Formats (docs/FORMATS.md, "Embedding files"), told apart by content, not by extension:
//   diffusers  safetensors {trigger: [n,d] or [d]} (several triggers possible), or the old
//              learned_embeds.bin torch pickle {trigger: [d] or [n,d]}
//   a1111      torch .pt {"string_to_token": {"*": 265}, "string_to_param": {"*": [n,d]},
//              "name", "step", "sd_checkpoint", "sd_checkpoint_name"}; trigger = file stem
//              (string_to_param may be a dict or an nn.ParameterDict)
//   kohya      safetensors {"emb_params": [n,d]} (also written by A1111); trigger = file stem
//   sdxl       safetensors {"clip_l": [n,h1], "clip_g": [n,h2]} (AUTOMATIC1111, ComfyUI, kohya
//              SDXL); trigger = file stem. clip_l holds the rows of text_encoder (CLIP-L),
//              clip_g those of text_encoder_2 (OpenCLIP bigG).
//   diffusers SDXL pair: two diffusers files for load_textual_inversion, one per encoder:
//              `X.safetensors` {trigger: [n,h1]} and `X_2.safetensors` {trigger: [n,h2]}
//              (diffusers' textual_inversion_sdxl.py names them learned_embeds[_2]); reading
//              `X.safetensors` on an SDXL model picks up `X_2.safetensors` beside it, and a
//              folder holding learned_embeds.safetensors + learned_embeds_2.safetensors reads too.
// Every problem is a one-line tinv::Error naming the file: empty or truncated files, unknown
// formats, a .pt without string_to_param, tensors that are not [n,d]/[d], non-float dtypes,
// NaN/inf values, zero vectors, an SDXL file with one of clip_l/clip_g missing or with different
// row counts, and (when expected_width > 0) a width other than the text encoder's. The family
// must match the model's: expected_width_2 > 0 (an SDXL model) refuses SD1/SD2 files, and
// expected_width > 0 with expected_width_2 == 0 (SD1/SD2) refuses SDXL files.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tinv {

struct Embedding {
  std::string trigger;                          // the word the prompt uses
  torch::Tensor vectors;                        // [n, d] float32 CPU, contiguous, finite (SDXL: clip_l)
  std::map<std::string, std::string> metadata;  // safetensors __metadata__ / A1111 scalars
  std::string format;                           // "diffusers" | "a1111" | "kohya" | "sdxl" | "diffusers_pair"
  torch::Tensor vectors_2{};                    // SDXL only: [n, d2] clip_g rows; else undefined
  bool is_xl() const { return vectors_2.defined(); }
};

// Reads every embedding in `path` (see the formats above). expected_width > 0 checks d
// (SDXL: h1, the clip_l width); expected_width_2 > 0 says the model is SDXL and checks h2.
std::vector<Embedding> load_embeddings(const std::string& path, int64_t expected_width = 0,
                                       int64_t expected_width_2 = 0);

enum class EmbeddingFormat { Diffusers, A1111, Kohya };

// Writes an SDXL embedding {"clip_l": [n,h1], "clip_g": [n,h2]} fp32 safetensors atomically.
// Both tensors must be defined, floating, finite, with the same n (else tinv::Error naming
// the file: a file with one of the two missing is never written).
void save_sdxl_embedding(const std::string& path, const torch::Tensor& clip_l, const torch::Tensor& clip_g,
                         const std::map<std::string, std::string>& metadata = {});
// Writes the diffusers pair `path` {trigger: clip_l} and `pair_path(path)` {trigger: clip_g}
// (both checked before either is written).
void save_diffusers_pair(const std::string& path, const std::string& trigger, const torch::Tensor& clip_l,
                         const torch::Tensor& clip_g, const std::map<std::string, std::string>& metadata = {});
// "dir/x.safetensors" -> "dir/x_2.safetensors": the text_encoder_2 file of a diffusers pair.
std::string pair_path(const std::string& path);

// Writes one trigger's vectors ([n, d] or [d], floating, finite) atomically:
//   Diffusers: safetensors {trigger: [n,d] fp32}, `metadata` in the header;
//   A1111:     torch .pt as above (name = trigger; metadata "step" (an integer),
//              "sd_checkpoint", "sd_checkpoint_name" fill those fields, other keys are stored
//              as extra string entries). A1111 takes the trigger from the file stem, so name
//              the file after the trigger;
//   Kohya:     safetensors {"emb_params": [n,d] fp32}, `metadata` in the header.
void save_embedding(const std::string& path, EmbeddingFormat format, const std::string& trigger,
                    const torch::Tensor& vectors, const std::map<std::string, std::string>& metadata = {});

// "diffusers" | "a1111" | "kohya" (case-insensitive); anything else throws tinv::Error.
EmbeddingFormat parse_embedding_format(const std::string& name);
const char* embedding_format_name(EmbeddingFormat format);

}  // namespace tinv
