#include "strata/accel/accel_spec.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "strata/core/error.h"

namespace strata::accel {

using nlohmann::json;

std::string to_string(Template t) {
  switch (t) {
    case Template::Systolic: return "systolic";
    case Template::RowStationary: return "row_stationary";
    case Template::ProcessingInMemory: return "pim";
    case Template::Attention: return "attention";
  }
  return "?";
}

std::string to_string(Dataflow d) {
  switch (d) {
    case Dataflow::OutputStationary: return "os";
    case Dataflow::WeightStationary: return "ws";
    case Dataflow::InputStationary: return "is";
  }
  return "?";
}

Template parse_template(const std::string& text) {
  for (Template t : {Template::Systolic, Template::RowStationary, Template::ProcessingInMemory,
                     Template::Attention})
    if (text == to_string(t)) return t;
  STRATA_FAIL("template '", text, "': expected systolic, row_stationary, pim or attention");
}

Dataflow parse_dataflow(const std::string& text) {
  for (Dataflow d :
       {Dataflow::OutputStationary, Dataflow::WeightStationary, Dataflow::InputStationary})
    if (text == to_string(d)) return d;
  STRATA_FAIL("dataflow '", text, "': expected os, ws or is");
}

EnergyTable EnergyTable::horowitz_45nm(int64_t word_bytes) {
  // Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm (REFERENCE.md).
  double mul = 0, add = 0;
  switch (word_bytes) {
    case 1: mul = 0.2, add = 0.03; break;  // 8-bit int
    case 2: mul = 1.1, add = 0.4; break;   // fp16
    case 4: mul = 3.7, add = 0.9; break;   // fp32
    default:
      STRATA_FAIL("word_bytes ", word_bytes,
                  ": no default 45 nm energy table (there is one for 1, 2 and 4 bytes); give "
                  "\"energy_pj\"");
  }
  const double bits = 8.0 * word_bytes;
  EnergyTable e;
  e.mac = mul + add;
  e.sram_read = e.sram_write = 10.0 * bits / 64;    // 10 pJ per 64-bit read, 8 KB SRAM
  e.dram_read = e.dram_write = 1950.0 * bits / 64;  // midpoint of 1.3-2.6 nJ per 64 bits
  e.vector_op = add;
  return e;
}

json EnergyTable::to_json() const {
  return {{"mac", mac},
          {"sram_read", sram_read},
          {"sram_write", sram_write},
          {"dram_read", dram_read},
          {"dram_write", dram_write},
          {"vector_op", vector_op}};
}

json PimParams::to_json() const {
  return {{"banks", banks},         {"macs_per_access", macs_per_access},
          {"row_bytes", row_bytes}, {"t_rcd", t_rcd},
          {"t_rp", t_rp},           {"t_ccd", t_ccd}};
}

namespace {

int64_t kib_to_words(double kib, int64_t word_bytes) {
  return static_cast<int64_t>(std::floor(kib * 1024.0 / static_cast<double>(word_bytes)));
}

const char* type_name(const json& v) {
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer() || v.is_number_unsigned()) return "an integer";
  if (v.is_number_float()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

// Reads fields of one JSON object, naming `prefix.field` and the source in every error.
class FieldReader {
 public:
  FieldReader(const json& object, std::string source, std::string prefix)
      : object_(object), source_(std::move(source)), prefix_(std::move(prefix)) {}

  std::string field(const std::string& key) const { return prefix_ + key; }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    STRATA_FAIL(source_, ": field '", field(key), "': ", what);
  }

  bool has(const std::string& key) const { return object_.contains(key); }

  void require(const std::string& key, const std::string& why) const {
    if (!has(key)) STRATA_FAIL(source_, ": missing field '", field(key), "' (", why, ")");
  }

  // Every key must be one of `known`.
  void only(const std::vector<std::string>& known) const {
    for (const auto& item : object_.items()) {
      if (std::find(known.begin(), known.end(), item.key()) != known.end()) continue;
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      STRATA_FAIL(source_, ": unknown field '", field(item.key()), "' (expected one of ", list,
                  ")");
    }
  }

  int64_t integer(const std::string& key) const {
    const json& v = object_.at(key);
    if (!v.is_number_integer() && !v.is_number_unsigned())
      fail(key, std::string("got ") + v.dump() + " (" + type_name(v) + "), expected an integer");
    return v.get<int64_t>();
  }

  double number(const std::string& key) const {
    const json& v = object_.at(key);
    if (!v.is_number())
      fail(key, std::string("got ") + v.dump() + " (" + type_name(v) + "), expected a number");
    return v.get<double>();
  }

  std::string string(const std::string& key) const {
    const json& v = object_.at(key);
    if (!v.is_string())
      fail(key, std::string("got ") + v.dump() + " (" + type_name(v) + "), expected a string");
    return v.get<std::string>();
  }

  FieldReader object(const std::string& key) const {
    const json& v = object_.at(key);
    if (!v.is_object())
      fail(key, std::string("got ") + v.dump() + " (" + type_name(v) + "), expected an object");
    return FieldReader(v, source_, field(key) + ".");
  }

  template <typename T>
  void maybe_integer(const std::string& key, T& out) const {
    if (has(key)) out = integer(key);
  }
  void maybe_number(const std::string& key, double& out) const {
    if (has(key)) out = number(key);
  }

 private:
  const json& object_;
  std::string source_;
  std::string prefix_;
};

// The presets, as spec files would state them, so that they go through the same parser.
// Figures are the designs' published ones where they exist, rounded; the rest (DRAM
// bandwidth of a design evaluated without DRAM, timing in cycles) are stated choices.
struct Preset {
  const char* name;
  const char* description;
  const char* spec;
};

const std::vector<Preset>& presets() {
  static const std::vector<Preset> list = {
      {"nvdla",
       "NVDLA-like weight stationary (NASAIC template): 64 input x 32 output channel MACs "
       "(nv_full's atomic-C x atomic-K), int8, 512 KiB convolution buffer, 1 GHz",
       R"({"name": "nvdla", "template": "systolic", "dataflow": "ws", "rows": 64, "cols": 32,
           "sram_kib": {"ifmap": 256, "filter": 256, "ofmap": 64}, "word_bytes": 1,
           "clock_mhz": 1000, "dram_bytes_per_cycle": 32, "vector_lanes": 16})"},
      {"shidiannao",
       "ShiDianNao-like output stationary (NASAIC template): 8x8 PEs, 16-bit, NBin 64 KiB, SB "
       "128 KiB, NBout 64 KiB, 1 GHz",
       R"({"name": "shidiannao", "template": "systolic", "dataflow": "os", "rows": 8, "cols": 8,
           "sram_kib": {"ifmap": 64, "filter": 128, "ofmap": 64}, "word_bytes": 2,
           "clock_mhz": 1000, "dram_bytes_per_cycle": 8, "vector_lanes": 8})"},
      {"eyeriss",
       "Eyeriss-like row stationary (NASAIC template): 12x14 PEs, 16-bit, 108 KiB global "
       "buffer, 200 MHz, 64-bit DRAM bus",
       R"({"name": "eyeriss", "template": "row_stationary", "rows": 12, "cols": 14,
           "sram_kib": {"ifmap": 54, "filter": 27, "ofmap": 27}, "word_bytes": 2,
           "clock_mhz": 200, "dram_bytes_per_cycle": 8, "vector_lanes": 14})"},
      {"tpu-like",
       "TPU v1-like weight stationary: 256x256 int8 MACs, 24 MiB unified buffer, 4 MiB "
       "accumulators, 700 MHz, 30 GB/s DRAM (43 bytes per cycle)",
       R"({"name": "tpu-like", "template": "systolic", "dataflow": "ws", "rows": 256, "cols": 256,
           "sram_kib": {"ifmap": 24576, "filter": 256, "ofmap": 4096}, "word_bytes": 1,
           "clock_mhz": 700, "dram_bytes_per_cycle": 43, "vector_lanes": 256})"},
      {"generic-32",
       "A 32x32 output stationary array with 64 KiB buffers (SCALE-Sim's usual setup), fp16, "
       "1 GHz, 16 bytes per cycle; what strata-accel uses without --spec or --preset",
       R"({"name": "generic-32", "template": "systolic", "dataflow": "os", "rows": 32, "cols": 32,
           "sram_kib": {"ifmap": 64, "filter": 64, "ofmap": 64}, "word_bytes": 2,
           "clock_mhz": 1000, "dram_bytes_per_cycle": 16, "vector_lanes": 32})"},
      {"pim-gpt",
       "PIM-GPT-like: 8 GDDR6 channels x 16 banks, 16 bf16 MACs per bank per column access, "
       "2 KiB rows, tRCD = tRP = 18 and tCCD = 2 cycles at 1 GHz",
       R"({"name": "pim-gpt", "template": "pim", "word_bytes": 2, "clock_mhz": 1000,
           "dram_bytes_per_cycle": 64, "vector_lanes": 16,
           "pim": {"banks": 128, "macs_per_access": 16, "row_bytes": 2048,
                   "t_rcd": 18, "t_rp": 18, "t_ccd": 2}})"},
      {"fusemax",
       "FuseMax-like attention array: 256x256 PEs with a 256-lane 1-D array, bf16, 8 MiB "
       "buffers, 940 MHz, 400 GB/s DRAM (425 bytes per cycle)",
       R"({"name": "fusemax", "template": "attention", "dataflow": "os", "rows": 256, "cols": 256,
           "sram_kib": {"ifmap": 2048, "filter": 4096, "ofmap": 2048}, "word_bytes": 2,
           "clock_mhz": 940, "dram_bytes_per_cycle": 425, "vector_lanes": 256})"},
  };
  return list;
}

