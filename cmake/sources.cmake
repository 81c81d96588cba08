# Source lists, by folder (explicit, no globbing).
set(TINV_SOURCES
  src/common/blas.cpp
  src/common/crc32.cpp
  src/common/device.cpp
  src/common/image.cpp
  src/common/fs.cpp
  src/common/memory.cpp
  src/common/progress.cpp
  src/common/threads.cpp
  src/models/convert_text.cpp
  src/models/convert_unet.cpp
  src/models/convert_vae.cpp
  src/io/image_write.cpp
  src/io/image.cpp
  src/io/image_tensor.cpp
  src/io/json_config.cpp
  src/io/safetensors.cpp
  src/io/checkpoint.cpp
  src/io/state_dict.cpp
  src/io/torch_archive.cpp
  src/io/pickle.cpp
  src/io/torch_save.cpp
  src/io/embeddings.cpp
  src/inversion/image_input.cpp
  src/apps/invert.cpp
  src/inversion/lr_schedule.cpp
  src/inversion/method.cpp
  src/inversion/optimizer.cpp
  src/io/plot.cpp
  src/inversion/templates.cpp
  src/inversion/trainer.cpp
  src/nn/attention_ops.cpp
  src/models/blip.cpp
  src/models/stable_diffusion.cpp
  src/models/unet.cpp
  src/models/unet_blocks.cpp
  src/models/vae.cpp
  src/pipelines/caption.cpp
  src/pipelines/generate.cpp
  src/schedulers/ddim.cpp
  src/schedulers/dpmpp_2m.cpp
  src/schedulers/euler.cpp
  src/schedulers/euler_ancestral.cpp
  src/schedulers/noise_schedule.cpp
  src/schedulers/pndm.cpp
  src/schedulers/sampler.cpp
  src/schedulers/scheduler_config.cpp
  src/text/clip_text_model.cpp
  src/text/clip_tokenizer.cpp
  src/text/extra_tokens.cpp
  src/text/sdxl_text.cpp
  src/text/unicode.cpp
  src/text/wordpiece_tokenizer.cpp
  src/world/bpe_trainer.cpp
  src/world/concepts.cpp
  src/world/render.cpp
  src/apps/world_train.cpp
  src/world/world.cpp
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
  src/parity/parity_sdxl.cpp
  src/parity/parity_sdxl_pipeline.cpp
  src/apps/world_eval.cpp
  src/world/judge.cpp
  src/common/default_models.cpp
  src/io/html_report.cpp
  src/apps/demo.cpp
  src/apps/study.cpp
  src/apps/study_report.cpp
)

set(TINV_CLI_SOURCES
  src/cli/main.cpp
  src/cli/cmd_parity.cpp
  src/cli/cmd_info.cpp
  src/cli/cmd_caption.cpp
  src/cli/cmd_world.cpp
  src/cli/cmd_generate.cpp
  src/cli/cmd_invert.cpp
  src/cli/cmd_world_eval.cpp
  src/cli/cmd_demo.cpp
  src/cli/cmd_study.cpp
)

# The world's pixels must be the same on every machine: no fused multiply-add contraction.
set_source_files_properties(src/world/render.cpp src/world/concepts.cpp src/world/world.cpp
                            PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")

# Bundled models (models/world-sd, models/world-blip, models/concepts) are found in the source
# tree when neither TINV_MODELS_DIR nor <executable>/../models has them.
set_source_files_properties(src/common/default_models.cpp
                            PROPERTIES COMPILE_DEFINITIONS "TINV_SOURCE_MODELS_DIR=\"${CMAKE_SOURCE_DIR}/models\"")
