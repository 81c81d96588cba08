// The models bundled with tinv: the small "world" Stable Diffusion and BLIP models trained on
// the procedural world of src/world/world.h, and the concept images used by `tinv demo`.
//
//   std::string sd   = tinv::default_model_dir("world-sd");    // diffusers folder (64x64)
//   std::string blip = tinv::default_model_dir("world-blip");  // BLIP folder
//   std::string pngs = tinv::default_model_dir("concepts");    // <concept-name>.png files
//
// A bundled model `name` is looked for, in this order, at
//   1. $TINV_MODELS_DIR/<name>                 (when the variable is set and not empty)
//   2. <folder of the running executable>/../models/<name>   (build/tinv -> models/<name>;
//      an installed bin/tinv -> models/<name> next to bin/)
//   3. <source tree>/models/<name>             (TINV_SOURCE_MODELS_DIR, set by CMake)
// and the first existing folder wins. `tinv invert`, `generate`, `caption` and `demo` use these
// when --model / --captioner are not given.
#pragma once
#include <string>
#include <vector>

namespace tinv {

// Absolute path of the running executable (/proc/self/exe); empty when it cannot be read.
std::string executable_path();

// The folders looked at for bundled model `name`, in resolution order (existing or not).
// Throws tinv::Error for an empty name or one containing '/' or "..".
std::vector<std::string> default_model_candidates(const std::string& name);

// The first existing folder of default_model_candidates(name). Throws tinv::Error naming the
// model and every folder tried when none exists (and saying how to point tinv at one).
std::string default_model_dir(const std::string& name);

}  // namespace tinv
