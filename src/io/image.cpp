#include "io/image.h"

#include <dirent.h>
#include <stb_image.h>
#include <tiffio.h>
#include <webp/decode.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
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
  uint32_t u16(size_t off) const { return little ? p[off] | (p[off + 1] << 8) : (p[off] << 8) | p[off + 1]; }
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
        case 2: sx = w - 1 - x; break;  // mirror horizontally
        case 3:
          sx = w - 1 - x;
          sy = h - 1 - y;
          break;                        // rotate 180
        case 4: sy = h - 1 - y; break;  // mirror vertically
        case 5:
          sx = y;
          sy = x;
          break;  // transpose
        case 6:
          sx = y;
          sy = h - 1 - x;
          break;  // rotate 90 clockwise
        case 7:
          sx = w - 1 - y;
          sy = h - 1 - x;
          break;  // transverse
        case 8:
          sx = w - 1 - y;
          sy = x;
          break;  // rotate 90 counter-clockwise
      }
      std::copy_n(im.at(sx, sy), 3, out.at(x, y));
    }
  }
  return out;
}

// --- decoding ----------------------------------------------------------------------------

namespace {

void check_dimensions(int64_t w, int64_t h, const std::string& name) {
  TINV_CHECK(w > 0 && h > 0, name, "image has a zero dimension (", w, "x", h, ")");
  TINV_CHECK(w * h <= kMaxImagePixels, name, "image is ", w, "x", h, " pixels, more than the limit of ",
             kMaxImagePixels, " pixels");
}

// 8-bit RGBA -> the image's RGB, alpha over white.
void composite_rgba(const uint8_t* rgba, Image& im) {
  const size_t n = static_cast<size_t>(im.width) * im.height;
  uint8_t* out = im.pixels.data();
  for (size_t i = 0; i < n; ++i, rgba += 4, out += 3) {
    const uint8_t a = rgba[3];
    for (int c = 0; c < 3; ++c) out[c] = a == 255 ? rgba[c] : over_white(rgba[c], a);
  }
}

// --- stb_image (PNG, JPEG, BMP, GIF, TGA, PSD, PNM, HDR)

// The format a file's first bytes announce (PNG, JPEG, GIF, BMP), or nullptr. A file that
// announces one but whose header stb cannot read is truncated or corrupt; stb's own reason for
// that differs between its versions ("unknown image type" in Debian 13's), so we name it.
const char* announced_format(const uint8_t* p, size_t n) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && std::memcmp(p, kPng, 8) == 0) return "PNG";
  if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return "JPEG";
  if (n >= 6 && (std::memcmp(p, "GIF87a", 6) == 0 || std::memcmp(p, "GIF89a", 6) == 0)) return "GIF";
  if (n >= 2 && p[0] == 'B' && p[1] == 'M') return "BMP";
  return nullptr;
}

Image decode_stb(const uint8_t* data, size_t size, const std::string& name) {
  TINV_CHECK(size <= static_cast<size_t>(INT32_MAX), name, "file too large to decode");
  const int len = static_cast<int>(size);
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp)) {
    if (const char* format = announced_format(data, size))
      throw Error(name, str_cat("cannot decode image (truncated or corrupt ", format, " file)"));
    throw Error(name, "not a readable image (" + stb_reason() + ")");
  }
  check_dimensions(w, h, name);
  Image im(w, h);
  const size_t n = static_cast<size_t>(w) * h * 4;
  if (stbi_is_16_bit_from_memory(data, len)) {
    std::unique_ptr<stbi_us, void (*)(void*)> px(stbi_load_16_from_memory(data, len, &w, &h, &comp, 4),
                                                 stbi_image_free);
    if (!px) throw Error(name, "cannot decode image (" + stb_reason() + ")");
    TINV_CHECK(w == im.width && h == im.height, name, "decoded size differs from the header");
    std::vector<uint8_t> rgba(n);
    for (size_t i = 0; i < n; ++i) rgba[i] = static_cast<uint8_t>((px.get()[i] * 2u + 257u) / 514u);
    composite_rgba(rgba.data(), im);
  } else {
    std::unique_ptr<stbi_uc, void (*)(void*)> px(stbi_load_from_memory(data, len, &w, &h, &comp, 4), stbi_image_free);
    if (!px) throw Error(name, "cannot decode image (" + stb_reason() + ")");
    TINV_CHECK(w == im.width && h == im.height, name, "decoded size differs from the header");
    composite_rgba(px.get(), im);
  }
  return im;
}

// --- WebP (libwebp)

const char* webp_status(VP8StatusCode s) {
  switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated file";
    default: return "unknown reason";
  }
}

