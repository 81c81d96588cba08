#include "io/image.h"

#include <stb_image.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "common/error.h"
#include "common/fs.h"

namespace tinv {
namespace {

std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r ? r : "unknown reason";
}

// --- EXIF --------------------------------------------------------------------------------

struct TiffReader {
  const uint8_t* p;
  size_t n;
  bool little;
  bool ok(size_t off, size_t len) const { return off <= n && len <= n - off; }
  uint32_t u16(size_t off) const {
    return little ? p[off] | (p[off + 1] << 8) : (p[off] << 8) | p[off + 1];
  }
  uint32_t u32(size_t off) const {
    return little ? p[off] | (p[off + 1] << 8) | (p[off + 2] << 16) | (uint32_t(p[off + 3]) << 24)
                  : (uint32_t(p[off]) << 24) | (p[off + 1] << 16) | (p[off + 2] << 8) | p[off + 3];
  }
};

// Orientation tag (0x0112) of IFD0 in a TIFF block ("II*\0" / "MM\0*"); 1 when absent.
int tiff_orientation(const uint8_t* p, size_t n) {
  if (n < 8) return 1;
  TiffReader r{p, n, p[0] == 'I' && p[1] == 'I'};
  if (!r.little && !(p[0] == 'M' && p[1] == 'M')) return 1;
  if (r.u16(2) != 42) return 1;
  size_t ifd = r.u32(4);
  if (!r.ok(ifd, 2)) return 1;
  uint32_t count = r.u16(ifd);
  for (uint32_t i = 0; i < count; ++i) {
    size_t e = ifd + 2 + 12 * static_cast<size_t>(i);
    if (!r.ok(e, 12)) return 1;
    if (r.u16(e) == 0x0112 && r.u16(e + 2) == 3 /* SHORT */) {
      int v = static_cast<int>(r.u16(e + 8));
      return v >= 1 && v <= 8 ? v : 1;
    }
  }
  return 1;
}

}  // namespace

int jpeg_exif_orientation(const uint8_t* data, size_t size) {
  if (size < 4 || data[0] != 0xFF || data[1] != 0xD8) return 1;
  size_t pos = 2;
  while (pos + 4 <= size) {
    if (data[pos] != 0xFF) return 1;
    uint8_t marker = data[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return 1;  // start of scan / end of image
    size_t len = (data[pos + 2] << 8) | data[pos + 3];
    if (len < 2 || pos + 2 + len > size) return 1;
    const uint8_t* seg = data + pos + 4;
    size_t seg_len = len - 2;
    if (marker == 0xE1 && seg_len >= 6 && std::equal(seg, seg + 6, "Exif\0\0"))
      return tiff_orientation(seg + 6, seg_len - 6);
    pos += 2 + len;
  }
  return 1;
}

Image apply_exif_orientation(const Image& im, int orientation) {
  if (orientation < 2 || orientation > 8) return im;
  const int w = im.width, h = im.height;
  const bool swap = orientation >= 5;
  Image out(swap ? h : w, swap ? w : h);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;
      switch (orientation) {
        case 2: sx = w - 1 - x; break;                     // mirror horizontally
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;     // rotate 180
        case 4: sy = h - 1 - y; break;                     // mirror vertically
        case 5: sx = y; sy = x; break;                     // transpose
        case 6: sx = y; sy = h - 1 - x; break;             // rotate 90 clockwise
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;     // transverse
        case 8: sx = w - 1 - y; sy = x; break;             // rotate 90 counter-clockwise
      }
      std::copy_n(im.at(sx, sy), 3, out.at(x, y));
    }
  }
  return out;
}

// --- decoding ----------------------------------------------------------------------------

Image load_image_from_memory(const uint8_t* data, size_t size, const std::string& name) {
  TINV_CHECK(size > 0, name, "empty file, not an image");
  TINV_CHECK(size <= static_cast<size_t>(INT32_MAX), name, "file too large to decode");
  const int len = static_cast<int>(size);
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp))
    throw Error(name, "not a readable image (" + stb_reason() + ")");
  TINV_CHECK(w > 0 && h > 0, name, "image has a zero dimension (", w, "x", h, ")");
  TINV_CHECK(static_cast<int64_t>(w) * h <= kMaxImagePixels, name, "image is ", w, "x", h,
             " pixels, more than the limit of ", kMaxImagePixels, " pixels");
  Image im(w, h);
  if (stbi_is_16_bit_from_memory(data, len)) {
    std::unique_ptr<stbi_us, void (*)(void*)> px(stbi_load_16_from_memory(data, len, &w, &h, &comp, 3),
                                                 stbi_image_free);
    if (!px) throw Error(name, "cannot decode image (" + stb_reason() + ")");
    TINV_CHECK(w == im.width && h == im.height, name, "decoded size differs from the header");
    for (size_t i = 0; i < im.rgb.size(); ++i) im.rgb[i] = static_cast<uint8_t>((px.get()[i] * 2u + 257u) / 514u);
  } else {
    std::unique_ptr<stbi_uc, void (*)(void*)> px(stbi_load_from_memory(data, len, &w, &h, &comp, 3),
                                                 stbi_image_free);
    if (!px) throw Error(name, "cannot decode image (" + stb_reason() + ")");
    TINV_CHECK(w == im.width && h == im.height, name, "decoded size differs from the header");
    std::copy_n(px.get(), im.rgb.size(), im.rgb.begin());
  }
  return apply_exif_orientation(im, jpeg_exif_orientation(data, size));
}

