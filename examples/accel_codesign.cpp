// NASAIC-style co-exploration of fmnist-cnn variants and simulated accelerators, and a
// DRACO-style PE-utilization study (docs/accel-codesign.md).
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

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "strata/accel/accel_spec.h"
#include "strata/accel/area_model.h"
#include "strata/accel/aten_ops.h"
#include "strata/accel/cost_model.h"
#include "strata/core/data/fashion_mnist.h"
#include "strata/core/error.h"
#include "strata/core/logging.h"
#include "strata/core/random.h"
#include "strata/core/threads.h"
#include "strata/core/timer.h"
#include "strata/programs/cli.h"

namespace {

namespace ac = strata::accel;
using nlohmann::json;

struct Config {
  double latency_ms = 0;
  double energy_mj = 0;
  double area_mm2 = 0;
  std::vector<std::string> networks = {"8",     "16",    "32",    "8-16",  "8-32",  "8-64",
                                       "16-16", "16-32", "16-64", "32-16", "32-32", "32-64"};
  std::vector<std::string> templates = {"nvdla", "shidiannao", "eyeriss"};
  std::vector<int64_t> arrays = {8, 16, 32, 64};
  std::vector<double> sram_kib = {64, 256};
  std::vector<double> splits = {0.25, 0.5, 0.75};
  bool homogeneous_only = false;
  bool nas_then_asic = true;
  int64_t infer_batch = 1;
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

// ---------------------------------------------------------------------------------------
// Networks: fmnist-cnn with 1 or 2 conv blocks of chosen widths ("16-32" is fmnist-cnn).

struct Network {
  std::string name;             // "16-32"
  std::vector<int64_t> widths;  // conv output channels, one per block
};

Network parse_network(const std::string& text) {
  Network n{text, {}};
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find('-', begin), text.size());
    const std::string part = text.substr(begin, end - begin);
    const bool digits =
        !part.empty() && part.size() <= 4 &&
        std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(c); });
    STRATA_CHECK(digits && std::stoll(part) > 0, "--networks '", text,
                 "': expected C1 or C1-C2 (positive conv channels of 1 or 2 blocks), e.g. 16-32");
    n.widths.push_back(std::stoll(part));
    begin = end + 1;
  }
  STRATA_CHECK(n.widths.size() <= 2, "--networks '", text, "': got ", n.widths.size(),
               " conv blocks, expected 1 or 2 (C1 or C1-C2)");
  return n;
}

