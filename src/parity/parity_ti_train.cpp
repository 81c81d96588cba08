// Parity case group 'ti_train' (see ../shared/fixtures/README.md).
#include "parity/parity.h"

namespace tinv::parity {

std::vector<CaseResult> run_ti_train(const std::string& dir) {
  return {failed("ti_train", "not implemented yet")};
}

}  // namespace tinv::parity
