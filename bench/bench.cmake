# Benchmarks: tinv_bench(<name> <sources...>)
tinv_bench(bench_caption bench_caption.cpp)
