#include "strata/accel/accelerator_template.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "strata/accel/attention_array.h"
#include "strata/accel/cost_model.h"
#include "strata/accel/processing_in_memory.h"
#include "strata/accel/row_stationary.h"
#include "strata/accel/systolic_array.h"
#include "strata/core/error.h"

namespace strata::accel {

using nlohmann::json;

std::string join_names(const std::vector<std::string>& names, const std::string& last_separator) {
  std::string list;
  for (size_t i = 0; i < names.size(); ++i)
    list += (i == 0 ? "" : i + 1 == names.size() ? last_separator : ", ") + names[i];
  return list;
}

const char* json_type_name(const json& v) {
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer() || v.is_number_unsigned()) return "an integer";
  if (v.is_number_float()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<const AcceleratorTemplate>> by_name;
  std::vector<std::string> order;

  void add(std::shared_ptr<const AcceleratorTemplate> t) {
    STRATA_CHECK(t != nullptr, "register_template: got a null template");
    const std::string name = t->name();
    STRATA_CHECK(!name.empty(), "register_template: a template with an empty name");
    std::lock_guard<std::mutex> lock(mutex);
    STRATA_CHECK(by_name.emplace(name, std::move(t)).second, "register_template: template '", name,
                 "' is already registered");
    order.push_back(name);
  }
};

Registry& registry() {
  // The built-in templates: one line each (and the include of the header declaring it).
  static Registry* r = [] {
    auto* created = new Registry;
    created->add(systolic_template());
    created->add(row_stationary_template());
    created->add(pim_template());
    created->add(attention_template());
    return created;
  }();
  return *r;
}

}  // namespace

// ---- SpecFields ----

SpecFields::SpecFields(const json& object, std::string source, std::string prefix)
    : object_(object), source_(std::move(source)), prefix_(std::move(prefix)) {}

void SpecFields::fail(const std::string& key, const std::string& what) const {
  STRATA_FAIL(source_, ": field '", field(key), "': ", what);
}

void SpecFields::require(const std::string& key, const std::string& why) const {
  if (!has(key)) STRATA_FAIL(source_, ": missing field '", field(key), "' (", why, ")");
}

void SpecFields::only(const std::vector<std::string>& known) const {
  for (const auto& item : object_.items()) {
    if (std::find(known.begin(), known.end(), item.key()) != known.end()) continue;
    STRATA_FAIL(source_, ": unknown field '", field(item.key()), "' (expected one of ",
                join_names(known), ")");
  }
}

int64_t SpecFields::integer(const std::string& key) const {
  const json& v = object_.at(key);
  if (!v.is_number_integer() && !v.is_number_unsigned())
    fail(key, std::string("got ") + v.dump() + " (" + json_type_name(v) + "), expected an integer");
  return v.get<int64_t>();
}

double SpecFields::number(const std::string& key) const {
  const json& v = object_.at(key);
  if (!v.is_number())
    fail(key, std::string("got ") + v.dump() + " (" + json_type_name(v) + "), expected a number");
  return v.get<double>();
}

std::string SpecFields::string(const std::string& key) const {
  const json& v = object_.at(key);
  if (!v.is_string())
    fail(key, std::string("got ") + v.dump() + " (" + json_type_name(v) + "), expected a string");
  return v.get<std::string>();
}

SpecFields SpecFields::object(const std::string& key) const {
  const json& v = object_.at(key);
  if (!v.is_object())
    fail(key, std::string("got ") + v.dump() + " (" + json_type_name(v) + "), expected an object");
  return SpecFields(v, source_, field(key) + ".");
}

void check_positive(const std::string& source, const std::string& field, double v,
                    const std::string& what) {
  if (!(v > 0) || !std::isfinite(v))
    STRATA_FAIL(source, ": field '", field, "': got ", v, ", expected ", what);
}

void check_integer_field(const std::string& source, const std::string& field, int64_t v,
                         int64_t min, int64_t max) {
  if (v < min || v > max)
    STRATA_FAIL(source, ": field '", field, "': got ", v, ", expected an integer between ", min,
                " and ", max);
}

void check_positive_field(const std::string& source, const std::string& field, double v,
                          double max) {
  if (!(v > 0) || !std::isfinite(v) || v > max)
    STRATA_FAIL(source, ": field '", field, "': got ", v,
                ", expected a number greater than 0 and at most ", max);
}

// ---- AcceleratorTemplate defaults ----

void AcceleratorTemplate::parse(const SpecFields&, AcceleratorSpec&, bool) const {}
void AcceleratorTemplate::validate(const AcceleratorSpec&, const std::string&) const {}
void AcceleratorTemplate::to_json(const AcceleratorSpec&, json&) const {}

