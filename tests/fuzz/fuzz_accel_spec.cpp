// Accelerator spec files (accel::AcceleratorSpec::load, as strata-accel --spec reads them).
#include "fuzz_support.h"
#include "strata/accel/accel_spec.h"

STRATA_FUZZ_TARGET({
  const auto path = strata::fuzz::scratch() / "spec.json";
  strata::fuzz::write_file(path, data, size);
  strata::accel::AcceleratorSpec::load(path.string());
})
