#include "io/image_write.h"

#include <png.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <new>

#include "common/error.h"
#include "common/fs.h"
#include "common/shape.h"
#include "io/image_tensor.h"

namespace tinv {
namespace {

// Decodes UTF-8 into code points; throws on malformed input.
std::vector<uint32_t> decode_utf8(const std::string& s, const std::string& where) {
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    TINV_CHECK(len > 0 && i + len <= s.size(), where, "text is not valid UTF-8 at byte ", i);
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      TINV_CHECK((cc & 0xC0) == 0x80, where, "text is not valid UTF-8 at byte ", i + k);
      cp = (cp << 6) | (cc & 0x3F);
    }
    cps.push_back(cp);
    i += len;
  }
  return cps;
}

// Latin-1 bytes of a UTF-8 string, or false when some character is outside Latin-1.
bool to_latin1(const std::vector<uint32_t>& cps, std::string* out) {
  out->clear();
  for (uint32_t cp : cps) {
    if (cp > 0xFF || cp == 0) return false;
    out->push_back(static_cast<char>(cp));
  }
  return true;
}

// One text chunk as libpng takes it: keyword and text in Latin-1 (tEXt) or, when the text has
// characters outside Latin-1, the text in UTF-8 (iTXt, uncompressed, no language).
struct TextChunk {
  std::string key, text;
  bool international = false;
};

TextChunk text_chunk(const std::string& keyword, const std::string& text, const std::string& where) {
  TextChunk out;
  TINV_CHECK(to_latin1(decode_utf8(keyword, where), &out.key) && !out.key.empty() && out.key.size() <= 79, where,
             "PNG keyword '", keyword, "' must be 1-79 Latin-1 characters");
  for (unsigned char c : out.key)
    TINV_CHECK((c >= 32 && c <= 126) || c >= 161, where, "PNG keyword '", keyword, "' has a non-printable character");
  TINV_CHECK(out.key.front() != ' ' && out.key.back() != ' ' && out.key.find("  ") == std::string::npos, where,
             "PNG keyword '", keyword, "' has leading, trailing or double spaces");
  const auto cps = decode_utf8(text, where);
  out.international = !to_latin1(cps, &out.text);
  if (out.international) {
    TINV_CHECK(text.find('\0') == std::string::npos, where, "PNG text must not contain NUL");
    out.text = text;
  }
  return out;
}

// --- libpng, to memory. Errors longjmp back into write_png_rows, which holds no C++ object.

struct PngSink {
  std::vector<uint8_t>* out;
  char error[256];
};

