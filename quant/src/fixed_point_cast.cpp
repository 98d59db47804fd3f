// fixed_point_cast and fixed_point_cast_raw: the scalar conversion of
// fixed_point_detail.h run over chunks of a contiguous tensor with at::parallel_for.
#include <ATen/Parallel.h>

#include "fixed_point_detail.h"
#include "strata/core/error.h"
#include "strata/quant/fixed_point.h"

namespace strata::quant {
namespace {

// Elements per parallel_for task: an element costs a few ns, so smaller chunks would
// spend more on scheduling than on work.
constexpr int64_t kGrain = 16384;

at::Tensor checked_input(const at::Tensor& x, const FixedPointType& t, const char* op) {
  validate(t);
  STRATA_CHECK(x.defined(), op, ": undefined tensor");
  STRATA_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
               ": expected a float or double tensor, got ", x.scalar_type());
  STRATA_CHECK(x.device().is_cpu(), op, ": expected a CPU tensor, got ", x.device());
  return x.detach().contiguous();
}

template <typename In, typename Out, typename Convert>
void for_each_element(const at::Tensor& in, at::Tensor& out, const Convert& convert) {
  const In* src = in.data_ptr<In>();
  Out* dst = out.data_ptr<Out>();
  at::parallel_for(0, in.numel(), kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dst[i] = convert(static_cast<double>(src[i]));
  });
}

}  // namespace

int64_t fixed_point_cast_raw(double x, const FixedPointType& t) {
  validate(t);
  return detail::assign_double(x, t);
}

double fixed_to_double(int64_t raw, const FixedPointType& t) {
  validate(t);
  return detail::ToValue<double>(t)(raw);
}

at::Tensor fixed_point_cast(const at::Tensor& x, const FixedPointType& t) {
  const at::Tensor in = checked_input(x, t, "fixed_point_cast");
  at::Tensor out = at::empty(in.sizes(), in.options());
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "fixed_point_cast", [&] {
    const detail::ToValue<scalar_t> to_value(t);
    for_each_element<scalar_t, scalar_t>(
        in, out, [&](double v) { return to_value(detail::assign_double(v, t)); });
  });
  return out;
}

at::Tensor fixed_point_cast_raw(const at::Tensor& x, const FixedPointType& t) {
  const at::Tensor in = checked_input(x, t, "fixed_point_cast_raw");
  at::Tensor out = at::empty(in.sizes(), in.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "fixed_point_cast_raw", [&] {
    for_each_element<scalar_t, int64_t>(in, out,
                                        [&](double v) { return detail::assign_double(v, t); });
  });
  return out;
}

}  // namespace strata::quant
