// Parity case group 'text_encoder' (see ../shared/fixtures/README.md).
#include "parity/parity.h"

namespace tinv::parity {

std::vector<CaseResult> run_text_encoder(const std::string& dir) {
  return {failed("text_encoder", "not implemented yet")};
}

}  // namespace tinv::parity
