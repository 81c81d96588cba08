// Image input: every kind of file (PNG, JPEG, BMP, GIF, WebP, TIFF) loads as 8-bit RGB with
// alpha over white, for the trainer and the captioner alike; EXIF orientation, bad files, PIL
// resize, the image/tensor converters.
#include <stb_image_write.h>
#include <tiffio.h>
#include <torch/torch.h>
#include <webp/encode.h>

#include <cstdio>
#include <fstream>
#include <functional>

#include "common/fs.h"
#include "inversion/image_input.h"
#include "io/image.h"
#include "io/image_tensor.h"
#include "pipelines/caption.h"
#include "test_util.h"

namespace tinv {
namespace {

using Bytes = std::vector<uint8_t>;

void sink(void* ctx, void* data, int size) {
  auto* out = static_cast<Bytes*>(ctx);
  out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
}

Bytes stb_png(int w, int h, int comp, const Bytes& px) {
  Bytes out;
  stbi_write_png_to_func(sink, &out, w, h, comp, px.data(), w * comp);
  return out;
}

// --- a tiny PNG writer for what stb_image_write cannot write (palette, 16-bit) ---------

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0xFFFFFFFFu) {
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return crc;
}

void put32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

void chunk(Bytes& png, const char* type, const Bytes& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  Bytes td(type, type + 4);
  td.insert(td.end(), data.begin(), data.end());
  png.insert(png.end(), td.begin(), td.end());
  put32(png, crc32(td.data(), td.size()) ^ 0xFFFFFFFFu);
}

// rows: raw scanlines without the filter byte.
Bytes raw_png(int w, int h, int depth, int color_type, const std::vector<Bytes>& rows, const Bytes& plte = {}) {
  Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes ihdr;
  put32(ihdr, w), put32(ihdr, h);
  ihdr.insert(ihdr.end(), {static_cast<uint8_t>(depth), static_cast<uint8_t>(color_type), 0, 0, 0});
  chunk(png, "IHDR", ihdr);
  if (!plte.empty()) chunk(png, "PLTE", plte);
  Bytes raw;
  for (const auto& r : rows) {
    raw.push_back(0);  // filter: none
    raw.insert(raw.end(), r.begin(), r.end());
  }
  Bytes z = {0x78,
             0x01,
             0x01,
             static_cast<uint8_t>(raw.size()),
             static_cast<uint8_t>(raw.size() >> 8),
             static_cast<uint8_t>(~raw.size()),
             static_cast<uint8_t>(~raw.size() >> 8)};  // one stored block
  z.insert(z.end(), raw.begin(), raw.end());
  uint32_t a = 1, b = 0;
  for (uint8_t c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  put32(z, (b << 16) | a);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", {});
  return png;
}

std::string write(const test::TempDir& dir, const std::string& name, const Bytes& bytes) {
  std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return path;
}

void expect_pixel(const Image& im, int x, int y, int r, int g, int b, int tol = 0) {
  const uint8_t* p = im.at(x, y);
  EXPECT_NEAR(p[0], r, tol) << "at " << x << "," << y;
  EXPECT_NEAR(p[1], g, tol) << "at " << x << "," << y;
  EXPECT_NEAR(p[2], b, tol) << "at " << x << "," << y;
}

TEST(Image, PngGrayAlphaRgbaAreRgb) {
  test::TempDir dir;
  Image gray = load_image(write(dir, "g.png", stb_png(2, 1, 1, {10, 200})));
  ASSERT_EQ(gray.width, 2);
  ASSERT_EQ(gray.height, 1);
  expect_pixel(gray, 0, 0, 10, 10, 10);
  expect_pixel(gray, 1, 0, 200, 200, 200);
  Image ga = load_image(write(dir, "ga.png", stb_png(2, 1, 2, {77, 0, 77, 255})));
  expect_pixel(ga, 0, 0, 255, 255, 255);  // transparent: white
  expect_pixel(ga, 1, 0, 77, 77, 77);     // opaque: as is
  Image rgba = load_image(write(dir, "rgba.png", stb_png(1, 2, 4, {1, 2, 3, 0, 250, 251, 252, 128})));
  ASSERT_EQ(rgba.height, 2);
  expect_pixel(rgba, 0, 0, 255, 255, 255);
  // (128 c + 127 * 255) / 255 = 252.49, 252.99, 253.49 for c = 250, 251, 252.
  expect_pixel(rgba, 0, 1, over_white(250, 128), over_white(251, 128), over_white(252, 128));
  EXPECT_EQ(over_white(250, 128), 252);
  EXPECT_EQ(over_white(251, 128), 253);
  EXPECT_EQ(over_white(252, 128), 253);
}

TEST(Image, PngPaletteAnd16Bit) {
  test::TempDir dir;
  Bytes plte = {255, 0, 0, 0, 255, 0, 0, 0, 255};
  Image pal = load_image(write(dir, "p.png", raw_png(3, 1, 8, 3, {{2, 0, 1}}, plte)));
  expect_pixel(pal, 0, 0, 0, 0, 255);
  expect_pixel(pal, 1, 0, 255, 0, 0);
  expect_pixel(pal, 2, 0, 0, 255, 0);
  // 16-bit RGB, big-endian samples: 0xFFFF, 0x1234 (4660/257 = 18.1), 128 (0.498), 129 (0.502).
  Image rgb16 = load_image(write(dir, "c16.png", raw_png(1, 1, 16, 2, {{0xFF, 0xFF, 0x12, 0x34, 0x00, 0x80}})));
  expect_pixel(rgb16, 0, 0, 255, 18, 0);
  Image g16 = load_image(write(dir, "g16.png", raw_png(2, 1, 16, 0, {{0x00, 0x81, 0x80, 0x00}})));
  expect_pixel(g16, 0, 0, 1, 1, 1);
  expect_pixel(g16, 1, 0, 128, 128, 128);  // 32768 / 257 = 127.5 -> 128
}

Bytes stb_jpeg_halves(int w, int h) {
  // Left half red, right half blue.
  Bytes px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = x < w / 2 ? 255 : 0, p[1] = 0, p[2] = x < w / 2 ? 0 : 255;
    }
  Bytes out;
  stbi_write_jpg_to_func(sink, &out, w, h, 3, px.data(), 95);
  return out;
}

// Inserts an APP1 Exif segment holding only IFD0 Orientation after the SOI marker.
Bytes with_exif(Bytes jpeg, int orientation, bool big_endian) {
  Bytes tiff =
      big_endian
          ? Bytes{'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, static_cast<uint8_t>(orientation),
                  0,   0,   0, 0,  0, 0, 0, 0}
          : Bytes{'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, static_cast<uint8_t>(orientation),
                  0,   0,   0,  0, 0, 0, 0};
  Bytes seg = {0xFF, 0xE1, 0, 0, 'E', 'x', 'i', 'f', 0, 0};
  seg.insert(seg.end(), tiff.begin(), tiff.end());
  size_t len = seg.size() - 2;
  seg[2] = static_cast<uint8_t>(len >> 8), seg[3] = static_cast<uint8_t>(len);
  jpeg.insert(jpeg.begin() + 2, seg.begin(), seg.end());
  return jpeg;
}

TEST(Image, JpegHonoursExifOrientation) {
  test::TempDir dir;
  Bytes jpeg = stb_jpeg_halves(32, 16);
  Image plain = load_image(write(dir, "plain.jpg", jpeg));
  ASSERT_EQ(plain.width, 32);
  expect_pixel(plain, 4, 8, 255, 0, 0, 40);
  Image o1 = load_image(write(dir, "o1.jpg", with_exif(jpeg, 1, false)));
  EXPECT_EQ(o1.width, 32);
  // 6: rotate 90 clockwise -> 16 x 32, the left (red) half on top.
  Image o6 = load_image(write(dir, "o6.jpg", with_exif(jpeg, 6, false)));
  ASSERT_EQ(o6.width, 16);
  ASSERT_EQ(o6.height, 32);
  expect_pixel(o6, 8, 4, 255, 0, 0, 40);
  expect_pixel(o6, 8, 28, 0, 0, 255, 40);
  // 8 (big-endian TIFF): rotate 90 counter-clockwise -> the red half at the bottom.
  Image o8 = load_image(write(dir, "o8.jpg", with_exif(jpeg, 8, true)));
  ASSERT_EQ(o8.height, 32);
  expect_pixel(o8, 8, 28, 255, 0, 0, 40);
  // 3: rotate 180 -> red on the right.
  Image o3 = load_image(write(dir, "o3.jpg", with_exif(jpeg, 3, false)));
  expect_pixel(o3, 28, 8, 255, 0, 0, 40);
}

TEST(Image, ExifOrientationTransforms) {
  Image im(3, 2);  // pixel value = 10 * x + y
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) im.at(x, y)[0] = static_cast<uint8_t>(10 * x + y);
  auto v = [](const Image& o, int x, int y) { return o.at(x, y)[0]; };
  EXPECT_EQ(v(apply_exif_orientation(im, 2), 0, 0), 20);
  EXPECT_EQ(v(apply_exif_orientation(im, 4), 0, 0), 1);
  Image t = apply_exif_orientation(im, 5);  // transpose
  EXPECT_EQ(t.width, 2);
  EXPECT_EQ(v(t, 1, 2), 21);
  Image r6 = apply_exif_orientation(im, 6);
  EXPECT_EQ(v(r6, 0, 0), 1);  // bottom-left goes to top-left
  EXPECT_EQ(v(r6, 1, 0), 0);
  Image r7 = apply_exif_orientation(im, 7);
  EXPECT_EQ(v(r7, 0, 0), 21);
  Image r8 = apply_exif_orientation(im, 8);
  EXPECT_EQ(v(r8, 0, 0), 20);  // top-right goes to top-left
}

