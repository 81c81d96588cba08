// Config reading, strict state-dict loading, file helpers, device and dtype choices.
#include <sched.h>
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>
#include <vector>

#include "common/blas.h"
#include "common/device.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/memory.h"
#include "common/progress.h"
#include "common/strings.h"
#include "common/threads.h"
#include "io/json_config.h"
#include "io/state_dict.h"
#include "test_util.h"

namespace tinv {
namespace {

TEST(JsonConfig, FieldsAndErrors) {
  auto cfg = JsonConfig::parse(R"({"a": 3, "b": [1,2], "n": null, "s": "x"})", "cfg.json");
  EXPECT_EQ(cfg.require<int>("a"), 3);
  EXPECT_EQ(cfg.get<int>("n", 7), 7);
  EXPECT_EQ(cfg.get<int>("missing", 5), 5);
  EXPECT_EQ(cfg.require<std::vector<int>>("b").size(), 2u);
  EXPECT_TINV_ERROR(cfg.require<int>("zz"), "cfg.json: missing field 'zz'");
  EXPECT_TINV_ERROR(cfg.require<int>("s"), "field 's' has the wrong type");
  EXPECT_TINV_ERROR(JsonConfig::parse("{oops", "bad.json"), "bad.json: invalid JSON");
  EXPECT_TINV_ERROR(JsonConfig::parse("[]", "arr.json"), "expected a JSON object");
  EXPECT_TINV_ERROR(JsonConfig::parse("{\"a\": \"\xff\"}", "utf.json"), "utf.json: invalid JSON");
  EXPECT_TINV_ERROR(JsonConfig::load("/nonexistent/config.json"), "/nonexistent/config.json");
}

struct Tiny : torch::nn::Module {
  Tiny() {
    lin = register_module("lin", torch::nn::Linear(3, 2));
    buf = register_buffer("buf", torch::zeros({4}));
  }
  torch::nn::Linear lin{nullptr};
  torch::Tensor buf;
};

TEST(StateDict, StrictLoading) {
  Tiny m;
  StateDict sd{
      {"lin.weight", torch::ones({2, 3})}, {"lin.bias", torch::ones({2})}, {"buf", torch::ones({4}).to(torch::kHalf)}};
  load_state_dict(m, sd, "m.safetensors");
  EXPECT_TRUE(torch::equal(m.lin->weight, torch::ones({2, 3})));
  EXPECT_EQ(m.buf.scalar_type(), torch::kFloat);

  auto missing = sd;
  missing.erase("lin.bias");
  EXPECT_TINV_ERROR(load_state_dict(m, missing, "m.safetensors"), "missing tensor(s): lin.bias");
  auto extra = sd;
  extra["zzz"] = torch::ones({1});
  EXPECT_TINV_ERROR(load_state_dict(m, extra, "m.safetensors"), "unexpected tensor(s): zzz");
  load_state_dict(m, extra, "m.safetensors", {"zz"});
  auto shape = sd;
  shape["lin.weight"] = torch::ones({3, 2});
  EXPECT_TINV_ERROR(load_state_dict(m, shape, "m.safetensors"),
                    "'lin.weight' has shape [3, 2] but the model expects [2, 3]");
}

TEST(Fs, AtomicWriteKeepsOldFileOnFailure) {
  test::TempDir dir;
  std::string p = dir.file("f.txt");
  write_file_atomically(p, "hello", 5);
  EXPECT_EQ(read_text_file(p), "hello");
  EXPECT_THROW(write_atomically(p,
                                [](const std::string& tmp) {
                                  std::ofstream(tmp) << "partial";
                                  throw Error("x", "simulated failure");
                                }),
               Error);
  EXPECT_EQ(read_text_file(p), "hello");
  EXPECT_EQ(file_stem("a/b/cat.pt"), "cat");
  EXPECT_EQ(parent_dir("a/b/cat.pt"), "a/b");
}

// A resumed run's rate counts the items done in this run only: 1 item in >= 50 ms is at most
// 20 it/s (counting the 90 resumed items too would give >= 1800).
TEST(Fs, MakeDirsAndStripExtension) {
  test::TempDir dir;
  const std::string deep = dir.file("a/b/c");
  make_dirs(deep);
  EXPECT_TRUE(dir_exists(deep));
  make_dirs(deep);  // existing: nothing to do
  make_dirs("");
  write_file_atomically(dir.file("f"), "x", 1);
  EXPECT_TINV_ERROR(make_dirs(dir.file("f/g")), dir.file("f/g") + ": cannot create folder");
  EXPECT_TINV_ERROR(make_dirs(dir.file("f/g"), "--out"), "--out: cannot create folder '" + dir.file("f/g") + "'");
  EXPECT_EQ(strip_extension("a/b/cat.pt"), "a/b/cat");
  EXPECT_EQ(strip_extension("a.b/cat"), "a.b/cat");
  EXPECT_EQ(strip_extension("cat"), "cat");
}

TEST(Fs, CheckCreatableDirLooksAtTheNearestExistingFolderAndCreatesNothing) {
  test::TempDir dir;
  check_creatable_dir(dir.file("x/y/z"), "--out");
  EXPECT_FALSE(file_exists(dir.file("x")));
  check_creatable_dir(dir.path(), "--out");
  write_file_atomically(dir.file("f"), "x", 1);
  EXPECT_TINV_ERROR_IS(check_creatable_dir(dir.file("f/g"), "--out"),
                       "--out: cannot create '" + dir.file("f/g") + "': '" + dir.file("f") + "' is not a folder");
  if (::geteuid() != 0) {  // root writes anywhere
    make_dirs(dir.file("ro"));
    std::filesystem::permissions(dir.file("ro"),
                                 std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    EXPECT_TINV_ERROR(check_creatable_dir(dir.file("ro/new"), "--out"),
                      "--out: cannot write to '" + dir.file("ro") + "'");
    std::filesystem::permissions(dir.file("ro"), std::filesystem::perms::owner_all);
  }
}

// The executables link tcmalloc (cmake/executable.cmake) ahead of libc so that it serves every
// malloc, libtorch's included; a link order that let glibc's win would fail here.
TEST(Memory, MallocIsTheOneTheBuildLinked) {
  EXPECT_STREQ(malloc_implementation(), TINV_ALLOCATOR);
  // A freed block over glibc's 32 MB mmap threshold is kept for reuse: writing a new one of the
  // same size faults in (almost) no fresh pages, where glibc unmaps it and faults in all 16384.
  if (std::string(TINV_ALLOCATOR) == "tcmalloc") {
    constexpr size_t kBig = 64u << 20;
    auto minor_faults = [] {
      rusage ru{};
      getrusage(RUSAGE_SELF, &ru);
      return ru.ru_minflt;
    };
    void* (*volatile alloc)(size_t) = std::malloc;  // volatile: the calls may not be elided
    // tcmalloc returns a span to the kernel now and then (one per ~2 GB freed, the first free
    // included), so the best of three rounds is taken.
    long faults = std::numeric_limits<long>::max();
    for (int round = 0; round < 3; ++round) {
      const long before = minor_faults();
      char* b = static_cast<char*>(alloc(kBig));
      ASSERT_NE(b, nullptr);
      std::memset(b, round + 1, kBig);
      faults = std::min(faults, minor_faults() - before);
      EXPECT_EQ(b[kBig - 1], round + 1);
      std::free(b);
    }
    EXPECT_LT(faults, static_cast<long>(kBig / 4096 / 8)) << "the 64 MB block was faulted in again";
  }
}

// Cores from a topology tree laid out like /sys/devices/system/cpu, for the CPUs this process may
// run on: siblings that list each other are one core; no tree means one core per CPU.
TEST(Threads, PhysicalCoresFromTheTopology) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  ASSERT_FALSE(cpus.empty());
  auto tree = [&](const test::TempDir& dir, int per_core) {
    for (size_t i = 0; i < cpus.size(); ++i) {
      const std::string topo = dir.file("cpu" + std::to_string(cpus[i]) + "/topology");
      std::filesystem::create_directories(topo);
      const size_t first = i - i % per_core;  // the core's first CPU
      std::string list = std::to_string(cpus[first]);
      if (per_core == 2 && first + 1 < cpus.size()) list += "," + std::to_string(cpus[first + 1]);
      std::ofstream(topo + "/thread_siblings_list") << list << "\n";
    }
  };
  test::TempDir smt, whole, none;
  tree(smt, 2);
  tree(whole, 1);
  EXPECT_EQ(physical_cores(smt.path()), static_cast<int>((cpus.size() + 1) / 2));
  EXPECT_EQ(physical_cores(whole.path()), static_cast<int>(cpus.size()));
  EXPECT_EQ(physical_cores(none.path() + "/missing"), static_cast<int>(cpus.size()));
}

TEST(Threads, DefaultIsOmpNumThreadsElseTheCores) {
  const char* omp = std::getenv("OMP_NUM_THREADS");
  const std::string saved = omp ? omp : "";
  ::unsetenv("MKL_NUM_THREADS");
  ::setenv("OMP_NUM_THREADS", "3", 1);
  EXPECT_EQ(default_threads(), 3);
  use_threads(0);
  EXPECT_EQ(torch::get_num_threads(), 3);
  ::setenv("OMP_NUM_THREADS", "lots", 1);  // not a count: ignored
  EXPECT_EQ(default_threads(), physical_cores());
  ::unsetenv("OMP_NUM_THREADS");
  EXPECT_EQ(default_threads(), physical_cores());
  use_threads(2);
  EXPECT_EQ(torch::get_num_threads(), 2);
  EXPECT_TINV_ERROR(use_threads(-1), "--threads");
  if (omp) ::setenv("OMP_NUM_THREADS", saved.c_str(), 1);
  use_threads(0);
}

// OpenBLAS falls back to its SSE3 Prescott kernels on CPU models newer than its release; those are
// replaced by the kernels the CPU's features allow, and a core it did recognise is kept.
TEST(Blas, BetterCoreOnlyForAPreAvx2FallBack) {
  const CpuFeatures none{}, avx2{true, false, false}, avx512{true, true, false}, bf16{true, true, true};
  EXPECT_EQ(better_openblas_core("Prescott", bf16), "Cooperlake");
  EXPECT_EQ(better_openblas_core("prescott", avx512), "SkylakeX");
  EXPECT_EQ(better_openblas_core("Nehalem", avx2), "Haswell");
  EXPECT_EQ(better_openblas_core("Sandybridge", bf16), "Cooperlake");
  EXPECT_EQ(better_openblas_core("Prescott", none), "");  // what it has is all the CPU can run
  for (const char* kept : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})
    EXPECT_EQ(better_openblas_core(kept, bf16), "") << kept;
}

// The executables fixed the kernels before main (common/executable_init.cpp): on a CPU with AVX2
// this test runs on AVX2 or AVX-512 kernels, whatever OpenBLAS's own detection made of the model
// (unless the environment forced an older core with OPENBLAS_CORETYPE, which ctest does not).
TEST(Blas, ThisProcessRunsKernelsTheCpuAllows) {
  const std::string d = blas_description();
  if (d == "not OpenBLAS") GTEST_SKIP() << "libtorch's BLAS is not OpenBLAS";
  EXPECT_EQ(fix_blas_kernels(), "");  // done once: OPENBLAS_CORETYPE is set, or nothing was needed
  const std::string core = d.substr(d.rfind(' ') + 1);
  const CpuFeatures cpu = cpu_features();
  EXPECT_EQ(better_openblas_core(core, cpu), "") << d;
  const auto a = torch::randn({64, 96}), b = torch::randn({96, 32});
  EXPECT_TRUE(torch::allclose(torch::mm(a, b), (a.unsqueeze(2) * b.unsqueeze(0)).sum(1), 1e-4, 1e-4));
}

// --device and --dtype text: parsed once (at the CLI), then resolved against the machine.
TEST(Device, ParseAndName) {
  EXPECT_FALSE(parse_device("auto").has_value());
  EXPECT_EQ(*parse_device("cpu"), torch::Device(torch::kCPU));
  EXPECT_EQ(*parse_device("cuda"), torch::Device(torch::kCUDA));
  EXPECT_EQ(*parse_device("cuda:1"), torch::Device(torch::kCUDA, 1));
  for (const char* name : {"auto", "cpu", "cuda", "cuda:0", "cuda:3"}) EXPECT_EQ(device_name(parse_device(name)), name);
  EXPECT_TINV_ERROR_IS(parse_device("tpu"), "--device: unknown device 'tpu' (use auto, cpu or cuda)");
  EXPECT_TINV_ERROR_IS(parse_device("CPU"), "--device: unknown device 'CPU' (use auto, cpu or cuda)");
  EXPECT_TINV_ERROR_IS(parse_device("cuda:x"), "--device: invalid device 'cuda:x'");
  EXPECT_TINV_ERROR_IS(parse_device("cudax"), "--device: invalid device 'cudax'");
  EXPECT_EQ(resolve_device(torch::Device(torch::kCPU)), torch::Device(torch::kCPU));
  EXPECT_EQ(resolve_device(std::nullopt).is_cuda(), torch::cuda::is_available());
  if (!torch::cuda::is_available())
    EXPECT_TINV_ERROR(resolve_device(torch::Device(torch::kCUDA)), "--device: CUDA was requested");
}

TEST(Dtype, ParseCheckAndName) {
  EXPECT_EQ(parse_dtype("fp32"), torch::kFloat32);
  EXPECT_EQ(parse_dtype("float32"), torch::kFloat32);
  EXPECT_EQ(parse_dtype("bf16"), torch::kBFloat16);
  EXPECT_EQ(parse_dtype("bfloat16"), torch::kBFloat16);
  EXPECT_EQ(parse_dtype("fp16"), torch::kHalf);
  EXPECT_EQ(parse_dtype("float16"), torch::kHalf);
  for (const char* name : {"fp32", "bf16", "fp16"}) EXPECT_EQ(dtype_name(parse_dtype(name)), name);
  EXPECT_TINV_ERROR_IS(parse_dtype("int8"), "--dtype: unknown dtype 'int8' (use fp32, fp16 or bf16)");
  const torch::Device cpu(torch::kCPU);
  check_dtype(torch::kFloat32, cpu);
  if (cpu_bf16_supported())
    check_dtype(torch::kBFloat16, cpu);
  else
    EXPECT_TINV_ERROR(check_dtype(torch::kBFloat16, cpu), "--dtype: bf16 on this CPU needs AVX-512 with libtorch 1.");
  if (TORCH_VERSION_MAJOR >= 2) EXPECT_TRUE(cpu_bf16_supported());
  EXPECT_TINV_ERROR_IS(check_dtype(torch::kHalf, cpu),
                       "--dtype: fp16 is only supported on CUDA (use fp32 or bf16 on CPU)");
  EXPECT_TINV_ERROR(check_dtype(torch::kInt64, cpu), "--dtype: unsupported dtype");
}

TEST(Device, CudaTf32Switch) {
  // The flags are libtorch's on every build (they only act on a GPU); restored afterwards.
  const bool cudnn = at::globalContext().allowTF32CuDNN(), cublas = at::globalContext().allowTF32CuBLAS();
  set_cuda_tf32(false);
  EXPECT_FALSE(at::globalContext().allowTF32CuDNN());
  EXPECT_FALSE(at::globalContext().allowTF32CuBLAS());
  set_cuda_tf32(true);
  EXPECT_TRUE(at::globalContext().allowTF32CuDNN());
  EXPECT_TRUE(at::globalContext().allowTF32CuBLAS());
  at::globalContext().setAllowTF32CuDNN(cudnn);
  at::globalContext().setAllowTF32CuBLAS(cublas);
}

TEST(Hash, Fnv1a) {
  EXPECT_EQ(fnv1a(""), 0xCBF29CE484222325ULL);
  EXPECT_EQ(fnv1a("a"), 0xAF63DC4C8601EC8CULL);  // the published FNV-1a 64 test vector
  const std::string ab = "ab";
  EXPECT_EQ(fnv1a("b", fnv1a("a")), fnv1a_bytes(ab.data(), ab.size()));
  EXPECT_EQ(fnv1a(ab), fnv1a_bytes(ab.data(), ab.size()));
  EXPECT_EQ(hex64(0xAF63DC4C8601EC8CULL), "af63dc4c8601ec8c");
  EXPECT_EQ(hex64(1), "0000000000000001");
}

TEST(Strings, ValidNameAndTrim) {
  EXPECT_TRUE(valid_name("red-cube_2"));
  EXPECT_FALSE(valid_name(""));
  EXPECT_FALSE(valid_name("a b"));
  EXPECT_FALSE(valid_name(std::string(65, 'a')));
  EXPECT_TRUE(valid_name(std::string(64, 'a')));
  EXPECT_EQ(trim("  a cat "), "a cat");
  EXPECT_EQ(trim("   "), "");
  EXPECT_EQ(trim("\ta\t"), "\ta\t");
}

TEST(Progress, ResumedRateCountsThisRunsItems) {
  Progress p("x", 100, /*enabled=*/false);
  p.start_at(90);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  p.update(91);
  EXPECT_GT(p.rate(), 0.0);
  EXPECT_LE(p.rate(), 20.0);
  Progress fresh("y", 10, false);
  EXPECT_EQ(fresh.rate(), 0.0);
}

}  // namespace
}  // namespace tinv