const Preset* find_preset(const std::string& name) {
  for (const auto& p : presets())
    if (name == p.name) return &p;
  return nullptr;
}

std::string preset_list() {
  std::string list;
  for (const auto& p : presets()) list += (list.empty() ? "" : ", ") + std::string(p.name);
  return list;
}

}  // namespace

int64_t AcceleratorSpec::ifmap_words() const { return kib_to_words(ifmap_sram_kib, word_bytes); }
int64_t AcceleratorSpec::filter_words() const { return kib_to_words(filter_sram_kib, word_bytes); }
int64_t AcceleratorSpec::ofmap_words() const { return kib_to_words(ofmap_sram_kib, word_bytes); }

double AcceleratorSpec::peak_macs_per_cycle() const {
  if (kind == Template::ProcessingInMemory)
    return static_cast<double>(pim.banks * pim.macs_per_access) / static_cast<double>(pim.t_ccd);
  return static_cast<double>(rows * cols);
}

AcceleratorSpec AcceleratorSpec::from_json(const json& j, const std::string& source) {
  STRATA_CHECK(j.is_object(), source, ": expected a JSON object, got ", type_name(j));
  const FieldReader f(j, source, "");
  f.only({"preset", "name", "template", "dataflow", "rows", "cols", "sram_kib", "word_bytes",
          "clock_mhz", "dram_bytes_per_cycle", "vector_lanes", "pim", "energy_pj"});
  AcceleratorSpec s;
  const bool from_preset = f.has("preset");
  if (from_preset) {
    const std::string name = f.string("preset");
    if (!find_preset(name))
      f.fail("preset", "'" + name + "' is not a preset (" + preset_list() + ")");
    s = preset(name);
  }
  if (f.has("template")) {
    const std::string t = f.string("template");
    try {
      s.kind = parse_template(t);
    } catch (const Error& e) {
      f.fail("template", e.what());
    }
  }
  if (!from_preset) {
    f.require("template", "systolic, row_stationary, pim or attention");
    f.require("word_bytes", "bytes per data word");
    f.require("clock_mhz", "clock in MHz");
    f.require("dram_bytes_per_cycle", "off-chip bandwidth in bytes per cycle");
  }
  if (f.has("name")) s.name = f.string("name");
  const bool pim = s.kind == Template::ProcessingInMemory;
  if (!from_preset) {
    if (!pim) {
      f.require("rows", "PE array rows");
      f.require("cols", "PE array columns");
      f.require("sram_kib", "{\"ifmap\", \"filter\", \"ofmap\"} buffer sizes in KiB");
    } else {
      f.require("pim",
                "{\"banks\", \"macs_per_access\", \"row_bytes\", \"t_rcd\", \"t_rp\", \"t_ccd\"}");
    }
    if (s.kind == Template::Systolic) f.require("dataflow", "os, ws or is");
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
    const FieldReader b = f.object("sram_kib");
    b.only({"ifmap", "filter", "ofmap"});
    if (!from_preset)
      for (const char* k : {"ifmap", "filter", "ofmap"}) b.require(k, "KiB");
    b.maybe_number("ifmap", s.ifmap_sram_kib);
    b.maybe_number("filter", s.filter_sram_kib);
    b.maybe_number("ofmap", s.ofmap_sram_kib);
  }
  const int64_t old_word = s.word_bytes;
  f.maybe_integer("word_bytes", s.word_bytes);
  f.maybe_number("clock_mhz", s.clock_mhz);
  f.maybe_number("dram_bytes_per_cycle", s.dram_bytes_per_cycle);
  if (f.has("pim")) {
    const FieldReader p = f.object("pim");
    const std::vector<std::string> keys = {"banks", "macs_per_access", "row_bytes", "t_rcd", "t_rp",
                                           "t_ccd"};
    p.only(keys);
    if (!from_preset)
      for (const auto& k : keys) p.require(k, "see docs/accel.md");
    p.maybe_integer("banks", s.pim.banks);
    p.maybe_integer("macs_per_access", s.pim.macs_per_access);
    p.maybe_integer("row_bytes", s.pim.row_bytes);
    p.maybe_integer("t_rcd", s.pim.t_rcd);
    p.maybe_integer("t_rp", s.pim.t_rp);
    p.maybe_integer("t_ccd", s.pim.t_ccd);
  }
  if (f.has("vector_lanes"))
    s.vector_lanes = f.integer("vector_lanes");
  else if (!from_preset)
    s.vector_lanes = pim ? s.pim.banks : s.cols;
  if (s.word_bytes <= 0)
    f.fail("word_bytes", "got " + std::to_string(s.word_bytes) + ", expected a positive integer");
  // The default table follows the word size, unless the file gives energies (a preset's
  // table stays when its word size does).
  if (!from_preset || s.word_bytes != old_word) {
    if (f.has("energy_pj")) {
      // A word size with no default table needs every entry given.
      if (s.word_bytes == 1 || s.word_bytes == 2 || s.word_bytes == 4) {
        s.energy = EnergyTable::horowitz_45nm(s.word_bytes);
      } else {
        const FieldReader e = f.object("energy_pj");
        for (const char* k :
             {"mac", "sram_read", "sram_write", "dram_read", "dram_write", "vector_op"})
          e.require(k, "no default 45 nm energy for word_bytes " + std::to_string(s.word_bytes));
        s.energy = EnergyTable{};
      }
    } else {
      try {
        s.energy = EnergyTable::horowitz_45nm(s.word_bytes);
      } catch (const Error& e) {
        f.fail("word_bytes", e.what());
      }
    }
  }
  if (f.has("energy_pj")) {
    const FieldReader e = f.object("energy_pj");
    e.only({"mac", "sram_read", "sram_write", "dram_read", "dram_write", "vector_op"});
    e.maybe_number("mac", s.energy.mac);
    e.maybe_number("sram_read", s.energy.sram_read);
    e.maybe_number("sram_write", s.energy.sram_write);
    e.maybe_number("dram_read", s.energy.dram_read);
    e.maybe_number("dram_write", s.energy.dram_write);
    e.maybe_number("vector_op", s.energy.vector_op);
  }
  s.validate(source);
  return s;
}

