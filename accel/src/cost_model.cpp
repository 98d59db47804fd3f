#include "strata/accel/cost_model.h"

#include "strata/accel/accelerator_template.h"
#include "strata/core/checked_math.h"
#include "strata/core/error.h"

namespace strata::accel {

CostModel::CostModel(AcceleratorSpec spec) : spec_(std::move(spec)), vector_(spec_) {}

OpCost CostModel::conv(const ConvShape& shape) const {
  shape.check();
  return gemm(shape.lowered());
}

OpCost CostModel::attention(const AttentionShape& shape) const { return unfused_attention(shape); }

OpCost CostModel::unfused_attention(const AttentionShape& a) const {
  a.check();
  const int64_t scores = core::checked_mul(a.seq_q, a.seq_kv, "attention scores");
  const int64_t score_bytes = core::checked_mul(scores, spec_.word_bytes, "attention score bytes");
  OpCost head = gemm({a.seq_q, a.head_dim, a.seq_kv, 1});  // S = Q K^T, S to DRAM
  head += vector_.elementwise(scores, kSoftmaxOpsPerElement, score_bytes, score_bytes);
  head += gemm({a.seq_q, a.seq_kv, a.head_dim, 1});  // O = P V, P from DRAM
  return head.repeated(core::checked_mul(a.batch, a.heads, "attention batch x heads"));
}

std::unique_ptr<CostModel> make_cost_model(const AcceleratorSpec& spec) {
  const AcceleratorTemplate* t = find_template(spec.kind.name());
  STRATA_CHECK(t != nullptr, "spec '", spec.name, "': no cost model for template '",
               spec.kind.name(), "' (expected ", template_choices(), ")");
  return t->cost_model(spec);
}

CostDispatcher::CostDispatcher(const AcceleratorSpec& spec) : model_(make_cost_model(spec)) {}

Charge CostDispatcher::charge(const OpDescription& op) const {
  Charge out;
  try {
    switch (op.kind) {
      case OpKind::Gemm:
        if (op.gemms.empty()) {
          out.reason = "a GEMM op without shapes";
          return out;
        }
        for (const GemmShape& g : op.gemms) out.cost += model_->gemm(g);
        break;
      case OpKind::Conv: out.cost = model_->conv(op.conv); break;
      case OpKind::Attention: out.cost = model_->attention(op.attention); break;
      case OpKind::Elementwise:
      case OpKind::Reduction:
        out.cost = model_->vector_unit().elementwise(op.elements, op.ops_per_element, op.bytes_in,
                                                     op.bytes_out);
        break;
      case OpKind::Copy: out.cost = model_->vector_unit().copy(op.bytes_in); break;
      case OpKind::View: break;  // aliases existing storage: no data moves, nothing to charge
      case OpKind::Unknown:
        out.reason = op.note.empty() ? "no cost model for this op" : op.note;
        return out;
    }
  } catch (const core::OverflowError& e) {
    // Sizes whose cost does not fit in 64 bits: a mistake in the shape, never a number.
    STRATA_FAIL(op.name, " (", to_string(op.kind), "): its cost overflows: ", e.what());
  } catch (const Error& e) {
    // A description the models reject (a zero size): listed, not charged, not fatal to
    // the program being simulated.
    out.cost = OpCost{};
    out.reason = e.what();
    return out;
  }
  out.charged = true;
  return out;
}

}  // namespace strata::accel
