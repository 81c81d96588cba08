// Parity case group 'scheduler' (see ../shared/fixtures/README.md).
#include "parity/parity.h"

namespace tinv::parity {

std::vector<CaseResult> run_scheduler(const std::string& dir) {
  return {failed("scheduler", "not implemented yet")};
}

}  // namespace tinv::parity