Image decode_webp(const uint8_t* data, size_t size, const std::string& name) {
  WebPBitstreamFeatures f;
  const VP8StatusCode st = WebPGetFeatures(data, size, &f);
  if (st != VP8_STATUS_OK) throw Error(name, str_cat("not a readable WebP image (", webp_status(st), ")"));
  TINV_CHECK(!f.has_animation, name, "animated WebP is not supported (still images only)");
  check_dimensions(f.width, f.height, name);
  Image im(f.width, f.height);
  const size_t n = static_cast<size_t>(f.width) * f.height;
  WebPDecoderConfig config;
  TINV_CHECK(WebPInitDecoderConfig(&config), name, "libwebp version mismatch");
  config.output.is_external_memory = 1;
  std::vector<uint8_t> rgba;
  if (f.has_alpha) {
    rgba.resize(n * 4);
    config.output.colorspace = MODE_RGBA;
    config.output.u.RGBA.rgba = rgba.data();
    config.output.u.RGBA.stride = f.width * 4;
    config.output.u.RGBA.size = rgba.size();
  } else {
    config.output.colorspace = MODE_RGB;
    config.output.u.RGBA.rgba = im.pixels.data();
    config.output.u.RGBA.stride = f.width * 3;
    config.output.u.RGBA.size = im.pixels.size();
  }
  const VP8StatusCode dst = WebPDecode(data, size, &config);
  WebPFreeDecBuffer(&config.output);  // external memory: frees nothing of ours
  if (dst != VP8_STATUS_OK) throw Error(name, str_cat("cannot decode WebP image (", webp_status(dst), ")"));
  if (f.has_alpha) composite_rgba(rgba.data(), im);
  return im;
}

// --- TIFF (libtiff), read from memory; libtiff's messages are collected, not printed

struct TiffSource {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;
  std::string error;  // the first error libtiff reported
};

tmsize_t tiff_read(thandle_t h, void* buf, tmsize_t n) {
  auto* s = static_cast<TiffSource*>(h);
  if (n <= 0 || s->pos >= s->size) return 0;
  const size_t k = std::min(static_cast<size_t>(n), s->size - s->pos);
  std::memcpy(buf, s->data + s->pos, k);
  s->pos += k;
  return static_cast<tmsize_t>(k);
}
tmsize_t tiff_write(thandle_t, void*, tmsize_t) { return -1; }
toff_t tiff_seek(thandle_t h, toff_t off, int whence) {
  auto* s = static_cast<TiffSource*>(h);
  const uint64_t base = whence == SEEK_CUR ? s->pos : whence == SEEK_END ? s->size : 0;
  if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return static_cast<toff_t>(-1);
  const uint64_t to = base + off;  // toff_t is unsigned: a "negative" offset wraps below base
  if (to > static_cast<uint64_t>(INT64_MAX)) return static_cast<toff_t>(-1);
  s->pos = static_cast<size_t>(to);
  return to;
}
int tiff_close(thandle_t) { return 0; }
toff_t tiff_size(thandle_t h) { return static_cast<TiffSource*>(h)->size; }
int tiff_map(thandle_t, void**, toff_t*) { return 0; }  // no mapping: libtiff reads
void tiff_unmap(thandle_t, void*, toff_t) {}

int tiff_on_error(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  auto* s = static_cast<TiffSource*>(user);
  if (s && s->error.empty()) {
    char buf[512];
    std::vsnprintf(buf, sizeof(buf), fmt, ap);
    s->error = buf;
    for (char& c : s->error)
      if (c == '\n' || c == '\r') c = ' ';
  }
  return 1;  // handled: libtiff prints nothing
}
int tiff_on_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }  // ignored

