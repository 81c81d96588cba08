#include "common/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace tinv {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), tty_(::isatty(2) != 0) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_ && done_ > 0 && enabled_ && tty_) std::fputc('\n', stderr);
}

double Progress::rate() const {
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return secs > 0 ? static_cast<double>(done_ - start_done_) / secs : 0.0;
}

void Progress::start_at(int64_t done) {
  start_done_ = done_ = done;
  start_ = last_draw_ = std::chrono::steady_clock::now();
  if (done > 0) draw(false);
}

void Progress::update(int64_t done, const std::string& suffix) {
  done_ = done;
  suffix_ = suffix;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since < (tty_ ? 0.1 : 5.0) && done_ < total_) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish(const std::string& suffix) {
  if (finished_) return;
  if (!suffix.empty()) suffix_ = suffix;
  draw(true);
  finished_ = true;
}

void Progress::draw(bool final) {
  if (!enabled_) return;
  double r = rate();
  double eta = r > 0 ? (total_ - done_) / r : NAN;
  const int width = 24;
  int filled = total_ > 0 ? static_cast<int>(width * done_ / total_) : width;
  std::string bar(filled, '#');
  bar.append(width - filled, '.');
  char rate_buf[32];
  if (r >= 1 || r == 0)
    std::snprintf(rate_buf, sizeof rate_buf, "%.2f it/s", r);
  else
    std::snprintf(rate_buf, sizeof rate_buf, "%.2f s/it", 1.0 / r);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string eta_s = final ? "took " + format_duration(elapsed) : "ETA " + format_duration(eta);
  std::fprintf(stderr, "%s%s [%s] %lld/%lld %s %s%s%s%s", tty_ ? "\r\033[K" : "", label_.c_str(), bar.c_str(),
               static_cast<long long>(done_), static_cast<long long>(total_), rate_buf, eta_s.c_str(),
               suffix_.empty() ? "" : "  ", suffix_.c_str(), (final || !tty_) ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace tinv