TEST(Image, BmpAndGifFirstFrame) {
  test::TempDir dir;
  Bytes bmp;
  Bytes px = {1, 2, 3, 4, 5, 6};
  stbi_write_bmp_to_func(sink, &bmp, 2, 1, 3, px.data());
  Image b = load_image(write(dir, "a.bmp", bmp));
  expect_pixel(b, 1, 0, 4, 5, 6);
  // GIF89a 2x1, palette {red, blue}; frame 1 = [red, blue], frame 2 = [blue, red].
  Bytes gif = {'G',  'I', 'F',  '8', '9', 'a', 2, 0, 1, 0, 0x80, 0, 0,    255,  0,    0,    0,
               0,    255, 0x2C, 0,   0,   0,   0, 2, 0, 1, 0,    0, 2,    2,    0x0C, 0x0A, 0,
               0x2C, 0,   0,    0,   0,   2,   0, 1, 0, 0, 2,    2, 0x44, 0x0A, 0,    0x3B};
  Image g = load_image(write(dir, "a.gif", gif));
  ASSERT_EQ(g.width, 2);
  expect_pixel(g, 0, 0, 0, 0, 255);
  expect_pixel(g, 1, 0, 255, 0, 0);
}

TEST(Image, BadFilesThrowNamingTheFile) {
  test::TempDir dir;
  EXPECT_TINV_ERROR(load_image(dir.file("missing.png")), "missing.png");
  EXPECT_TINV_ERROR(load_image(write(dir, "empty.png", {})), "empty.png: empty file");
  EXPECT_TINV_ERROR(load_image(write(dir, "text.jpg", Bytes{'h', 'e', 'l', 'l', 'o', '\n'})),
                    "text.jpg: not a readable image");
  Bytes png = stb_png(16, 16, 3, Bytes(16 * 16 * 3, 90));
  EXPECT_TINV_ERROR(load_image(write(dir, "trunc.png", Bytes(png.begin(), png.begin() + png.size() / 2))), "trunc.png");
  EXPECT_TINV_ERROR(load_image(write(dir, "header.png", Bytes(png.begin(), png.begin() + 12))), "header.png");
  Bytes corrupt = raw_png(4, 4, 8, 2, std::vector<Bytes>(4, Bytes(12, 7)));
  for (size_t i = 45; i < corrupt.size() - 20; ++i) corrupt[i] = 0xEE;  // garbage deflate stream
  EXPECT_TINV_ERROR(load_image(write(dir, "corrupt.png", corrupt)), "corrupt.png");
  EXPECT_TINV_ERROR(load_image(write(dir, "zero.png", raw_png(0, 4, 8, 2, {}))), "zero.png");
  // 12000 x 9000 = 108 MP claimed in the header: refused before decoding.
  EXPECT_TINV_ERROR(load_image(write(dir, "huge.png", raw_png(12000, 9000, 8, 2, {}))), "limit");
  Bytes jpeg = stb_jpeg_halves(32, 16);
  EXPECT_TINV_ERROR(load_image(write(dir, "trunc.jpg", Bytes(jpeg.begin(), jpeg.begin() + 100))), "trunc.jpg");
}

