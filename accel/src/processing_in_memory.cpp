#include "strata/accel/processing_in_memory.h"

#include <cmath>

#include "strata/accel/accelerator_template.h"
#include "strata/core/checked_math.h"
#include "strata/core/error.h"

namespace strata::accel {

namespace {
using I = core::CheckedInt;  // overflow: core::OverflowError, reported with the op
}  // namespace

ProcessingInMemory::ProcessingInMemory(AcceleratorSpec spec) : CostModel(std::move(spec)) {
  STRATA_CHECK(spec_.kind == Template::ProcessingInMemory, "ProcessingInMemory: spec '", spec_.name,
               "' has template ", to_string(spec_.kind), ", expected pim");
}

OpCost ProcessingInMemory::gemv(int64_t k, int64_t n) const {
  const PimParams& p = spec_.pim;
  const I weights = I(k) * n;
  const I per_bank = ceil_div(weights, p.banks);
  const I accesses = ceil_div(per_bank, p.macs_per_access);
  const I activations = ceil_div(per_bank, p.row_bytes / spec_.word_bytes);
  const double bw = spec_.dram_bytes_per_cycle;
  const auto bus = [&](int64_t words) -> I {
    return core::checked_ceil(static_cast<double>((I(words) * spec_.word_bytes).get()) / bw,
                              "bus cycles");
  };
  OpCost c;
  c.macs = weights.get();
  c.compute_cycles = (accesses * p.t_ccd).get();
  c.stall_cycles = (activations * (I(p.t_rcd) + p.t_rp) + bus(k) + bus(n)).get();
  c.cycles = (I(c.compute_cycles) + c.stall_cycles).get();
  c.pe_cycles = static_cast<double>(c.cycles) * spec_.peak_macs_per_cycle();
  c.dram_reads = weights.get();
  c.sram_reads = k;
  c.sram_writes = n;
  c.price(spec_.energy);
  return c;
}

OpCost ProcessingInMemory::gemm(const GemmShape& shape) const {
  shape.check();
  return gemv(shape.k, shape.n).repeated((I(shape.m) * shape.batch).get());
}

namespace {
// The "pim" object's fields (a function: parsing may run during static initialization).
const std::vector<std::string>& pim_fields() {
  static const std::vector<std::string> list = {
      "banks", "macs_per_access", "row_bytes", "t_rcd", "t_rp", "t_ccd"};
  return list;
}

class PimTemplate : public AcceleratorTemplate {
 public:
  std::string name() const override { return "pim"; }
  std::string description() const override {
    return "PIM-GPT-like processing in memory: MAC units beside each DRAM bank (GEMVs)";
  }
  std::vector<std::string> fields() const override { return {"pim"}; }

  void parse(const SpecFields& f, AcceleratorSpec& s, bool complete) const override {
    if (complete)
      f.require("pim",
                "{\"banks\", \"macs_per_access\", \"row_bytes\", \"t_rcd\", \"t_rp\", \"t_ccd\"}");
    if (!f.has("pim")) return;
    const SpecFields p = f.object("pim");
    p.only(pim_fields());
    if (complete)
      for (const auto& k : pim_fields()) p.require(k, "see docs/accel.md");
    p.maybe_integer("banks", s.pim.banks);
    p.maybe_integer("macs_per_access", s.pim.macs_per_access);
    p.maybe_integer("row_bytes", s.pim.row_bytes);
    p.maybe_integer("t_rcd", s.pim.t_rcd);
    p.maybe_integer("t_rp", s.pim.t_rp);
    p.maybe_integer("t_ccd", s.pim.t_ccd);
  }

  void validate(const AcceleratorSpec& s, const std::string& source) const override {
    const PimParams& pim = s.pim;
    check_integer_field(source, "pim.banks", pim.banks, 1, kMaxUnits);
    check_integer_field(source, "pim.macs_per_access", pim.macs_per_access, 1, kMaxUnits);
    check_integer_field(source, "pim.t_ccd", pim.t_ccd, 1, kMaxUnits);
    check_integer_field(source, "pim.row_bytes", pim.row_bytes, 1, kMaxUnits);
    STRATA_CHECK(s.word_bytes > 0 && pim.row_bytes % s.word_bytes == 0, source,
                 ": field 'pim.row_bytes': got ", pim.row_bytes,
                 ", expected a positive multiple of word_bytes (", s.word_bytes, ")");
    check_integer_field(source, "pim.t_rcd", pim.t_rcd, 0, kMaxUnits);
    check_integer_field(source, "pim.t_rp", pim.t_rp, 0, kMaxUnits);
  }

  void to_json(const AcceleratorSpec& s, nlohmann::json& out) const override {
    out["pim"] = s.pim.to_json();
  }
  double peak_macs_per_cycle(const AcceleratorSpec& s) const override {
    return static_cast<double>(s.pim.banks * s.pim.macs_per_access) /
           static_cast<double>(s.pim.t_ccd);
  }
  int64_t default_vector_lanes(const AcceleratorSpec& s) const override { return s.pim.banks; }
  std::string summary(const AcceleratorSpec& s) const override {
    return name() + ", " + std::to_string(s.pim.banks) + " banks";
  }
  std::unique_ptr<CostModel> cost_model(const AcceleratorSpec& spec) const override {
    return std::make_unique<ProcessingInMemory>(spec);
  }
};
}  // namespace

std::shared_ptr<const AcceleratorTemplate> pim_template() {
  return std::make_shared<PimTemplate>();
}

}  // namespace strata::accel