Image load_image(const std::string& path) {
  std::vector<uint8_t> bytes = read_binary_file(path);
  return load_image_from_memory(bytes.data(), bytes.size(), path);
}

// --- PIL resampling (Pillow src/libImaging/Resample.c) ----------------------------------

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Fixed-point coefficients of one output axis: for output i, taps bounds[2i] .. +bounds[2i+1].
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;   // [xmin, count] per output pixel
  std::vector<int32_t> k;    // out_size * ksize
};

Coeffs precompute_coeffs(int in_size, int out_size, ResampleFilter filter) {
  double (*fn)(double) = filter == ResampleFilter::kBicubic ? bicubic_filter : bilinear_filter;
  const double filter_support = filter == ResampleFilter::kBicubic ? 2.0 : 1.0;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = filter_support * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(2 * static_cast<size_t>(out_size));
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = fn((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

uint8_t clip8(int64_t acc) {
  int64_t v = acc >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal pass over rows [y0, y0 + rows) of `in`.
Image resample_horizontal(const Image& in, int out_w, int y0, int rows, const Coeffs& c) {
  Image out(out_w, rows);
  for (int y = 0; y < rows; ++y) {
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[2 * xx], n = c.bounds[2 * xx + 1];
      const int32_t* k = &c.k[static_cast<size_t>(xx) * c.ksize];
      int64_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
      for (int x = 0; x < n; ++x) {
        const uint8_t* p = in.at(x + xmin, y + y0);
        for (int ch = 0; ch < 3; ++ch) acc[ch] += static_cast<int64_t>(p[ch]) * k[x];
      }
      uint8_t* o = out.at(xx, y);
      for (int ch = 0; ch < 3; ++ch) o[ch] = clip8(acc[ch]);
    }
  }
  return out;
}

// Vertical pass; bounds are relative to the first row of `in` minus `y_shift`.
Image resample_vertical(const Image& in, int out_h, int y_shift, const Coeffs& c) {
  Image out(in.width, out_h);
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[2 * yy] - y_shift, n = c.bounds[2 * yy + 1];
    const int32_t* k = &c.k[static_cast<size_t>(yy) * c.ksize];
    for (int x = 0; x < in.width; ++x) {
      int64_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
      for (int y = 0; y < n; ++y) {
        const uint8_t* p = in.at(x, y + ymin);
        for (int ch = 0; ch < 3; ++ch) acc[ch] += static_cast<int64_t>(p[ch]) * k[y];
      }
      uint8_t* o = out.at(x, yy);
      for (int ch = 0; ch < 3; ++ch) o[ch] = clip8(acc[ch]);
    }
  }
  return out;
}

}  // namespace

Image resize_pil(const Image& im, int width, int height, ResampleFilter filter) {
  TINV_CHECK(width >= 1 && height >= 1, "resize", "target size ", width, "x", height, " is invalid");
  TINV_CHECK(im.width >= 1 && im.height >= 1, "resize", "empty source image");
  const bool need_h = width != im.width, need_v = height != im.height;
  if (!need_h && !need_v) return im;
  Coeffs cv = precompute_coeffs(im.height, height, filter);
  // Only the source rows the vertical pass reads go through the horizontal pass.
  const int y_first = cv.bounds[0];
  const int y_last = cv.bounds[2 * (height - 1)] + cv.bounds[2 * (height - 1) + 1];
  if (!need_h) return resample_vertical(im, height, 0, cv);
  Coeffs ch = precompute_coeffs(im.width, width, filter);
  if (!need_v) return resample_horizontal(im, width, 0, im.height, ch);
  Image tmp = resample_horizontal(im, width, y_first, y_last - y_first, ch);
  return resample_vertical(tmp, height, y_first, cv);
}

torch::Tensor image_to_tensor(const Image& im) {
  auto t = torch::from_blob(const_cast<uint8_t*>(im.rgb.data()), {im.height, im.width, 3}, torch::kUInt8);
  return t.permute({2, 0, 1}).to(torch::kFloat32).contiguous();  // [3, H, W]
}

}  // namespace tinv
