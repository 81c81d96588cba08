// Image input: every kind of file loads as 8-bit RGB, EXIF orientation, bad files, PIL resize.
#include <stb_image_write.h>
#include <torch/torch.h>

#include <fstream>

#include "common/fs.h"
#include "io/image.h"
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
  Bytes z = {0x78, 0x01, 0x01, static_cast<uint8_t>(raw.size()), static_cast<uint8_t>(raw.size() >> 8),
             static_cast<uint8_t>(~raw.size()), static_cast<uint8_t>(~raw.size() >> 8)};  // one stored block
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
  Image ga = load_image(write(dir, "ga.png", stb_png(1, 1, 2, {77, 0})));
  expect_pixel(ga, 0, 0, 77, 77, 77);  // alpha dropped, not composited
  Image rgba = load_image(write(dir, "rgba.png", stb_png(1, 2, 4, {1, 2, 3, 0, 250, 251, 252, 128})));
  ASSERT_EQ(rgba.height, 2);
  expect_pixel(rgba, 0, 0, 1, 2, 3);
  expect_pixel(rgba, 0, 1, 250, 251, 252);
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
  Bytes tiff = big_endian ? Bytes{'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1,
                                  0, static_cast<uint8_t>(orientation), 0, 0, 0, 0, 0, 0, 0, 0}
                          : Bytes{'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0,
                                  static_cast<uint8_t>(orientation), 0, 0, 0, 0, 0, 0, 0};
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
  EXPECT_EQ(v(r6, 0, 0), 1);   // bottom-left goes to top-left
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
  Bytes gif = {'G', 'I', 'F', '8', '9', 'a', 2, 0, 1, 0, 0x80, 0, 0, 255, 0, 0, 0, 0, 255,
               0x2C, 0, 0, 0, 0, 2, 0, 1, 0, 0, 2, 2, 0x0C, 0x0A, 0,
               0x2C, 0, 0, 0, 0, 2, 0, 1, 0, 0, 2, 2, 0x44, 0x0A, 0, 0x3B};
  Image g = load_image(write(dir, "a.gif", gif));
  ASSERT_EQ(g.width, 2);
  expect_pixel(g, 0, 0, 0, 0, 255);
  expect_pixel(g, 1, 0, 255, 0, 0);
}

TEST(Image, BadFilesThrowNamingTheFile) {
  test::TempDir dir;
  EXPECT_TINV_ERROR(load_image(dir.file("missing.png")), "missing.png");
  EXPECT_TINV_ERROR(load_image(write(dir, "empty.png", {})), "empty.png: empty file");
  EXPECT_TINV_ERROR(load_image(write(dir, "text.jpg", Bytes{'h', 'e', 'l', 'l', 'o', '\n'})), "text.jpg: not a readable image");
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
  for (size_t i = 0; i < r.rgb.size(); ++i) {
    s += r.rgb[i];
    wsum += (static_cast<int64_t>(r.rgb[i]) * static_cast<int64_t>(i)) % 1000003;
  }
  EXPECT_EQ(s, sum);
  EXPECT_EQ(wsum, weighted);
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(r.rgb[i], first[i]) << "at " << i;
}

TEST(Image, BicubicResizeMatchesPillow) {
  Image im = pattern();
  Image down = resize_bicubic_pil(im, 5, 4);
  std::vector<int> expected = {108, 129, 140, 124, 137, 147, 126, 125, 132, 116, 126, 139, 121, 146, 120,
                               122, 144, 123, 143, 136, 124, 142, 135, 123, 126, 133, 119, 139, 133, 139,
                               118, 128, 138, 125, 123, 126, 137, 127, 127, 127, 124, 118, 135, 96, 145,
                               154, 111, 133, 146, 125, 124, 110, 131, 137, 133, 140, 128, 124, 120, 151};
  ASSERT_EQ(down.rgb.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(down.rgb[i], expected[i]) << "at " << i;
  expect_digest(resize_bicubic_pil(im, 29, 23), 259358, 260210181, {0, 42, 95, 0, 49, 101, 11, 64, 116, 31, 84, 138});
  expect_digest(resize_bicubic_pil(im, 7, 11), 29912, 3449162, {17, 70, 123, 83, 136, 198, 161, 214, 182, 163, 78, 61});
  expect_digest(resize_bicubic_pil(im, 13, 4), 20222, 1569446, {78, 131, 122, 128, 113, 171, 103, 161, 115, 153, 106, 145});
  Image bil = resize_pil(im, 5, 4, ResampleFilter::kBilinear);
  int64_t s = 0;
  for (uint8_t v : bil.rgb) s += v;
  EXPECT_EQ(s, 7775);
  EXPECT_EQ(bil.rgb[0], 110);
  EXPECT_TINV_ERROR(resize_bicubic_pil(im, 0, 4), "invalid");
}

TEST(Image, ToTensorIsChannelsFirst) {
  Image im(2, 1);
  im.at(1, 0)[2] = 200;
  auto t = image_to_tensor(im);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{3, 1, 2}));
  EXPECT_EQ(t[2][0][1].item<float>(), 200.0f);
}

}  // namespace
}  // namespace tinv
