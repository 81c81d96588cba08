// Parity case group 'single_file' (see ../shared/fixtures/README.md).
#include "parity/parity.h"

namespace tinv::parity {

std::vector<CaseResult> run_single_file(const std::string& dir) {
  return {failed("single_file", "not implemented yet")};
}

}  // namespace tinv::parity