// Reference values from Pillow 9.4: Image.fromarray(a).resize((w, h), Image.BICUBIC) with
// a[y, x, c] = (37x + 91y + 53c + 7xy) % 256 on a 13 x 11 image.
Image pattern() {
  Image im(13, 11);
  for (int y = 0; y < 11; ++y)
    for (int x = 0; x < 13; ++x)
      for (int c = 0; c < 3; ++c) im.at(x, y)[c] = static_cast<uint8_t>((x * 37 + y * 91 + c * 53 + x * y * 7) % 256);
  return im;
}

void expect_digest(const Image& r, int64_t sum, int64_t weighted, std::vector<int> first) {
  int64_t s = 0, wsum = 0;
  for (size_t i = 0; i < r.pixels.size(); ++i) {
    s += r.pixels[i];
    wsum += (static_cast<int64_t>(r.pixels[i]) * static_cast<int64_t>(i)) % 1000003;
  }
  EXPECT_EQ(s, sum);
  EXPECT_EQ(wsum, weighted);
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(r.pixels[i], first[i]) << "at " << i;
}

TEST(Image, BicubicResizeMatchesPillow) {
  Image im = pattern();
  Image down = resize_bicubic_pil(im, 5, 4);
  std::vector<int> expected = {108, 129, 140, 124, 137, 147, 126, 125, 132, 116, 126, 139, 121, 146, 120,
                               122, 144, 123, 143, 136, 124, 142, 135, 123, 126, 133, 119, 139, 133, 139,
                               118, 128, 138, 125, 123, 126, 137, 127, 127, 127, 124, 118, 135, 96,  145,
                               154, 111, 133, 146, 125, 124, 110, 131, 137, 133, 140, 128, 124, 120, 151};
  ASSERT_EQ(down.pixels.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(down.pixels[i], expected[i]) << "at " << i;
  expect_digest(resize_bicubic_pil(im, 29, 23), 259358, 260210181, {0, 42, 95, 0, 49, 101, 11, 64, 116, 31, 84, 138});
  expect_digest(resize_bicubic_pil(im, 7, 11), 29912, 3449162, {17, 70, 123, 83, 136, 198, 161, 214, 182, 163, 78, 61});
  expect_digest(resize_bicubic_pil(im, 13, 4), 20222, 1569446,
                {78, 131, 122, 128, 113, 171, 103, 161, 115, 153, 106, 145});
  Image bil = resize_pil(im, 5, 4, ResampleFilter::kBilinear);
  int64_t s = 0;
  for (uint8_t v : bil.pixels) s += v;
  EXPECT_EQ(s, 7775);
  EXPECT_EQ(bil.pixels[0], 110);
  EXPECT_TINV_ERROR(resize_bicubic_pil(im, 0, 4), "invalid");
}

TEST(Image, ToTensorIsChannelsFirst) {
  Image im(2, 1);
  im.at(1, 0)[2] = 200;
  auto t = image_to_tensor(im);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{3, 1, 2}));
  EXPECT_EQ(t[2][0][1].item<float>(), 200.0f);
}

