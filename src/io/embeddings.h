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
// SDXL files ({"clip_l", "clip_g"}) are refused. Every problem is a one-line tinv::Error
// naming the file: empty or truncated files, unknown formats, a .pt without string_to_param,
// tensors that are not [n,d]/[d], non-float dtypes, NaN/inf values, zero vectors, and (when
// expected_width > 0) a width other than the text encoder's.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tinv {

struct Embedding {
  std::string trigger;                          // the word the prompt uses
  torch::Tensor vectors;                        // [n, d] float32 CPU, contiguous, finite
  std::map<std::string, std::string> metadata;  // safetensors __metadata__ / A1111 scalars
  std::string format;                           // "diffusers" | "a1111" | "kohya"
};

// Reads every embedding in `path` (see the formats above). expected_width > 0 checks d.
std::vector<Embedding> load_embeddings(const std::string& path, int64_t expected_width = 0);

enum class EmbeddingFormat { Diffusers, A1111, Kohya };

// Writes one trigger's vectors ([n, d] or [d], floating, finite) atomically:
//   Diffusers: safetensors {trigger: [n,d] fp32}, `metadata` in the header;
//   A1111:     torch .pt as above (name = trigger; metadata "step" (an integer),
//              "sd_checkpoint", "sd_checkpoint_name" fill those fields, other keys are stored
//              as extra string entries). A1111 takes the trigger from the file stem, so name
//              the file after the trigger;
//   Kohya:     safetensors {"emb_params": [n,d] fp32}, `metadata` in the header.
void save_embedding(const std::string& path, EmbeddingFormat format, const std::string& trigger,
                    const torch::Tensor& vectors,
                    const std::map<std::string, std::string>& metadata = {});

// "diffusers" | "a1111" | "kohya" (case-insensitive); anything else throws tinv::Error.
EmbeddingFormat parse_embedding_format(const std::string& name);
const char* embedding_format_name(EmbeddingFormat format);

}  // namespace tinv
