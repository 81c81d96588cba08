# Benchmarks: tinv_bench(<name> <sources...>)
tinv_bench(bench_vae bench_vae.cpp)
