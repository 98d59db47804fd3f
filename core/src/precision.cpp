#include "strata/core/precision.h"

#include <ATen/autocast_mode.h>

#include "strata/core/error.h"

namespace strata::core {

std::string to_string(Precision precision) {
  switch (precision) {
    case Precision::Fp32: return "fp32";
    case Precision::Bf16: return "bf16";
    case Precision::Fp16: return "fp16";
  }
  return "unknown";
}

Precision precision_from_string(const std::string& text, const std::string& what) {
  if (text == "fp32") return Precision::Fp32;
  if (text == "bf16") return Precision::Bf16;
  if (text == "fp16") return Precision::Fp16;
  STRATA_FAIL(what, ": got \"", text, "\", expected fp32, bf16 or fp16");
}

at::ScalarType compute_dtype(Precision precision) {
  switch (precision) {
    case Precision::Fp32: return at::kFloat;
    case Precision::Bf16: return at::kBFloat16;
    case Precision::Fp16: return at::kHalf;
  }
  return at::kFloat;
}

at::ScalarType dtype_from_string(const std::string& text, const std::string& what) {
  return compute_dtype(precision_from_string(text, what));
}

AutocastScope::AutocastScope(Precision precision) {
  if (precision == Precision::Fp32) return;
  // CPU autocast in 1.13 knows bf16 only; fp16 is CUDA's (whose tensors it casts).
  STRATA_CHECK(precision != Precision::Fp16 || at::hasCUDA(),
               "precision fp16: needs a CUDA build of LibTorch and CUDA tensors, expected bf16 "
               "or fp32 on this machine");
  active_ = true;
  cpu_enabled_ = at::autocast::is_cpu_enabled();
  gpu_enabled_ = at::autocast::is_enabled();
  cpu_dtype_ = at::autocast::get_autocast_cpu_dtype();
  cache_enabled_ = at::autocast::is_autocast_cache_enabled();
  if (precision == Precision::Bf16) {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  } else {
    at::autocast::set_autocast_gpu_dtype(at::kHalf);
    at::autocast::set_enabled(true);
  }
  at::autocast::set_autocast_cache_enabled(cache_enabled_ && at::GradMode::is_enabled());
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  at::autocast::set_cpu_enabled(cpu_enabled_);
  at::autocast::set_enabled(gpu_enabled_);
  at::autocast::set_autocast_cpu_dtype(cpu_dtype_);
  at::autocast::set_autocast_cache_enabled(cache_enabled_);
}

void clear_cast_cache() { at::autocast::clear_cache(); }

at::Tensor to_full_precision(const at::Tensor& t) {
  if (!t.defined()) return t;
  const at::ScalarType dtype = t.scalar_type();
  return dtype == at::kBFloat16 || dtype == at::kHalf ? t.to(at::kFloat) : t;
}

}  // namespace strata::core