void png_on_error(png_structp png, png_const_charp msg) {
  auto* sink = static_cast<PngSink*>(png_get_error_ptr(png));
  std::snprintf(sink->error, sizeof(sink->error), "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}
void png_on_warning(png_structp, png_const_charp) {}

void png_on_write(png_structp png, png_bytep data, size_t size) {
  auto* sink = static_cast<PngSink*>(png_get_io_ptr(png));
  bool ok = true;
  try {
    sink->out->insert(sink->out->end(), data, data + size);
  } catch (const std::bad_alloc&) {
    ok = false;
  }
  if (!ok) png_error(png, "out of memory");
}
void png_on_flush(png_structp) {}

bool write_png_rows(PngSink* sink, const uint8_t* px, int w, int h, int c, png_text* texts, int num_texts) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, png_on_error, png_on_warning);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  const int type = c == 1 ? PNG_COLOR_TYPE_GRAY : c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGB_ALPHA;
  png_set_write_fn(png, sink, png_on_write, png_on_flush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(w), static_cast<png_uint_32>(h), 8, type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (num_texts > 0) png_set_text(png, info, texts, num_texts);  // written before IDAT
  png_write_info(png, info);
  const size_t stride = static_cast<size_t>(w) * c;
  for (int y = 0; y < h; ++y) png_write_row(png, px + stride * y);
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

// uint8 [H, W, C] contiguous pixels from either accepted layout.
torch::Tensor to_hwc_u8(const torch::Tensor& image, const std::string& where) {
  TINV_CHECK(image.dim() == 3, where, "image must be [C, H, W] float or [H, W, C] uint8, got ",
             shape_str(image.sizes().vec()));
  torch::Tensor hwc;
  if (image.scalar_type() == torch::kUInt8) {
    hwc = image;
  } else {
    TINV_CHECK(image.is_floating_point(), where, "image must be float or uint8");
    hwc = unit_to_hwc_uint8(image, where);
  }
  const int64_t c = hwc.size(2);
  TINV_CHECK(c == 1 || c == 3 || c == 4, where, "image must have 1, 3 or 4 channels, got ",
             shape_str(image.sizes().vec()));
  TINV_CHECK(hwc.size(0) > 0 && hwc.size(1) > 0 && hwc.size(0) < (1 << 24) && hwc.size(1) < (1 << 24), where,
             "bad image size ", shape_str(image.sizes().vec()));
  return hwc.to(torch::kCPU).contiguous();
}

}  // namespace

std::vector<uint8_t> encode_png(const torch::Tensor& image, const TextChunks& text_chunks, const std::string& where) {
  const torch::Tensor hwc = to_hwc_u8(image, where);
  const int h = static_cast<int>(hwc.size(0)), w = static_cast<int>(hwc.size(1));
  const int c = static_cast<int>(hwc.size(2));
  std::vector<TextChunk> chunks;
  for (const auto& [keyword, text] : text_chunks) chunks.push_back(text_chunk(keyword, text, where));
  std::vector<png_text> texts(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    png_text& t = texts[i];
    std::memset(&t, 0, sizeof(t));
    t.compression = chunks[i].international ? PNG_ITXT_COMPRESSION_NONE : PNG_TEXT_COMPRESSION_NONE;
    t.key = const_cast<char*>(chunks[i].key.c_str());
    t.text = const_cast<char*>(chunks[i].text.c_str());
    if (chunks[i].international)
      t.itxt_length = chunks[i].text.size();
    else
      t.text_length = chunks[i].text.size();
  }
  std::vector<uint8_t> png;
  PngSink sink{&png, ""};
  if (!write_png_rows(&sink, hwc.data_ptr<uint8_t>(), w, h, c, texts.data(), static_cast<int>(texts.size())))
    throw Error(where, str_cat("PNG encoding failed (", sink.error[0] ? sink.error : "libpng could not start", ")"));
  return png;
}

std::vector<uint8_t> encode_png(const Image& image, const TextChunks& text_chunks, const std::string& where) {
  return encode_png(image_to_hwc(image), text_chunks, where);
}

void save_png(const std::string& path, const torch::Tensor& image, const TextChunks& text_chunks) {
  const std::vector<uint8_t> png = encode_png(image, text_chunks, path);
  write_file_atomically(path, png.data(), png.size());
}

void save_png(const std::string& path, const Image& image, const TextChunks& text_chunks) {
  const std::vector<uint8_t> png = encode_png(image, text_chunks, path);
  write_file_atomically(path, png.data(), png.size());
}

torch::Tensor make_grid(const std::vector<torch::Tensor>& images, int64_t cols) {
  TINV_CHECK(!images.empty(), "make_grid", "no images");
  TINV_CHECK(cols >= 1, "make_grid", "cols must be >= 1, got ", cols);
  const auto& first = images.front();
  TINV_CHECK(first.dim() == 3, "make_grid", "images must be [C, H, W], got ", shape_str(first.sizes().vec()));
  for (size_t i = 1; i < images.size(); ++i)
    TINV_CHECK(images[i].sizes() == first.sizes() && images[i].scalar_type() == first.scalar_type(), "make_grid",
               "image ", i, " is ", shape_str(images[i].sizes().vec()), ", expected ", shape_str(first.sizes().vec()),
               " like image 0");
  const int64_t n = static_cast<int64_t>(images.size());
  cols = std::min(cols, n);
  const int64_t rows = (n + cols - 1) / cols;
  const int64_t c = first.size(0), h = first.size(1), w = first.size(2);
  auto grid = torch::zeros({c, rows * h, cols * w}, first.options());  // [C, rows*H, cols*W]
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, q = i % cols;
    grid.slice(1, r * h, (r + 1) * h).slice(2, q * w, (q + 1) * w).copy_(images[i]);
  }
  return grid;
}

}  // namespace tinv
