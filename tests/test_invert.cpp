// Textual inversion: optimizer, schedules, templates, image input, the trainer core, and
// `tinv invert` end to end on the tiny fixture model (32x32 images made here), including a
// real SIGKILL + --resume. PythonTorchLoad runs only under ctest's `python` label.
#include <ATen/CPUGeneratorImpl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "apps/invert.h"
#include "common/crc32.h"
#include "common/fs.h"
#include "inversion/image_input.h"
#include "inversion/lr_schedule.h"
#include "inversion/method.h"
#include "inversion/optimizer.h"
#include "inversion/templates.h"
#include "inversion/trainer.h"
#include "io/embeddings.h"
#include "io/image.h"
#include "io/image_tensor.h"
#include "io/image_write.h"
#include "io/safetensors.h"
#include "models/stable_diffusion.h"
#include "test_util.h"
#include "text/clip_tokenizer.h"
#include "text/extra_tokens.h"

namespace fs = std::filesystem;

namespace tinv {
namespace {

std::string model_dir() { return test::fixture("tiny-sd15/model"); }

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A 32x32 test picture: a red square on a blue-grey background.
torch::Tensor test_picture(int64_t h = 32, int64_t w = 32) {
  auto img = torch::full({h, w, 3}, 90, torch::kUInt8);
  img.select(2, 2).fill_(160);
  img.slice(0, h / 4, 3 * h / 4).slice(1, w / 4, 3 * w / 4).select(2, 0).fill_(230);
  return img;
}

std::string write_picture(const test::TempDir& dir, const std::string& name) {
  std::string p = dir.file(name);
  save_png(p, test_picture());
  return p;
}

// PNG chunks by hand (for palette and 16-bit images stb_image_write cannot make).
void put32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
}
void chunk(std::vector<uint8_t>& png, const char* type, const std::vector<uint8_t>& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  std::vector<uint8_t> td(type, type + 4);
  td.insert(td.end(), data.begin(), data.end());
  png.insert(png.end(), td.begin(), td.end());
  put32(png, crc32(td.data(), td.size()));
}
// Raw scanlines (filter byte included) -> a PNG with one stored (uncompressed) zlib block.
std::vector<uint8_t> make_png(int w, int h, int depth, int color, const std::vector<uint8_t>& raw,
                              const std::vector<uint8_t>& plte = {}) {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}, ihdr;
  put32(ihdr, w), put32(ihdr, h);
  ihdr.insert(ihdr.end(), {static_cast<uint8_t>(depth), static_cast<uint8_t>(color), 0, 0, 0});
  chunk(png, "IHDR", ihdr);
  if (!plte.empty()) chunk(png, "PLTE", plte);
  std::vector<uint8_t> z = {0x78, 0x01, 0x01};
  uint16_t len = static_cast<uint16_t>(raw.size());
  z.insert(z.end(), {static_cast<uint8_t>(len), static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(~len),
                     static_cast<uint8_t>(~len >> 8)});
  z.insert(z.end(), raw.begin(), raw.end());
  uint32_t a = 1, b = 0;
  for (uint8_t c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  put32(z, (b << 16) | a);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", {});
  return png;
}

InvertOptions tiny_options(const test::TempDir& dir, const std::string& image) {
  InvertOptions o;
  o.model = model_dir();
  o.images = {image};
  o.caption = "a red cube on a table";
  o.steps = 4;
  o.name = "redcube";
  o.out = dir.file("redcube.safetensors");
  o.format = OutputFormat::kAll;
  o.eval_every = 2;
  o.progress = false;
  return o;
}

// ---- small parts ----

// AdamW itself: tests/test_optimizer.cpp.

TEST(LrSchedule, Kinds) {
  auto c = LrSchedule::make(LrScheduleKind::kConstant, 1e-2, 100);
  EXPECT_DOUBLE_EQ(c.at(0), 1e-2);
  auto w = LrSchedule::make(LrScheduleKind::kWarmup, 1e-2, 100);
  EXPECT_EQ(w.warmup_steps, 10);
  EXPECT_DOUBLE_EQ(w.at(0), 1e-3);
  EXPECT_DOUBLE_EQ(w.at(50), 1e-2);
  auto cos = LrSchedule::make(LrScheduleKind::kCosine, 1e-2, 100);
  EXPECT_DOUBLE_EQ(cos.at(0), 1e-2);
  EXPECT_NEAR(cos.at(50), 5e-3, 1e-12);
  EXPECT_TINV_ERROR(LrSchedule::make(LrScheduleKind::kCosine, 0, 10), "--lr");
  EXPECT_TINV_ERROR(LrSchedule::make(LrScheduleKind::kCosine, 1e-2, 0), "--steps");
}

TEST(LrSchedule, ParseAndName) {
  for (auto k : {LrScheduleKind::kConstant, LrScheduleKind::kCosine, LrScheduleKind::kWarmup})
    EXPECT_EQ(parse_lr_schedule(to_string(k)), k);
  EXPECT_EQ(to_string(LrScheduleKind::kCosine), "cosine");
  EXPECT_TINV_ERROR_IS(parse_lr_schedule("linear"),
                       "--lr-schedule: unknown schedule 'linear' (constant, cosine or warmup)");
  EXPECT_TINV_ERROR_IS(parse_lr_schedule("Cosine"),
                       "--lr-schedule: unknown schedule 'Cosine' (constant, cosine or warmup)");
}

TEST(Templates, BuiltInsAndFiles) {
  EXPECT_EQ(load_templates(BuiltinTemplates::kObject)[0], "a photo of a {}");
  EXPECT_FALSE(load_templates(BuiltinTemplates::kStyle).empty());
  EXPECT_EQ(fill_template("a {} here", "<x_0> <x_1>"), "a <x_0> <x_1> here");
  test::TempDir dir;
  std::ofstream(dir.file("t.txt")) << "# mine\nan image of {}\n\n{} in a field\n";
  EXPECT_EQ(load_templates(fs::path(dir.file("t.txt"))).size(), 2u);
  EXPECT_EQ(load_templates(parse_templates(dir.file("t.txt"))).size(), 2u);
  std::ofstream(dir.file("bad.txt")) << "no placeholder\n";
  EXPECT_TINV_ERROR(load_templates(fs::path(dir.file("bad.txt"))), "exactly one '{}'");
  EXPECT_TINV_ERROR_IS(
      load_templates(fs::path(dir.file("missing.txt"))),
      "--templates: '" + dir.file("missing.txt") + "' is neither 'object', 'style' nor a readable file");
}

TEST(Templates, ParseAndName) {
  EXPECT_EQ(std::get<BuiltinTemplates>(parse_templates("object")), BuiltinTemplates::kObject);
  EXPECT_EQ(std::get<BuiltinTemplates>(parse_templates("style")), BuiltinTemplates::kStyle);
  EXPECT_EQ(std::get<fs::path>(parse_templates("Style")).string(), "Style");  // any other text: a file
  EXPECT_EQ(std::get<fs::path>(parse_templates("my/t.txt")).string(), "my/t.txt");
  for (const char* text : {"object", "style", "my/t.txt"}) EXPECT_EQ(to_string(parse_templates(text)), text);
}

TEST(ImageInput, ConvertsEveryPngKind) {
  test::TempDir dir;
  save_png(dir.file("gray.png"), torch::full({6, 4, 1}, 100, torch::kUInt8));
  auto rgba = torch::zeros({4, 4, 4}, torch::kUInt8);  // fully transparent -> white
  save_png(dir.file("alpha.png"), rgba);
  // Palette: 2x2, 1 byte per pixel, colours red and green.
  write_bytes(dir.file("palette.png"), make_png(2, 2, 8, 3, {0, 0, 1, 0, 1, 0}, {255, 0, 0, 0, 255, 0}));
  // 16-bit RGB 1x1: (0xFFFF, 0x8000, 0).
  write_bytes(dir.file("rgb16.png"), make_png(1, 1, 16, 2, {0, 0xFF, 0xFF, 0x80, 0, 0, 0}));
  // The trainer decodes with the shared loader (io/image.h), as the captioner does.
  auto g = image_to_hwc(load_image(dir.file("gray.png")));
  EXPECT_EQ(g.sizes(), (std::vector<int64_t>{6, 4, 3}));
  EXPECT_EQ(g[0][0][2].item<int>(), 100);
  EXPECT_EQ(load_image(dir.file("alpha.png")).pixel(0, 0).g, 255);
  const Image p = load_image(dir.file("palette.png"));
  EXPECT_EQ(p.pixel(0, 0).r, 255);
  EXPECT_EQ(p.pixel(1, 0).g, 255);
  const Image d = load_image(dir.file("rgb16.png"));
  EXPECT_EQ(d.pixel(0, 0).r, 255);
  EXPECT_NEAR(d.pixel(0, 0).g, 128, 1);
  // prepare_training_image(Image) == prepare_training_image(uint8 [H, W, 3]).
  EXPECT_TRUE(torch::equal(prepare_training_image(p, 8), prepare_training_image(image_to_hwc(p), 8)));
}

TEST(ImageInput, RefusesBadFilesClearly) {
  test::TempDir dir;
  write_bytes(dir.file("empty.png"), {});
  std::ofstream(dir.file("notes.png")) << "this is text, not an image";
  auto good = encode_png(test_picture());
  write_bytes(dir.file("trunc.png"), std::vector<uint8_t>(good.begin(), good.begin() + 40));
  EXPECT_TINV_ERROR(load_image(dir.file("empty.png")), "empty.png: empty file");
  EXPECT_TINV_ERROR(load_image(dir.file("notes.png")), "notes.png: not a readable image");
  EXPECT_TINV_ERROR(load_image(dir.file("trunc.png")), "trunc.png: cannot decode");
  EXPECT_TINV_ERROR(load_image(dir.file("none.png")), "none.png");
  EXPECT_TINV_ERROR(collect_image_files({dir.path() + "/nothing"}), "no such file");
  test::TempDir empty;
  EXPECT_TINV_ERROR(collect_image_files({empty.path()}), "no image files");
}

TEST(ImageInput, CropsAndResizesWithNotes) {
  std::string note;
  auto x = prepare_training_image(test_picture(8, 12), 32, &note);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{3, 32, 32}));
  EXPECT_NE(note.find("centre-cropped 12x8"), std::string::npos) << note;
  EXPECT_NE(note.find("upscaled"), std::string::npos) << note;
  EXPECT_LE(x.max().item<float>(), 1.0f);
  EXPECT_GE(x.min().item<float>(), -1.0f);
  prepare_training_image(test_picture(300, 300), 32, &note);
  EXPECT_NE(note.find("downscaled 300px"), std::string::npos) << note;
  prepare_training_image(test_picture(32, 32), 32, &note);
  EXPECT_TRUE(note.empty()) << note;
}

