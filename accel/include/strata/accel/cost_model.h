#pragma once
// One interface for every cost model, the factory that picks the model a spec's template
// names, and the dispatcher that charges an OpDescription to the right model.
//
//   auto spec = strata::accel::AcceleratorSpec::preset("eyeriss");
//   strata::accel::CostDispatcher device(spec);
//   auto charge = device.charge(OpDescription::gemm("fc", {{256, 1568, 10}}));
//   if (charge.charged) std::cout << charge.cost.to_json().dump() << "\n";
//
// Every model derives from CostModel and implements gemm(); conv() and attention() have
// lowerings that any model inherits (im2col to GEMM; the unfused attention), and the
// models with a better mapping (row stationary for conv, the attention array) replace them.

#include <memory>
#include <string>

#include "strata/accel/accel_spec.h"
#include "strata/accel/op_cost.h"
#include "strata/accel/op_description.h"
#include "strata/accel/vector_unit.h"

namespace strata::accel {

class CostModel {
 public:
  explicit CostModel(AcceleratorSpec spec);
  virtual ~CostModel() = default;

  virtual std::string name() const = 0;
  // shape.batch independent GEMMs, one after another.
  virtual OpCost gemm(const GemmShape& shape) const = 0;
  // Default: the im2col lowering (ConvShape::lowered) charged as GEMMs, one per group.
  virtual OpCost conv(const ConvShape& shape) const;
  // Default: the unfused mapping whatever shape.mapping says (only the attention array
  // fuses): per batch and head, S = Q K^T as a GEMM that writes S to DRAM, softmax on
  // the vector unit (reads S, writes P; 5 element-ops: max, subtract, exp, sum, divide),
  // then O = P V as a GEMM that reads P back.
  virtual OpCost attention(const AttentionShape& shape) const;

  const AcceleratorSpec& spec() const { return spec_; }
  const VectorUnit& vector_unit() const { return vector_; }

 protected:
  // The unfused mapping, for models that offer it as one choice among others.
  OpCost unfused_attention(const AttentionShape& shape) const;

  AcceleratorSpec spec_;
  VectorUnit vector_;
};

// The model of spec.kind's registered template (SystolicArray, RowStationary,
// ProcessingInMemory, AttentionArray, ...: accelerator_template.h).
std::unique_ptr<CostModel> make_cost_model(const AcceleratorSpec& spec);

// The element-ops softmax costs per element (max, subtract, exp, sum, divide).
constexpr double kSoftmaxOpsPerElement = 5;

struct Charge {
  bool charged = false;  // false: no model can price the op; it goes to the report's list
  OpCost cost;
  std::string reason;  // why it was not charged
};

// Sends GEMMs, convolutions and attention to the spec's model, element-wise, reduction and
// copy ops to its vector unit; views cost nothing (they move no data) but are charged as
// such; Unknown ops come back uncharged.
class CostDispatcher {
 public:
  explicit CostDispatcher(const AcceleratorSpec& spec);
  Charge charge(const OpDescription& op) const;
  const CostModel& model() const { return *model_; }
  const AcceleratorSpec& spec() const { return model_->spec(); }

 private:
  std::shared_ptr<const CostModel> model_;
};

}  // namespace strata::accel
