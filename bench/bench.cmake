# Benchmarks: tinv_bench(<name> <sources...>)
tinv_bench(bench_text_encoder bench_text_encoder.cpp)
tinv_bench(bench_vae bench_vae.cpp)
tinv_bench(bench_generate bench_generate.cpp)
