#include "io/image_write.h"

#include "common/crc32.h"

#include <stb_image_write.h>
#include <torch/torch.h>

#include <array>
#include <cstring>

#include "common/error.h"
#include "common/fs.h"
#include "common/shape.h"

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

void append_u32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
}

// length, type, data, CRC(type + data)
void append_chunk(std::vector<uint8_t>& out, const char type[4], const std::string& data) {
  append_u32(out, static_cast<uint32_t>(data.size()));
  const size_t type_at = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  append_u32(out, crc32(out.data() + type_at, 4 + data.size()));
}

std::string text_chunk_data(const std::string& keyword, const std::string& text,
                            const std::string& where, bool* international) {
  std::string key;
  TINV_CHECK(to_latin1(decode_utf8(keyword, where), &key) && !key.empty() && key.size() <= 79,
             where, "PNG keyword '", keyword, "' must be 1-79 Latin-1 characters");
  for (unsigned char c : key)
    TINV_CHECK((c >= 32 && c <= 126) || c >= 161, where, "PNG keyword '", keyword,
               "' has a non-printable character");
  TINV_CHECK(key.front() != ' ' && key.back() != ' ' && key.find("  ") == std::string::npos,
             where, "PNG keyword '", keyword, "' has leading, trailing or double spaces");
  std::string latin;
  const auto cps = decode_utf8(text, where);
  *international = !to_latin1(cps, &latin);
  if (!*international) return key + std::string(1, '\0') + latin;  // tEXt
  // iTXt: keyword \0 compression-flag 0, method 0, language "" \0, translated keyword "" \0, text
  TINV_CHECK(text.find('\0') == std::string::npos, where, "PNG text must not contain NUL");
  return key + std::string("\0\0\0\0\0", 5) + text;
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
    hwc = (image.detach().to(torch::kCPU, torch::kFloat32).clamp(0, 1) * 255).round()
              .to(torch::kUInt8).permute({1, 2, 0});
  }
  const int64_t c = hwc.size(2);
  TINV_CHECK(c == 1 || c == 3 || c == 4, where, "image must have 1, 3 or 4 channels, got ",
             shape_str(image.sizes().vec()));
  TINV_CHECK(hwc.size(0) > 0 && hwc.size(1) > 0 && hwc.size(0) < (1 << 24) && hwc.size(1) < (1 << 24),
             where, "bad image size ", shape_str(image.sizes().vec()));
  return hwc.to(torch::kCPU).contiguous();
}

}  // namespace


std::vector<uint8_t> encode_png(const torch::Tensor& image, const TextChunks& text_chunks,
                                const std::string& where) {
  const torch::Tensor hwc = to_hwc_u8(image, where);
  const int h = static_cast<int>(hwc.size(0)), w = static_cast<int>(hwc.size(1));
  const int c = static_cast<int>(hwc.size(2));
  std::vector<uint8_t> png;
  auto sink = [](void* ctx, void* data, int size) {
    auto* v = static_cast<std::vector<uint8_t>*>(ctx);
    v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  TINV_CHECK(stbi_write_png_to_func(sink, &png, w, h, c, hwc.data_ptr<uint8_t>(), w * c) != 0,
             where, "PNG encoding failed");
  // Signature (8) + IHDR chunk (4 length + 4 type + 13 data + 4 CRC).
  constexpr size_t kAfterIhdr = 8 + 25;
  TINV_CHECK(png.size() > kAfterIhdr && std::memcmp(png.data() + 12, "IHDR", 4) == 0, where,
             "unexpected PNG layout from the encoder");
  std::vector<uint8_t> chunks;
  for (const auto& [keyword, text] : text_chunks) {
    bool international = false;
    std::string data = text_chunk_data(keyword, text, where, &international);
    append_chunk(chunks, international ? "iTXt" : "tEXt", data);
  }
  png.insert(png.begin() + kAfterIhdr, chunks.begin(), chunks.end());
  return png;
}

void save_png(const std::string& path, const torch::Tensor& image, const TextChunks& text_chunks) {
  const std::vector<uint8_t> png = encode_png(image, text_chunks, path);
  write_file_atomically(path, png.data(), png.size());
}

torch::Tensor make_grid(const std::vector<torch::Tensor>& images, int64_t cols) {
  TINV_CHECK(!images.empty(), "make_grid", "no images");
  TINV_CHECK(cols >= 1, "make_grid", "cols must be >= 1, got ", cols);
  const auto& first = images.front();
  TINV_CHECK(first.dim() == 3, "make_grid", "images must be [C, H, W], got ",
             shape_str(first.sizes().vec()));
  for (size_t i = 1; i < images.size(); ++i)
    TINV_CHECK(images[i].sizes() == first.sizes() && images[i].scalar_type() == first.scalar_type(),
               "make_grid", "image ", i, " is ", shape_str(images[i].sizes().vec()),
               ", expected ", shape_str(first.sizes().vec()), " like image 0");
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
