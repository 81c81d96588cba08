// The torch.save container (libtorch's reader/writer) and the restricted unpickler / pickle writer, over files written
// by Python's torch.save (tests/data, generated once by tests/data/make_embedding_fixtures.py) and over hand-made
// pickles.
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>

#include "common/fs.h"
#include "io/pickle.h"
#include "io/torch_archive.h"
#include "io/torch_save.h"
#include "test_util.h"

namespace tinv {
namespace {

std::string data_file(const std::string& name) { return std::string(TINV_SOURCE_DIR) + "/tests/data/" + name; }

// The fixtures' values: arange(n*d).reshape(n, d) * 0.25 - 1.
torch::Tensor ramp(int64_t n, int64_t d = 16) {
  return torch::arange(n * d, torch::kFloat32).reshape({n, d}) * 0.25 - 1.0;
}

// Loader for hand-made pickles: zeros of the requested size (capped).
torch::Tensor zeros_loader(const std::string&, torch::ScalarType dtype, int64_t numel) {
  if (numel > (1 << 20)) throw Error("test", "storage too large");
  return torch::zeros({numel}, torch::TensorOptions().dtype(dtype));
}

PickleValue unpickle_string(const std::string& p) {
  return unpickle(reinterpret_cast<const uint8_t*>(p.data()), p.size(), zeros_loader, "test.pkl");
}

std::shared_ptr<const std::vector<uint8_t>> shared(std::vector<uint8_t> bytes) {
  return std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
}

bool has_bytes(const std::vector<uint8_t>& bytes, const std::vector<uint8_t>& needle) {
  return std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end()) != bytes.end();
}

// A file written by Python's torch.save: ZIP64 records, names under the file's own top folder.
TEST(TorchArchive, ReadsTorchSaveArchive) {
  auto bytes = read_binary_file(data_file("a1111_tensor.pt"));
  EXPECT_TRUE(has_bytes(bytes, {0x50, 0x4b, 6, 6}));  // ZIP64 end of central directory
  TorchArchiveReader ar = TorchArchiveReader::open(data_file("a1111_tensor.pt"));
  EXPECT_TRUE(ar.has("data.pkl"));
  EXPECT_TRUE(ar.has("version"));
  EXPECT_FALSE(ar.has("nothing"));
  TorchRecord storage = ar.read("data/0");
  EXPECT_EQ(storage.size, 2u * 16 * 4);
  EXPECT_EQ(ar.offset("data/0") % 64, 0u);
  EXPECT_EQ(ar.read("version").str(), "3\n");
  std::vector<std::string> names = ar.records();
  EXPECT_NE(std::find(names.begin(), names.end(), "data.pkl"), names.end());
  EXPECT_TINV_ERROR(ar.read("nothing"), "record 'nothing': missing from the archive");
}

// Our writer (libtorch's PyTorchStreamWriter): top folder `archive`, data 64-byte aligned, a
// `version` record added, ZIP64 records; read back from memory.
TEST(TorchArchive, WriterAlignsDataAndRoundTrips) {
  TorchArchiveWriter w("test.zip");
  std::string a = "hello", b(1000, 'x');
  w.add("a", a.data(), a.size());
  w.add("some/longer/name/b", b.data(), b.size());
  w.add("empty", nullptr, 0);
  EXPECT_TINV_ERROR(w.add("a", a.data(), a.size()), "record 'a' written twice");
  std::vector<uint8_t> bytes = w.finish();
  EXPECT_TRUE(has_bytes(bytes, {'a', 'r', 'c', 'h', 'i', 'v', 'e', '/', 'a'}));
  EXPECT_TRUE(has_bytes(bytes, {0x50, 0x4b, 6, 6}));
  TorchArchiveReader r = TorchArchiveReader::from_buffer(shared(bytes), "test.zip");
  std::vector<std::string> names = r.records();  // libtorch 2.x adds .data/serialization_id
  for (const char* name : {"a", "some/longer/name/b", "empty", "version"})
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  for (const std::string& name : r.records()) EXPECT_EQ(r.offset(name) % 64, 0u) << name;
  EXPECT_EQ(r.read("a").str(), a);
  EXPECT_EQ(r.read("some/longer/name/b").str(), b);
  EXPECT_EQ(r.read("empty").str(), "");
  EXPECT_EQ(r.read("version").str(), "3\n");
}

TEST(TorchArchive, TruncatedArchivesAreOneLineErrors) {
  auto full = read_binary_file(data_file("a1111_tensor.pt"));
  for (size_t n = 0; n < full.size(); ++n) {
    auto cut = shared(std::vector<uint8_t>(full.begin(), full.begin() + n));
    try {
      load_torch_archive(TorchArchiveReader::from_buffer(cut, "cut.pt"));
      ADD_FAILURE() << n << " bytes loaded";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_EQ(msg.rfind("cut.pt", 0), 0u) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
  EXPECT_TINV_ERROR(TorchArchiveReader::from_buffer(shared({}), "e.pt"), "e.pt: not a torch.save zip or truncated");
  EXPECT_TINV_ERROR(TorchArchiveReader::from_buffer(shared({'P', 'K', 3, 4, 0, 0}), "h.pt"),
                    "h.pt: not a torch.save zip or truncated");
}

// What libtorch checks: it reads records without checking their CRCs (a flipped storage byte
// loads, changed), and a record whose header claims compression is an error, not a crash.
TEST(TorchArchive, CorruptRecordsLoadOrFailCleanly) {
  auto bytes = read_binary_file(data_file("a1111_tensor.pt"));
  uint64_t off = TorchArchiveReader::open(data_file("a1111_tensor.pt")).offset("data/0");
  auto flipped = bytes;
  flipped[off + 3] ^= 0x40;  // the high byte of element 0
  PickleValue v = load_torch_archive(TorchArchiveReader::from_buffer(shared(flipped), "flip.pt"));
  EXPECT_FALSE(torch::equal(v.find("string_to_param")->find("*")->tensor(), ramp(2)));
  // The first central directory header's method set to 8 (deflate) over stored bytes.
  auto deflate = bytes;
  const uint8_t sig[] = {0x50, 0x4b, 1, 2};
  size_t cd = std::search(deflate.begin(), deflate.end(), sig, sig + 4) - deflate.begin();
  ASSERT_LT(cd, deflate.size());
  deflate[cd + 10] = 8;
  EXPECT_THROW(load_torch_archive(TorchArchiveReader::from_buffer(shared(deflate), "d.pt")), Error);
}

TEST(Unpickle, A1111WithRequiresGradTensor) {
  PickleValue v = load_torch_file(data_file("a1111_tensor.pt"));
  ASSERT_TRUE(v.is_dict());
  EXPECT_EQ(v.find("string_to_token")->find("*")->integer(), 265);
  torch::Tensor t = v.find("string_to_param")->find("*")->tensor();
  EXPECT_TRUE(torch::equal(t, ramp(2)));
  EXPECT_EQ(v.find("name")->string(), "cat-toy");
  EXPECT_EQ(v.find("step")->integer(), 500);
  EXPECT_EQ(v.find("sd_checkpoint")->string(), "abc123");
  EXPECT_EQ(v.find("sd_checkpoint_name")->string(), "v1-5-pruned");
}

TEST(Unpickle, ParameterDictReadsAsItsParameters) {
  PickleValue v = load_torch_file(data_file("a1111_paramdict.pt"));
  const PickleValue* p = v.find("string_to_param");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->dict().class_name, "torch.nn.modules.container.ParameterDict");
  ASSERT_EQ(p->dict().size(), 1u);
  EXPECT_TRUE(torch::equal(p->find("*")->tensor(), ramp(3)));
  EXPECT_TRUE(v.find("sd_checkpoint")->is_none());
}

TEST(Unpickle, OrderedDictHalfStorageAndOffsetView) {
  PickleValue v = load_torch_file(data_file("a1111_ordered.pt"));
  EXPECT_EQ(v.dict().class_name, "collections.OrderedDict");
  EXPECT_EQ(v.dict().items().front().first.string(), "string_to_token");  // insertion order
  torch::Tensor t = v.find("string_to_param")->find("*")->tensor();
  EXPECT_EQ(t.scalar_type(), torch::kFloat16);
  EXPECT_TRUE(torch::equal(t.to(torch::kFloat32), ramp(4).slice(0, 1, 3)));
}

TEST(Unpickle, ScalarsContainersBytesAndStridedTensor) {
  PickleValue v = load_torch_file(data_file("misc.pt"));
  torch::Tensor t = v.find("t")->tensor();
  EXPECT_EQ(t.sizes(), torch::IntArrayRef({8, 2}));
  EXPECT_TRUE(torch::equal(t, ramp(2, 8).t()));
  EXPECT_EQ(v.find("f")->number(), 1.5);
  EXPECT_EQ(v.find("i")->integer(), -7);
  EXPECT_EQ(v.find("big")->integer(), int64_t(1) << 40);
  EXPECT_EQ(v.find("b")->kind(), PickleValue::Kind::Bytes);
  EXPECT_EQ(v.find("b")->string(), std::string("\x00\x01", 2));
  const auto& l = v.find("l")->items();
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[2].integer(), 3);
  const PickleValue* tup = v.find("tup");
  EXPECT_EQ(tup->kind(), PickleValue::Kind::Tuple);
  EXPECT_TRUE(tup->items()[0].boolean());
  EXPECT_FALSE(tup->items()[1].boolean());
  EXPECT_TRUE(tup->items()[2].is_none());
  ASSERT_NE(v.dict().find(int64_t(5)), nullptr);
  EXPECT_EQ(v.dict().find(int64_t(5))->string(), "int key");
}

TEST(Unpickle, RefusesDisallowedGlobals) {
  EXPECT_TINV_ERROR(load_torch_file(data_file("evil.pt")), "refusing to unpickle global posix.system");
  EXPECT_TINV_ERROR(unpickle_string("\x80\x02"
                                    "cbuiltins\neval\n)R."),
                    "refusing to unpickle global builtins.eval");
  // STACK_GLOBAL path too.
  EXPECT_TINV_ERROR(unpickle_string(std::string("\x80\x02X\x02\0\0\0osX\x06\0\0\0system\x93.", 22)),
                    "refusing to unpickle global os.system");
  // An allowed class can still not be called in unexpected ways.
  EXPECT_TINV_ERROR(unpickle_string("\x80\x02"
                                    "ctorch\nFloatStorage\n)R."),
                    "cannot call global torch.FloatStorage");
}

TEST(Unpickle, RefusesLegacyFormat) { EXPECT_TINV_ERROR(load_torch_file(data_file("legacy.pt")), "legacy .pt format"); }

TEST(Unpickle, CyclesAndDeepNestingAreErrorsNotCrashes) {
  // l = []; l.append(l)
  EXPECT_TINV_ERROR(unpickle_string(std::string("\x80\x02]q\x00h\x00"
                                                "a.",
                                                9)),
                    "cycle");
  // 200000 nested lists: refused, and freeing them must not overflow the stack.
  std::string deep = "\x80\x02" + std::string(200000, ']') + std::string(199999, 'a') + ".";
  EXPECT_TINV_ERROR(unpickle_string(deep), "nested too deep");
  // Also when the unpickler stops half-way.
  EXPECT_THROW(unpickle_string(deep.substr(0, deep.size() - 1000)), Error);
  // Shared (non-cyclic) containers are fine: d = {}; [d, d]
  PickleValue v =
      unpickle_string(std::string("\x80\x02](}q\x00h\x00"
                                  "e.",
                                  11));
  ASSERT_EQ(v.items().size(), 2u);
  EXPECT_EQ(v.items()[0].container_id(), v.items()[1].container_id());
}

TEST(Unpickle, TensorViewsAreBoundsChecked) {
  auto bu = [](const std::string& t) {  // BINUNICODE
    return std::string("X") + char(t.size()) + std::string(3, '\0') + t;
  };
  auto k = [](int v) { return std::string("K") + char(v); };  // BININT1
  auto tensor_pickle = [&](int size, int stride, int offset) {
    return std::string(
               "\x80\x02"
               "ctorch._utils\n_rebuild_tensor_v2\n((") +
           bu("storage") + "ctorch\nFloatStorage\n" + bu("0") + bu("cpu") + k(4) + "tQ" + k(offset) + k(size) + "\x85" +
           k(stride) +
           "\x85\x89N"
           "tR.";
  };
  EXPECT_EQ(unpickle_string(tensor_pickle(4, 1, 0)).tensor().numel(), 4);
  EXPECT_EQ(unpickle_string(tensor_pickle(2, 2, 1)).tensor().numel(), 2);  // elements 1, 3
  EXPECT_TINV_ERROR(unpickle_string(tensor_pickle(5, 1, 0)), "runs past its storage");
  EXPECT_TINV_ERROR(unpickle_string(tensor_pickle(3, 2, 0)), "runs past its storage");
  EXPECT_TINV_ERROR(unpickle_string(tensor_pickle(1, 1, 4)), "runs past its storage");
  EXPECT_TINV_ERROR(unpickle_string(tensor_pickle(2, 200, 0)), "runs past its storage");
  EXPECT_EQ(unpickle_string(tensor_pickle(0, 1, 4)).tensor().numel(), 0);
}

TEST(Unpickle, MalformedPicklesAreErrors) {
  EXPECT_TINV_ERROR(unpickle_string(""), "truncated");
  EXPECT_TINV_ERROR(unpickle_string("\x80\x02"), "truncated");
  EXPECT_TINV_ERROR(unpickle_string("\x80\x02s."), "stack underflow");
  EXPECT_TINV_ERROR(unpickle_string("\x80\x02h\x05."), "memo key 5 not found");
  EXPECT_TINV_ERROR(unpickle_string("\x80\x02X\xff\xff\xff\x7f"), "truncated");
  EXPECT_TINV_ERROR(unpickle_string("\x80\x02NN."), "STOP with 2 values");
  EXPECT_TINV_ERROR(unpickle_string("\x80\x02\xff."), "unsupported opcode");
  EXPECT_TINV_ERROR(unpickle_string("\x80\x02}(K\x01"
                                    "u."),
                    "odd number");
}

TEST(PickleWriter, RoundTripsThroughOurReader) {
  PickleValue inner = PickleValue::make_dict({{"a", PickleValue(int64_t(1) << 40)}}, "collections.OrderedDict");
  PickleValue root = PickleValue::make_dict({
      {"tensor", PickleValue(ramp(3, 5))},
      {"half", PickleValue(ramp(2, 3).to(torch::kFloat16))},
      {"strided", PickleValue(ramp(4, 6).t())},
      {"neg", PickleValue(int64_t(-100000))},
      {"i16", PickleValue(int64_t(40000))},
      {"f", PickleValue(-0.1)},
      {"s", PickleValue(std::string("ünïcode"))},
      {"none", PickleValue()},
      {"yes", PickleValue(true)},
      {"b", PickleValue::make_bytes(std::string("\0\xff", 2))},
      {"list", PickleValue::make_list({PickleValue(int64_t(1)), PickleValue("x")})},
      {"empty", PickleValue::make_list()},
      {"tuple", PickleValue::make_tuple({PickleValue(false)})},
      {"od", inner},
  });
  test::TempDir dir;
  std::string path = dir.file("rt.pt");
  save_torch_file(path, root);
  TorchArchiveReader ar = TorchArchiveReader::open(path);
  EXPECT_TRUE(ar.has("data.pkl"));
  EXPECT_EQ(ar.read("byteorder").str(), "little");
  EXPECT_EQ(ar.read("version").str(), "3\n");
  for (const std::string& name : ar.records()) EXPECT_EQ(ar.offset(name) % 64, 0u) << name;
  auto bytes = read_binary_file(path);
  EXPECT_TRUE(has_bytes(bytes, {'a', 'r', 'c', 'h', 'i', 'v', 'e', '/', 'd', 'a', 't', 'a', '.'}));
  PickleValue v = load_torch_file(path);
  EXPECT_TRUE(torch::equal(v.find("tensor")->tensor(), ramp(3, 5)));
  EXPECT_EQ(v.find("half")->tensor().scalar_type(), torch::kFloat16);
  EXPECT_TRUE(torch::equal(v.find("strided")->tensor(), ramp(4, 6).t()));
  EXPECT_EQ(v.find("neg")->integer(), -100000);
  EXPECT_EQ(v.find("i16")->integer(), 40000);
  EXPECT_EQ(v.find("f")->number(), -0.1);
  EXPECT_EQ(v.find("s")->string(), "ünïcode");
  EXPECT_TRUE(v.find("none")->is_none());
  EXPECT_TRUE(v.find("yes")->boolean());
  EXPECT_EQ(v.find("b")->string(), std::string("\0\xff", 2));
  EXPECT_EQ(v.find("list")->items()[1].string(), "x");
  EXPECT_TRUE(v.find("empty")->items().empty());
  EXPECT_EQ(v.find("tuple")->kind(), PickleValue::Kind::Tuple);
  EXPECT_EQ(v.find("od")->dict().class_name, "collections.OrderedDict");
  EXPECT_EQ(v.find("od")->find("a")->integer(), int64_t(1) << 40);
}

// Random byte flips and cuts: every result is a load or a tinv::Error, never a crash.
TEST(Unpickle, RandomCorruptionNeverCrashes) {
  std::mt19937 rng(1234);
  for (const char* name : {"a1111_tensor.pt", "a1111_paramdict.pt", "misc.pt"}) {
    auto full = read_binary_file(data_file(name));
    std::string pkl = TorchArchiveReader::from_buffer(shared(full), name).read("data.pkl").str();
    for (int iter = 0; iter < 500; ++iter) {
      // The pickle alone (libtorch's reader does not check CRCs, so flips in the archive's
      // pickle reach the unpickler too).
      std::string p = pkl;
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) p[rng() % p.size()] = static_cast<char>(rng());
      if (rng() % 4 == 0) p.resize(rng() % p.size());
      try {
        unpickle_string(p);
      } catch (const Error&) {
      }
      // The whole archive.
      std::vector<uint8_t> z = full;
      for (int k = 0; k < flips; ++k) z[rng() % z.size()] = static_cast<uint8_t>(rng());
      if (rng() % 4 == 0) z.resize(rng() % z.size());
      try {
        load_torch_archive(TorchArchiveReader::from_buffer(shared(z), name));
      } catch (const Error&) {
      }
    }
  }
}

}  // namespace
}  // namespace tinv