void AcceleratorSpec::validate(const std::string& source) const {
  auto positive = [&](const char* field, double v, const char* what) {
    if (!(v > 0) || !std::isfinite(v))
      STRATA_FAIL(source, ": field '", field, "': got ", v, ", expected ", what);
  };
  if (kind == Template::ProcessingInMemory) {
    positive("pim.banks", static_cast<double>(pim.banks), "a positive integer");
    positive("pim.macs_per_access", static_cast<double>(pim.macs_per_access), "a positive integer");
    positive("pim.t_ccd", static_cast<double>(pim.t_ccd), "a positive integer");
    STRATA_CHECK(pim.row_bytes >= word_bytes && pim.row_bytes % word_bytes == 0, source,
                 ": field 'pim.row_bytes': got ", pim.row_bytes,
                 ", expected a positive multiple of word_bytes (", word_bytes, ")");
    STRATA_CHECK(pim.t_rcd >= 0, source, ": field 'pim.t_rcd': got ", pim.t_rcd, ", expected >= 0");
    STRATA_CHECK(pim.t_rp >= 0, source, ": field 'pim.t_rp': got ", pim.t_rp, ", expected >= 0");
  } else {
    positive("rows", static_cast<double>(rows), "a positive integer");
    positive("cols", static_cast<double>(cols), "a positive integer");
    positive("sram_kib.ifmap", ifmap_sram_kib, "a positive number of KiB");
    positive("sram_kib.filter", filter_sram_kib, "a positive number of KiB");
    positive("sram_kib.ofmap", ofmap_sram_kib, "a positive number of KiB");
  }
  positive("word_bytes", static_cast<double>(word_bytes), "a positive integer");
  positive("clock_mhz", clock_mhz, "a positive number");
  positive("dram_bytes_per_cycle", dram_bytes_per_cycle, "a positive number");
  positive("vector_lanes", static_cast<double>(vector_lanes), "a positive integer");
  const json e = energy.to_json();
  for (const auto& item : e.items()) {
    const double v = item.value().get<double>();
    STRATA_CHECK(v >= 0 && std::isfinite(v), source, ": field 'energy_pj.", item.key(), "': got ",
                 v, ", expected a number >= 0");
  }
}

