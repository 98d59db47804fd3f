// IDX dataset files (core::read_idx_file), as gzip streams: the first byte chooses whether
// the rest is gzip-compressed by the target (to reach the IDX parser with any content) or
// written as is (to fuzz the gzip layer and the "not a gzip file" check).
#include <zlib.h>

#include "fuzz_support.h"
#include "strata/core/data/fashion_mnist.h"

STRATA_FUZZ_TARGET({
  if (size == 0) return 0;
  const auto path = strata::fuzz::scratch() / "data-idx3-ubyte.gz";
  if (data[0] & 1) {
    gzFile file = gzopen(path.c_str(), "wb");
    if (size > 1) gzwrite(file, data + 1, static_cast<unsigned>(size - 1));
    gzclose(file);
  } else {
    strata::fuzz::write_file(path, data + 1, size - 1);
  }
  strata::core::read_idx_file(path.string());
})
