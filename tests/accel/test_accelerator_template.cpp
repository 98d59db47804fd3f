// The template registry: a toy "scalar" accelerator (one MAC unit, `macs_per_cycle` MACs a
// cycle) registered here alone, through TemplateRegistration, is parsed from a spec,
// checked with errors naming its field, priced by its cost model, given an area and run
// on the simulated device, with no change to the library.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "error_message.h"
#include "strata/accel/accelerator_template.h"
#include "strata/accel/area_model.h"
#include "strata/accel/cost_model.h"
#include "strata/accel/device.h"
#include "strata/accel/simulator.h"
#include "strata/accel/systolic_array.h"

namespace strata::accel {
namespace {

using nlohmann::json;

int64_t macs_per_cycle(const AcceleratorSpec& spec) {
  return spec.params.at("macs_per_cycle").get<int64_t>();
}

// Every MAC in turn: a GEMM takes m k n / macs_per_cycle cycles, reads its operands from
// DRAM once and writes its output once.
class ScalarCore : public CostModel {
 public:
  explicit ScalarCore(AcceleratorSpec spec) : CostModel(std::move(spec)) {}
  std::string name() const override { return "scalar-core"; }
  OpCost gemm(const GemmShape& g) const override {
    g.check();
    OpCost c;
    c.macs = g.m * g.k * g.n;
    c.compute_cycles = (c.macs + macs_per_cycle(spec_) - 1) / macs_per_cycle(spec_);
    c.dram_reads = g.m * g.k + g.k * g.n;
    c.dram_writes = g.m * g.n;
    c.add_stalls(spec_);
    c.price(spec_.energy);
    return c.repeated(g.batch);
  }
};

class ScalarTemplate : public AcceleratorTemplate {
 public:
  std::string name() const override { return "scalar"; }
  std::string description() const override { return "one MAC unit (a test's toy)"; }
  std::vector<std::string> fields() const override { return {"macs_per_cycle"}; }
  void parse(const SpecFields& f, AcceleratorSpec& spec, bool complete) const override {
    if (complete) f.require("macs_per_cycle", "MACs per cycle");
    if (f.has("macs_per_cycle")) spec.params["macs_per_cycle"] = f.integer("macs_per_cycle");
  }
  void validate(const AcceleratorSpec& spec, const std::string& source) const override {
    check_positive(source, "macs_per_cycle", static_cast<double>(macs_per_cycle(spec)),
                   "a positive integer");
  }
  void to_json(const AcceleratorSpec& spec, json& out) const override {
    out["macs_per_cycle"] = macs_per_cycle(spec);
  }
  double peak_macs_per_cycle(const AcceleratorSpec& spec) const override {
    return static_cast<double>(macs_per_cycle(spec));
  }
  int64_t default_vector_lanes(const AcceleratorSpec&) const override { return 1; }
  std::unique_ptr<CostModel> cost_model(const AcceleratorSpec& spec) const override {
    return std::make_unique<ScalarCore>(spec);
  }
  bool has_area_model() const override { return true; }
  AreaBreakdown area(const AcceleratorSpec& spec, const AreaTable& table) const override {
    return table.price(macs_per_cycle(spec), spec.vector_lanes, 0);
  }
};

const TemplateRegistration kScalar(std::make_shared<ScalarTemplate>());

json scalar_spec() {
  return {{"name", "toy"},   {"template", "scalar"}, {"macs_per_cycle", 1},
          {"word_bytes", 1}, {"clock_mhz", 100},     {"dram_bytes_per_cycle", 1e6}};
}

using test_support::error_of;
using test_support::has;

TEST(AcceleratorTemplate, BuiltInsAreRegisteredWithTheirModels) {
  const auto names = template_names();
  ASSERT_GE(names.size(), 4u);
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + 4),
            (std::vector<std::string>{"systolic", "row_stationary", "pim", "attention"}));
  EXPECT_TRUE(accelerator_template("systolic").has_dataflow());
  EXPECT_FALSE(accelerator_template("pim").has_area_model());
  EXPECT_TRUE(accelerator_template("attention").fuses_attention());
  EXPECT_TRUE(has(error_of([] { accelerator_template("graph"); }),
                  "template 'graph': expected systolic, row_stationary, pim, attention"));
  EXPECT_TRUE(has(error_of([] { register_template(systolic_template()); }),
                  "'systolic' is already registered"));
}