// Each block: Conv2d(5x5, pad 2), ReLU, MaxPool2d(2); then Flatten, Linear(.., 10).
torch::nn::Sequential make_network(const Network& n) {
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

// The ops one inference of `batch` images runs, as the device would see them, in words of
// `word_bytes` (the accelerator's datatype). The layer name is the module's index.
struct Layer {
  std::string name;
  ac::OpDescription op;
};

std::vector<Layer> network_layers(const Network& n, int64_t batch, int64_t word_bytes) {
  std::vector<Layer> layers;
  int64_t in = 1, side = 28, index = 0;
  ac::AtenConvArgs pad2;
  pad2.padding = {2};
  for (int64_t w : n.widths) {
    const std::vector<int64_t> out{batch, w, side, side};
    layers.push_back({std::to_string(index++) + " conv",
                      ac::describe_aten_op("aten::convolution_overrideable",
                                           {{batch, in, side, side}, {w, in, 5, 5}, {w}}, {out},
                                           word_bytes, pad2)});
    layers.push_back({std::to_string(index++) + " relu",
                      ac::describe_aten_op("aten::relu", {out}, {out}, word_bytes)});
    layers.push_back({std::to_string(index++) + " maxpool",
                      ac::describe_aten_op("aten::max_pool2d", {out},
                                           {{batch, w, side / 2, side / 2}}, word_bytes)});
    in = w;
    side /= 2;
  }
  ++index;  // Flatten is a view: it moves no data
  const int64_t features = in * side * side;
  layers.push_back({std::to_string(index) + " linear",
                    ac::describe_aten_op("aten::addmm", {{10}, {batch, features}, {features, 10}},
                                         {{batch, 10}}, word_bytes)});
  return layers;
}

// ---------------------------------------------------------------------------------------
// Hardware: one accelerator, or two sub-accelerators of different templates sharing a PE
// and SRAM budget (NASAIC's heterogeneous designs).

struct SubAccelerator {
  ac::AcceleratorSpec spec;
  ac::CostDispatcher device;
  explicit SubAccelerator(const ac::AcceleratorSpec& s) : spec(s), device(s) {}
};

struct Hardware {
  std::string name;
  std::vector<std::shared_ptr<SubAccelerator>> subs;
  double area_mm2 = 0;
};

// A template preset resized to rows x cols PEs and `sram_kib` of buffers in the preset's
// proportions; its clock, bandwidth, datatype and vector unit stay the preset's.
ac::AcceleratorSpec resized(const std::string& preset, int64_t rows, int64_t cols,
                            double sram_kib) {
  ac::AcceleratorSpec s = ac::AcceleratorSpec::preset(preset);
  const double total = s.ifmap_sram_kib + s.filter_sram_kib + s.ofmap_sram_kib;
  s.rows = rows;
  s.cols = cols;
  s.ifmap_sram_kib *= sram_kib / total;
  s.filter_sram_kib *= sram_kib / total;
  s.ofmap_sram_kib *= sram_kib / total;
  s.name = fmt::format("{} {}x{}", preset, rows, cols);
  s.validate(s.name);
  return s;
}

std::vector<Hardware> hardware_space(const Config& c) {
  for (const auto& t : c.templates) {
    const ac::AcceleratorSpec s = ac::AcceleratorSpec::preset(t);  // errors list the presets
    STRATA_CHECK(s.kind == ac::Template::Systolic || s.kind == ac::Template::RowStationary,
                 "--templates ", t, ": template ", ac::to_string(s.kind),
                 " cannot run a CNN here; expected a systolic or row_stationary preset "
                 "(nvdla, shidiannao, eyeriss, tpu-like, generic-32)");
  }
  for (int64_t n : c.arrays)
    STRATA_CHECK(n >= 4, "--arrays ", n, ": expected a side of at least 4 PEs");
  for (double kib : c.sram_kib)
    STRATA_CHECK(kib > 0, "--sram-kib ", kib, ": expected a positive size in KiB");
  std::vector<Hardware> space;
  auto add = [&](std::string name, std::vector<ac::AcceleratorSpec> specs) {
    Hardware h{std::move(name), {}, 0};
    for (const auto& s : specs) {
      h.subs.push_back(std::make_shared<SubAccelerator>(s));
      h.area_mm2 += ac::accelerator_area(s).total_mm2();
    }
    space.push_back(std::move(h));
  };
  for (double kib : c.sram_kib) {
    for (int64_t n : c.arrays)
      for (const auto& t : c.templates)
        add(fmt::format("{} {}x{} {}K", t, n, n, kib), {resized(t, n, n, kib)});
    if (c.homogeneous_only) continue;
    for (int64_t n : c.arrays)
      for (size_t a = 0; a < c.templates.size(); ++a)
        for (size_t b = a + 1; b < c.templates.size(); ++b)
          for (double f : c.splits) {
            // The n x n PEs split by columns, the SRAM in the same proportion.
            const int64_t cols_a = std::max<int64_t>(1, std::llround(f * double(n)));
            if (cols_a >= n) continue;
            const double share = double(cols_a) / double(n);
            add(fmt::format("{} {}x{} + {} {}x{} {}K", c.templates[a], n, cols_a, c.templates[b], n,
                            n - cols_a, kib),
                {resized(c.templates[a], n, cols_a, kib * share),
                 resized(c.templates[b], n, n - cols_a, kib * (1 - share))});
          }
  }
  return space;
}

// ---------------------------------------------------------------------------------------
// The cost of a (network, hardware) pair.

struct PairCost {
  double latency_ms = 0;
  double energy_mj = 0;
  double area_mm2 = 0;
  std::string assignment;  // per layer, the sub-accelerator that runs it ("A", "B")
};

// Each layer runs on the sub-accelerator where it is fastest (ties: less energy). Every op
// reads its inputs from DRAM and writes its outputs there (the cost models' convention),
// so moving from one sub-accelerator to the other costs nothing beyond that.
PairCost price(const Network& n, const Hardware& h, int64_t batch) {
  PairCost cost;
  cost.area_mm2 = h.area_mm2;
  std::map<int64_t, std::vector<Layer>> layers_by_word;  // the datatypes may differ
  for (const auto& sub : h.subs)
    if (!layers_by_word.count(sub->spec.word_bytes))
      layers_by_word[sub->spec.word_bytes] = network_layers(n, batch, sub->spec.word_bytes);
  const size_t count = layers_by_word.begin()->second.size();
  for (size_t i = 0; i < count; ++i) {
    double best_ms = std::numeric_limits<double>::infinity(), best_mj = 0;
    size_t best = 0;
    for (size_t s = 0; s < h.subs.size(); ++s) {
      const auto& sub = *h.subs[s];
      const ac::Charge charge = sub.device.charge(layers_by_word[sub.spec.word_bytes][i].op);
      STRATA_CHECK(charge.charged, "layer ", layers_by_word[sub.spec.word_bytes][i].name,
                   " of network ", n.name, ": no cost model on ", sub.spec.name, ": ",
                   charge.reason);
      const double ms = charge.cost.microseconds(sub.spec.clock_mhz) * 1e-3;
      const double mj = charge.cost.energy_pj() * 1e-9;
      if (ms < best_ms || (ms == best_ms && mj < best_mj)) best_ms = ms, best_mj = mj, best = s;
    }
    cost.latency_ms += best_ms;
    cost.energy_mj += best_mj;
    cost.assignment += static_cast<char>('A' + best);
  }
  return cost;
}

struct Candidate {
  size_t network = 0;
  size_t hardware = 0;
  PairCost cost;
  double accuracy = -1;
};

bool meets(const PairCost& p, const Config& c) {
  return p.latency_ms <= c.latency_ms && p.energy_mj <= c.energy_mj && p.area_mm2 <= c.area_mm2;
}

// How far over the limits a pair is: its largest cost-to-limit ratio (<= 1: it meets them).
double excess(const PairCost& p, const Config& c) {
  return std::max(
      {p.latency_ms / c.latency_ms, p.energy_mj / c.energy_mj, p.area_mm2 / c.area_mm2});
}

// A heterogeneous design whose second sub-accelerator would idle on a network is the first
// one alone with wasted area: no candidate for that network.
bool uses_every_sub(const PairCost& p, const Hardware& h) {
  for (size_t s = 0; s < h.subs.size(); ++s)
    if (p.assignment.find(static_cast<char>('A' + s)) == std::string::npos) return false;
  return true;
}

// a dominates b: no worse in accuracy, latency, energy and area, better in one.
bool dominates(const Candidate& a, const Candidate& b) {
  const bool no_worse = a.accuracy >= b.accuracy && a.cost.latency_ms <= b.cost.latency_ms &&
                        a.cost.energy_mj <= b.cost.energy_mj && a.cost.area_mm2 <= b.cost.area_mm2;
  const bool better = a.accuracy > b.accuracy || a.cost.latency_ms < b.cost.latency_ms ||
                      a.cost.energy_mj < b.cost.energy_mj || a.cost.area_mm2 < b.cost.area_mm2;
  return no_worse && better;
}

// Highest accuracy; ties by energy, then latency.
bool better_design(const Candidate& a, const Candidate& b) {
  if (a.accuracy != b.accuracy) return a.accuracy > b.accuracy;
  if (a.cost.energy_mj != b.cost.energy_mj) return a.cost.energy_mj < b.cost.energy_mj;
  return a.cost.latency_ms < b.cost.latency_ms;
}

// ---------------------------------------------------------------------------------------
// Training.

struct Data {
  strata::core::FashionMnist train, test;
};

double train_and_score(const Network& n, const Data& data, const Config& c) {
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

json design_json(const std::string& kind, const Candidate& d, const std::vector<Network>& nets,
                 const std::vector<Hardware>& hw) {
  return {{"kind", kind},
          {"network", nets[d.network].name},
          {"hardware", hw[d.hardware].name},
          {"accuracy", d.accuracy},
          {"latency_ms", d.cost.latency_ms},
          {"energy_mj", d.cost.energy_mj},
          {"area_mm2", d.cost.area_mm2},
          {"assignment", d.cost.assignment}};
}

std::string design_row(const Candidate& d, const std::vector<Network>& nets,
                       const std::vector<Hardware>& hw) {
  return fmt::format("{:<7} {:<38} {:>7.2f}% {:>11.4f} {:>11.5f} {:>9.3f}  {}\n",
                     nets[d.network].name, hw[d.hardware].name, 100 * d.accuracy, d.cost.latency_ms,
                     d.cost.energy_mj, d.cost.area_mm2, d.cost.assignment);
}

const char* kDesignHeader =
    "network hardware                                accuracy  latency_ms   energy_mj  area_mm2  "
    "layers on\n";

int run_search(const Config& c, std::ostream& json_out) {
  STRATA_CHECK(c.latency_ms > 0 && c.energy_mj > 0 && c.area_mm2 > 0,
               "the search needs --latency-ms, --energy-mj and --area-mm2 (positive limits); got ",
               c.latency_ms, ", ", c.energy_mj, ", ", c.area_mm2);
  std::vector<Network> nets;
  for (const auto& text : c.networks) nets.push_back(parse_network(text));
  const std::vector<Hardware> hw = hardware_space(c);

  // Price every pair and prune those over the limits.
  std::vector<Candidate> feasible;
  double min_latency = std::numeric_limits<double>::infinity(), min_energy = min_latency,
         min_area = min_latency;
  std::vector<std::vector<PairCost>> costs(nets.size());
  for (size_t n = 0; n < nets.size(); ++n)
    for (size_t h = 0; h < hw.size(); ++h) {
      const PairCost p = price(nets[n], hw[h], c.infer_batch);
      costs[n].push_back(p);
      min_latency = std::min(min_latency, p.latency_ms);
      min_energy = std::min(min_energy, p.energy_mj);
      min_area = std::min(min_area, p.area_mm2);
      if (meets(p, c) && uses_every_sub(p, hw[h])) feasible.push_back({n, h, p, -1});
    }
  const size_t pairs = nets.size() * hw.size();
  STRATA_CHECK(!feasible.empty(), "no design meets the limits (latency <= ", c.latency_ms,
               " ms, energy <= ", c.energy_mj, " mJ, area <= ", c.area_mm2, " mm^2) among ", pairs,
               " pairs; the smallest seen: latency ", fmt::format("{:.4g}", min_latency),
               " ms, energy ", fmt::format("{:.4g}", min_energy), " mJ, area ",
               fmt::format("{:.4g}", min_area), " mm^2");
  std::set<size_t> surviving;
  for (const auto& f : feasible) surviving.insert(f.network);
  spdlog::info(
      "{} networks x {} hardware designs = {} pairs; {} within the limits, {} networks to train",
      nets.size(), hw.size(), pairs, feasible.size(), surviving.size());

  // Train each network once: the survivors, then (for NAS then ASIC) the rest.
  const Data data = [&] {
    Data d{strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Train),
           strata::core::load_fashion_mnist(c.data_dir, strata::core::FashionMnistSplit::Test)};
    d.test.images = d.test.images.slice(0, 0, c.test_samples);
    d.test.labels = d.test.labels.slice(0, 0, c.test_samples);
    return d;
  }();
  std::vector<size_t> order(surviving.begin(), surviving.end());
  if (c.nas_then_asic)
    for (size_t n = 0; n < nets.size(); ++n)
      if (!surviving.count(n)) order.push_back(n);
  std::vector<double> accuracy(nets.size(), -1);
  for (size_t i = 0; i < order.size(); ++i) {
    strata::core::Stopwatch clock;
    accuracy[order[i]] = train_and_score(nets[order[i]], data, c);
    spdlog::info("candidate {}/{}: network {}{}: {} steps, test accuracy {:.2f}% ({:.1f} s)", i + 1,
                 order.size(), nets[order[i]].name,
                 surviving.count(order[i]) ? "" : " (NAS then ASIC only)", c.steps,
                 100 * accuracy[order[i]], clock.seconds());
  }
  for (auto& f : feasible) f.accuracy = accuracy[f.network];

  // The Pareto front over (accuracy, latency, energy, area) and the best design.
  std::vector<Candidate> front;
  for (const auto& a : feasible)
    if (std::none_of(feasible.begin(), feasible.end(),
                     [&](const Candidate& b) { return dominates(b, a); }))
      front.push_back(a);
  std::sort(front.begin(), front.end(), better_design);
  const Candidate best = *std::min_element(feasible.begin(), feasible.end(), better_design);

  std::cout << fmt::format(
      "limits: latency <= {} ms, energy <= {} mJ, area <= {} mm^2 (inference of {} image{})\n",
      c.latency_ms, c.energy_mj, c.area_mm2, c.infer_batch, c.infer_batch == 1 ? "" : "s");
  std::cout << fmt::format("Pareto front ({} of {} designs within the limits):\n", front.size(),
                           feasible.size())
            << kDesignHeader;
  for (const auto& d : front) std::cout << design_row(d, nets, hw);
  std::cout << "best design (highest accuracy within the limits, ties by energy):\n"
            << kDesignHeader << design_row(best, nets, hw);
  json_out << json{{"kind", "limits"},
                   {"latency_ms", c.latency_ms},
                   {"energy_mj", c.energy_mj},
                   {"area_mm2", c.area_mm2},
                   {"infer_batch", c.infer_batch},
                   {"pairs", pairs},
                   {"feasible", feasible.size()},
                   {"steps", c.steps}}
                  .dump()
           << "\n";
  for (const auto& d : feasible) json_out << design_json("candidate", d, nets, hw).dump() << "\n";
  for (const auto& d : front) json_out << design_json("pareto", d, nets, hw).dump() << "\n";
  json_out << design_json("best", best, nets, hw).dump() << "\n";

  // NAS then ASIC: the most accurate network regardless of hardware, then the best
  // hardware for it: the least energy within the limits, or, when no hardware meets them,
  // the design closest to them (the least largest cost-to-limit ratio).
  if (c.nas_then_asic) {
    size_t top = 0;
    for (size_t n = 1; n < nets.size(); ++n)
      if (accuracy[n] > accuracy[top]) top = n;
    std::optional<Candidate> within, closest;
    for (size_t h = 0; h < hw.size(); ++h) {
      const PairCost& p = costs[top][h];
      if (!uses_every_sub(p, hw[h])) continue;
      if (meets(p, c) && (!within || p.energy_mj < within->cost.energy_mj))
        within = Candidate{top, h, p, accuracy[top]};
      if (!closest || excess(p, c) < excess(closest->cost, c))
        closest = Candidate{top, h, p, accuracy[top]};
    }
    const bool base_meets = within.has_value();
    const Candidate base = base_meets ? *within : *closest;
    const std::string verdict =
        base_meets ? "within the limits"
                   : fmt::format("NO hardware meets the limits; the closest is {:.2f}x over",
                                 excess(base.cost, c));
    std::cout << "NAS then ASIC (" << verdict << "):\n"
              << kDesignHeader << design_row(base, nets, hw);
    json j = design_json("nas_then_asic", base, nets, hw);
    j["meets_limits"] = base_meets;
    j["limit_ratio"] = excess(base.cost, c);
    j["joint_best"] = design_json("best", best, nets, hw);
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
    for (const auto& l : network_layers(parse_network("16-32"), batch, 1))
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
  app.add_option("--latency-ms", c.latency_ms, "Latency limit of one inference, ms");
  app.add_option("--energy-mj", c.energy_mj, "Energy limit of one inference, mJ");
  app.add_option("--area-mm2", c.area_mm2,
                 "Area limit, mm^2 (45 nm estimates, accel/area_model.h)");
  app.add_option(
      "--networks,--candidates", c.networks,
      "Networks: C1 (one conv block) or C1-C2 (two), conv channels; 16-32 is fmnist-cnn");
  app.add_option("--templates", c.templates,
                 "Accelerator templates (presets): nvdla, shidiannao, eyeriss, ...");
  app.add_option("--arrays", c.arrays, "PE array sides N (N x N PEs)");
  app.add_option("--sram-kib", c.sram_kib,
                 "On-chip SRAM sizes, KiB (split as the template's buffers)");
  app.add_flag("--homogeneous-only", c.homogeneous_only,
               "No heterogeneous designs (two sub-accelerators sharing the PEs)");
  app.add_flag("!--no-nas-then-asic", c.nas_then_asic,
               "Skip the NAS-then-ASIC baseline (and training the networks the limits prune)");
  app.add_option("--infer-batch", c.infer_batch, "Images per priced inference");
  app.add_option("--steps", c.steps, "Training steps per network");
  app.add_option("--batch", c.batch, "Training batch size")
      ->check(CLI::Range(int64_t{1}, int64_t{60000}));
  app.add_option("--lr", c.lr, "SGD learning rate (momentum 0.9)");
  app.add_option("--seed", c.seed, "Seed for initialization and shuffling");
  app.add_option("--threads", c.threads, "Threads (LibTorch and BLAS)");
  app.add_option("--test-samples", c.test_samples, "Test images scored (the first N of the 10,000)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}));
  app.add_option("--data-dir", c.data_dir, "Fashion-MNIST directory (gzip IDX files)");
  app.add_option("--json-out", c.json_out, "Write the results as JSON lines here");
  app.add_flag(
      "--utilization-study", c.utilization_study,
      "Instead of the search: PE utilization of fmnist-cnn and fortunes-lm layers on 64x64 arrays");
  app.add_option("--bandwidth", c.bandwidth,
                 "DRAM bytes per cycle of the utilization study's limited case");
}

int run(const Config& c) {
  // Checked here rather than with CLI11's PositiveNumber, whose message prints DBL_MAX.
  STRATA_CHECK(c.steps > 0, "--steps ", c.steps, ": expected a positive number of training steps");
  STRATA_CHECK(c.infer_batch > 0, "--infer-batch ", c.infer_batch,
               ": expected a positive number of images");
  STRATA_CHECK(c.lr > 0, "--lr ", c.lr, ": expected a positive learning rate");
  STRATA_CHECK(c.threads > 0, "--threads ", c.threads, ": expected a positive number of threads");
  strata::core::init_logging(0, false);
  strata::core::set_num_threads(c.threads);
  // Results go to a buffer first, so that a failed run leaves no --json-out file behind.
  std::ostringstream json_lines;
  const int code =
      c.utilization_study ? run_utilization_study(c, json_lines) : run_search(c, json_lines);
  if (!c.json_out.empty()) {
    std::ofstream out(c.json_out);
    STRATA_CHECK(out, "--json-out ", c.json_out, ": cannot open for writing");
    out << json_lines.str();
  }
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
