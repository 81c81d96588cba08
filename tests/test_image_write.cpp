// Unit tests for PNG writing with text chunks and image grids.
#include <stb_image.h>
#include <torch/torch.h>

#include <cstring>
#include <map>

#include "common/crc32.h"
#include "common/fs.h"
#include "io/image.h"
#include "io/image_tensor.h"
#include "io/image_write.h"
#include "test_util.h"

namespace tinv {
namespace {

struct Chunk {
  std::string type, data;
};

// Splits a PNG into chunks, checking the signature, every length and every CRC.
std::vector<Chunk> parse_chunks(const std::vector<uint8_t>& png) {
  static const uint8_t kSig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  EXPECT_GE(png.size(), 8u);
  EXPECT_EQ(std::memcmp(png.data(), kSig, 8), 0);
  auto u32 = [&](size_t at) {
    return (uint32_t(png[at]) << 24) | (uint32_t(png[at + 1]) << 16) | (uint32_t(png[at + 2]) << 8) |
           uint32_t(png[at + 3]);
  };
  std::vector<Chunk> chunks;
  size_t at = 8;
  while (at + 12 <= png.size()) {
    const uint32_t len = u32(at);
    EXPECT_LE(at + 12 + len, png.size());
    Chunk c{std::string(png.begin() + at + 4, png.begin() + at + 8),
            std::string(png.begin() + at + 8, png.begin() + at + 8 + len)};
    EXPECT_EQ(crc32(png.data() + at + 4, 4 + len), u32(at + 8 + len)) << "CRC of " << c.type;
    chunks.push_back(c);
    at += 12 + len;
  }
  EXPECT_EQ(at, png.size());
  return chunks;
}

TEST(ImageWrite, Crc32KnownValue) {
  const char* s = "123456789";
  EXPECT_EQ(crc32(reinterpret_cast<const uint8_t*>(s), 9), 0xCBF43926u);
}

TEST(ImageWrite, PixelsAndTextChunksRoundTrip) {
  test::TempDir dir;
  const std::string path = dir.file("out.png");
  auto image = torch::rand({3, 5, 7});
  const std::string params = "a photo of <cat>, caf\xC3\xA9\nSteps: 25, Sampler: Euler a, Seed: 42";
  const std::string japanese = "\xE6\x97\xA5\xE6\x9C\xAC";  // outside Latin-1 -> iTXt
  save_png(path, image, {{"parameters", params}, {"Comment", japanese}});

  auto bytes = read_binary_file(path);
  int w = 0, h = 0, c = 0;
  uint8_t* px = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &c, 0);
  ASSERT_NE(px, nullptr) << stbi_failure_reason();
  ASSERT_EQ(w, 7);
  ASSERT_EQ(h, 5);
  ASSERT_EQ(c, 3);
  auto expected = (image.clamp(0, 1) * 255).round().to(torch::kUInt8).permute({1, 2, 0}).contiguous();
  EXPECT_EQ(std::memcmp(px, expected.data_ptr<uint8_t>(), 5 * 7 * 3), 0);
  stbi_image_free(px);

  auto chunks = parse_chunks(bytes);
  ASSERT_GE(chunks.size(), 5u);
  EXPECT_EQ(chunks[0].type, "IHDR");
  EXPECT_EQ(chunks.back().type, "IEND");
  std::map<std::string, std::string> text;
  for (const auto& ch : chunks) {
    if (ch.type == "tEXt") {
      auto nul = ch.data.find('\0');
      text[ch.data.substr(0, nul)] = ch.data.substr(nul + 1);
    } else if (ch.type == "iTXt") {
      auto nul = ch.data.find('\0');
      ASSERT_EQ(ch.data.substr(nul + 1, 2), std::string("\0\0", 2));  // uncompressed
      auto lang_end = ch.data.find('\0', nul + 3);
      auto trans_end = ch.data.find('\0', lang_end + 1);
      text["iTXt:" + ch.data.substr(0, nul)] = ch.data.substr(trans_end + 1);
    }
  }
  // tEXt holds Latin-1: the UTF-8 "é" is the single byte 0xE9.
  EXPECT_EQ(text["parameters"], "a photo of <cat>, caf\xE9\nSteps: 25, Sampler: Euler a, Seed: 42");
  EXPECT_EQ(text["iTXt:Comment"], japanese);
  EXPECT_EQ(chunks[1].type, "tEXt");  // right after IHDR
}

TEST(ImageWrite, Uint8HwcAndGrayscale) {
  auto hwc = torch::randint(0, 256, {4, 6, 4}, torch::kUInt8);
  auto bytes = encode_png(hwc);
  int w = 0, h = 0, c = 0;
  uint8_t* px = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &c, 0);
  ASSERT_NE(px, nullptr);
  EXPECT_EQ(c, 4);
  EXPECT_EQ(std::memcmp(px, hwc.data_ptr<uint8_t>(), 4 * 6 * 4), 0);
  stbi_image_free(px);
  EXPECT_NO_THROW(encode_png(torch::rand({1, 3, 3})));
  EXPECT_TINV_ERROR(encode_png(torch::rand({2, 3, 3})), "channels");
  EXPECT_TINV_ERROR(encode_png(torch::rand({3, 3})), "[C, H, W]");
}

