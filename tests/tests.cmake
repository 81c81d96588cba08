# Test registrations: one line per test executable.
tinv_test(test_safetensors unit test_safetensors.cpp)
tinv_test(test_common unit test_common.cpp)
tinv_test(test_optimizer unit test_optimizer.cpp)
tinv_test(test_attention unit test_attention.cpp)
tinv_test(test_tokenizer unit test_tokenizer.cpp)
tinv_test(test_clip_text unit test_clip_text.cpp)
tinv_test(test_unet unit test_unet.cpp)
tinv_test(test_vae unit test_vae.cpp)
tinv_test(test_schedulers unit test_schedulers.cpp)
tinv_test(test_image_write unit test_image_write.cpp)
tinv_test(test_plot unit test_plot.cpp)
tinv_test(test_pickle unit test_pickle.cpp)
tinv_test(test_embeddings unit test_embeddings.cpp)
tinv_test(test_extra_tokens unit test_extra_tokens.cpp)
tinv_test(test_stable_diffusion unit test_stable_diffusion.cpp)
tinv_test(test_image unit test_image.cpp)
tinv_test(test_wordpiece unit test_wordpiece.cpp)
tinv_test(test_blip unit test_blip.cpp)
tinv_test_cli(test_blip)
tinv_test(test_world unit test_world.cpp)
tinv_test(test_generate unit test_generate.cpp)
tinv_test_cli(test_generate)

# Parity over the shared fixtures, one ctest per case group.
tinv_parity_test(tiny-sd15 tokenizer)
tinv_parity_test(tiny-sd15 text_encoder)
tinv_parity_test(tiny-sd15 unet)
tinv_parity_test(tiny-sd15 vae)
tinv_parity_test(tiny-sd15 scheduler)
tinv_parity_test(tiny-sd15 single_file)
tinv_parity_test(tiny-sd15 pipeline)
tinv_parity_test(tiny-blip blip)
# SD2-style v-prediction (no single-file checkpoint in this fixture).
foreach(group tokenizer text_encoder unet vae scheduler pipeline ti_train)
  tinv_parity_test(tiny-sd2v ${group})
endforeach()
# `tinv parity --device` (spawns the built tinv).
tinv_test(test_parity_cli unit test_parity_cli.cpp)
tinv_test_cli(test_parity_cli)

# SDXL (issue 16): loading, models, embedding files, generate/invert on tiny-sdxl, and its parity.
tinv_test(test_sdxl unit test_sdxl.cpp)
tinv_test_cli(test_sdxl)
foreach(group tokenizer text_encoder unet vae scheduler single_file pipeline ti_train embedding)
  tinv_parity_test(tiny-sdxl ${group})
endforeach()

# Python's torch.load must read the A1111 .pt we write (CI installs python3-torch; a missing
# torch module FAILS this test rather than skipping it).
if(EXISTS /usr/bin/python3)
  add_test(NAME python.torch_load_a1111
           COMMAND test_embeddings --gtest_filter=PythonTorchLoad.*)
  set_tests_properties(python.torch_load_a1111 PROPERTIES LABELS python
                       ENVIRONMENT "TINV_PYTHON=/usr/bin/python3;OMP_NUM_THREADS=2")
endif()

# Textual inversion (spawns the built tinv for the kill-and-resume test).
tinv_test(test_invert unit test_invert.cpp)
tinv_test_cli(test_invert)
tinv_parity_test(tiny-sd15 ti_train)
if(EXISTS /usr/bin/python3)
  add_test(NAME python.torch_load_invert
           COMMAND test_invert --gtest_filter=PythonTorchLoad.*)
  set_tests_properties(python.torch_load_invert PROPERTIES LABELS python
                       ENVIRONMENT "TINV_PYTHON=/usr/bin/python3;OMP_NUM_THREADS=2")
endif()
tinv_test(test_world_train unit test_world_train.cpp)
# bench/python_vs.sh's Python baseline (bench/python_ti_step.py, diffusers' textual_inversion.py
# step in plain PyTorch) must compute diffusers' function: text encoder, UNet, VAE encoder and the
# ti_train run of each SD fixture, at the fixtures' tolerances.
if(EXISTS /usr/bin/python3)
  foreach(fixture tiny-sd15 tiny-sd2v)
    add_test(NAME python.ti_step.${fixture}
             COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/bench/python_ti_step.py check
                     ${TINV_SHARED_DIR}/fixtures/${fixture})
    set_tests_properties(python.ti_step.${fixture} PROPERTIES LABELS python ENVIRONMENT "OMP_NUM_THREADS=2")
  endforeach()
endif()

# bf16 (issue 12): the trainer and generate at bf16 vs fp32, and every parity group of every
# fixture folder at bf16 tolerances (parity_bf16.<fixture>).
tinv_test(test_bf16 unit test_bf16.cpp)
foreach(fixture tiny-sd15 tiny-sd2v tiny-sdxl tiny-blip)
  tinv_parity_bf16_test(${fixture})
endforeach()

# `tinv world eval` (spawns the built tinv for the CLI cases).
tinv_test(test_world_eval unit test_world_eval.cpp)
tinv_test_cli(test_world_eval)
tinv_test(test_world_models models test_world_models.cpp)

# `tinv demo`, bundled-model lookup, the HTML report (spawns the built tinv for the CLI tests).
tinv_test(test_demo unit test_demo.cpp)
tinv_test_cli(test_demo)

# `tinv study` (spawns the built tinv for the CLI cases).
tinv_test(test_study unit test_study.cpp)
tinv_test_cli(test_study)
# `tinv study --quick` on the shipped world models (about 15 s on one core).
add_test(NAME study.quick_world
         COMMAND tinv study --quick --quiet --device cpu --model ${CMAKE_SOURCE_DIR}/models/world-sd
                 --captioner ${CMAKE_SOURCE_DIR}/models/world-blip --out ${CMAKE_BINARY_DIR}/study-quick)
set_tests_properties(study.quick_world PROPERTIES LABELS models ENVIRONMENT "OMP_NUM_THREADS=1;OMP_WAIT_POLICY=PASSIVE")

# The layering (docs/DEVELOPING.md): every include in src/ runs down, no circles; and the
# checker itself catches an upward include and a circle in a tree made to have them.
add_test(NAME layers COMMAND ${CMAKE_SOURCE_DIR}/scripts/check_layers.sh ${CMAKE_SOURCE_DIR}/src)
add_test(NAME layers.detects_offences COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_check_layers.sh
         ${CMAKE_SOURCE_DIR}/scripts/check_layers.sh)
set_tests_properties(layers layers.detects_offences PROPERTIES LABELS unit)

# The C++ layout (.clang-format, clang-format 14); skipped (exit 77) under another clang-format.
add_test(NAME format COMMAND ${CMAKE_SOURCE_DIR}/scripts/check_format.sh ${CMAKE_SOURCE_DIR})
add_test(NAME format.detects_offences COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_check_format.sh
         ${CMAKE_SOURCE_DIR}/scripts/check_format.sh ${CMAKE_SOURCE_DIR}/.clang-format)
set_tests_properties(format format.detects_offences PROPERTIES LABELS unit SKIP_RETURN_CODE 77)

# The public header: examples/embed.cpp, built against include/tinv/tinv.h alone, runs end to end.
add_test(NAME example.embed COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_example.sh $<TARGET_FILE:tinv_example>
         ${CMAKE_SOURCE_DIR}/models/concepts/bullseye_circle.png)
set_tests_properties(example.embed PROPERTIES LABELS unit ENVIRONMENT "OMP_NUM_THREADS=1")
