// Drawing primitives of the procedural world (src/world/world.h): shape tests in an object's local
// frame, marks (ring, dot), and a supersampled canvas. Deterministic: only +, -, *, /, sqrt and floor on
// doubles (compiled with FP contraction off), and a Taylor-series sine/cosine instead of libm's.
//
//   Canvas canvas(64);                                   // 256x256 samples, 4x4 per pixel
//   canvas.fill([](double x, double y) { return rgb(Colour::kWhite); });
//   canvas.draw({0.5, 0.5, 0.2, 0.1}, object_paint(obj));
//   Image img = canvas.resolve();                        // box filter down to 64x64
#pragma once
#include <functional>
#include <optional>

#include "world/world.h"

namespace tinv::world {

// sin/cos from the same operations on every machine (|error| < 1e-12 on [-pi, pi]).
double det_sin(double x);
double det_cos(double x);
constexpr double kPi = 3.14159265358979323846;

// True when local point (u, v) (v down, radius 1) is inside the shape. Every shape fits the unit
// circle and contains the disc of radius 0.5 around the origin, so rotations never leave the
// drawing box and the marks of world.h (dot, ring) lie inside every shape.
bool inside_shape(Shape s, double u, double v);

// The second tone of a background pattern (soft).
Rgb background_tone(Colour c);
Rgb mix(Rgb a, Rgb b, double t);  // a + (b - a) t, rounded

// Where an object lands: centre and radius as fractions of the image size, angle in radians.
struct Placement {
  double cx = 0.5, cy = 0.5, radius = 0.2, angle = 0;
};
// Draws the grammar's jitter for an object at `p` with size `s` (4 draws from rng): centre
// +-0.02, radius +-6%, rotation +-10 degrees.
Placement jittered_placement(Position p, Size s, Rng& rng);

// The paint of an object of `shape` in `body` colour with an optional ring and an optional dot
// (world.h's kRingInner/kRingOuter and kDotRadius); the dot is painted over the ring.
LocalPaint marked_paint(Shape shape, Colour body, std::optional<Colour> ring, std::optional<Colour> dot);
// The paint of a scene object (at most one mark).
LocalPaint object_paint(const ObjectSpec& obj);
// Background colour at image point (x, y) in [0, 1)^2; phases shift the pattern.
Rgb background_at(Colour c, Pattern p, double x, double y, double phase_x, double phase_y);

class Canvas {
 public:
  explicit Canvas(int size, int supersample = 4);
  // Sets every sample from paint(x, y), x and y in [0, 1) at sample centres.
  void fill(const std::function<Rgb(double x, double y)>& paint);
  // Paints the samples the object covers.
  void draw(const Placement& where, const LocalPaint& paint);
  // Averages each supersample x supersample block (rounded): size x size RGB.
  Image resolve() const;

 private:
  int size_, ss_, n_;
  std::vector<uint8_t> samples_;  // [n_, n_, 3]
};

}  // namespace tinv::world
