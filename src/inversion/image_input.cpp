#include "inversion/image_input.h"

#include <stb/stb_image.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <dirent.h>
#include <memory>

#include "common/error.h"
#include "common/fs.h"
#include "io/image.h"

namespace tinv {
namespace {

bool has_image_extension(const std::string& name) {
  auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  for (const char* e : {"png", "jpg", "jpeg", "bmp", "gif", "tga", "psd", "pnm", "ppm", "pgm", "hdr"})
    if (ext == e) return true;
  return false;
}

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
      TINV_CHECK(!files.empty(), p, "no image files (png, jpg, ...) in the folder");
      out.insert(out.end(), files.begin(), files.end());
    } else {
      TINV_CHECK(file_exists(p), p, "no such file or folder");
      out.push_back(p);
    }
  }
  return out;
}

torch::Tensor read_rgb_image(const std::string& path) {
  std::vector<uint8_t> bytes = read_binary_file(path);
  TINV_CHECK(!bytes.empty(), path, "empty file, not an image");
  int w = 0, h = 0, channels = 0;
  if (stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &channels))
    TINV_CHECK(static_cast<int64_t>(w) * h <= kMaxImagePixels, path, "image is ", w, "x", h,
               ", above the limit of ", kMaxImagePixels / 1000000, " megapixels");
  // RGBA: stb converts gray, gray+alpha, palette and 16-bit data to 8-bit RGBA.
  std::unique_ptr<stbi_uc, void (*)(void*)> px(
      stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &channels, 4),
      stbi_image_free);
  if (!px) {
    const char* why = stbi_failure_reason();
    throw Error(path, str_cat("cannot decode image (", why ? why : "unknown reason",
                              "): unreadable, truncated, or not a PNG/JPEG/BMP/GIF/TGA file"));
  }
  TINV_CHECK(w > 0 && h > 0, path, "image has no pixels");
  auto rgba = torch::from_blob(px.get(), {h, w, 4}, torch::kUInt8).to(torch::kFloat32);
  auto alpha = rgba.slice(2, 3, 4) / 255.0f;                       // [H, W, 1]
  auto rgb = rgba.slice(2, 0, 3) * alpha + 255.0f * (1 - alpha);  // over white
  rgb = rgb.round().clamp(0, 255).to(torch::kUInt8).contiguous();
  // Cameras store rotated JPEGs with an EXIF orientation tag; honour it as viewers do.
  int orientation = jpeg_exif_orientation(bytes.data(), bytes.size());
  if (orientation > 1) {
    Image img(w, h);
    std::copy(rgb.data_ptr<uint8_t>(), rgb.data_ptr<uint8_t>() + rgb.numel(), img.rgb.begin());
    img = apply_exif_orientation(img, orientation);
    rgb = torch::from_blob(img.rgb.data(), {img.height, img.width, 3}, torch::kUInt8).clone();
  }
  return rgb;
}

torch::Tensor prepare_training_image(const torch::Tensor& rgb, int64_t resolution, std::string* note) {
  TINV_CHECK(rgb.dim() == 3 && rgb.size(2) == 3 && rgb.scalar_type() == torch::kUInt8, "image",
             "expected uint8 [H, W, 3], got ", rgb.sizes());
  TINV_CHECK(resolution >= 8, "--resolution", "must be >= 8, got ", resolution);
  const int64_t h = rgb.size(0), w = rgb.size(1), side = std::min(h, w);
  std::string msg;
  if (side * 10 < std::max(h, w) * 9)
    msg += str_cat("centre-cropped ", w, "x", h, " to ", side, "x", side, "; ");
  if (side < resolution)
    msg += str_cat("upscaled ", side, "px to ", resolution, "px (small image: expect blur); ");
  else if (side > 4 * resolution)
    msg += str_cat("downscaled ", side, "px to ", resolution, "px; ");
  if (note) *note = msg.empty() ? msg : msg.substr(0, msg.size() - 2);
  const int64_t top = (h - side) / 2, left = (w - side) / 2;
  auto x = rgb.slice(0, top, top + side).slice(1, left, left + side);  // [S, S, 3]
  x = x.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32);          // [1, 3, S, S]
  if (side != resolution) {
    namespace F = torch::nn::functional;
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{resolution, resolution})
                              .mode(torch::kBilinear)
                              .align_corners(false)
                              .antialias(side > resolution));
  }
  return (x[0] / 127.5 - 1.0).clamp(-1, 1).contiguous();  // [3, R, R]
}

}  // namespace tinv