Image decode_tiff(const uint8_t* data, size_t size, const std::string& name) {
  TiffSource src{data, size, 0, {}};
  std::unique_ptr<TIFFOpenOptions, void (*)(TIFFOpenOptions*)> opts(TIFFOpenOptionsAlloc(), TIFFOpenOptionsFree);
  TINV_CHECK(opts != nullptr, name, "out of memory");
  TIFFOpenOptionsSetErrorHandlerExtR(opts.get(), tiff_on_error, &src);
  TIFFOpenOptionsSetWarningHandlerExtR(opts.get(), tiff_on_warning, &src);
  TIFFOpenOptionsSetMaxSingleMemAlloc(opts.get(), tmsize_t{1} << 30);
  std::unique_ptr<TIFF, void (*)(TIFF*)> tif(
      TIFFClientOpenExt(name.c_str(), "r", &src, tiff_read, tiff_write, tiff_seek, tiff_close, tiff_size, tiff_map,
                        tiff_unmap, opts.get()),
      TIFFClose);
  auto fail = [&](const char* what) {
    std::string why = src.error.empty() ? "unknown reason" : src.error;
    if (why.rfind(name + ": ", 0) == 0) why.erase(0, name.size() + 2);  // libtiff names the file too
    return Error(name, str_cat(what, " (", why, ")"));
  };
  if (!tif) throw fail("not a readable TIFF image");
  uint32_t w = 0, h = 0;
  if (!TIFFGetField(tif.get(), TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif.get(), TIFFTAG_IMAGELENGTH, &h))
    throw fail("TIFF image without a size");
  check_dimensions(w, h, name);
  char why[1024] = "";
  if (!TIFFRGBAImageOK(tif.get(), why)) throw Error(name, str_cat("unsupported TIFF image (", why, ")"));
  // ABGR-packed 8-bit samples, top row first; alpha is associated (premultiplied): libtiff
  // turns unassociated alpha into round(c * a / 255), so c + 255 - a == over_white(c, a).
  std::vector<uint32_t> raster(static_cast<size_t>(w) * h);
  if (!TIFFReadRGBAImageOriented(tif.get(), w, h, raster.data(), ORIENTATION_TOPLEFT, /*stop=*/1) || !src.error.empty())
    throw fail("cannot decode TIFF image");
  Image im(static_cast<int>(w), static_cast<int>(h));
  uint8_t* out = im.pixels.data();
  for (uint32_t p : raster) {
    const int a = static_cast<int>(TIFFGetA(p));
    *out++ = static_cast<uint8_t>(std::min(255, static_cast<int>(TIFFGetR(p)) + 255 - a));
    *out++ = static_cast<uint8_t>(std::min(255, static_cast<int>(TIFFGetG(p)) + 255 - a));
    *out++ = static_cast<uint8_t>(std::min(255, static_cast<int>(TIFFGetB(p)) + 255 - a));
  }
  return im;
}

}  // namespace

ImageFormat sniff_image_format(const uint8_t* p, size_t n) {
  if (n >= 12 && std::memcmp(p, "RIFF", 4) == 0 && std::memcmp(p + 8, "WEBP", 4) == 0) return ImageFormat::kWebp;
  if (n >= 4 && ((p[0] == 'I' && p[1] == 'I' && (p[2] == 42 || p[2] == 43) && p[3] == 0) ||
                 (p[0] == 'M' && p[1] == 'M' && p[2] == 0 && (p[3] == 42 || p[3] == 43))))
    return ImageFormat::kTiff;  // classic TIFF (42) or BigTIFF (43)
  return ImageFormat::kOther;
}

Image load_image_from_memory(const uint8_t* data, size_t size, const std::string& name) {
  TINV_CHECK(size > 0, name, "empty file, not an image");
  switch (sniff_image_format(data, size)) {
    case ImageFormat::kWebp: return decode_webp(data, size, name);
    case ImageFormat::kTiff: return decode_tiff(data, size, name);
    case ImageFormat::kOther: break;
  }
  return apply_exif_orientation(decode_stb(data, size, name), jpeg_exif_orientation(data, size));
}

Image load_image(const std::string& path) {
  std::vector<uint8_t> bytes = read_binary_file(path);
  return load_image_from_memory(bytes.data(), bytes.size(), path);
}

// --- image files ---------------------------------------------------------------------------

bool has_image_extension(const std::string& name) {
  auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* e :
       {"png", "jpg", "jpeg", "bmp", "gif", "tga", "psd", "pnm", "ppm", "pgm", "hdr", "webp", "tif", "tiff"})
    if (ext == e) return true;
  return false;
}

namespace {

std::vector<std::string> list_images(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  TINV_CHECK(d != nullptr, dir, "cannot open folder");
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    if (name.empty() || name[0] == '.' || !has_image_extension(name)) continue;
    std::string p = join_path(dir, name);
    if (file_exists(p) && !dir_exists(p)) out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<std::string> collect_image_files(const std::vector<std::string>& paths) {
  TINV_CHECK(!paths.empty(), "--image", "no image given");
  std::vector<std::string> out;
  for (const auto& p : paths) {
    if (dir_exists(p)) {
      auto files = list_images(p);
      TINV_CHECK(!files.empty(), p, "no image files (png, jpg, webp, tiff, ...) in the folder");
      out.insert(out.end(), files.begin(), files.end());
    } else {
      TINV_CHECK(file_exists(p), p, "no such file or folder");
      out.push_back(p);
    }
  }
  return out;
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
  std::vector<int> bounds;  // [xmin, count] per output pixel
  std::vector<int32_t> k;   // out_size * ksize
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

}  // namespace tinv