TEST(Image, ConvertersRoundTrip) {
  Image im(3, 2);
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>(i * 47 + 3);
  auto hwc = image_to_hwc(im);
  EXPECT_EQ(hwc.sizes(), (std::vector<int64_t>{2, 3, 3}));
  EXPECT_EQ(hwc[1][2][0].item<int>(), im.at(2, 1)[0]);
  EXPECT_EQ(hwc_to_image(hwc), im);
  EXPECT_EQ(hwc_to_image(hwc.permute({1, 0, 2}).contiguous().permute({1, 0, 2})), im);  // any strides
  auto unit = image_to_unit_tensor(im);
  EXPECT_TRUE(torch::equal(unit, image_to_tensor(im) / 255.0f));
  EXPECT_EQ(unit_tensor_to_image(unit), im);
  auto s = image_to_signed_tensor(im);
  EXPECT_TRUE(torch::allclose(s, image_to_tensor(im) / 127.5 - 1));
  EXPECT_EQ(unit_tensor_to_image(((s + 1) / 2).to(torch::kFloat64)), im);
  // Out-of-range values are clamped, then round(x * 255).
  auto odd = torch::tensor({-0.5f, 1.5f, 0.2f, 1.0f}).reshape({1, 1, 4}).expand({3, 1, 4});
  auto u8 = unit_to_hwc_uint8(odd);  // [1, 4, 3]
  ASSERT_EQ(u8.sizes(), (std::vector<int64_t>{1, 4, 3}));
  const int expected[4] = {0, 255, 51, 255};
  for (int k = 0; k < 4; ++k) EXPECT_EQ(u8[0][k][1].item<int>(), expected[k]) << k;
  EXPECT_TINV_ERROR(hwc_to_image(torch::zeros({2, 2, 4}, torch::kUInt8)), "uint8 [H, W, 3]");
  EXPECT_TINV_ERROR(unit_tensor_to_image(torch::zeros({1, 2, 2})), "[3, H, W]");
  EXPECT_TINV_ERROR(image_to_hwc(Image(2, 2, {1, 2, 3})), "inconsistent");
  EXPECT_TINV_ERROR(Image(2, 2).pixel(2, 0), "outside 2x2");
}