AcceleratorSpec AcceleratorSpec::load(const std::string& path) {
  std::ifstream in(path);
  STRATA_CHECK(in.good(), "spec file ", path, ": cannot open (not a preset either: ", preset_list(),
               ")");
  const json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  STRATA_CHECK(!j.is_discarded(), "spec file ", path, ": not valid JSON");
  AcceleratorSpec s = from_json(j, "spec file " + path);
  if (!j.contains("name") && !j.contains("preset"))
    s.name = std::filesystem::path(path).stem().string();
  return s;
}

AcceleratorSpec AcceleratorSpec::preset(const std::string& name) {
  const Preset* p = find_preset(name);
  STRATA_CHECK(p != nullptr, "preset '", name, "': unknown (", preset_list(), ")");
  return from_json(json::parse(p->spec), std::string("preset ") + name);
}

AcceleratorSpec AcceleratorSpec::resolve(const std::string& name_or_path) {
  if (find_preset(name_or_path)) return preset(name_or_path);
  return load(name_or_path);
}

json AcceleratorSpec::to_json() const {
  json j = {{"name", name},
            {"template", to_string(kind)},
            {"word_bytes", word_bytes},
            {"clock_mhz", clock_mhz},
            {"dram_bytes_per_cycle", dram_bytes_per_cycle},
            {"vector_lanes", vector_lanes},
            {"energy_pj", energy.to_json()}};
  if (kind == Template::ProcessingInMemory) {
    j["pim"] = pim.to_json();
  } else {
    j["dataflow"] = to_string(dataflow);
    j["rows"] = rows;
    j["cols"] = cols;
    j["sram_kib"] = {
        {"ifmap", ifmap_sram_kib}, {"filter", filter_sram_kib}, {"ofmap", ofmap_sram_kib}};
  }
  return j;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& p : presets()) names.emplace_back(p.name);
  return names;
}

std::string preset_description(const std::string& name) {
  const Preset* p = find_preset(name);
  STRATA_CHECK(p != nullptr, "preset '", name, "': unknown (", preset_list(), ")");
  return p->description;
}

}  // namespace strata::accel
