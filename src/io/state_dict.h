// Strict loading of a StateDict into a torch::nn::Module (libtorch has no load_state_dict).
#pragma once
#include <torch/nn/module.h>

#include "io/safetensors.h"

namespace tinv {

// Copies every parameter and buffer of `module` from `sd` (converting dtype, moving device).
// Strict: a missing key, an unexpected key, or a shape mismatch throws tinv::Error naming the
// key(s), both shapes and `source`. Keys listed in `ignore_prefixes` are skipped if unexpected.
void load_state_dict(torch::nn::Module& module, const StateDict& sd, const std::string& source,
                     const std::vector<std::string>& ignore_prefixes = {});

// Keys of `sd` starting with `prefix`, with the prefix removed.
StateDict strip_prefix(const StateDict& sd, const std::string& prefix);

// Number of parameters of a module.
int64_t count_parameters(const torch::nn::Module& module);

// Marks every parameter as not requiring grad (frozen model).
void freeze(torch::nn::Module& module);

}  // namespace tinv