// --- alpha over white, the same for every caller ------------------------------------------

// The trainer's former decoder (inversion/image_input.cpp): stb RGBA, then in float32
// rgb * (a / 255) + 255 * (1 - a / 255), rounded. over_white must give the same numbers.
torch::Tensor trainer_over_white(const torch::Tensor& rgba_u8) {  // [H, W, 4] -> [H, W, 3]
  auto rgba = rgba_u8.to(torch::kFloat32);
  auto alpha = rgba.slice(2, 3, 4) / 255.0f;
  auto rgb = rgba.slice(2, 0, 3) * alpha + 255.0f * (1 - alpha);
  return rgb.round().clamp(0, 255).to(torch::kUInt8).contiguous();
}

TEST(Image, OverWhiteIsTheTrainersFormulaForEveryValue) {
  auto c = torch::arange(256, torch::kInt64).repeat_interleave(256);  // c, a over all pairs
  auto a = torch::arange(256, torch::kInt64).repeat({256});
  auto rgba = torch::stack({c, c, c, a}, 1).to(torch::kUInt8).reshape({256, 256, 4});
  auto want = trainer_over_white(rgba);
  auto* w = want.data_ptr<uint8_t>();
  int mismatches = 0;
  for (int ci = 0; ci < 256; ++ci)
    for (int ai = 0; ai < 256; ++ai)
      mismatches += over_white(static_cast<uint8_t>(ci), static_cast<uint8_t>(ai)) != w[(ci * 256 + ai) * 3];
  EXPECT_EQ(mismatches, 0);
}

// An RGBA image with every kind of alpha: transparent, opaque, and between.
Bytes rgba_pattern(int w, int h) {
  Bytes px(static_cast<size_t>(w) * h * 4);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 4];
      p[0] = static_cast<uint8_t>(37 * x + 91 * y), p[1] = static_cast<uint8_t>(200 - 13 * x);
      p[2] = static_cast<uint8_t>(7 * x * y + 5);
      p[3] = x == 0 ? 0 : x == 1 ? 255 : static_cast<uint8_t>(29 * x + 61 * y);
    }
  return px;
}

TEST(Image, RgbaPngGivesTheTrainerAndTheCaptionerTheSamePixels) {
  test::TempDir dir;
  const int w = 20, h = 12;
  Bytes px = rgba_pattern(w, h);
  const std::string path = write(dir, "rgba.png", stb_png(w, h, 4, px));
  const torch::Tensor expected = trainer_over_white(torch::from_blob(px.data(), {h, w, 4}, torch::kUInt8));
  ASSERT_TRUE(torch::equal(image_to_hwc(load_image(path)), expected));
  // The trainer (apps/invert.cpp, apps/study.cpp): prepare_training_image(load_image(file)).
  EXPECT_TRUE(torch::equal(prepare_training_image(load_image(path), 16), prepare_training_image(expected, 16)));
  // The captioner (BlipCaptioner::caption(load_image(file)) -> blip_preprocess).
  BlipPreprocessConfig cfg;
  cfg.width = cfg.height = 16;
  EXPECT_TRUE(torch::equal(blip_preprocess(load_image(path), cfg), blip_preprocess(hwc_to_image(expected), cfg)));
}

