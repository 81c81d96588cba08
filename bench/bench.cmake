# Benchmarks: tinv_bench(<name> <sources...>)
