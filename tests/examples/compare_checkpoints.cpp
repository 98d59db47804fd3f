// compare_checkpoints EXPECTED ACTUAL: exits 0 when the two checkpoints hold the same
// tensors (parameters, buffers and optimizer state, by name, exactly equal) and some
// optimizer state; else prints one line per difference and exits 1. The command-line tests
// resume a checkpoint in another layout, save it again before any step, and compare: a
// loader that dropped the momentum or Adam's moments fails.
#include <cstdio>
#include <exception>

#include "core/checkpoint_compare.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s EXPECTED_CHECKPOINT ACTUAL_CHECKPOINT\n", argv[0]);
    return 2;
  }
  try {
    using strata::test::checkpoint_tensors;
    using strata::test::tensor_differences;
    // Optimizer state apart, so that a checkpoint without any is a difference too.
    std::vector<std::string> differences = tensor_differences(
        checkpoint_tensors(argv[1], {"optimizer"}), checkpoint_tensors(argv[2], {"optimizer"}));
    const auto model = tensor_differences(checkpoint_tensors(argv[1], {"parameter", "buffer"}),
                                          checkpoint_tensors(argv[2], {"parameter", "buffer"}));
    differences.insert(differences.end(), model.begin(), model.end());
    for (const auto& line : differences) std::printf("%s\n", line.c_str());
    if (!differences.empty()) return 1;
    std::printf("same tensors and optimizer state\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
