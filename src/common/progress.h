// A progress bar on stderr: "label  [#####.....]  42/100  3.1 it/s  ETA 0:19  loss=0.123".
// Redraws in place on a terminal; on a pipe/file prints a line at most every few seconds.
#pragma once
#include <chrono>
#include <string>

namespace tinv {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true);
  ~Progress();
  // Advances to `done` items; `suffix` is shown after the ETA (e.g. "loss=0.12").
  void update(int64_t done, const std::string& suffix = "");
  // A resumed job: `done` items were finished before this run, so the rate and ETA count only
  // the items done from here (call once, before the first update).
  void start_at(int64_t done);
  void finish(const std::string& suffix = "");
  double rate() const;  // items per second so far (since start_at's count)

 private:
  void draw(bool final);
  std::string label_, suffix_;
  int64_t total_, done_ = 0, start_done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1:02:03" / "2:03"
std::string format_duration(double seconds);

// Seconds elapsed since `start` on the steady clock.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace tinv
