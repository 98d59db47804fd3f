// NASAIC-style co-exploration of fmnist-cnn variants and simulated accelerators, and a
// DRACO-style PE-utilization study (docs/accel-codesign.md). The search itself is
// strata::accel::CodesignSearch (accel/codesign.h); this program adds the flags, trains
// the candidate networks on Fashion-MNIST for their accuracy, and prints.
//
//   build/examples/accel_codesign --latency-ms 0.015 --energy-mj 0.06 --area-mm2 1.5
//   build/examples/accel_codesign --utilization-study
//
// Search: every (network, hardware) pair is priced analytically from the layer shapes with
// the accel cost models (inference of --infer-batch images, layers one after another);
// pairs over the latency, energy or area limits are pruned; each network that survives is
// trained briefly on Fashion-MNIST (once, whatever hardware it pairs with) and scored on
// the test set. Prints the Pareto front over (accuracy, latency, energy, area), the best
// design, and the comparison against "NAS then ASIC" (most accurate network first, then
// the best hardware for it).
#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <array>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "strata/accel/accel_spec.h"
#include "strata/accel/codesign.h"
#include "strata/accel/cost_model.h"
#include "strata/core/data/fashion_mnist.h"
#include "strata/core/error.h"
#include "strata/core/logging.h"
#include "strata/core/output_files.h"
#include "strata/core/random.h"
#include "strata/core/threads.h"
#include "strata/core/timer.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"

namespace {

namespace ac = strata::accel;
using nlohmann::json;

struct Config {
  ac::CodesignOptions search;  // limits, networks, hardware space, baseline, infer batch
  int64_t steps = 150;
  int64_t batch = 256;
  double lr = 0.05;
  uint64_t seed = 0;
  int threads = 1;
  int64_t test_samples = 10000;
  std::string data_dir = strata::core::kFashionMnistDir;
  std::string json_out;
  bool utilization_study = false;
  double bandwidth = 128;
};

// Each block: Conv2d(5x5, pad 2), ReLU, MaxPool2d(2); then Flatten, Linear(.., 10)
// (ac::CodesignNetwork).
torch::nn::Sequential make_network(const ac::CodesignNetwork& n) {
  namespace nn = torch::nn;
  nn::Sequential model;
  int64_t in = 1, side = 28;
  for (int64_t w : n.widths) {
    model->push_back(nn::Conv2d(nn::Conv2dOptions(in, w, 5).padding(2)));
    model->push_back(nn::ReLU());
    model->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
    in = w;
    side /= 2;
  }
  model->push_back(nn::Flatten());
  model->push_back(nn::Linear(in * side * side, 10));
  return model;
}

// ---------------------------------------------------------------------------------------
// Training.

struct Data {
  strata::core::FashionMnist train, test;
};

double train_and_score(const ac::CodesignNetwork& n, const Data& data, const Config& c) {
  strata::core::seed_everything(c.seed);
  torch::nn::Sequential model = make_network(n);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(c.lr).momentum(0.9));
  const int64_t per_epoch = data.train.size() / c.batch;
  at::Tensor order;
  for (int64_t step = 0; step < c.steps; ++step) {
    if (step % per_epoch == 0) order = at::randperm(data.train.size());
    const at::Tensor idx =
        order.slice(0, (step % per_epoch) * c.batch, (step % per_epoch + 1) * c.batch);
    optimizer.zero_grad();
    const at::Tensor loss =
        torch::nn::functional::cross_entropy(model->forward(data.train.images.index_select(0, idx)),
                                             data.train.labels.index_select(0, idx));
    loss.backward();
    optimizer.step();
  }
  return strata::core::classification_accuracy(model, data.test);
}

json design_json(const std::string& kind, const ac::Design& d, const ac::CodesignSearch& search) {
  return {{"kind", kind},
          {"network", search.networks()[d.network].name},
          {"hardware", search.hardware()[d.hardware].name},
          {"accuracy", d.accuracy},
          {"latency_ms", d.cost.latency_ms},
          {"energy_mj", d.cost.energy_mj},
          {"area_mm2", d.cost.area_mm2},
          {"assignment", d.cost.assignment}};
}