// --- WebP (libwebp) -------------------------------------------------------------------------

Bytes webp(int w, int h, int comp, const Bytes& px, bool lossless) {
  uint8_t* out = nullptr;
  size_t n = 0;
  if (lossless)
    n = comp == 4 ? WebPEncodeLosslessRGBA(px.data(), w, h, w * 4, &out)
                  : WebPEncodeLosslessRGB(px.data(), w, h, w * 3, &out);
  else
    n = comp == 4 ? WebPEncodeRGBA(px.data(), w, h, w * 4, 95, &out) : WebPEncodeRGB(px.data(), w, h, w * 3, 95, &out);
  EXPECT_GT(n, 0u);
  Bytes b(out, out + n);
  WebPFree(out);
  return b;
}

Bytes rgb_pattern(int w, int h) {
  Bytes px(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 2654435761u) >> 24);
  return px;
}

TEST(Image, WebpLosslessAndLossy) {
  test::TempDir dir;
  const int w = 9, h = 7;
  const Bytes px = rgb_pattern(w, h);
  Image lossless = load_image(write(dir, "a.webp", webp(w, h, 3, px, true)));
  ASSERT_EQ(lossless.width, w);
  ASSERT_EQ(lossless.height, h);
  EXPECT_EQ(lossless.pixels, px);
  // Lossy: a smooth image comes back close.
  Bytes smooth(static_cast<size_t>(32) * 32 * 3);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x)
      for (int c = 0; c < 3; ++c) smooth[(y * 32 + x) * 3 + c] = static_cast<uint8_t>(60 + 4 * x + 2 * y + 20 * c);
  Image lossy = load_image(write(dir, "b.webp", webp(32, 32, 3, smooth, false)));
  ASSERT_EQ(lossy.width, 32);
  double err = 0;
  for (size_t i = 0; i < smooth.size(); ++i) err += std::abs(lossy.pixels[i] - smooth[i]);
  EXPECT_LT(err / smooth.size(), 4.0);
  // Alpha (lossless RGBA and lossy RGBA, whose alpha plane is lossless) is composited over white.
  const Bytes rgba = rgba_pattern(w, h);
  Bytes rgba_copy = rgba;
  const torch::Tensor want = trainer_over_white(torch::from_blob(rgba_copy.data(), {h, w, 4}, torch::kUInt8));
  EXPECT_TRUE(torch::equal(image_to_hwc(load_image(write(dir, "c.webp", webp(w, h, 4, rgba, true)))), want));
  Image lossy_alpha = load_image(write(dir, "d.webp", webp(w, h, 4, rgba, false)));
  expect_pixel(lossy_alpha, 0, 3, 255, 255, 255);  // alpha 0
}

TEST(Image, WebpBadFilesThrowNamingTheFile) {
  test::TempDir dir;
  const Bytes good = webp(16, 16, 3, rgb_pattern(16, 16), true);
  EXPECT_TINV_ERROR(load_image(write(dir, "trunc.webp", Bytes(good.begin(), good.begin() + good.size() / 2))),
                    "trunc.webp");
  EXPECT_TINV_ERROR(load_image(write(dir, "head.webp", Bytes(good.begin(), good.begin() + 16))), "head.webp");
  Bytes corrupt = good;
  for (size_t i = 30; i < corrupt.size(); ++i) corrupt[i] = static_cast<uint8_t>(i * 77);
  EXPECT_TINV_ERROR(load_image(write(dir, "corrupt.webp", corrupt)), "corrupt.webp");
  // VP8L header claims 16384 x 16384 (268 MP): refused from the header.
  Bytes huge = good;
  ASSERT_EQ(std::string(huge.begin() + 12, huge.begin() + 16), "VP8L");
  uint32_t bits = huge[21] | (huge[22] << 8) | (huge[23] << 16) | (uint32_t(huge[24]) << 24);
  bits = (bits & ~0x0FFFFFFFu) | 16383u | (16383u << 14);
  for (int k = 0; k < 4; ++k) huge[21 + k] = static_cast<uint8_t>(bits >> (8 * k));
  EXPECT_TINV_ERROR(load_image(write(dir, "huge.webp", huge)), "limit");
}

