# Benchmarks: tinv_bench(<name> <sources...>)
tinv_bench(bench_unet bench_unet.cpp)