std::string design_row(const ac::Design& d, const ac::CodesignSearch& search) {
  return fmt::format("{:<7} {:<38} {:>7.2f}% {:>11.4f} {:>11.5f} {:>9.3f}  {}\n",
                     search.networks()[d.network].name, search.hardware()[d.hardware].name,
                     100 * d.accuracy, d.cost.latency_ms, d.cost.energy_mj, d.cost.area_mm2,
                     d.cost.assignment);
}

const char* kDesignHeader =
    "network hardware                                accuracy  latency_ms   energy_mj  area_mm2  "
    "layers on\n";

int run_search(const Config& c, std::ostream& json_out) {
  const ac::CodesignSearch search(c.search);
  const ac::CodesignLimits limits = c.search.limits();
  const int64_t infer_batch = c.search.infer_batch();
  const size_t pairs = search.pairs(), feasible = search.feasible().size();
  spdlog::info(
      "{} networks x {} hardware designs = {} pairs; {} within the limits, {} networks to train",
      search.networks().size(), search.hardware().size(), pairs, feasible,
      search.surviving_networks().size());

  // Train each network once: the survivors, then (for NAS then ASIC) the rest. The data
  // is loaded only once the limits leave something to train.
  std::optional<Data> data;
  const ac::CodesignResult r = search.run([&](const ac::ScoreRequest& request) {
    if (!data) {
      data =
          Data{strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Train),
               strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Test)};
      data->test.images = data->test.images.slice(0, 0, c.test_samples);
      data->test.labels = data->test.labels.slice(0, 0, c.test_samples);
    }
    strata::core::Stopwatch clock;
    const double accuracy = train_and_score(request.network, *data, c);
    spdlog::info("candidate {}/{}: network {}{}: {} steps, test accuracy {:.2f}% ({:.1f} s)",
                 request.number, request.of, request.network.name,
                 request.baseline_only ? " (NAS then ASIC only)" : "", c.steps, 100 * accuracy,
                 clock.seconds());
    return accuracy;
  });

  std::cout << fmt::format(
      "limits: latency <= {} ms, energy <= {} mJ, area <= {} mm^2 (inference of {} image{})\n",
      limits.latency_ms, limits.energy_mj, limits.area_mm2, infer_batch,
      infer_batch == 1 ? "" : "s");
  std::cout << fmt::format("Pareto front ({} of {} designs within the limits):\n", r.front.size(),
                           feasible)
            << kDesignHeader;
  for (const auto& d : r.front) std::cout << design_row(d, search);
  std::cout << "best design (highest accuracy within the limits, ties by energy):\n"
            << kDesignHeader << design_row(r.best, search);
  json_out << json{{"kind", "limits"},
                   {"latency_ms", limits.latency_ms},
                   {"energy_mj", limits.energy_mj},
                   {"area_mm2", limits.area_mm2},
                   {"infer_batch", infer_batch},
                   {"pairs", pairs},
                   {"feasible", feasible},
                   {"steps", c.steps}}
                  .dump()
           << "\n";
  for (const auto& d : r.feasible) json_out << design_json("candidate", d, search).dump() << "\n";
  for (const auto& d : r.front) json_out << design_json("pareto", d, search).dump() << "\n";
  json_out << design_json("best", r.best, search).dump() << "\n";

  if (r.nas_then_asic) {
    const ac::NasThenAsic& nas = *r.nas_then_asic;
    const ac::Design& base = nas.design;
    const ac::Design& best = r.best;
    const std::string verdict =
        nas.meets_limits ? "within the limits"
                         : fmt::format("NO hardware meets the limits; the closest is {:.2f}x over",
                                       nas.limit_ratio);
    std::cout << "NAS then ASIC (" << verdict << "):\n"
              << kDesignHeader << design_row(base, search);
    json j = design_json("nas_then_asic", base, search);
    j["meets_limits"] = nas.meets_limits;
    j["limit_ratio"] = nas.limit_ratio;
    j["joint_best"] = design_json("best", best, search);
    j["latency_ratio"] = base.cost.latency_ms / best.cost.latency_ms;
    j["energy_ratio"] = base.cost.energy_mj / best.cost.energy_mj;
    j["area_ratio"] = base.cost.area_mm2 / best.cost.area_mm2;
    j["accuracy_loss"] = base.accuracy - best.accuracy;
    std::cout << fmt::format(
        "NAS then ASIC / joint search's best: latency {:.2f}x, energy {:.2f}x, area {:.2f}x; the "
        "joint "
        "search's accuracy {:+.2f} points{}\n",
        j["latency_ratio"].get<double>(), j["energy_ratio"].get<double>(),
        j["area_ratio"].get<double>(), -100 * j["accuracy_loss"].get<double>(),
        best.network == base.network && best.hardware == base.hardware ? " (the same design)" : "");
    json_out << j.dump() << "\n";
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// DRACO-style utilization study.

struct StudyLayer {
  std::string model, layer;
  ac::OpDescription op;
};

std::vector<StudyLayer> study_layers() {
  std::vector<StudyLayer> layers;
  // fmnist-cnn at inference of one image and at the training batch of 256.
  for (int64_t batch : {1, 256}) {
    const std::string model = fmt::format("fmnist-cnn b{}", batch);
    for (const auto& l : ac::codesign_layers(ac::parse_codesign_network("16-32"), batch, 1))
      if (l.op.kind == ac::OpKind::Conv || l.op.kind == ac::OpKind::Gemm)
        layers.push_back({model, l.name, l.op});
  }
  // fortunes-lm: d_model 256, FFN 1024, 4 heads of 64, context 128, batch 32, byte vocabulary.
  const int64_t tokens = 32 * 128;
  auto gemm = [&](const std::string& model, const std::string& name, int64_t m, int64_t k,
                  int64_t n, int64_t batch = 1) {
    layers.push_back({model, name, ac::OpDescription::gemm(name, {{m, k, n, batch}})});
  };
  const std::string lm = "fortunes-lm b32x128";
  gemm(lm, "qkv", tokens, 256, 768);
  gemm(lm, "attn QK^T", 128, 64, 128, 32 * 4);
  gemm(lm, "attn PV", 128, 128, 64, 32 * 4);
  gemm(lm, "out proj", tokens, 256, 256);
  gemm(lm, "ffn up", tokens, 256, 1024);
  gemm(lm, "ffn down", tokens, 1024, 256);
  gemm(lm, "lm head", tokens, 256, 256);
  // Decode: M = 1..8 sequences, one new token each: GEMV-like.
  for (int64_t m : {1, 2, 4, 8}) {
    const std::string dec = fmt::format("fortunes-lm decode M={}", m);
    gemm(dec, "qkv", m, 256, 768);
    gemm(dec, "out proj", m, 256, 256);
    gemm(dec, "ffn up", m, 256, 1024);
    gemm(dec, "ffn down", m, 1024, 256);
  }
  return layers;
}

ac::AcceleratorSpec study_array(const std::string& dataflow, double bandwidth) {
  return ac::AcceleratorSpec::from_json(
      {{"name", fmt::format("{}-64x64", dataflow)},
       {"template", "systolic"},
       {"dataflow", dataflow},
       {"rows", 64},
       {"cols", 64},
       {"sram_kib", {{"ifmap", 256}, {"filter", 256}, {"ofmap", 256}}},
       {"word_bytes", 1},
       {"clock_mhz", 1000},
       {"dram_bytes_per_cycle", bandwidth}},
      "utilization study");
}

int run_utilization_study(const Config& c, std::ostream& json_out) {
  STRATA_CHECK(c.bandwidth > 0, "--bandwidth ", c.bandwidth, ": expected positive bytes per cycle");
  // "Unlimited": far more than any layer here can use, so stalls vanish.
  const double unlimited = 1e9;
  const double balance = 64.0 * 64.0 / c.bandwidth;  // MACs per DRAM byte the array needs
  std::cout << fmt::format(
      "PE utilization on a 64x64 array (int8, 256 KiB per buffer), DRAM {} B/cycle vs unlimited.\n"
      "Machine balance {:.0f} MACs per DRAM byte: a layer whose DRAM traffic gives fewer is memory "
      "bound.\n",
      c.bandwidth, balance);
  std::cout << "model                  layer       dataflow           M      K      N  MACs/byte  "
               "util(no limit)  util(limited)  stall%  bound\n";
  // dataflow -> [compute bound, memory bound] -> utilization at the limited and at
  // unlimited bandwidth.
  std::map<std::string, std::array<std::vector<double>, 2>> util_by_bound, ideal_by_bound;
  for (const std::string dataflow : {"ws", "os"}) {
    const ac::CostDispatcher limited(study_array(dataflow, c.bandwidth)),
        free(study_array(dataflow, unlimited));
    for (const auto& l : study_layers()) {
      const ac::OpCost lim = limited.charge(l.op).cost, ideal = free.charge(l.op).cost;
      const ac::GemmShape g =
          l.op.kind == ac::OpKind::Conv ? l.op.conv.lowered() : l.op.gemms.front();
      const double dram_bytes = double(lim.dram_reads + lim.dram_writes);  // 1-byte words
      const double intensity = double(lim.macs) / dram_bytes;
      // Memory bound (roofline): fewer MACs per byte of the DRAM traffic this dataflow moves
      // than the array needs at peak, so no schedule can keep every PE busy at this
      // bandwidth. Stalls alone would miss decode GEMVs, whose fill and drain hide the
      // DRAM time while one PE row in 64 works.
      const bool memory_bound = intensity < balance;
      const double stall_pct = 100.0 * double(lim.stall_cycles) / double(lim.cycles);
      util_by_bound[dataflow][memory_bound ? 1 : 0].push_back(lim.utilization());
      ideal_by_bound[dataflow][memory_bound ? 1 : 0].push_back(ideal.utilization());
      std::cout << fmt::format(
          "{:<22} {:<11} {:<8} {:>11} {:>6} {:>6} {:>10.1f} {:>15.3f} {:>14.3f} {:>7.1f}  {}\n",
          l.model, l.layer, dataflow, g.m * g.batch, g.k, g.n, intensity, ideal.utilization(),
          lim.utilization(), stall_pct, memory_bound ? "memory" : "compute");
      json_out << json{{"kind", "utilization"},
                       {"model", l.model},
                       {"layer", l.layer},
                       {"dataflow", dataflow},
                       {"m", g.m * g.batch},
                       {"k", g.k},
                       {"n", g.n},
                       {"macs", lim.macs},
                       {"macs_per_dram_byte", intensity},
                       {"machine_balance", balance},
                       {"utilization_unlimited_bw", ideal.utilization()},
                       {"utilization", lim.utilization()},
                       {"compute_cycles", lim.compute_cycles},
                       {"stall_cycles", lim.stall_cycles},
                       {"bandwidth_bytes_per_cycle", c.bandwidth},
                       {"bound", memory_bound ? "memory" : "compute"}}
                      .dump()
               << "\n";
    }
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / double(v.size());
  };
  for (const auto& [dataflow, groups] : util_by_bound) {
    const auto& ideal = ideal_by_bound[dataflow];
    std::cout << fmt::format(
        "{}: mean utilization of {} memory-bound layers {:.3f} ({:.3f} with unlimited bandwidth), "
        "of {} "
        "compute-bound layers {:.3f} ({:.3f})\n",
        dataflow, groups[1].size(), mean(groups[1]), mean(ideal[1]), groups[0].size(),
        mean(groups[0]), mean(ideal[0]));
    json_out << json{{"kind", "utilization_summary"},
                     {"dataflow", dataflow},
                     {"bandwidth_bytes_per_cycle", c.bandwidth},
                     {"memory_bound_layers", groups[1].size()},
                     {"memory_bound_mean_utilization", mean(groups[1])},
                     {"memory_bound_mean_utilization_unlimited_bw", mean(ideal[1])},
                     {"compute_bound_layers", groups[0].size()},
                     {"compute_bound_mean_utilization", mean(groups[0])},
                     {"compute_bound_mean_utilization_unlimited_bw", mean(ideal[0])}}
                    .dump()
             << "\n";
  }
  return 0;
}

void add_flags(CLI::App& app, Config& c) {
  ac::CodesignOptions& s = c.search;
  ac::HardwareSpaceOptions& hw = s.hardware();
  using namespace strata::programs;  // NOLINT(google-build-using-namespace): the flag ranges
  positive_real(
      app.add_option("--latency-ms", s.latency_ms(), "Latency limit of one inference, ms"),
      kMaxLimit);
  positive_real(app.add_option("--energy-mj", s.energy_mj(), "Energy limit of one inference, mJ"),
                kMaxLimit);
  positive_real(app.add_option("--area-mm2", s.area_mm2(),
                               "Area limit, mm^2 (45 nm estimates, accel/area_model.h)"),
                kMaxLimit);
  app.add_option(
      "--networks,--candidates", s.networks(),
      "Networks: C1 (one conv block) or C1-C2 (two), conv channels; 16-32 is fmnist-cnn");
  app.add_option("--templates", hw.templates(),
                 "Accelerator templates (presets): nvdla, shidiannao, eyeriss, ...");
  integer_range(app.add_option("--arrays", hw.arrays(), "PE array sides N (N x N PEs)"), 1,
                ac::kMaxArraySide);
  positive_real(app.add_option("--sram-kib", hw.sram_kib(),
                               "On-chip SRAM sizes, KiB (split as the template's buffers)"),
                ac::kMaxSramKib);
  app.add_flag("--homogeneous-only", hw.homogeneous_only(),
               "No heterogeneous designs (two sub-accelerators sharing the PEs)");
  app.add_flag("!--no-nas-then-asic", s.nas_then_asic(),
               "Skip the NAS-then-ASIC baseline (and training the networks the limits prune)");
  integer_range(app.add_option("--infer-batch", s.infer_batch(), "Images per priced inference"), 1,
                kMaxBatch);
  integer_range(app.add_option("--steps", c.steps, "Training steps per network"), 1, kMaxSteps);
  integer_range(app.add_option("--batch", c.batch, "Training batch size"), 1,
                kFashionMnistTrainImages);
  positive_real(app.add_option("--lr", c.lr, "SGD learning rate (momentum 0.9)"), kMaxLearningRate);
  integer_range(app.add_option("--seed", c.seed, "Seed for initialization and shuffling"), 0,
                kMaxSeed);
  threads_range(app.add_option("--threads", c.threads, "Threads (LibTorch and BLAS)"));
  integer_range(app.add_option("--test-samples", c.test_samples,
                               "Test images scored (the first N of the 10,000)"),
                1, kFashionMnistTestImages);
  app.add_option("--data-dir", c.data_dir, "Fashion-MNIST directory (gzip IDX files)");
  app.add_option("--json-out", c.json_out, "Write the results as JSON lines here");
  app.add_flag(
      "--utilization-study", c.utilization_study,
      "Instead of the search: PE utilization of fmnist-cnn and fortunes-lm layers on 64x64 arrays");
  positive_real(app.add_option("--bandwidth", c.bandwidth,
                               "DRAM bytes per cycle of the utilization study's limited case"),
                ac::kMaxDramBytesPerCycle);
}

int run(const Config& c) {
  strata::core::check_writable("--json-out", c.json_out, strata::core::OutputKind::File,
                               /*creates_parents=*/false);
  strata::core::init_logging(0, false);
  strata::core::set_num_threads(c.threads);
  // Results go to a buffer first, so that a failed run leaves no --json-out file behind.
  std::ostringstream json_lines;
  const int code =
      c.utilization_study ? run_utilization_study(c, json_lines) : run_search(c, json_lines);
  if (!c.json_out.empty()) strata::core::write_file_atomically(c.json_out, json_lines.str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    Config config;
    CLI::App app{"NASAIC-style co-exploration of fmnist-cnn variants and simulated accelerators"};
    strata::programs::configure_cli(app);
    add_flags(app, config);
    if (auto exit_code = strata::programs::parse_cli(app, argc, argv)) return *exit_code;
    return run(config);
  });
}
