// Simulated accelerators (docs/accel.md), as a table and JSON lines (BENCHMARKS.md):
//
//   cycles  simulated cycles, stalls and utilization of the fmnist-cnn layers (batch 256)
//           and the fortunes-lm layers (d_model 256, FFN 1024, 4 heads, context 128,
//           batch 32) on every preset; and the simulated stall-free cycles of every
//           systolic GEMM against SCALE-Sim v2's formulas computed here (ratio 1.0);
//           the unfused, flat and fused attention mappings on the fusemax preset.
//
//   build/bench/bench_accel                 # every suite
//   build/bench/bench_accel --suites cycles
//
// A JSON line per figure: case "<preset>/<layer>" with value = cycles, baseline = the
// stall-free cycles, ratio = cycles / stall-free (the cost of limited bandwidth); case
// "<preset>/<layer>/utilization"; case "formula/<dataflow>/<layer>" with value = the
// model's stall-free cycles, baseline = the formula's.
#include <fmt/format.h>

#include <iostream>

#include "bench_common.h"
#include "strata/accel/accel_spec.h"
#include "strata/accel/attention_array.h"
#include "strata/accel/cost_model.h"
#include "strata/accel/systolic_array.h"
#include "strata/programs/cli.h"

namespace {

namespace accel = strata::accel;

struct Layer {
  std::string name;
  accel::OpDescription op;
};

accel::ConvShape conv(int64_t batch, int64_t in, int64_t out, int64_t hw, int64_t kernel,
                      int64_t pad) {
  accel::ConvShape c;
  c.batch = batch, c.in_channels = in, c.out_channels = out, c.height = c.width = hw;
  c.kernel_h = c.kernel_w = kernel, c.pad_h = c.pad_w = pad;
  return c;
}

// BENCHMARKS.md's fmnist-cnn and fortunes-lm; attention uses each preset's best mapping
// (fused on the attention array, unfused elsewhere).
std::vector<Layer> layers() {
  using accel::OpDescription;
  const int64_t tokens = 32 * 128, d = 256, ffn = 1024;
  accel::AttentionShape attn;
  attn.batch = 32, attn.heads = 4, attn.seq_q = attn.seq_kv = 128, attn.head_dim = d / 4;
  return {
      {"fmnist-cnn/conv1", OpDescription::convolution("conv1", conv(256, 1, 16, 28, 5, 2))},
      {"fmnist-cnn/conv2", OpDescription::convolution("conv2", conv(256, 16, 32, 14, 5, 2))},
      {"fmnist-cnn/fc", OpDescription::gemm("fc", {{256, 1568, 10}})},
      {"fortunes-lm/qkv", OpDescription::gemm("qkv", {{tokens, d, 3 * d}})},
      {"fortunes-lm/out", OpDescription::gemm("out", {{tokens, d, d}})},
      {"fortunes-lm/ffn-up", OpDescription::gemm("ffn-up", {{tokens, d, ffn}})},
      {"fortunes-lm/ffn-down", OpDescription::gemm("ffn-down", {{tokens, ffn, d}})},
      {"fortunes-lm/attention", OpDescription::attention_op("attention", attn)},
  };
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// REFERENCE.md's SCALE-Sim v2 counts, written out here independently of the model.
int64_t scalesim(accel::Dataflow d, int64_t R, int64_t C, const accel::GemmShape& g) {
  switch (d) {
    case accel::Dataflow::OutputStationary:
      return cdiv(g.m, R) * cdiv(g.n, C) * (g.k + R + C - 2) - 1;
    case accel::Dataflow::WeightStationary:
      return cdiv(g.k, R) * cdiv(g.n, C) * (2 * R + C + g.m - 2) - 1;
    case accel::Dataflow::InputStationary:
      return cdiv(g.k, R) * cdiv(g.m, C) * (2 * R + C + g.n - 2) - 1;
  }
  return 0;
}

void print(const nlohmann::json& line) { std::cout << line.dump() << std::endl; }

void cycles_suite() {
  std::cout << fmt::format("{:<12} {:<24} {:>14} {:>14} {:>8} {:>14} {:>12}\n", "preset", "layer",
                           "cycles", "stall-free", "util%", "DRAM words", "energy uJ");
  for (const auto& preset : accel::preset_names()) {
    const accel::AcceleratorSpec spec = accel::AcceleratorSpec::preset(preset);
    const accel::CostDispatcher device(spec);
    for (Layer layer : layers()) {
      if (layer.op.kind == accel::OpKind::Attention && spec.kind != accel::Template::Attention)
        layer.op.attention.mapping = accel::AttentionMapping::Unfused;
      const accel::Charge charge = device.charge(layer.op);
      STRATA_CHECK(charge.charged, preset, " ", layer.name, ": ", charge.reason);
      const accel::OpCost& c = charge.cost;
      std::cout << fmt::format("{:<12} {:<24} {:>14} {:>14} {:>8.1f} {:>14} {:>12.2f}\n", preset,
                               layer.name, c.cycles, c.compute_cycles, 100 * c.utilization(),
                               c.dram_reads + c.dram_writes, c.energy_pj() * 1e-6);
      nlohmann::json line = strata::bench::json_line(
          "accel", preset + "/" + layer.name, double(c.cycles), "cycles", double(c.compute_cycles),
          double(c.cycles) / double(c.compute_cycles), 1);
      line["suite"] = "cycles";
      line["microseconds"] = c.microseconds(spec.clock_mhz);
      line["energy_pj"] = c.energy_pj();
      print(line);
      line = strata::bench::json_line("accel", preset + "/" + layer.name + "/utilization",
                                      c.utilization(), "fraction", 1.0, c.utilization(), 1);
      line["suite"] = "cycles";
      print(line);
    }
  }
  // The three attention mappings on the attention array: fortunes-lm's context and a
  // long sequence.
  std::cout << "\nattention mappings on fusemax (batch 1, 4 heads of 64)\n";
  const accel::AttentionArray fusemax(accel::AcceleratorSpec::preset("fusemax"));
  for (const int64_t seq : {128, 4096}) {
    for (const auto m : {accel::AttentionMapping::Unfused, accel::AttentionMapping::Flat,
                         accel::AttentionMapping::Fused}) {
      accel::AttentionShape a;
      a.heads = 4, a.seq_q = a.seq_kv = seq, a.head_dim = 64, a.mapping = m;
      const accel::OpCost c = fusemax.attention(a);
      std::cout << fmt::format(
          "  seq {:>5} {:<8} {:>12} cycles  util {:>5.1f}%  DRAM {:>12} words\n", seq,
          accel::to_string(m), c.cycles, 100 * c.utilization(), c.dram_reads + c.dram_writes);
      const std::string name = fmt::format("fusemax/attention-{}/seq{}", accel::to_string(m), seq);
      nlohmann::json line = strata::bench::json_line(
          "accel", name, double(c.cycles), "cycles", double(c.compute_cycles),
          double(c.cycles) / double(c.compute_cycles), 1);
      line["suite"] = "cycles";
      line["utilization"] = c.utilization();
      line["dram_words"] = c.dram_reads + c.dram_writes;
      print(line);
    }
  }
  // The stall-free cycles of every GEMM (convolutions lowered) on 32x32 and 128x128
  // arrays in each dataflow, against the formula.
  std::cout << "\nsimulated stall-free cycles vs SCALE-Sim v2's formula\n";
  double worst = 1.0;
  for (const accel::Dataflow d :
       {accel::Dataflow::OutputStationary, accel::Dataflow::WeightStationary,
        accel::Dataflow::InputStationary}) {
    for (const int64_t size : {32, 128}) {
      accel::AcceleratorSpec spec = accel::AcceleratorSpec::preset("generic-32");
      spec.dataflow = d;
      spec.rows = spec.cols = size;
      const accel::SystolicArray model(spec);
      for (const Layer& layer : layers()) {
        if (layer.op.kind == accel::OpKind::Attention) continue;
        const accel::GemmShape g =
            layer.op.kind == accel::OpKind::Conv ? layer.op.conv.lowered() : layer.op.gemms[0];
        const double simulated = double(model.gemm(g).compute_cycles);
        const double formula = double(g.batch * scalesim(d, size, size, g));
        const double ratio = simulated / formula;
        if (std::abs(ratio - 1.0) > std::abs(worst - 1.0)) worst = ratio;
        nlohmann::json line = strata::bench::json_line(
            "accel",
            fmt::format("formula/{}/{}x{}/{}", accel::to_string(d), size, size, layer.name),
            simulated, "cycles", formula, ratio, 1);
        line["suite"] = "cycles";
        print(line);
      }
    }
  }
  std::cout << fmt::format("worst simulated / formula ratio: {:.6f}\n", worst);
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    CLI::App app{
        "Simulated accelerator figures: cycles and utilization of standard layers on each preset."};
    strata::programs::configure_cli(app);
    std::vector<std::string> suites = {"cycles"};
    app.add_option("--suites", suites, "Suites to run: cycles")->delimiter(',');
    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
    for (const auto& s : suites) {
      if (s == "cycles")
        cycles_suite();
      else
        STRATA_FAIL("--suites: unknown suite '", s, "' (expected cycles)");
    }
    return 0;
  });
}