AreaBreakdown AcceleratorTemplate::area(const AcceleratorSpec& spec, const AreaTable&) const {
  STRATA_FAIL("accelerator '", spec.name, "': template ", name(), " has no area model");
}

// ---- PeArrayTemplate ----

std::vector<std::string> PeArrayTemplate::fields() const {
  return {"dataflow", "rows", "cols", "sram_kib"};
}

void PeArrayTemplate::parse(const SpecFields& f, AcceleratorSpec& s, bool complete) const {
  if (complete) {
    f.require("rows", "PE array rows");
    f.require("cols", "PE array columns");
    f.require("sram_kib", "{\"ifmap\", \"filter\", \"ofmap\"} buffer sizes in KiB");
    if (has_dataflow()) f.require("dataflow", "os, ws or is");
  }
  if (f.has("dataflow")) {
    const std::string d = f.string("dataflow");
    try {
      s.dataflow = parse_dataflow(d);
    } catch (const Error& e) {
      f.fail("dataflow", e.what());
    }
  }
  f.maybe_integer("rows", s.rows);
  f.maybe_integer("cols", s.cols);
  if (f.has("sram_kib")) {
    const SpecFields b = f.object("sram_kib");
    b.only({"ifmap", "filter", "ofmap"});
    if (complete)
      for (const char* k : {"ifmap", "filter", "ofmap"}) b.require(k, "KiB");
    b.maybe_number("ifmap", s.ifmap_sram_kib);
    b.maybe_number("filter", s.filter_sram_kib);
    b.maybe_number("ofmap", s.ofmap_sram_kib);
  }
}

void PeArrayTemplate::validate(const AcceleratorSpec& s, const std::string& source) const {
  check_integer_field(source, "rows", s.rows, 1, kMaxArraySide);
  check_integer_field(source, "cols", s.cols, 1, kMaxArraySide);
  check_positive_field(source, "sram_kib.ifmap", s.ifmap_sram_kib, kMaxSramKib);
  check_positive_field(source, "sram_kib.filter", s.filter_sram_kib, kMaxSramKib);
  check_positive_field(source, "sram_kib.ofmap", s.ofmap_sram_kib, kMaxSramKib);
}

void PeArrayTemplate::to_json(const AcceleratorSpec& s, json& out) const {
  out["dataflow"] = accel::to_string(s.dataflow);
  out["rows"] = s.rows;
  out["cols"] = s.cols;
  out["sram_kib"] = {
      {"ifmap", s.ifmap_sram_kib}, {"filter", s.filter_sram_kib}, {"ofmap", s.ofmap_sram_kib}};
}

double PeArrayTemplate::peak_macs_per_cycle(const AcceleratorSpec& s) const {
  return static_cast<double>(s.rows * s.cols);
}

int64_t PeArrayTemplate::default_vector_lanes(const AcceleratorSpec& s) const { return s.cols; }

std::string PeArrayTemplate::summary(const AcceleratorSpec& s) const {
  const std::string flow = has_dataflow() ? " " + accel::to_string(s.dataflow) : "";
  return name() + flow + ", " + std::to_string(s.rows) + "x" + std::to_string(s.cols);
}

AreaBreakdown PeArrayTemplate::area(const AcceleratorSpec& s, const AreaTable& table) const {
  return table.price(s.rows * s.cols, s.vector_lanes > 0 ? s.vector_lanes : s.cols,
                     s.ifmap_sram_kib + s.filter_sram_kib + s.ofmap_sram_kib);
}

// ---- the registry ----

void register_template(std::shared_ptr<const AcceleratorTemplate> t) {
  registry().add(std::move(t));
}

const AcceleratorTemplate* find_template(const std::string& name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  const auto it = r.by_name.find(name);
  return it == r.by_name.end() ? nullptr : it->second.get();
}

const AcceleratorTemplate& accelerator_template(const std::string& name) {
  const AcceleratorTemplate* t = find_template(name);
  if (t == nullptr) STRATA_FAIL("template '", name, "': expected ", template_choices());
  return *t;
}

const AcceleratorTemplate& accelerator_template(const Template& t) {
  return accelerator_template(t.name());
}

std::vector<std::string> template_names() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.order;
}

std::string template_choices() { return join_names(template_names(), " or "); }

std::vector<std::string> template_fields() {
  std::vector<std::string> all;
  for (const auto& name : template_names())
    for (const auto& field : accelerator_template(name).fields())
      if (std::find(all.begin(), all.end(), field) == all.end()) all.push_back(field);
  return all;
}

}  // namespace strata::accel
