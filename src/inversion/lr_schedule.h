// Learning-rate schedules of both trainers (the inversion loop and `tinv world train`), as a
// pure function of the step (so resumed runs follow the same curve).
//
//   tinv::LrSchedule s = tinv::LrSchedule::make(tinv::LrScheduleKind::kCosine, 5e-3, /*steps*/ 100, /*warmup*/ 0);
//   double lr = s.at(k);   // learning rate of update k (0-based)
//   s.final_ratio = 0.1;   // cosine: decay to 10% of base_lr instead of 0 (world training)
#pragma once
#include <cstdint>
#include <string>

namespace tinv {

// The shape of the curve (--lr-schedule); see LrSchedule::at.
enum class LrScheduleKind { kConstant, kCosine, kWarmup };
// "constant" | "cosine" | "warmup": the --lr-schedule text, and the name checkpoints record.
std::string to_string(LrScheduleKind kind);
// The inverse of to_string; throws tinv::Error("--lr-schedule", "unknown schedule ...") for other text.
LrScheduleKind parse_lr_schedule(const std::string& name);

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;
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
  // Throws tinv::Error("--lr", ...) or ("--steps", ...) for bad numbers.
  // warmup_steps < 0 picks the kind's default.
  static LrSchedule make(LrScheduleKind kind, double base_lr, int64_t total_steps, int64_t warmup_steps = -1);
};

}  // namespace tinv
