#include "inversion/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace tinv {

std::string to_string(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::kConstant: return "constant";
    case LrScheduleKind::kCosine: return "cosine";
    case LrScheduleKind::kWarmup: return "warmup";
  }
  throw Error("--lr-schedule", "unknown schedule kind " + std::to_string(static_cast<int>(kind)));
}

LrScheduleKind parse_lr_schedule(const std::string& name) {
  for (LrScheduleKind k : {LrScheduleKind::kConstant, LrScheduleKind::kCosine, LrScheduleKind::kWarmup})
    if (name == to_string(k)) return k;
  throw Error("--lr-schedule", "unknown schedule '" + name + "' (constant, cosine or warmup)");
}

double LrSchedule::at(int64_t k) const {
  if (kind == LrScheduleKind::kConstant) return base_lr;
  if (warmup_steps > 0 && k < warmup_steps)
    return base_lr * static_cast<double>(k + 1) / static_cast<double>(warmup_steps);
  if (kind == LrScheduleKind::kWarmup) return base_lr;
  // cosine
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double p = std::clamp(static_cast<double>(k - warmup_steps) / span, 0.0, 1.0);
  return base_lr * (final_ratio + (1 - final_ratio) * 0.5 * (1.0 + std::cos(M_PI * p)));
}

LrSchedule LrSchedule::make(LrScheduleKind kind, double base_lr, int64_t total_steps, int64_t warmup_steps) {
  TINV_CHECK(std::isfinite(base_lr) && base_lr > 0, "--lr", "learning rate must be > 0, got ", base_lr);
  TINV_CHECK(total_steps >= 1, "--steps", "must be >= 1, got ", total_steps);
  LrSchedule s;
  s.kind = kind;
  s.base_lr = base_lr;
  s.total_steps = total_steps;
  if (warmup_steps < 0) warmup_steps = kind == LrScheduleKind::kWarmup ? std::max<int64_t>(1, total_steps / 10) : 0;
  s.warmup_steps = warmup_steps;
  return s;
}

}  // namespace tinv
