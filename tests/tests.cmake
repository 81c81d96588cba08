# Test registrations: one line per test executable.
tinv_test(test_safetensors unit test_safetensors.cpp)
tinv_test(test_common unit test_common.cpp)
tinv_test(test_attention unit test_attention.cpp)
tinv_test(test_tokenizer unit test_tokenizer.cpp)
tinv_test(test_clip_text unit test_clip_text.cpp)
tinv_test(test_unet unit test_unet.cpp)
tinv_test(test_vae unit test_vae.cpp)
tinv_test(test_schedulers unit test_schedulers.cpp)
tinv_test(test_image_write unit test_image_write.cpp)
tinv_test(test_pickle unit test_pickle.cpp)
tinv_test(test_embeddings unit test_embeddings.cpp)
tinv_test(test_extra_tokens unit test_extra_tokens.cpp)

# Parity over the shared fixtures, one ctest per case group.
tinv_parity_test(tiny-sd15 tokenizer)
tinv_parity_test(tiny-sd15 text_encoder)
tinv_parity_test(tiny-sd15 unet)
tinv_parity_test(tiny-sd15 vae)
tinv_parity_test(tiny-sd15 scheduler)

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
target_compile_definitions(test_invert PRIVATE TINV_BINARY="$<TARGET_FILE:tinv>")
add_dependencies(test_invert tinv)
tinv_parity_test(tiny-sd15 ti_train)
if(EXISTS /usr/bin/python3)
  add_test(NAME python.torch_load_invert
           COMMAND test_invert --gtest_filter=PythonTorchLoad.*)
  set_tests_properties(python.torch_load_invert PROPERTIES LABELS python
                       ENVIRONMENT "TINV_PYTHON=/usr/bin/python3;OMP_NUM_THREADS=2")
endif()
