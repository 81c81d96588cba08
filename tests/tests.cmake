# Test registrations: one line per test executable.
tinv_test(test_safetensors unit test_safetensors.cpp)
tinv_test(test_common unit test_common.cpp)

# Parity over the shared fixtures, for the case groups implemented so far.
# tinv_parity_test(tiny-sd15 tokenizer,text_encoder,unet,vae,single_file)
tinv_test(test_attention unit test_attention.cpp)
tinv_test(test_image unit test_image.cpp)
tinv_test(test_wordpiece unit test_wordpiece.cpp)
tinv_test(test_blip unit test_blip.cpp)
tinv_parity_test(tiny-blip blip)
