#pragma once
// The registry of accelerator templates. A template is everything the library knows about
// one kind of accelerator: its name in spec files ("template": "systolic"), the spec
// fields it reads and checks, its cost model, its area model and how strata-accel lists it.
// Adding one is one header/source pair (an AcceleratorTemplate subclass and its CostModel)
// plus one registration:
//
//   class Scalar : public strata::accel::AcceleratorTemplate {
//    public:
//     std::string name() const override { return "scalar"; }
//     ...
//   };
//   static const strata::accel::TemplateRegistration kScalar(std::make_shared<Scalar>());
//
// (a program or test registers its own so; the library's built-in ones are listed in
// registry() of accelerator_template.cpp, since a static library drops object files
// nothing refers to, and their static registrations with them).
// Every spec then takes {"template": "scalar", ...}: AcceleratorSpec::from_json reads the
// common fields (name, word_bytes, clock_mhz, dram_bytes_per_cycle, vector_lanes,
// energy_pj) and hands the rest to the template.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/accel/accel_spec.h"
#include "strata/accel/area_model.h"

namespace strata::accel {

class CostModel;

// Reads the fields of one JSON object of a spec, naming the source and `prefix.field` in
// every error ("spec file s.json: field 'sram_kib.ifmap': got "x" (a string), expected a
// number").
class SpecFields {
 public:
  SpecFields(const nlohmann::json& object, std::string source, std::string prefix = "");

  const std::string& source() const { return source_; }
  // `prefix.key`, as errors name it.
  std::string field(const std::string& key) const { return prefix_ + key; }
  bool has(const std::string& key) const { return object_.contains(key); }
  const nlohmann::json& raw(const std::string& key) const { return object_.at(key); }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  // strata::Error "missing field 'key' (why)" when absent.
  void require(const std::string& key, const std::string& why) const;
  // strata::Error "unknown field" for a key not in `known`, listing them.
  void only(const std::vector<std::string>& known) const;

  int64_t integer(const std::string& key) const;
  double number(const std::string& key) const;
  std::string string(const std::string& key) const;
  // A nested object; its errors name `prefix.key.field`.
  SpecFields object(const std::string& key) const;

  template <typename T>
  void maybe_integer(const std::string& key, T& out) const {
    if (has(key)) out = integer(key);
  }
  void maybe_number(const std::string& key, double& out) const {
    if (has(key)) out = number(key);
  }

 private:
  const nlohmann::json& object_;
  std::string source_;
  std::string prefix_;
};

// "a, b, c", or "a, b or c" with last_separator " or ": lists of names in messages.
std::string join_names(const std::vector<std::string>& names,
                       const std::string& last_separator = ", ");

// "an integer", "a string", ... for messages that say what a JSON value was.
const char* json_type_name(const nlohmann::json& v);

// "a positive integer" and the like: strata::Error "source: field 'field': got v, expected
// what" unless v is positive and finite.
void check_positive(const std::string& source, const std::string& field, double v,
                    const std::string& what);
// Every spec field has a stated range (issue 23): "source: field 'rows': got
// 9223372036854775807, expected an integer between 1 and 65536" unless min <= v <= max.
void check_integer_field(const std::string& source, const std::string& field, int64_t v,
                         int64_t min, int64_t max);
// "... expected a number greater than 0 and at most 1e+06" unless v is finite, > 0, <= max.
void check_positive_field(const std::string& source, const std::string& field, double v,
                          double max);

// One kind of accelerator. Only the name, the description and the cost model are required;
// the rest have defaults for a template with no fields of its own.
class AcceleratorTemplate {
 public:
  virtual ~AcceleratorTemplate() = default;

  // The "template" of spec files.
  virtual std::string name() const = 0;
  // One line: what it models (strata-accel templates).
  virtual std::string description() const = 0;

  // The top-level spec fields it reads beyond the common ones, in the order errors list
  // them; a spec of this template with another template's field is an error.
  virtual std::vector<std::string> fields() const { return {}; }
  // Reads those fields into `spec`. `complete`: the spec does not start from a preset,
  // so the required ones must be there (SpecFields::require).
  virtual void parse(const SpecFields& fields, AcceleratorSpec& spec, bool complete) const;
  // Checks the values parse() set (and any a program changed since): strata::Error naming
  // `source` and the field. Called before the common fields are checked.
  virtual void validate(const AcceleratorSpec& spec, const std::string& source) const;
  // Writes the fields into `out`, so that from_json(to_json()) gives the same spec.
  virtual void to_json(const AcceleratorSpec& spec, nlohmann::json& out) const;

  // MACs per cycle at best (utilization's denominator).
  virtual double peak_macs_per_cycle(const AcceleratorSpec& spec) const = 0;
  // vector_lanes when a complete spec does not give it.
  virtual int64_t default_vector_lanes(const AcceleratorSpec& spec) const = 0;
  // "systolic ws, 64x32": the template and its size, for listings.
  virtual std::string summary(const AcceleratorSpec& spec) const { return name(); }

  virtual std::unique_ptr<CostModel> cost_model(const AcceleratorSpec& spec) const = 0;
  // Whether area() prices a design; the default has no area model.
  virtual bool has_area_model() const { return false; }
  virtual AreaBreakdown area(const AcceleratorSpec& spec, const AreaTable& table) const;

  // What strata-accel's flags may change: a PE array (--array: rows x cols), a dataflow
  // (--dataflow), attention mappings beyond the unfused one (--mapping flat or fused).
  virtual bool has_pe_array() const { return false; }
  virtual bool has_dataflow() const { return false; }
  virtual bool fuses_attention() const { return false; }
};

// An R x C array of PEs with ifmap, filter and ofmap buffers ("rows", "cols", "sram_kib",
// "dataflow"): the fields, checks, peak (R x C), default lanes (C) and area the systolic,
// row-stationary and attention templates share.
class PeArrayTemplate : public AcceleratorTemplate {
 public:
  std::vector<std::string> fields() const override;
  void parse(const SpecFields& fields, AcceleratorSpec& spec, bool complete) const override;
  void validate(const AcceleratorSpec& spec, const std::string& source) const override;
  void to_json(const AcceleratorSpec& spec, nlohmann::json& out) const override;
  double peak_macs_per_cycle(const AcceleratorSpec& spec) const override;
  int64_t default_vector_lanes(const AcceleratorSpec& spec) const override;
  std::string summary(const AcceleratorSpec& spec) const override;
  bool has_area_model() const override { return true; }
  AreaBreakdown area(const AcceleratorSpec& spec, const AreaTable& table) const override;
  bool has_pe_array() const override { return true; }
};

// Adds `t` under t->name(); strata::Error if that name is taken.
void register_template(std::shared_ptr<const AcceleratorTemplate> t);
// The template named `name`; strata::Error "template 'x': expected systolic, ... or ..."
// for an unknown one.
const AcceleratorTemplate& accelerator_template(const std::string& name);
const AcceleratorTemplate& accelerator_template(const Template& t);
// nullptr for an unknown name.
const AcceleratorTemplate* find_template(const std::string& name);
// Registered names, the built-in ones first, then in registration order.
std::vector<std::string> template_names();
// "systolic, row_stationary, pim or attention": the registered names, for messages.
std::string template_choices();
// Every registered template's fields() and none twice, in that order.
std::vector<std::string> template_fields();

// Registers a template when constructed: a static one in a program or test registers it
// before main.
struct TemplateRegistration {
  explicit TemplateRegistration(std::shared_ptr<const AcceleratorTemplate> t) {
    register_template(std::move(t));
  }
};

}  // namespace strata::accel