// --- TIFF (libtiff) -------------------------------------------------------------------------

// Writes w x h pixels of `spp` samples (`bits` 8 or 16) with TIFFWriteScanline; `alpha` marks
// the last sample as unassociated alpha.
std::string write_tiff(const test::TempDir& dir, const std::string& name, int w, int h, int spp, int bits,
                       const std::vector<uint16_t>& samples, bool alpha = false, int compression = COMPRESSION_NONE,
                       int rows = -1) {
  const std::string path = dir.file(name);
  TIFF* t = TIFFOpen(path.c_str(), "w");
  EXPECT_NE(t, nullptr);
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, static_cast<uint32_t>(w));
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, static_cast<uint32_t>(h));
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bits);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, spp);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, spp >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(t, TIFFTAG_COMPRESSION, compression);
  TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, static_cast<uint32_t>(std::max(1, h / 2)));
  if (alpha) {
    uint16_t extra[1] = {EXTRASAMPLE_UNASSALPHA};
    TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, extra);
  }
  const size_t row = static_cast<size_t>(w) * spp;
  for (int y = 0; y < (rows < 0 ? h : rows); ++y) {
    std::vector<uint8_t> b8;
    std::vector<uint16_t> b16;
    for (size_t i = 0; i < row; ++i) {
      if (bits == 8)
        b8.push_back(static_cast<uint8_t>(samples[y * row + i]));
      else
        b16.push_back(samples[y * row + i]);
    }
    EXPECT_EQ(TIFFWriteScanline(t, bits == 8 ? static_cast<void*>(b8.data()) : static_cast<void*>(b16.data()), y, 0),
              1);
  }
  TIFFClose(t);
  return path;
}

TEST(Image, TiffRgbRgbaGrayAnd16Bit) {
  test::TempDir dir;
  const int w = 5, h = 4;
  const Bytes px = rgb_pattern(w, h);
  std::vector<uint16_t> s(px.begin(), px.end());
  EXPECT_EQ(load_image(write_tiff(dir, "rgb.tif", w, h, 3, 8, s)).pixels, px);
  EXPECT_EQ(load_image(write_tiff(dir, "lzw.tiff", w, h, 3, 8, s, false, COMPRESSION_LZW)).pixels, px);
  EXPECT_EQ(load_image(write_tiff(dir, "zip.tif", w, h, 3, 8, s, false, COMPRESSION_ADOBE_DEFLATE)).pixels, px);
  // RGBA, unassociated alpha: over white, the same numbers as PNG.
  const Bytes rgba = rgba_pattern(w, h);
  Bytes rgba_copy = rgba;
  const torch::Tensor want = trainer_over_white(torch::from_blob(rgba_copy.data(), {h, w, 4}, torch::kUInt8));
  Image a = load_image(write_tiff(dir, "rgba.tif", w, h, 4, 8, std::vector<uint16_t>(rgba.begin(), rgba.end()), true));
  EXPECT_TRUE(torch::equal(image_to_hwc(a), want));
  // Grayscale 8-bit.
  Image g = load_image(write_tiff(dir, "gray.tif", 3, 1, 1, 8, {0, 100, 255}));
  expect_pixel(g, 0, 0, 0, 0, 0);
  expect_pixel(g, 1, 0, 100, 100, 100);
  expect_pixel(g, 2, 0, 255, 255, 255);
  // 16-bit RGB and gray: round(v / 257).
  Image c16 = load_image(write_tiff(dir, "c16.tif", 1, 1, 3, 16, {0xFFFF, 0x1234, 0x0081}));
  expect_pixel(c16, 0, 0, 255, 18, 1);
  Image g16 = load_image(write_tiff(dir, "g16.tif", 2, 1, 1, 16, {0x8000, 0x0080}));
  expect_pixel(g16, 0, 0, 128, 128, 128);
  expect_pixel(g16, 1, 0, 0, 0, 0);
}