TEST(ImageWrite, ImageOverloadsReadBackThroughTheDecoder) {
  Image im(5, 3);
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>(i * 31 + 7);
  const auto bytes = encode_png(im, {{"caption", "a red circle"}});
  EXPECT_EQ(bytes, encode_png(image_to_hwc(im), {{"caption", "a red circle"}}));
  EXPECT_EQ(load_image_from_memory(bytes.data(), bytes.size(), "mem.png"), im);
  test::TempDir dir;
  save_png(dir.file("im.png"), im);
  EXPECT_EQ(load_image(dir.file("im.png")), im);
  // RGBA written by libpng reads back with alpha over white.
  auto rgba = torch::tensor({10, 20, 30, 0, 10, 20, 30, 255}, torch::kUInt8).reshape({1, 2, 4});
  const auto rb = encode_png(rgba);
  const Image back = load_image_from_memory(rb.data(), rb.size(), "rgba.png");
  EXPECT_EQ(back.pixels, (std::vector<uint8_t>{255, 255, 255, 10, 20, 30}));
}

TEST(ImageWrite, BadKeywordsRefused) {
  auto img = torch::rand({3, 2, 2});
  EXPECT_TINV_ERROR(encode_png(img, {{"", "x"}}), "keyword");
  EXPECT_TINV_ERROR(encode_png(img, {{std::string(80, 'k'), "x"}}), "keyword");
  EXPECT_TINV_ERROR(encode_png(img, {{"\xE6\x97\xA5", "x"}}), "keyword");
  EXPECT_TINV_ERROR(encode_png(img, {{"ok", "bad \xC3"}}), "UTF-8");
}

TEST(ImageWrite, UnwritablePathNamedAndNoFileLeft) {
  test::TempDir dir;
  const std::string path = dir.file("missing-folder/out.png");
  EXPECT_TINV_ERROR(save_png(path, torch::rand({3, 4, 4}), {{"parameters", "x"}}), path);
  EXPECT_FALSE(file_exists(path));
  EXPECT_FALSE(dir_exists(dir.file("missing-folder")));
  // A path that is a folder cannot be replaced: the error names it and nothing is left behind.
  const std::string folder = dir.file("taken.png");
  ASSERT_EQ(std::system(("mkdir '" + folder + "'").c_str()), 0);
  EXPECT_TINV_ERROR(save_png(folder, torch::rand({3, 4, 4})), folder);
  EXPECT_EQ(std::system(("test $(ls -A '" + dir.path() + "' | wc -l) -eq 1").c_str()), 0)
      << "temporary files were left in " << dir.path();
}

TEST(ImageWrite, MakeGrid) {
  std::vector<torch::Tensor> imgs;
  for (int i = 0; i < 3; ++i) imgs.push_back(torch::full({3, 2, 4}, 0.1 * (i + 1)));
  auto grid = make_grid(imgs, 2);
  ASSERT_EQ(grid.sizes(), (std::vector<int64_t>{3, 4, 8}));
  EXPECT_FLOAT_EQ(grid[0][0][0].item<float>(), 0.1f);
  EXPECT_FLOAT_EQ(grid[0][0][4].item<float>(), 0.2f);
  EXPECT_FLOAT_EQ(grid[0][2][0].item<float>(), 0.3f);
  EXPECT_FLOAT_EQ(grid[0][3][7].item<float>(), 0.0f);  // empty cell
  EXPECT_EQ(make_grid(imgs, 10).sizes(), (std::vector<int64_t>{3, 2, 12}));
  EXPECT_TINV_ERROR(make_grid({}, 2), "no images");
  EXPECT_TINV_ERROR(make_grid(imgs, 0), "cols");
  imgs.push_back(torch::zeros({3, 2, 5}));
  EXPECT_TINV_ERROR(make_grid(imgs, 2), "image 3");
}

}  // namespace
}  // namespace tinv