TEST(StepSource, DrawsDependOnSeedAndStepOnly) {
  auto cache = torch::randn({3, 4, 4, 4});
  RandomStepSource a(cache, 5, 2, 1000, 7), b(cache, 5, 2, 1000, 7);
  b.draw(0), b.draw(1);
  auto x = a.draw(2), y = b.draw(2);
  EXPECT_TRUE(x.noise.equal(y.noise));
  EXPECT_TRUE(x.timesteps.equal(y.timesteps));
  EXPECT_EQ(x.template_index, y.template_index);
  EXPECT_FALSE(a.draw(3).noise.equal(x.noise));
}

// ---- the trainer core ----

TEST(Trainer, OnlyPlaceholderRowsLearn) {
  auto sd = load_stable_diffusion(model_dir());
  auto init = sd.text_encoder->token_embeddings(torch::tensor({320, 1000}, torch::kInt64));
  TrainerOptions opt;
  opt.schedule = LrSchedule::make(LrScheduleKind::kConstant, 5e-3, 3);
  InversionTrainer tr(*sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler, {"<a_0>", "<a_1>"}, init,
                      {"a photo of {}"}, opt);
  EXPECT_EQ(tr.placeholder_sentence(), "<a_0> <a_1>");
  auto ids = tr.prompt_ids({0});
  EXPECT_EQ(ids[0][4].item<int64_t>(), 49408);
  EXPECT_EQ(ids[0][5].item<int64_t>(), 49409);
  auto before = sd.unet->named_parameters()["conv_in.weight"].clone();
  RandomStepSource src(torch::randn({1, 4, 16, 16}), 1, 2, 1000, 0);
  ASSERT_TRUE(run_steps(tr, src, 3, nullptr));
  EXPECT_FALSE(tr.embeddings().equal(init));
  for (const auto& p : sd.unet->parameters()) EXPECT_FALSE(p.requires_grad() || p.grad().defined());
  for (const auto& p : sd.text_encoder->parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_TRUE(sd.unet->named_parameters()["conv_in.weight"].equal(before));
}

// ---- tinv invert ----

TEST(Invert, WritesEveryFormatAndTheyLoadBack) {
  test::TempDir dir;
  auto o = tiny_options(dir, write_picture(dir, "cube.png"));
  InvertResult r = run_inversion(o);
  ASSERT_EQ(r.embeddings.size(0), 6);  // "a red cube on a table"
  EXPECT_EQ(r.caption, "a red cube on a table");
  for (const char* f : {"redcube.safetensors", "redcube.pt", "redcube.kohya/redcube.safetensors", "redcube.log.csv",
                        "redcube.loss.png", "redcube.checkpoint.safetensors"})
    EXPECT_TRUE(file_exists(dir.file(f))) << f;
  // The loss plot, and the same plot as SVG for reports: both curves, labels as typed.
  {
    const Image plot = load_image(dir.file("redcube.loss.png"));
    EXPECT_EQ(plot.width, 800);
    EXPECT_EQ(plot.height, 480);
  }
  EXPECT_EQ(r.loss_svg.rfind("<svg ", 0), 0u);
  EXPECT_EQ(std::count(r.files.begin(), r.files.end(), dir.file("redcube.loss.png")), 1);
  for (const char* text : {"<polyline", ">loss (random t, noise)</text>", ">fixed-input loss</text>", ">step</text>"})
    EXPECT_NE(r.loss_svg.find(text), std::string::npos) << text;
  auto d = load_embeddings(dir.file("redcube.safetensors"), 32);
  auto a = load_embeddings(dir.file("redcube.pt"), 32);
  auto k = load_embeddings(dir.file("redcube.kohya/redcube.safetensors"), 32);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].trigger, "<redcube>");
  EXPECT_EQ(a[0].trigger, "redcube");
  EXPECT_EQ(k[0].trigger, "redcube");
  EXPECT_TRUE(d[0].vectors.equal(r.embeddings));
  EXPECT_TRUE(a[0].vectors.equal(r.embeddings));
  EXPECT_TRUE(k[0].vectors.equal(r.embeddings));
  EXPECT_EQ(d[0].metadata["caption"], "a red cube on a table");
  EXPECT_EQ(d[0].metadata["init"], "caption");
  EXPECT_EQ(d[0].metadata["steps"], "4");
  EXPECT_EQ(d[0].metadata["model_fingerprint"].size(), 16u);
  // The trigger in a prompt expands to the 6 learned vectors.
  auto tok = ClipTokenizer::load(model_dir() + "/tokenizer");
  ExtraTokens extra;
  extra.add_trigger(tok, d[0].trigger, d[0].vectors);
  auto ids = tok.tokenize(extra.expand("a photo of <redcube>"));
  EXPECT_EQ(ids.size(), 3u + 6u);
  EXPECT_EQ(ids.back(), 49408 + 5);
  // CSV: header, 4 rows, the final fixed-input row; fixed loss at rows 0 and 2.
  std::string csv = read_text_file(dir.file("redcube.log.csv"));
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 6);
  EXPECT_EQ(csv.rfind("step,loss,lr,fixed_loss\n", 0), 0u);
}