TEST(Image, TiffBadFilesThrowOneLineNamingTheFileAndPrintNothing) {
  test::TempDir dir;
  const int w = 16, h = 16;
  const Bytes px = rgb_pattern(w, h);
  const Bytes good =
      read_binary_file(write_tiff(dir, "good.tif", w, h, 3, 8, std::vector<uint16_t>(px.begin(), px.end())));
  const Bytes lzw = read_binary_file(
      write_tiff(dir, "good-lzw.tif", w, h, 3, 8, std::vector<uint16_t>(px.begin(), px.end()), false, COMPRESSION_LZW));
  testing::internal::CaptureStderr();
  auto one_line = [&](const std::string& file, const Bytes& bytes) {
    try {
      load_image(write(dir, file, bytes));
      ADD_FAILURE() << file << " loaded";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
      EXPECT_NE(m.find(file), std::string::npos) << m;
    }
  };
  one_line("trunc.tif", Bytes(good.begin(), good.begin() + good.size() / 2));  // directory lost
  one_line("head.tif", Bytes(good.begin(), good.begin() + 6));
  // The directory (written last) intact, the compressed strip data garbage.
  Bytes cut = lzw;
  for (size_t i = 8; i < 8 + (lzw.size() - 8) / 3; ++i) cut[i] = 0xFF;  // garbage LZW codes
  one_line("corrupt.tif", cut);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "") << "libtiff printed to stderr";
  // Header claims 12000 x 9000 (108 MP), one row written: refused before decoding.
  const std::string huge =
      write_tiff(dir, "huge.tif", 12000, 9000, 3, 8, std::vector<uint16_t>(36000, 9), false, COMPRESSION_NONE, 1);
  EXPECT_TINV_ERROR(load_image(huge), "limit");
}

// --- formats by content, file lists ---------------------------------------------------------

TEST(Image, FormatComesFromTheBytesNotTheName) {
  test::TempDir dir;
  const Bytes px = rgb_pattern(4, 3);
  EXPECT_EQ(load_image(write(dir, "really-webp.png", webp(4, 3, 3, px, true))).pixels, px);
  EXPECT_EQ(load_image(write(dir, "really-png.webp", stb_png(4, 3, 3, px))).pixels, px);
  const std::string tif = write_tiff(dir, "t.tif", 4, 3, 3, 8, std::vector<uint16_t>(px.begin(), px.end()));
  EXPECT_EQ(load_image(write(dir, "really-tiff.jpg", read_binary_file(tif))).pixels, px);
  const Bytes w = webp(4, 3, 3, px, true);
  EXPECT_EQ(sniff_image_format(w.data(), w.size()), ImageFormat::kWebp);
  const Bytes t = read_binary_file(tif);
  EXPECT_EQ(sniff_image_format(t.data(), t.size()), ImageFormat::kTiff);
  const Bytes p = stb_png(4, 3, 3, px);
  EXPECT_EQ(sniff_image_format(p.data(), p.size()), ImageFormat::kOther);
}

TEST(Image, CollectImageFilesTakesWebpAndTiff) {
  test::TempDir dir;
  for (const char* f : {"a.webp", "B.TIF", "c.tiff", "d.png", "e.txt", ".hidden.png", "f.JPEG"})
    write(dir, f, Bytes{1});
  auto files = collect_image_files({dir.path()});
  std::vector<std::string> names;
  for (const auto& f : files) names.push_back(f.substr(f.rfind('/') + 1));
  EXPECT_EQ(names, (std::vector<std::string>{"B.TIF", "a.webp", "c.tiff", "d.png", "f.JPEG"}));
  EXPECT_TRUE(has_image_extension("x.Tiff"));
  EXPECT_FALSE(has_image_extension("tiff"));
  EXPECT_TINV_ERROR(collect_image_files({dir.file("nothing")}), "no such file");
  test::TempDir empty;
  EXPECT_TINV_ERROR(collect_image_files({empty.path()}), "no image files");
}

}  // namespace
}  // namespace tinv
