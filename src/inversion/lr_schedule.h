// Learning-rate schedules of both trainers (the inversion loop and `tinv world train`), as a
// pure function of the step (so resumed runs follow the same curve).
//
//   tinv::LrSchedule s = tinv::LrSchedule::parse("cosine", 5e-3, /*steps*/ 100, /*warmup*/ 0);
//   double lr = s.at(k);   // learning rate of update k (0-based)
//   s.final_ratio = 0.1;   // cosine: decay to 10% of base_lr instead of 0 (world training)
#pragma once
#include <cstdint>
#include <string>

namespace tinv {

struct LrSchedule {
  std::string kind = "constant";  // constant | cosine | warmup
  double base_lr = 5e-3;
  int64_t total_steps = 100;
  int64_t warmup_steps = 0;
  double final_ratio = 0;  // cosine: the learning rate at the end, as a fraction of base_lr

  // constant: base_lr.
  // warmup:   base_lr * min(1, (k+1)/warmup_steps), then constant (warmup_steps default 10%).
  // cosine:   the same linear warmup (default none), then
  //           base_lr * (f + (1 - f) * 0.5 * (1 + cos(pi * p))), f = final_ratio,
  //           p = (k - warmup) / (total - warmup) clamped to [0, 1]
  //           (f = 0: diffusers get_cosine_schedule_with_warmup).
  double at(int64_t k) const;
  // Throws tinv::Error("--lr-schedule", ...) for an unknown kind or bad numbers.
  // warmup_steps < 0 picks the kind's default.
  static LrSchedule parse(const std::string& kind, double base_lr, int64_t total_steps,
                          int64_t warmup_steps = -1);
};

}  // namespace tinv