TEST(Invert, InitModes) {
  test::TempDir dir;
  auto o = tiny_options(dir, write_picture(dir, "x.png"));
  o.steps = 1;
  o.format = OutputFormat::kDiffusers;
  o.init = InitMode::kToken;
  o.num_vectors = 3;
  auto r = run_inversion(o);
  EXPECT_EQ(r.embeddings.size(0), 3);
  o.init = InitMode::kClass;
  o.class_name = "cube";
  EXPECT_EQ(run_inversion(o).embeddings.size(0), 1);
  o.init = InitMode::kToken;
  o.init_token = "red cube";
  EXPECT_TINV_ERROR(run_inversion(o), "exactly one vocabulary token");
  o.init = InitMode::kCaption;
  o.caption.clear();
  o.captioner = dir.file("no-such-blip");
  EXPECT_TINV_ERROR(run_inversion(o), "no-such-blip");
  o.captioner = test::fixture("tiny-blip/model");  // no vocab.txt: ids only, no caption text
  EXPECT_TINV_ERROR(run_inversion(o), "no vocab.txt");
}

// --init and --format: the texts the CLI reads and the files' metadata records.
TEST(Invert, InitModeAndFormatParseAndName) {
  for (auto m : {InitMode::kCaption, InitMode::kClass, InitMode::kToken}) EXPECT_EQ(parse_init_mode(to_string(m)), m);
  EXPECT_EQ(to_string(InitMode::kCaption), "caption");
  EXPECT_EQ(to_string(InitMode::kClass), "class");
  EXPECT_EQ(to_string(InitMode::kToken), "token");
  EXPECT_TINV_ERROR_IS(parse_init_mode("foo"), "--init: unknown mode 'foo' (caption, class or token)");
  EXPECT_TINV_ERROR_IS(parse_init_mode("Caption"), "--init: unknown mode 'Caption' (caption, class or token)");
  for (auto f : {OutputFormat::kDiffusers, OutputFormat::kA1111, OutputFormat::kKohya, OutputFormat::kAll})
    EXPECT_EQ(parse_output_format(to_string(f)), f);
  EXPECT_EQ(to_string(OutputFormat::kA1111), "a1111");
  EXPECT_EQ(to_string(OutputFormat::kAll), "all");
  EXPECT_TINV_ERROR_IS(parse_output_format("pdf"), "--format: unknown format 'pdf' (diffusers, a1111, kohya or all)");
  const InvertPaths all = invert_paths("out/cat.safetensors", OutputFormat::kAll);
  EXPECT_EQ(all.diffusers, "out/cat.safetensors");
  EXPECT_EQ(all.a1111, "out/cat.pt");
  EXPECT_EQ(all.kohya, "out/cat.kohya/cat.safetensors");
  EXPECT_EQ(invert_paths("cat.pt", OutputFormat::kA1111).a1111, "cat.pt");
  EXPECT_TRUE(invert_paths("cat.pt", OutputFormat::kA1111).diffusers.empty());
  EXPECT_EQ(invert_paths("x.safetensors", OutputFormat::kDiffusers, true).diffusers_pair,
            "x.diffusers/learned_embeds.safetensors");
  EXPECT_TRUE(invert_paths("x.safetensors", OutputFormat::kKohya, true).diffusers_pair.empty());
}

