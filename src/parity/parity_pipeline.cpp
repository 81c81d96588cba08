// Parity case group 'pipeline' (see ../shared/fixtures/README.md).
#include "parity/parity.h"

namespace tinv::parity {

std::vector<CaseResult> run_pipeline(const std::string& dir) {
  return {failed("pipeline", "not implemented yet")};
}

}  // namespace tinv::parity
