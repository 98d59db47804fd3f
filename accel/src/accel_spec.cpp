#include "strata/accel/accel_spec.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "strata/accel/accelerator_template.h"
#include "strata/core/error.h"

namespace strata::accel {

using nlohmann::json;

std::string to_string(const Template& t) { return t.name(); }

std::string to_string(Dataflow d) {
  switch (d) {
    case Dataflow::OutputStationary: return "os";
    case Dataflow::WeightStationary: return "ws";
    case Dataflow::InputStationary: return "is";
  }
  return "?";
}

Template parse_template(const std::string& text) {
  return Template(accelerator_template(text).name());
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
  return accelerator_template(kind).peak_macs_per_cycle(*this);
}

namespace {

// The fields every template has; the rest belong to templates.
const std::vector<std::string>& common_fields() {
  static const std::vector<std::string> list = {"preset",       "name",      "template",
                                                "word_bytes",   "clock_mhz", "dram_bytes_per_cycle",
                                                "vector_lanes", "energy_pj", "memory_mib"};
  return list;
}

std::vector<std::string> known_fields() {
  std::vector<std::string> known = common_fields();
  for (const auto& f : template_fields()) known.push_back(f);
  return known;
}

}  // namespace

AcceleratorSpec AcceleratorSpec::from_json(const json& j, const std::string& source) {
  STRATA_CHECK(j.is_object(), source, ": expected a JSON object, got ", json_type_name(j));
  const SpecFields f(j, source);
  f.only(known_fields());
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
    f.require("template", template_choices());
    f.require("word_bytes", "bytes per data word");
    f.require("clock_mhz", "clock in MHz");
    f.require("dram_bytes_per_cycle", "off-chip bandwidth in bytes per cycle");
  }
  if (f.has("name")) s.name = f.string("name");
  const AcceleratorTemplate& t = accelerator_template(s.kind);
  // Another template's field is a mistake (a pim spec with "rows"), not something to ignore.
  const std::vector<std::string> own = t.fields();
  for (const auto& item : j.items()) {
    const auto& common = common_fields();
    if (std::find(common.begin(), common.end(), item.key()) != common.end() ||
        std::find(own.begin(), own.end(), item.key()) != own.end())
      continue;
    f.fail(item.key(), "template " + t.name() + " has no such field (its own: " +
                           (own.empty() ? "none" : join_names(own)) + ")");
  }
  t.parse(f, s, !from_preset);
  const int64_t old_word = s.word_bytes;
  f.maybe_integer("word_bytes", s.word_bytes);
  f.maybe_number("clock_mhz", s.clock_mhz);
  f.maybe_number("dram_bytes_per_cycle", s.dram_bytes_per_cycle);
  f.maybe_number("memory_mib", s.memory_mib);
  if (f.has("vector_lanes"))
    s.vector_lanes = f.integer("vector_lanes");
  else if (!from_preset)
    s.vector_lanes = t.default_vector_lanes(s);
  // Checked before the energy table that depends on it.
  if (s.word_bytes < 1 || s.word_bytes > kMaxWordBytes)
    f.fail("word_bytes", "got " + std::to_string(s.word_bytes) +
                             ", expected an integer between 1 and " +
                             std::to_string(kMaxWordBytes));
  // The default table follows the word size, unless the file gives energies (a preset's
  // table stays when its word size does).
  if (!from_preset || s.word_bytes != old_word) {
    if (f.has("energy_pj")) {
      // A word size with no default table needs every entry given.
      if (s.word_bytes == 1 || s.word_bytes == 2 || s.word_bytes == 4) {
        s.energy = EnergyTable::horowitz_45nm(s.word_bytes);
      } else {
        const SpecFields e = f.object("energy_pj");
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
    const SpecFields e = f.object("energy_pj");
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
  const AcceleratorTemplate* t = find_template(kind.name());
  STRATA_CHECK(t != nullptr, source, ": field 'template': template '", kind.name(), "': expected ",
               template_choices());
  t->validate(*this, source);
  check_integer_field(source, "word_bytes", word_bytes, 1, kMaxWordBytes);
  check_positive_field(source, "clock_mhz", clock_mhz, kMaxClockMhz);
  check_positive_field(source, "dram_bytes_per_cycle", dram_bytes_per_cycle, kMaxDramBytesPerCycle);
  check_integer_field(source, "vector_lanes", vector_lanes, 1, kMaxUnits);
  STRATA_CHECK(memory_mib >= 0 && memory_mib <= kMaxMemoryMib, source, ": field 'memory_mib': got ",
               memory_mib, ", expected a number between 0 (unlimited) and ", kMaxMemoryMib);
  const json e = energy.to_json();
  for (const auto& item : e.items()) {
    const double v = item.value().get<double>();
    STRATA_CHECK(v >= 0 && v <= kMaxEnergyPj, source, ": field 'energy_pj.", item.key(), "': got ",
                 v, ", expected a number between 0 and ", kMaxEnergyPj);
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
  if (memory_mib > 0) j["memory_mib"] = memory_mib;  // unlimited: not written
  accelerator_template(kind).to_json(*this, j);
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