// --captioner: BLIP describes the image and its caption's tokens become the placeholders.
TEST(Invert, CaptionerInitialisation) {
  test::TempDir dir;
  auto image = write_picture(dir, "x.png");
  std::string blip = dir.file("blip");
  ASSERT_EQ(::mkdir(blip.c_str(), 0755), 0);
  for (const char* f : {"config.json", "model.safetensors", "preprocessor_config.json"})
    ASSERT_EQ(::symlink(test::fixture(std::string("tiny-blip/model/") + f).c_str(), (blip + "/" + f).c_str()), 0);
  test::write_bert_test_vocab(blip + "/vocab.txt");
  auto o = tiny_options(dir, image);
  o.caption.clear();
  o.captioner = blip;
  o.steps = 2;
  o.format = OutputFormat::kDiffusers;
  o.preview_every = 1;
  o.preview_prompt = "a photo of {}";
  auto r = run_inversion(o);
  ASSERT_FALSE(r.caption.empty());
  EXPECT_EQ(r.caption.rfind("w", 0), 0u) << r.caption;  // the synthetic vocabulary's words
  auto tok = ClipTokenizer::load(model_dir() + "/tokenizer");
  EXPECT_EQ(r.embeddings.size(0), static_cast<int64_t>(tok.tokenize(r.caption).size()));
  // Previews at every step, PNGs with generation parameters.
  auto paths = invert_paths(o.out.string(), o.format);
  EXPECT_TRUE(file_exists(paths.previews_dir + "/step1.png"));
  EXPECT_TRUE(file_exists(paths.previews_dir + "/step2.png"));
}

TEST(Invert, BadInputs) {
  test::TempDir dir;
  auto o = tiny_options(dir, write_picture(dir, "x.png"));
  o.steps = 1;
  o.name = "cat";
  o.out = dir.file("cat.safetensors");
  EXPECT_TINV_ERROR(run_inversion(o), "collide");
  o.out = dir.file("cat-x.safetensors");
  o.format = OutputFormat::kDiffusers;
  o.steps = 1;
  run_inversion(o);  // "<cat>" is no vocabulary token: fine
  o.name = "a b";
  EXPECT_TINV_ERROR(run_inversion(o), "--name");
  o.name = "redcube";
  std::ofstream(dir.file("bad.png")) << "nope";
  o.images = {dir.file("bad.png")};
  EXPECT_TINV_ERROR(run_inversion(o), "bad.png: not a readable image");
}

