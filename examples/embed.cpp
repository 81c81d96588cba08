// Embeds tinv through its public header alone (include/tinv/tinv.h): caption one image, learn
// the concept with caption initialisation, and put it into a new prompt.
//
//   tinv_example IMAGE OUT_DIR [--steps N] [--model DIR] [--captioner DIR] [--prompt TEXT]
//
// Defaults: the bundled world models, 100 steps, the prompt "a picture of {} on a green
// checkered background" ({} is replaced by the learned trigger). Writes OUT_DIR/concept.safetensors
// and OUT_DIR/generated.png, and prints the caption, the trigger and the files.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "tinv/tinv.h"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: tinv_example IMAGE OUT_DIR [--steps N] [--model DIR] [--captioner DIR] "
               "[--prompt TEXT]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string image_path = argv[1], out_dir = argv[2];
  int steps = 100;
  std::string model, captioner_dir, prompt = "a picture of {} on a green checkered background";
  for (int i = 3; i + 1 < argc + 1; i += 2) {
    if (i + 1 >= argc) return usage();
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--steps")
      steps = std::atoi(value.c_str());
    else if (flag == "--model")
      model = value;
    else if (flag == "--captioner")
      captioner_dir = value;
    else if (flag == "--prompt")
      prompt = value;
    else
      return usage();
  }
  try {
    std::printf("%s\n", tinv::api::version().c_str());

    // 1. Caption the image.
    auto captioner = tinv::api::load_captioner({captioner_dir, tinv::api::Device::cpu()});
    const tinv::api::RgbImage image = tinv::api::read_image(image_path);
    tinv::api::CaptionParams cp;
    cp.beams = 1;
    const std::string caption = tinv::api::caption(*captioner, image, cp);
    std::printf("caption: %s\n", caption.c_str());

    // 2. Learn the concept from that one image; the caption's tokens initialise the rows.
    tinv::api::InvertParams ip;
    ip.model = model;
    ip.images = {image_path};
    ip.caption = caption;
    ip.steps = steps;
    ip.name = "concept";
    ip.out = out_dir + "/concept.safetensors";
    ip.device = tinv::api::Device::cpu();
    const tinv::api::InvertOutput learned = tinv::api::invert(ip);
    std::printf("trigger: %s (%d steps)\n", learned.trigger.c_str(), learned.steps_done);
    for (const auto& f : learned.files) std::printf("wrote %s\n", f.c_str());

    // 3. A new prompt with the learned trigger.
    auto sd = tinv::api::load_model({model, tinv::api::Device::cpu()});
    tinv::api::GenerateParams gp;
    const size_t at = prompt.find("{}");
    gp.prompt = at == std::string::npos ? prompt : prompt.replace(at, 2, learned.trigger);
    gp.embeddings = {learned.files.front()};
    gp.steps = 25;
    gp.cfg = 5.0;
    gp.seed = 1;
    const tinv::api::GenerateOutput out = tinv::api::generate(*sd, gp);
    const std::string png = out_dir + "/generated.png";
    tinv::api::write_png(png, out.images.front(), out.parameters.front());
    std::printf("prompt: %s\nwrote %s (%dx%d)\n", gp.prompt.c_str(), png.c_str(), out.images.front().width,
                out.images.front().height);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tinv_example: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
