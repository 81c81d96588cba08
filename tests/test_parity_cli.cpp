// `tinv parity --device`: the cases run on the device asked for; bad or unavailable devices are
// one-line errors. (The parity cases themselves are the parity.* ctests.)
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/threads.h"
#include "parity/parity.h"
#include "test_util.h"

namespace tinv::test {
namespace {

TEST(Version, NamesLibtorchAndTheMalloc) {
  TempDir dir;
  CliResult r = run_tinv("--version", dir);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("libtorch " TORCH_VERSION), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::string("malloc: ") + TINV_ALLOCATOR + ","), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(", blas: "), std::string::npos) << r.out;
  // OPENBLAS_CORETYPE is the user's to set: tinv keeps it.
  r = run_tinv("--version", dir, "env OPENBLAS_CORETYPE=Haswell");
  if (r.out.find("blas: OpenBLAS") != std::string::npos)
    EXPECT_NE(r.out.find(" Haswell, threads"), std::string::npos) << r.out;
}

// Without --threads, tinv runs on OMP_NUM_THREADS threads, else one per physical core (not
// libtorch 1.13's hardware_concurrency() / 2); --version says how many.
TEST(Version, NamesTheThreadsTinvRunsOn) {
  TempDir dir;
  const std::string cores = "threads: " + std::to_string(physical_cores()) + ")";
  CliResult r = run_tinv("--version", dir, "env -u OMP_NUM_THREADS -u MKL_NUM_THREADS");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find(cores), std::string::npos) << r.out;
  r = run_tinv("--version", dir, "env OMP_NUM_THREADS=3");
  EXPECT_NE(r.out.find("threads: 3)"), std::string::npos) << r.out;
  r = run_tinv("generate --threads -1 --prompt x", dir);
  EXPECT_EQ(r.status, 1);
  ASSERT_EQ(r.err_lines.size(), 1u) << r.err;
  EXPECT_EQ(r.err_lines[0], "tinv: error: --threads: must be >= 0 (0: one per core), got -1");
}

TEST(ParityDevice, CpuRunsEveryCaseOfTheGroups) {
  TempDir tmp;
  auto r = run_tinv("parity " + quote(fixture("tiny-sd15")) + " --only unet,ti_train --device cpu", tmp);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("PASS unet "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PASS ti_train.final_embeddings "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("7 passed, 0 failed"), std::string::npos) << r.out;
}

TEST(ParityDevice, LibraryCallTakesTheDevice) {
  std::ostringstream out;
  EXPECT_EQ(parity::run(fixture("tiny-sd15"), {"vae"}, out, torch::Device(torch::kCPU)), 0) << out.str();
  EXPECT_NE(out.str().find("3 passed, 0 failed"), std::string::npos) << out.str();
}

TEST(ParityDevice, UnknownDeviceIsOneLineError) {
  TempDir tmp;
  auto r = run_tinv("parity " + quote(fixture("tiny-sd15")) + " --only tokenizer --device tpu", tmp);
  EXPECT_NE(r.status, 0);
  ASSERT_EQ(r.err_lines.size(), 1u) << r.err;
  EXPECT_EQ(r.err_lines[0].rfind("tinv: error: --device: unknown device 'tpu'", 0), 0u) << r.err;
  EXPECT_EQ(r.out.find("passed"), std::string::npos) << "no case may run: " << r.out;
}

TEST(ParityDevice, CudaWhereThereIsNoneIsOneLineError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible (scripts/gpu_check.sh covers it)";
  TempDir tmp;
  auto r = run_tinv("parity " + quote(fixture("tiny-sd15")) + " --only tokenizer --device cuda", tmp);
  EXPECT_NE(r.status, 0);
  ASSERT_EQ(r.err_lines.size(), 1u) << r.err;
  EXPECT_NE(r.err_lines[0].find("--device: CUDA was requested"), std::string::npos) << r.err;
}

// `--only` naming a group of the other layout, or no group at all, is a one-line error before
// any case runs; a fixture folder with no case fails rather than passing with 0 cases.
TEST(ParityOnly, GroupOfAnotherLayoutIsOneLineError) {
  TempDir tmp;
  auto r = run_tinv("parity " + quote(fixture("tiny-sd15")) + " --only blip", tmp);
  EXPECT_NE(r.status, 0);
  ASSERT_EQ(r.err_lines.size(), 1u) << r.err;
  EXPECT_NE(r.err_lines[0].find("--only: case group 'blip' is not in layout 'sd'"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("passed"), std::string::npos) << "no case may run: " << r.out;
}

TEST(ParityOnly, UnknownGroupIsOneLineError) {
  TempDir tmp;
  auto r = run_tinv("parity " + quote(fixture("tiny-blip")) + " --only unets", tmp);
  EXPECT_NE(r.status, 0);
  ASSERT_EQ(r.err_lines.size(), 1u) << r.err;
  EXPECT_NE(r.err_lines[0].find("--only: unknown case group 'unets' (groups of layout 'blip': blip)"),
            std::string::npos)
      << r.err;
}

TEST(ParityOnly, FolderWithoutCasesFails) {
  // A BLIP-layout folder whose case file holds no case: the run must fail, not pass with 0.
  TempDir tmp;
  std::string dir = tmp.file("empty-blip");
  std::filesystem::create_directories(dir + "/cases");
  std::ofstream(dir + "/cases/blip.safetensors") << "";
  std::ostringstream out;
  EXPECT_NE(parity::run(dir, {}, out, torch::Device(torch::kCPU)), 0) << out.str();
}

}  // namespace
}  // namespace tinv::test