TEST(Invert, LongCaptionIsTrimmed) {
  test::TempDir dir;
  auto o = tiny_options(dir, write_picture(dir, "x.png"));
  o.steps = 1;
  o.format = OutputFormat::kDiffusers;
  o.caption.clear();
  for (int i = 0; i < 80; ++i) o.caption += "red ";
  auto r = run_inversion(o);
  EXPECT_LT(r.embeddings.size(0), 75);
  EXPECT_GT(r.embeddings.size(0), 60);
  bool warned = false;
  for (const auto& n : r.notes) warned |= n.find("trimmed") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST(Invert, NanLossStopsAndKeepsCheckpoint) {
  test::TempDir dir;
  auto o = tiny_options(dir, write_picture(dir, "x.png"));
  o.steps = 8;
  o.save_every = 1;
  o.lr = 1e30;
  EXPECT_TINV_ERROR(run_inversion(o), "NaN");
  EXPECT_FALSE(file_exists(dir.file("redcube.safetensors")));
  ASSERT_TRUE(file_exists(dir.file("redcube.checkpoint.safetensors")));
  auto ck = SafeTensors::open(dir.file("redcube.checkpoint.safetensors"));
  EXPECT_TRUE(ck.get("embeddings").isfinite().all().item<bool>());
}

TEST(Invert, ResumeRefusesOtherOptions) {
  test::TempDir dir;
  auto o = tiny_options(dir, write_picture(dir, "x.png"));
  o.steps = 2;
  run_inversion(o);
  o.lr = 1e-2;
  o.resume = true;
  EXPECT_TINV_ERROR(run_inversion(o), "different options (lr '0.005' -> '0.01')");
  o.out = dir.file("never-ran.safetensors");
  EXPECT_TINV_ERROR(run_inversion(o), "no checkpoint");
}

// Runs `tinv invert` as a child process; returns its pid.
pid_t spawn_invert(const std::vector<std::string>& args, int delay_ms) {
  pid_t pid = fork();
  if (pid == 0) {
    if (delay_ms > 0) setenv("TINV_TEST_STEP_DELAY_MS", std::to_string(delay_ms).c_str(), 1);
    std::vector<char*> argv;
    std::string bin = TINV_BINARY;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

TEST(Invert, KillAndResumeGivesIdenticalEmbeddings) {
  test::TempDir dir;
  std::string img = write_picture(dir, "x.png");
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{"invert",    "--model",    model_dir(), "--image",      img,
                                    "--caption", "a red cube", "--steps",   "12",           "--save-every",
                                    "2",         "--batch",    "2",         "--flip",       "--seed",
                                    "5",         "--out",      out,         "--no-progress"};
  };
  ASSERT_EQ(wait_exit(spawn_invert(args(dir.file("full.safetensors")), 0)), 0);

  std::string ck = dir.file("killed.checkpoint.safetensors");
  pid_t pid = spawn_invert(args(dir.file("killed.safetensors")), 150);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int64_t killed_at = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    if (file_exists(ck)) {
      killed_at = std::stoll(SafeTensors::open(ck).metadata().at("step"));
      if (killed_at >= 4) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GE(killed_at, 4) << "no checkpoint appeared";
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), -SIGKILL);
  ASSERT_FALSE(file_exists(dir.file("killed.safetensors"))) << "the run finished before the kill";

  auto resume = args(dir.file("killed.safetensors"));
  resume.push_back("--resume");
  ASSERT_EQ(wait_exit(spawn_invert(resume, 0)), 0);
  auto full = SafeTensors::open(dir.file("full.safetensors")).get("<concept>");
  auto resumed = SafeTensors::open(dir.file("killed.safetensors")).get("<concept>");
  EXPECT_TRUE(full.equal(resumed)) << "max diff " << (full - resumed).abs().max().item<float>();
  EXPECT_EQ(read_text_file(dir.file("full.log.csv")), read_text_file(dir.file("killed.log.csv")));
}

// ---- method options (inversion/method.h; docs/INVERSION.md "Method options") ----

// The first SphereAdam step by hand, in double precision: m = (1-b1) rg and v = (1-b2) rg^2, so
// the bias-corrected step is lr * rg / (|rg| + eps) elementwise, then the row is rescaled.
TEST(SphereAdam, FirstStepByHandAndTheNormsHold) {
  torch::manual_seed(11);
  const auto f64 = torch::kFloat64;
  auto p0 = torch::randn({3, 16});
  auto norms = torch::tensor({0.5f, 1.0f, 2.0f});
  auto rows = p0.clone();
  SphereAdam opt(rows, norms, {});
  auto r64 = norms.to(f64).unsqueeze(1);                                  // [3, 1]
  auto u0 = p0.to(f64) / p0.to(f64).norm(2, {1}, true);                   // initial directions
  EXPECT_LT((rows.to(f64) - u0 * r64).abs().max().item<double>(), 1e-6);  // rescaled at construction
  EXPECT_TRUE(opt.prior_directions().to(f64).allclose(u0, 1e-6, 1e-7));
  auto g = torch::randn({3, 16});
  const double lr = 0.05;
  auto e64 = rows.to(f64), g64 = g.to(f64);
  auto rg = g64 - (g64 * u0).sum(1, true) * u0;  // tangent projection
  auto moved = e64 - lr * rg / (rg.abs() + 1e-8);
  auto expect = moved * (r64 / moved.norm(2, {1}, true));
  opt.step(g, lr);
  EXPECT_LT((rows.to(f64) - expect).abs().max().item<double>(), 1e-6);
  // The first moment is carried to the new point's tangent space.
  auto u1 = rows.to(f64) / rows.to(f64).norm(2, {1}, true);
  EXPECT_LT((opt.exp_avg().to(f64) * u1).sum(1).abs().max().item<double>(), 1e-6);
  // 300 more steps with large random gradients: every row keeps its norm to 1e-6 (relative).
  for (int k = 0; k < 300; ++k) opt.step(torch::randn({3, 16}) * 10, 0.1);
  auto rel = (rows.to(f64).norm(2, {1}) - norms.to(f64)).abs() / norms.to(f64);
  EXPECT_LT(rel.max().item<double>(), 1e-6);
  EXPECT_EQ(opt.steps(), 301);
  EXPECT_TINV_ERROR(SphereAdam(torch::zeros({1, 4}), torch::ones({1}), {}), "zero");
  EXPECT_TINV_ERROR(SphereAdam(torch::ones({2, 4}), torch::ones({3}), {}), "disagree");
}

// SDXL rows [n, h1 + h2]: each encoder's part is on its own sphere. A part-wise step equals the
// one-part optimiser run on each part alone (same gradient part), and both parts keep their norms.
TEST(SphereAdam, PartsAreSeparateSpheres) {
  torch::manual_seed(12);
  const int64_t h1 = 6, h2 = 10;
  auto p0 = torch::randn({2, h1 + h2});
  auto norms = torch::tensor({{0.5f, 3.0f}, {1.5f, 0.25f}});  // [n, 2]
  auto rows = p0.clone();
  SphereAdam both(rows, norms, {0.9, 0.999, 1e-8, /*vmf_kappa*/ 0.5}, {h1, h2});
  auto left = p0.narrow(1, 0, h1).clone(), right = p0.narrow(1, h1, h2).clone();
  SphereAdam l(left, norms.select(1, 0), {0.9, 0.999, 1e-8, 0.5});
  SphereAdam r(right, norms.select(1, 1), {0.9, 0.999, 1e-8, 0.5});
  for (int k = 0; k < 50; ++k) {
    auto g = torch::randn({2, h1 + h2}) * 3;
    both.step(g, 0.05);
    l.step(g.narrow(1, 0, h1).contiguous(), 0.05);
    r.step(g.narrow(1, h1, h2).contiguous(), 0.05);
  }
  EXPECT_LT((rows - torch::cat({left, right}, 1)).abs().max().item<float>(), 1e-6);
  const auto f64 = torch::kFloat64;
  auto part_norms =
      torch::stack({rows.narrow(1, 0, h1).to(f64).norm(2, {1}), rows.narrow(1, h1, h2).to(f64).norm(2, {1})}, 1);
  EXPECT_LT(((part_norms - norms.to(f64)).abs() / norms.to(f64)).max().item<double>(), 1e-6);
  EXPECT_EQ(both.norms().sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_TINV_ERROR(SphereAdam(torch::ones({2, 16}), norms, {}, {6, 9}), "sum to 15");
  EXPECT_TINV_ERROR(SphereAdam(torch::ones({2, 16}), torch::ones({2}), {}, {6, 10}), "disagree");
}

TEST(SphereAdam, OnlyTheTangentPartMovesAndThePriorPullsBack) {
  // A radial gradient, and the prior at its own mean direction (also radial): nothing moves.
  auto rows = torch::tensor({{1.0f, 0.0f, 0.0f}});
  SphereAdam still(rows, torch::tensor({2.0f}), {0.9, 0.999, 1e-8, /*vmf_kappa*/ 2.0});
  auto start = rows.clone();  // (2, 0, 0)
  still.step(start * 5, 0.1);
  EXPECT_TRUE(rows.allclose(start, 0, 1e-7)) << rows;
  // The same data gradient with and without the prior: the prior keeps the row nearer its start.
  auto free_rows = torch::tensor({{1.0f, 0.0f, 0.0f}}), held_rows = free_rows.clone();
  SphereAdam free_opt(free_rows, torch::tensor({1.0f}), {});
  SphereAdam held_opt(held_rows, torch::tensor({1.0f}), {0.9, 0.999, 1e-8, 5.0});
  auto g = torch::tensor({{0.0f, -1.0f, -0.5f}});
  for (int k = 0; k < 30; ++k) free_opt.step(g, 0.05), held_opt.step(g, 0.05);
  const double cos_free = free_rows[0][0].item<double>(), cos_held = held_rows[0][0].item<double>();
  EXPECT_LT(cos_free, 0.9);
  EXPECT_GT(cos_held, cos_free);
}

TEST(StepSource, TimestepRangeIsKeptAndDrawnByHand) {
  auto cache = torch::randn({3, 4, 4, 4});
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  RandomStepSource src(cache, 5, 4, 1000, 7, 500, 999), again(cache, 5, 4, 1000, 7, 500, 999);
  again.draw(9);
  for (int64_t k = 0; k < 100; ++k) {
    auto t = src.draw(k).timesteps;
    EXPECT_GE(t.min().item<int64_t>(), 500);
    EXPECT_LE(t.max().item<int64_t>(), 999);
    EXPECT_TRUE(t.equal(again.draw(k).timesteps)) << k;  // a function of (seed, step) only
  }
  // By hand: the generator of (seed, step) draws the cache entries, the templates, then t.
  auto hand = [&](int64_t step, int64_t lo, int64_t hi) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(derive_seed(7, static_cast<uint64_t>(step)));
    torch::randint(0, 3, {4}, gen, i64);
    torch::randint(0, 5, {4}, gen, i64);
    return torch::randint(lo, hi + 1, {4}, gen, i64);
  };
  EXPECT_TRUE(src.draw(3).timesteps.equal(hand(3, 500, 999)));
  // The default range [0, N-1] is the draw of before the option existed: randint(0, N).
  RandomStepSource def(cache, 5, 4, 1000, 7), full(cache, 5, 4, 1000, 7, 0, 999);
  EXPECT_TRUE(def.draw(5).timesteps.equal(hand(5, 0, 999)));
  EXPECT_TRUE(def.draw(5).noise.equal(full.draw(5).noise));
  RandomStepSource one(cache, 5, 4, 1000, 7, 700, 700);
  EXPECT_TRUE(one.draw(2).timesteps.eq(700).all().item<bool>());
  EXPECT_TINV_ERROR(RandomStepSource(cache, 5, 4, 1000, 7, 600, 500), "timestep range");
  EXPECT_TINV_ERROR(RandomStepSource(cache, 5, 4, 1000, 7, 0, 1000), "timestep range");
}

// A synthetic fixed-input loss, delta 1%, patience 3: 1.0, 0.9 (< 0.99) and 0.85 (< 0.891)
// improve; 0.849, 0.848 (not below 0.8415) and 0.86 do not: the third of those stops the run.
TEST(EarlyStop, FiresAtTheExpectedEvaluation) {
  EarlyStop e(0.01, 3);
  std::vector<bool> fired;
  for (double v : {1.0, 0.9, 0.85, 0.849, 0.848, 0.86, 0.5}) fired.push_back(e.update(v));
  EXPECT_EQ(fired, (std::vector<bool>{false, false, false, false, false, true, true}));
  EXPECT_DOUBLE_EQ(e.best(), 0.85);
  EXPECT_EQ(e.best_evaluation(), 2);
  EXPECT_EQ(e.evaluations(), 6);  // nothing counts after the stop
  // An improvement resets the count; non-finite values are skipped.
  EarlyStop f(0.1, 2);
  std::vector<bool> g;
  for (double v : {1.0, 0.95, 0.8, std::nan(""), 0.79, 0.5, 0.46, 0.455}) g.push_back(f.update(v));
  EXPECT_EQ(g, (std::vector<bool>{false, false, false, false, false, false, false, true}));
  EarlyStop off(0.01, 0);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(off.update(1.0));
}

TEST(Method, CrossInitStartIsTheTextEncoderOutputRow) {
  auto sd = load_stable_diffusion(model_dir());
  const auto ids = sd.tokenizer->tokenize("a red cube");
  ASSERT_EQ(ids.size(), 3u);
  auto out = start_rows(sd.text_encoder, *sd.tokenizer, ids, InitSpace::kOutput);  // [3, d]
  torch::Tensor hidden;
  {
    torch::NoGradGuard no_grad;  // the init text encoded alone, as a prompt
    hidden = sd.text_encoder->forward(torch::tensor(sd.tokenizer->encode("a red cube").ids).unsqueeze(0));
  }
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{3, sd.text_encoder->config().hidden_size}));
  for (int64_t i = 0; i < 3; ++i) EXPECT_TRUE(out[i].equal(hidden[0][1 + i])) << i;
  auto in = start_rows(sd.text_encoder, *sd.tokenizer, ids, InitSpace::kInput);
  EXPECT_TRUE(in.equal(sd.text_encoder->token_embeddings(torch::tensor(ids))));
  // The mean token norm, by hand over the whole table.
  const int64_t vocab = sd.text_encoder->config().vocab_size;
  auto table = sd.text_encoder->token_embeddings(torch::arange(vocab)).to(torch::kFloat64);
  EXPECT_NEAR(mean_token_norm(sd.text_encoder), table.norm(2, {1}).mean().item<double>(), 1e-9);
}

