// Parity case group 'tokenizer' (see ../shared/fixtures/README.md).
#include "parity/parity.h"

namespace tinv::parity {

std::vector<CaseResult> run_tokenizer(const std::string& dir) {
  return {failed("tokenizer", "not implemented yet")};
}

}  // namespace tinv::parity
