#pragma once
// What a simulated accelerator is: a template (systolic array, row-stationary array,
// processing-in-memory, attention array, or any other registered one: see
// accelerator_template.h), its size, buffers, clock, off-chip bandwidth, vector unit and
// energy table. Read from a JSON spec file or taken from a named preset
// (docs/accel.md lists both); every place that takes a spec file also takes a preset name.
//
//   {"name": "my-ws", "template": "systolic", "dataflow": "ws", "rows": 32, "cols": 32,
//    "sram_kib": {"ifmap": 64, "filter": 64, "ofmap": 64}, "word_bytes": 1,
//    "clock_mhz": 1000, "dram_bytes_per_cycle": 16}
//   {"preset": "eyeriss", "rows": 16}          // a preset with fields replaced
//
// Units: SRAM sizes in KiB, word size in bytes, clock in MHz, bandwidth in bytes per
// cycle of that clock, DRAM timings in cycles, energies in pJ per word or per operation.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace strata::accel {

// Which template a spec uses: the name it is registered under (accelerator_template.h).
// The built-in ones have constants, for code that asks which one a spec is.
class Template {
 public:
  Template() = default;
  explicit Template(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }

  static const Template Systolic;            // "systolic"
  static const Template RowStationary;       // "row_stationary"
  static const Template ProcessingInMemory;  // "pim"
  static const Template Attention;           // "attention"

 private:
  std::string name_ = "systolic";
};

inline const Template Template::Systolic{"systolic"};
inline const Template Template::RowStationary{"row_stationary"};
inline const Template Template::ProcessingInMemory{"pim"};
inline const Template Template::Attention{"attention"};

inline bool operator==(const Template& a, const Template& b) { return a.name() == b.name(); }
inline bool operator!=(const Template& a, const Template& b) { return !(a == b); }
inline std::ostream& operator<<(std::ostream& out, const Template& t) { return out << t.name(); }

enum class Dataflow { OutputStationary, WeightStationary, InputStationary };

// The template's name; "os", "ws", "is".
std::string to_string(const Template& t);
std::string to_string(Dataflow d);
// Raise strata::Error naming the text and the accepted values (the registered templates).
Template parse_template(const std::string& text);
Dataflow parse_dataflow(const std::string& text);

// Energy per event in pJ. The defaults are Horowitz's 45 nm figures (ISSCC 2014; see
// REFERENCE.md "Simulated accelerators") for the spec's word size:
//   mac        multiply + add of the datatype: int8 0.2 + 0.03, fp16 1.1 + 0.4,
//              fp32 3.7 + 0.9 (1-, 2- and 4-byte words).
//   sram_*     10 pJ per 64-bit read of an 8 KB SRAM, scaled to the word's bits; a write
//              is taken to cost what a read does (the paper gives reads only).
//   dram_*     1.3-2.6 nJ per 64 bits: the midpoint, 1.95 nJ, scaled to the word's bits.
//   vector_op  one add of the datatype (int8 0.03, fp16 0.4, fp32 0.9) per element-op.
// A spec's "energy_pj" object replaces any of them.
struct EnergyTable {
  double mac = 0;
  double sram_read = 0;
  double sram_write = 0;
  double dram_read = 0;
  double dram_write = 0;
  double vector_op = 0;

  // The defaults above; strata::Error for a word size with no 45 nm figure (not 1, 2, 4).
  static EnergyTable horowitz_45nm(int64_t word_bytes);
  nlohmann::json to_json() const;
};

// Processing-in-memory (PIM-GPT style): MAC units beside each DRAM bank. A column access
// delivers `macs_per_access` words to the bank's MAC unit every `t_ccd` cycles; reaching a
// new DRAM row costs an activation (t_rcd) and a precharge (t_rp).
struct PimParams {
  int64_t banks = 0;
  int64_t macs_per_access = 0;
  int64_t row_bytes = 0;
  int64_t t_rcd = 0;
  int64_t t_rp = 0;
  int64_t t_ccd = 0;
  nlohmann::json to_json() const;
};

// The range of every spec field (AcceleratorSpec::validate): wide enough for any design one
// would simulate, narrow enough that a size times a layer's dimensions stays well inside 64
// bits (the cost models check their arithmetic too, core/checked_math.h).
constexpr int64_t kMaxArraySide = 65536;       // rows, cols
constexpr int64_t kMaxWordBytes = 64;          // word_bytes
constexpr int64_t kMaxUnits = 1 << 20;         // vector_lanes; pim banks, sizes and timings
constexpr double kMaxSramKib = 1 << 30;        // each buffer (a TiB)
constexpr double kMaxClockMhz = 1e6;           // clock_mhz (1 THz)
constexpr double kMaxDramBytesPerCycle = 1e9;  // dram_bytes_per_cycle
constexpr double kMaxEnergyPj = 1e9;           // each energy_pj entry
constexpr double kMaxMemoryMib = 1 << 30;      // memory_mib (a PiB)

struct AcceleratorSpec {
  std::string name = "custom";
  Template kind = Template::Systolic;  // "template" in the file
  Dataflow dataflow = Dataflow::OutputStationary;
  int64_t rows = 0;  // PE array rows x cols (not used by "pim")
  int64_t cols = 0;
  double ifmap_sram_kib = 0;
  double filter_sram_kib = 0;
  double ofmap_sram_kib = 0;
  int64_t word_bytes = 0;
  double clock_mhz = 0;
  double dram_bytes_per_cycle = 0;
  int64_t vector_lanes = 0;  // default: cols (banks for pim)
  // The device's memory in MiB ("memory_mib"): what a pipeline stage placed on it may hold
  // (parameters, optimizer state, activations in flight). 0, the default: unlimited.
  double memory_mib = 0;
  PimParams pim;  // "pim" only
  EnergyTable energy;
  // The fields of a template registered outside the library, which have no member here:
  // its AcceleratorTemplate::parse keeps them, its cost model reads them.
  nlohmann::json params = nlohmann::json::object();

  // Words that fit each buffer.
  int64_t ifmap_words() const;
  int64_t filter_words() const;
  int64_t ofmap_words() const;
  // MACs the compute array can do per cycle at best (R*C; banks*macs_per_access/t_ccd):
  // the template's AcceleratorTemplate::peak_macs_per_cycle.
  double peak_macs_per_cycle() const;

  // Parses a spec object (a file's contents). `source` (the file) starts every error
  // message; each error names the field, the value seen and what was expected.
  static AcceleratorSpec from_json(const nlohmann::json& json, const std::string& source = "spec");
  // Reads a JSON spec file; strata::Error naming the file if it is missing or not JSON.
  static AcceleratorSpec load(const std::string& path);
  // A named preset (see preset_names()); strata::Error listing them for an unknown name.
  static AcceleratorSpec preset(const std::string& name);
  // A preset name if `name_or_path` is one, otherwise a spec file.
  static AcceleratorSpec resolve(const std::string& name_or_path);
  // Checks the values (the template's fields, then positive sizes and so on); from_json
  // calls it.
  void validate(const std::string& source = "spec") const;
  // Every field, in the file format (from_json(to_json()) gives the same spec).
  nlohmann::json to_json() const;
};

// "nvdla", "shidiannao", "eyeriss", "tpu-like", "generic-32", "pim-gpt", "fusemax".
std::vector<std::string> preset_names();
// One line per preset saying what it models and where its numbers come from.
std::string preset_description(const std::string& name);

}  // namespace strata::accel