TEST(Trainer, RegInitPullIsTheL2Gradient) {
  auto sd = load_stable_diffusion(model_dir());
  auto init = sd.text_encoder->token_embeddings(torch::tensor({320, 1000}, torch::kInt64));
  TrainerOptions opt;
  opt.schedule = LrSchedule::make(LrScheduleKind::kConstant, 5e-3, 4);
  opt.reg_init = 0.5;
  InversionTrainer tr(*sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler, {"<a_0>", "<a_1>"}, init,
                      {"a photo of {}"}, opt);
  RandomStepSource src(torch::randn({1, 4, 16, 16}), 1, 2, 1000, 0);
  // By hand: AdamW on a copy with the diffusion gradient plus d/drows 0.5 * |rows - init|^2.
  auto ref = init.clone();
  AdamW adam(ref, opt.adam);
  ASSERT_TRUE(
      run_steps(tr, src, 4, [&](int64_t, const StepResult& r) { adam.step(r.grad + 1.0 * (ref - init), r.lr); }));
  EXPECT_TRUE(tr.embeddings().allclose(ref, 0, 1e-7)) << (tr.embeddings() - ref).abs().max();
  TrainerOptions plain = opt;
  plain.reg_init = 0;
  InversionTrainer free_tr(*sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler, {"<a_0>", "<a_1>"}, init,
                           {"a photo of {}"}, plain);
  ASSERT_TRUE(run_steps(free_tr, src, 4, nullptr));
  EXPECT_FALSE(free_tr.embeddings().allclose(ref, 0, 1e-7));  // the pull changed the run
}

