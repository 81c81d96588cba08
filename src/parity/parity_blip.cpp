// Parity case group 'blip' (see ../shared/fixtures/README.md).
#include "parity/parity.h"

namespace tinv::parity {

std::vector<CaseResult> run_blip(const std::string& dir) {
  return {failed("blip", "not implemented yet")};
}

}  // namespace tinv::parity
