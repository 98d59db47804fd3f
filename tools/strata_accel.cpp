// strata-accel: what one layer costs on a simulated accelerator, as JSON.
//
//   strata-accel gemm --array 32x32 --dataflow os --m 256 --k 1568 --n 10
//   strata-accel conv --preset eyeriss --batch 256 --in-channels 1 --out-channels 16
//                     --height 28 --width 28 --kernel 5 --padding 2
//   strata-accel attention --preset fusemax --mapping fused --seq-q 4096 --head-dim 64
//   strata-accel gemm --spec accel/specs/systolic_ws_32.json --m 128 --k 768 --n 3072
//   strata-accel presets
//
// The accelerator is --spec FILE (a JSON spec, or a preset's name), --preset NAME, or the
// generic-32 preset; --array, --dataflow and --bandwidth replace its fields. The output
// is {"spec": ..., "op": ..., "cost": ..., "microseconds": ...}; access counts are words
// of the spec's word size, energies pJ (docs/accel.md).
#include <iostream>

#include "strata/accel/accel_spec.h"
#include "strata/accel/cost_model.h"
#include "strata/core/cli.h"
#include "strata/core/error.h"

namespace {

namespace accel = strata::accel;

struct SpecFlags {
  std::string spec;
  std::string preset;
  std::string array;
  std::string dataflow;
  double bandwidth = 0;
};

void add_spec_flags(CLI::App* cmd, SpecFlags& f) {
  auto* spec = cmd->add_option("--spec", f.spec, "Spec file (JSON) or preset name");
  auto* preset = cmd->add_option("--preset", f.preset, "Preset name (strata-accel presets)");
  spec->excludes(preset);
  cmd->add_option("--array", f.array, "PE array RxC, e.g. 32x32 (replaces the spec's)");
  cmd->add_option("--dataflow", f.dataflow, "os, ws or is (replaces the spec's)");
  cmd->add_option("--bandwidth", f.bandwidth, "DRAM bytes per cycle (replaces the spec's)")
      ->check(CLI::PositiveNumber);
}

std::pair<int64_t, int64_t> parse_array(const std::string& text) {
  const auto x = text.find('x');
  size_t used_r = 0, used_c = 0;
  int64_t r = 0, c = 0;
  try {
    STRATA_CHECK(x != std::string::npos, "");
    r = std::stoll(text.substr(0, x), &used_r);
    c = std::stoll(text.substr(x + 1), &used_c);
  } catch (const std::exception&) {
    STRATA_FAIL("--array ", text, ": expected RxC, e.g. 32x32");
  }
  STRATA_CHECK(used_r == x && used_c == text.size() - x - 1 && r > 0 && c > 0, "--array ", text,
               ": expected RxC with positive R and C, e.g. 32x32");
  return {r, c};
}

accel::AcceleratorSpec build_spec(const SpecFlags& f) {
  accel::AcceleratorSpec s = !f.spec.empty()     ? accel::AcceleratorSpec::resolve(f.spec)
                             : !f.preset.empty() ? accel::AcceleratorSpec::preset(f.preset)
                                                 : accel::AcceleratorSpec::preset("generic-32");
  const bool pim = s.kind == accel::Template::ProcessingInMemory;
  if (!f.array.empty()) {
    STRATA_CHECK(!pim, "--array: spec '", s.name, "' is processing in memory (no PE array)");
    std::tie(s.rows, s.cols) = parse_array(f.array);
  }
  if (!f.dataflow.empty()) {
    STRATA_CHECK(s.kind == accel::Template::Systolic, "--dataflow: spec '", s.name, "' is ",
                 accel::to_string(s.kind), ", only a systolic array has a dataflow");
    s.dataflow = accel::parse_dataflow(f.dataflow);
  }
  if (f.bandwidth > 0) s.dram_bytes_per_cycle = f.bandwidth;
  s.validate("spec '" + s.name + "'");
  return s;
}

int print_cost(const accel::AcceleratorSpec& spec, const accel::OpDescription& op) {
  const accel::CostDispatcher device(spec);
  const accel::Charge charge = device.charge(op);
  STRATA_CHECK(charge.charged, op.name, ": ", charge.reason);
  nlohmann::ordered_json spec_json = {{"name", spec.name}, {"template", accel::to_string(spec.kind)},
                                      {"model", device.model().name()}};
  if (spec.kind != accel::Template::ProcessingInMemory) {
    spec_json["rows"] = spec.rows;
    spec_json["cols"] = spec.cols;
  }
  spec_json["word_bytes"] = spec.word_bytes;
  spec_json["clock_mhz"] = spec.clock_mhz;
  spec_json["dram_bytes_per_cycle"] = spec.dram_bytes_per_cycle;
  nlohmann::ordered_json out;
  out["spec"] = spec_json;
  out["op"] = op.to_json();
  out["cost"] = charge.cost.to_json();
  out["microseconds"] = charge.cost.microseconds(spec.clock_mhz);
  std::cout << out.dump(2) << "\n";
  return 0;
}

int list_presets(bool as_json) {
  if (as_json) {
    nlohmann::json all = nlohmann::json::object();
    for (const auto& name : accel::preset_names()) all[name] = accel::AcceleratorSpec::preset(name).to_json();
    std::cout << all.dump(2) << "\n";
    return 0;
  }
  for (const auto& name : accel::preset_names()) {
    const accel::AcceleratorSpec s = accel::AcceleratorSpec::preset(name);
    std::string shape = s.kind == accel::Template::ProcessingInMemory
                            ? std::to_string(s.pim.banks) + " banks"
                            : std::to_string(s.rows) + "x" + std::to_string(s.cols);
    std::string flow = s.kind == accel::Template::Systolic ? " " + accel::to_string(s.dataflow) : "";
    std::cout << name << "  (" << accel::to_string(s.kind) << flow << ", " << shape << ")\n    "
              << accel::preset_description(name) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::core::run_main([&] {
    CLI::App app{"Cost of one layer on a simulated accelerator (cycles, stalls, utilization, "
                 "SRAM/DRAM accesses, energy) as JSON."};
    strata::core::configure_cli(app);
    app.require_subcommand(1);

    SpecFlags sf;
    accel::GemmShape g;
    CLI::App* gemm = app.add_subcommand("gemm", "An M x K by K x N matrix product");
    add_spec_flags(gemm, sf);
    gemm->add_option("--m", g.m, "Rows of the input (tokens, output pixels)")->required()->check(CLI::PositiveNumber);
    gemm->add_option("--k", g.k, "Reduction")->required()->check(CLI::PositiveNumber);
    gemm->add_option("--n", g.n, "Output columns (channels)")->required()->check(CLI::PositiveNumber);
    gemm->add_option("--batch", g.batch, "Independent GEMMs")->check(CLI::PositiveNumber);

    accel::ConvShape c;
    int64_t kernel = 0, stride = 1, padding = 0, dilation = 1;
    CLI::App* conv = app.add_subcommand("conv", "A 2-D convolution (square kernel, NCHW)");
    add_spec_flags(conv, sf);
    conv->add_option("--batch", c.batch, "Images")->check(CLI::PositiveNumber);
    conv->add_option("--in-channels", c.in_channels, "Input channels")->required()->check(CLI::PositiveNumber);
    conv->add_option("--out-channels", c.out_channels, "Output channels")->required()->check(CLI::PositiveNumber);
    conv->add_option("--height", c.height, "Input height")->required()->check(CLI::PositiveNumber);
    conv->add_option("--width", c.width, "Input width")->required()->check(CLI::PositiveNumber);
    conv->add_option("--kernel", kernel, "Kernel size")->required()->check(CLI::PositiveNumber);
    conv->add_option("--stride", stride, "Stride")->check(CLI::PositiveNumber);
    conv->add_option("--padding", padding, "Zero padding on each side")->check(CLI::NonNegativeNumber);
    conv->add_option("--dilation", dilation, "Dilation")->check(CLI::PositiveNumber);
    conv->add_option("--groups", c.groups, "Groups")->check(CLI::PositiveNumber);

    accel::AttentionShape a;
    std::string mapping = "fused";
    int64_t seq_kv = 0;
    CLI::App* attention = app.add_subcommand("attention", "softmax(Q K^T) V per batch and head");
    add_spec_flags(attention, sf);
    attention->add_option("--mapping", mapping, "unfused, flat or fused (flat and fused need an attention spec)");
    attention->add_option("--batch", a.batch, "Batch")->check(CLI::PositiveNumber);
    attention->add_option("--heads", a.heads, "Heads")->check(CLI::PositiveNumber);
    attention->add_option("--seq-q", a.seq_q, "Query length")->required()->check(CLI::PositiveNumber);
    attention->add_option("--seq-kv", seq_kv, "Key/value length (default: --seq-q)")->check(CLI::PositiveNumber);
    attention->add_option("--head-dim", a.head_dim, "Head dimension")->required()->check(CLI::PositiveNumber);

    bool as_json = false;
    CLI::App* presets = app.add_subcommand("presets", "List the presets");
    presets->add_flag("--json", as_json, "Every preset's full spec as JSON");

    if (auto code = strata::core::parse_cli(app, argc, argv)) return *code;
    if (presets->parsed()) return list_presets(as_json);
    const accel::AcceleratorSpec spec = build_spec(sf);
    if (gemm->parsed()) {
      g.check();
      return print_cost(spec, accel::OpDescription::gemm("gemm", {g}));
    }
    if (conv->parsed()) {
      c.kernel_h = c.kernel_w = kernel;
      c.stride_h = c.stride_w = stride;
      c.pad_h = c.pad_w = padding;
      c.dilation_h = c.dilation_w = dilation;
      c.check();
      return print_cost(spec, accel::OpDescription::convolution("conv", c));
    }
    a.mapping = accel::parse_attention_mapping(mapping);
    a.seq_kv = seq_kv > 0 ? seq_kv : a.seq_q;
    STRATA_CHECK(a.mapping == accel::AttentionMapping::Unfused || spec.kind == accel::Template::Attention,
                 "--mapping ", mapping, ": spec '", spec.name, "' is ", accel::to_string(spec.kind),
                 ", only an attention array (e.g. --preset fusemax) fuses attention");
    return print_cost(spec, accel::OpDescription::attention_op("attention", a));
  });
}