TEST(Trainer, SphereRowsKeepTheirNorms) {
  auto sd = load_stable_diffusion(model_dir());
  auto init = sd.text_encoder->token_embeddings(torch::tensor({320, 1000}, torch::kInt64));
  MethodOptions m;
  m.optimizer = OptimizerKind::kSphere;
  TrainerOptions opt;
  opt.schedule = LrSchedule::make(LrScheduleKind::kConstant, 5e-2, 5);
  apply_method(m, sd.text_encoder, init, opt);
  const double norm = mean_token_norm(sd.text_encoder);
  ASSERT_TRUE(opt.sphere_norms.defined());
  EXPECT_NEAR(opt.sphere_norms[1].item<double>(), norm, 1e-6);
  InversionTrainer tr(*sd.tokenizer, sd.text_encoder, sd.unet, sd.scheduler, {"<a_0>", "<a_1>"}, init,
                      {"a photo of {}"}, opt);
  auto cos0 = torch::cosine_similarity(tr.embeddings(), init, 1);
  EXPECT_GT(cos0.min().item<double>(), 1 - 1e-6);  // started along the init directions
  RandomStepSource src(torch::randn({1, 4, 16, 16}), 1, 2, 1000, 0);
  ASSERT_TRUE(run_steps(tr, src, 5, nullptr));
  auto rows = tr.embeddings().to(torch::kFloat64);
  EXPECT_LT((rows.norm(2, {1}) - norm).abs().max().item<double>() / norm, 1e-6);
  EXPECT_LT(torch::cosine_similarity(tr.embeddings(), init, 1).max().item<double>(), 1 - 1e-6);  // turned
  // --sphere-norm init: each row keeps its own initial norm.
  m.sphere_norm = SphereNorm::kInit;
  TrainerOptions own;
  own.schedule = opt.schedule;
  apply_method(m, sd.text_encoder, init, own);
  EXPECT_TRUE(own.sphere_norms.allclose(init.norm(2, {1})));
}

TEST(Invert, MethodOptionsAreValidated) {
  test::TempDir dir;
  auto base = tiny_options(dir, write_picture(dir, "x.png"));
  base.steps = 1;
  struct Case {
    std::function<void(MethodOptions&)> change;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {[](MethodOptions& m) { m.vmf_kappa = 1; }, "--vmf-kappa: is a prior on the direction"},
      {[](MethodOptions& m) { m.optimizer = OptimizerKind::kSphere, m.vmf_kappa = -1; }, "--vmf-kappa"},
      {[](MethodOptions& m) { m.reg_init = -1; }, "--reg-init"},
      {[](MethodOptions& m) { m.reg_init = NAN; }, "--reg-init"},
      {[](MethodOptions& m) { m.t_min = -1; }, "--t-min"},
      {[](MethodOptions& m) { m.t_max = -2; }, "--t-max"},
      {[](MethodOptions& m) { m.t_min = 600, m.t_max = 500; }, "--t-min: t_min 600 is above --t-max 500"},
      {[](MethodOptions& m) { m.t_max = 1000; }, "--t-max: 1000 is not a timestep"},
      {[](MethodOptions& m) { m.t_min = 1200; }, "--t-min: t_min 1200 is above the last timestep 999"},
      {[](MethodOptions& m) { m.stop_delta = 1; }, "--stop-delta"},
      {[](MethodOptions& m) { m.stop_patience = -1; }, "--stop-patience"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.needle);
    InvertOptions o = base;
    c.change(o.method);
    EXPECT_TINV_ERROR(run_inversion(o), c.needle);
  }
  InvertOptions o = base;
  o.method.stop_patience = 2;
  o.eval_every = 0;
  EXPECT_TINV_ERROR(run_inversion(o), "--stop-patience: early stopping watches the fixed-input loss");
}

// The method options' texts: what --optimizer, --sphere-norm and --init-space read, and what
// non_default() writes into checkpoints and embedding metadata.
TEST(MethodOptions, ParseAndName) {
  for (auto k : {OptimizerKind::kAdamW, OptimizerKind::kSphere}) EXPECT_EQ(parse_optimizer(to_string(k)), k);
  for (auto n : {SphereNorm::kMean, SphereNorm::kInit}) EXPECT_EQ(parse_sphere_norm(to_string(n)), n);
  for (auto s : {InitSpace::kInput, InitSpace::kOutput}) EXPECT_EQ(parse_init_space(to_string(s)), s);
  EXPECT_EQ(to_string(OptimizerKind::kAdamW), "adamw");
  EXPECT_EQ(to_string(SphereNorm::kInit), "init");
  EXPECT_EQ(to_string(InitSpace::kOutput), "output");
  EXPECT_TINV_ERROR_IS(parse_optimizer("sgd"), "--optimizer: unknown optimizer 'sgd' (adamw or sphere)");
  EXPECT_TINV_ERROR_IS(parse_optimizer("AdamW"), "--optimizer: unknown optimizer 'AdamW' (adamw or sphere)");
  EXPECT_TINV_ERROR_IS(parse_sphere_norm("max"), "--sphere-norm: unknown norm 'max' (mean or init)");
  EXPECT_TINV_ERROR_IS(parse_init_space("hidden"), "--init-space: unknown space 'hidden' (input or output)");
  MethodOptions m;
  EXPECT_TRUE(m.non_default().empty());
  m.optimizer = OptimizerKind::kSphere;
  m.init_space = InitSpace::kOutput;
  EXPECT_EQ(m.non_default(), (std::map<std::string, std::string>{
                                 {"optimizer", "sphere"}, {"sphere_norm", "mean"}, {"init_space", "output"}}));
  m.sphere_norm = SphereNorm::kInit;
  EXPECT_EQ(m.non_default().at("sphere_norm"), "init");
}

TEST(Invert, SphereCrossAndTimestepRunsRecordTheirOptions) {
  test::TempDir dir;
  auto o = tiny_options(dir, write_picture(dir, "x.png"));
  o.format = OutputFormat::kDiffusers;
  o.method.optimizer = OptimizerKind::kSphere;
  o.method.init_space = InitSpace::kOutput;
  o.method.reg_init = 0.01;
  o.method.t_min = 500;
  auto r = run_inversion(o);
  auto d = load_embeddings(o.out, 32);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].metadata["optimizer"], "sphere");
  EXPECT_EQ(d[0].metadata["sphere_norm"], "mean");
  EXPECT_EQ(d[0].metadata["init_space"], "output");
  EXPECT_EQ(d[0].metadata["reg_init"], "0.01");
  EXPECT_EQ(d[0].metadata["t_min"], "500");
  EXPECT_EQ(d[0].metadata.count("stopped_at"), 0u);
  auto sd = load_stable_diffusion(model_dir());
  const double norm = mean_token_norm(sd.text_encoder);
  EXPECT_LT((r.embeddings.to(torch::kFloat64).norm(2, {1}) - norm).abs().max().item<double>() / norm, 1e-6);
  // Resuming with other method options is refused, naming them.
  o.resume = true;
  o.method.t_min = 0;
  EXPECT_TINV_ERROR(run_inversion(o), "t_min '500' -> ''");
}

