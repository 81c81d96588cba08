# Source lists, by folder (explicit, no globbing).
set(TINV_SOURCES
  src/common/device.cpp
  src/common/memory.cpp
  src/common/fs.cpp
  src/common/progress.cpp
  src/io/json_config.cpp
  src/io/safetensors.cpp
  src/io/state_dict.cpp
  src/models/attention_ops.cpp
  src/parity/parity.cpp
  src/parity/parity_tokenizer.cpp
  src/parity/parity_text_encoder.cpp
  src/parity/parity_unet.cpp
  src/parity/parity_vae.cpp
  src/parity/parity_single_file.cpp
  src/parity/parity_scheduler.cpp
  src/parity/parity_pipeline.cpp
  src/parity/parity_ti_train.cpp
  src/parity/parity_blip.cpp
)

set(TINV_CLI_SOURCES
  src/cli/main.cpp
  src/cli/cmd_parity.cpp
  src/cli/cmd_info.cpp
)