TEST(AcceleratorTemplate, RegisteredToyParsesAndRoundTrips) {
  const auto names = template_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "scalar"), names.end());
  const AcceleratorSpec s = AcceleratorSpec::from_json(scalar_spec(), "toy.json");
  EXPECT_EQ(s.kind, Template("scalar"));
  EXPECT_EQ(macs_per_cycle(s), 1);
  EXPECT_EQ(s.vector_lanes, 1);  // the template's default
  EXPECT_DOUBLE_EQ(s.peak_macs_per_cycle(), 1);
  EXPECT_DOUBLE_EQ(s.energy.mac, 0.2 + 0.03);  // the common fields as for any template
  EXPECT_EQ(AcceleratorSpec::from_json(s.to_json()).to_json(), s.to_json());
  EXPECT_EQ(accelerator_template(s.kind).summary(s), "scalar");
}

TEST(AcceleratorTemplate, ToyFieldErrorsNameTheField) {
  const auto bad = [](const std::function<void(json&)>& edit) {
    json j = scalar_spec();
    edit(j);
    return error_of([&] { AcceleratorSpec::from_json(j, "spec file toy.json"); });
  };
  std::string m = bad([](json& j) { j.erase("macs_per_cycle"); });
  EXPECT_TRUE(has(m, "spec file toy.json") && has(m, "missing field 'macs_per_cycle'")) << m;
  m = bad([](json& j) { j["macs_per_cycle"] = 0; });
  EXPECT_TRUE(has(m, "field 'macs_per_cycle': got 0, expected a positive integer")) << m;
  m = bad([](json& j) { j["macs_per_cycle"] = "one"; });
  EXPECT_TRUE(has(m, "'macs_per_cycle'") && has(m, "expected an integer")) << m;
  // Another template's field, and this template's field on another template.
  m = bad([](json& j) { j["rows"] = 4; });
  EXPECT_TRUE(has(m, "field 'rows': template scalar has no such field")) << m;
  m = bad([](json& j) { j = {{"preset", "generic-32"}, {"macs_per_cycle", 2}}; });
  EXPECT_TRUE(has(m, "field 'macs_per_cycle': template systolic has no such field")) << m;
  // Unknown to every template: listed with the toy's field among the known ones.
  m = bad([](json& j) { j["macs"] = 1; });
  EXPECT_TRUE(has(m, "unknown field 'macs'") && has(m, "macs_per_cycle")) << m;
}

TEST(AcceleratorTemplate, ToyCostAreaAndSimulatedDevice) {
  const AcceleratorSpec spec = AcceleratorSpec::from_json(scalar_spec());
  const CostDispatcher device(spec);
  EXPECT_EQ(device.model().name(), "scalar-core");
  const Charge c = device.charge(OpDescription::gemm("fc", {{4, 5, 6}}));
  ASSERT_TRUE(c.charged);
  EXPECT_EQ(c.cost.macs, 120);
  EXPECT_EQ(c.cost.compute_cycles, 120);  // one MAC per cycle
  EXPECT_EQ(c.cost.stall_cycles, 0);
  EXPECT_DOUBLE_EQ(c.cost.utilization(), 1.0);
  EXPECT_EQ(c.cost.dram_reads, 4 * 5 + 5 * 6);
  // Two MACs a cycle halve it.
  json fast = scalar_spec();
  fast["macs_per_cycle"] = 2;
  EXPECT_EQ(CostDispatcher(AcceleratorSpec::from_json(fast))
                .charge(OpDescription::gemm("fc", {{4, 5, 6}}))
                .cost.compute_cycles,
            60);

  const AreaTable table = AreaTable::estimate_45nm(1);
  const AreaBreakdown a = accelerator_area(spec);
  EXPECT_DOUBLE_EQ(a.pe_mm2, table.mac_um2 * 1e-6);
  EXPECT_DOUBLE_EQ(a.vector_mm2, table.add_um2 * 1e-6);
  EXPECT_DOUBLE_EQ(a.sram_mm2, 0);
  // A template without an area model says which ones have one, the toy among them.
  const std::string m = error_of([] { accelerator_area(AcceleratorSpec::preset("pim-gpt")); });
  EXPECT_TRUE(has(m, "template pim has no area model") && has(m, "scalar")) << m;

  // The simulated device charges a matrix product on it to the toy's model.
  auto sim = std::make_shared<Simulator>(spec);
  {
    RecorderScope scope(sim);
    const auto x = torch::ones({4, 5}).to(accel::device(0));
    const auto w = torch::ones({5, 6}).to(accel::device(0));
    EXPECT_TRUE(torch::mm(x, w).cpu().equal(torch::full({4, 6}, 5.0f)));
  }
  const CostReport r = sim->report();
  int64_t mm_cycles = -1;
  for (const auto& e : r.entries())
    if (e.op == "aten::mm") mm_cycles = e.cost.compute_cycles;
  EXPECT_EQ(mm_cycles, 120) << r.table();
}

}  // namespace
}  // namespace strata::accel
