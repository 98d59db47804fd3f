#include "strata/accel/area_model.h"

#include "strata/accel/accelerator_template.h"
#include "strata/core/error.h"

namespace strata::accel {

using nlohmann::json;

AreaTable AreaTable::estimate_45nm(int64_t word_bytes) {
  // Horowitz, ISSCC 2014, 45 nm area table (um^2): multiplier and adder of the datatype.
  double mul = 0, add = 0;
  switch (word_bytes) {
    case 1: mul = 282, add = 36; break;     // 8-bit int
    case 2: mul = 1640, add = 1360; break;  // fp16
    case 4: mul = 7700, add = 4184; break;  // fp32
    default:
      STRATA_FAIL("word_bytes ", word_bytes,
                  ": no default 45 nm area estimate (there is one for 1, 2 and 4 bytes)");
  }
  AreaTable t;
  t.mac_um2 = mul + add;
  t.add_um2 = add;
  t.sram_mm2_per_kib = 600.0 * 45e-3 * 45e-3 * 8192 * 1e-6;  // 600 lambda^2 per bit, um^2 -> mm^2
  t.overhead_mm2 = 0.2;
  return t;
}

AreaTable AreaTable::from_json(const json& j, AreaTable base) {
  STRATA_CHECK(j.is_object(), "area table: got ", j.dump(), ", expected a JSON object");
  for (const auto& [key, value] : j.items()) {
    double* field = key == "mac_um2"            ? &base.mac_um2
                    : key == "add_um2"          ? &base.add_um2
                    : key == "sram_mm2_per_kib" ? &base.sram_mm2_per_kib
                    : key == "overhead_mm2"     ? &base.overhead_mm2
                                                : nullptr;
    STRATA_CHECK(field != nullptr, "area table: unknown field '", key,
                 "' (expected mac_um2, add_um2, sram_mm2_per_kib or overhead_mm2)");
    STRATA_CHECK(value.is_number() && value.get<double>() >= 0, "area table: field '", key,
                 "': got ", value.dump(), ", expected a non-negative number");
    *field = value.get<double>();
  }
  return base;
}

json AreaTable::to_json() const {
  return {{"mac_um2", mac_um2},
          {"add_um2", add_um2},
          {"sram_mm2_per_kib", sram_mm2_per_kib},
          {"overhead_mm2", overhead_mm2}};
}

json AreaBreakdown::to_json() const {
  return {{"pe_mm2", pe_mm2},
          {"vector_mm2", vector_mm2},
          {"sram_mm2", sram_mm2},
          {"overhead_mm2", overhead_mm2},
          {"total_mm2", total_mm2()}};
}

AreaBreakdown AreaTable::price(int64_t macs, int64_t lanes, double sram_kib) const {
  AreaBreakdown a;
  a.pe_mm2 = static_cast<double>(macs) * mac_um2 * 1e-6;
  a.vector_mm2 = static_cast<double>(lanes) * add_um2 * 1e-6;
  a.sram_mm2 = sram_kib * sram_mm2_per_kib;
  a.overhead_mm2 = overhead_mm2;
  return a;
}

AreaBreakdown accelerator_area(const AcceleratorSpec& spec, const AreaTable& table) {
  spec.validate(spec.name);
  const AcceleratorTemplate& t = accelerator_template(spec.kind);
  if (!t.has_area_model()) {
    std::vector<std::string> with;
    for (const auto& name : template_names())
      if (accelerator_template(name).has_area_model()) with.push_back(name);
    STRATA_FAIL("accelerator '", spec.name, "': template ", t.name(),
                " has no area model; expected one of ", join_names(with));
  }
  return t.area(spec, table);
}

AreaBreakdown accelerator_area(const AcceleratorSpec& spec) {
  return accelerator_area(spec, AreaTable::estimate_45nm(spec.word_bytes));
}

}  // namespace strata::accel