TEST(Invert, EarlyStopRecordsTheStep) {
  test::TempDir dir;
  auto o = tiny_options(dir, write_picture(dir, "x.png"));
  o.steps = 6;
  o.eval_every = 1;
  o.method.stop_patience = 2;
  o.method.stop_delta = 0.9;  // no evaluation improves by 90%: evaluations 1 and 2 do not count
  auto r = run_inversion(o);
  EXPECT_EQ(r.stopped_at, 2);
  EXPECT_EQ(r.steps_done, 2);
  bool noted = false;
  for (const auto& n : r.notes) noted |= n.find("early stop at step 2 of 6") != std::string::npos;
  EXPECT_TRUE(noted);
  auto csv = read_text_file(dir.file("redcube.log.csv"));
  EXPECT_EQ(csv.rfind("step,loss,lr,fixed_loss,stop\n", 0), 0u) << csv;
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);  // header, steps 0 and 1, the final row
  EXPECT_NE(csv.find("\n1,"), std::string::npos);
  const auto last = csv.substr(csv.rfind('\n', csv.size() - 2) + 1);
  EXPECT_EQ(last.rfind("2,,,", 0), 0u) << last;
  EXPECT_NE(last.find(",early\n"), std::string::npos) << last;
  auto d = load_embeddings(dir.file("redcube.safetensors"), 32);
  EXPECT_EQ(d[0].metadata["stopped_at"], "2");
  EXPECT_EQ(d[0].metadata["steps"], "2");
  EXPECT_EQ(d[0].metadata["stop_patience"], "2");
  // Resuming the stopped run replays the rule from the log: it stops at once, the same result.
  o.resume = true;
  auto again = run_inversion(o);
  EXPECT_EQ(again.stopped_at, 2);
  EXPECT_TRUE(again.embeddings.equal(r.embeddings));
  EXPECT_EQ(read_text_file(dir.file("redcube.log.csv")), csv);
  // A rule that never fires: the last row says `end`.
  o.resume = false;
  o.steps = 2;
  o.method.stop_patience = 50;
  EXPECT_EQ(run_inversion(o).stopped_at, -1);
  csv = read_text_file(dir.file("redcube.log.csv"));
  EXPECT_NE(csv.find(",end\n"), std::string::npos) << csv;
}

TEST(InvertCli, MethodOptionErrorsAreOneLine) {
  test::TempDir dir;
  const std::string img = write_picture(dir, "x.png");
  const std::string base = "invert --model " + test::quote(model_dir()) + " --image " + test::quote(img) +
                           " --caption 'a red cube' --steps 1 --no-progress --device cpu --out " +
                           test::quote(dir.file("c.safetensors"));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--optimizer sgd", "--optimizer: unknown optimizer 'sgd'"},
      {"--optimizer sphere --sphere-norm max", "--sphere-norm"},
      {"--vmf-kappa 2", "--vmf-kappa"},
      {"--init-space hidden", "--init-space"},
      {"--reg-init -1", "--reg-init"},
      {"--t-min 600 --t-max 500", "--t-min"},
      {"--t-max 4000", "--t-max"},
      {"--stop-delta 2", "--stop-delta"},
      {"--stop-patience 3 --eval-every 0", "--stop-patience"},
  };
  for (const auto& [args, needle] : cases) {
    SCOPED_TRACE(args);
    auto r = test::run_tinv(base + " " + args, dir);
    EXPECT_NE(r.status, 0);
    ASSERT_EQ(r.err_lines.size(), 1u) << r.err;
    EXPECT_EQ(r.err_lines[0].rfind("tinv: error: " + needle, 0), 0u) << r.err_lines[0];
  }
  std::string three = base;
  three.replace(three.find("--steps 1"), 9, "--steps 3");
  auto ok = test::run_tinv(three + " --eval-every 1 --stop-patience 1 --stop-delta 0.9", dir);
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.out.find("stopped early at step 1"), std::string::npos) << ok.out;
}

// The typed options' bad values are one-line errors of the CLI, before anything runs.
TEST(InvertCli, TypedOptionErrorsAreOneLine) {
  test::TempDir dir;
  const std::string base =
      "invert --model " + test::quote(model_dir()) + " --image " + test::quote(write_picture(dir, "x.png")) +
      " --caption 'a red cube' --steps 1 --no-progress " + "--out " + test::quote(dir.file("c.safetensors"));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--init foo", "--init: unknown mode 'foo' (caption, class or token)"},
      {"--format pdf", "--format: unknown format 'pdf' (diffusers, a1111, kohya or all)"},
      {"--lr-schedule linear", "--lr-schedule: unknown schedule 'linear' (constant, cosine or warmup)"},
      {"--device tpu", "--device: unknown device 'tpu' (use auto, cpu or cuda)"},
      {"--dtype int8", "--dtype: unknown dtype 'int8' (use fp32, fp16 or bf16)"},
      {"--device cpu --dtype fp16", "--dtype: fp16 is only supported on CUDA (use fp32 or bf16 on CPU)"},
      {"--attention-store lots", "--attention-store: must be auto, off or a size in GB (e.g. 4), got 'lots'"},
      {"--attention-store -1", "--attention-store: must be auto, off or a size in GB (e.g. 4), got '-1'"},
  };
  for (const auto& [args, message] : cases) {
    SCOPED_TRACE(args);
    auto r = test::run_tinv(base + " " + args, dir);
    EXPECT_EQ(r.status, 1);
    ASSERT_EQ(r.err_lines.size(), 1u) << r.err;
    EXPECT_EQ(r.err_lines[0], "tinv: error: " + message);
  }
  EXPECT_FALSE(file_exists(dir.file("c.safetensors")));
}

TEST(PythonTorchLoad, ReadsInvertA1111File) {
  const char* python = std::getenv("TINV_PYTHON");
  if (!python) GTEST_SKIP() << "run through ctest -L python (TINV_PYTHON unset)";
  test::TempDir dir;
  auto o = tiny_options(dir, write_picture(dir, "x.png"));
  o.steps = 2;
  auto r = run_inversion(o);
  std::ofstream(dir.file("check.py")) << R"(import sys
import torch
d = torch.load(sys.argv[1])
v = d["string_to_param"]["*"]
assert v.dtype == torch.float32 and tuple(v.shape) == (6, 32), (v.dtype, v.shape)
assert d["name"] == "redcube", d["name"]
assert d["step"] == 2, d["step"]
print("ok", float(v.abs().sum()))
)";
  std::string cmd = std::string(python) + " " + dir.file("check.py") + " " + dir.file("redcube.pt");
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

}  // namespace
}  // namespace tinv
