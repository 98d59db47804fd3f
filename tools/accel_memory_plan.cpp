// strata-accel memory-plan: plan a scratchpad's contents for an op graph (COSMA, issue 20).
//
//   strata-accel memory-plan --model fmnist-cnn --train --batch 8 --scratchpad 262144 --json
//   strata-accel memory-plan --graph graph.json --scratchpad 65536 --methods ilp,belady
//
// The graph is a built-in model's forward pass (or, with --train, a whole training step:
// forward, backward, optimizer update) as recorded on the simulated device, or the `graph`
// object of a JSON file (the contract's own format, docs/memory_planning.md). --json
// prints the contract's document; without it, a table of each method's traffic.
#include "accel_memory_plan.h"

#include <torch/torch.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <memory>

#include "strata/accel/device.h"
#include "strata/accel/memory_plan.h"
#include "strata/accel/to_device.h"
#include "strata/core/error.h"
#include "strata/core/input_files.h"
#include "strata/core/json_fields.h"
#include "strata/core/memory.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/parameters.h"
#include "strata/programs/number_flags.h"

namespace strata::tools {
namespace {

namespace accel = strata::accel;

// Without --methods, larger graphs are left to divide-and-conquer (COSMA's target: up to
// 200 ops in a minute).
constexpr size_t kDefaultIlpOps = 200;

struct MemoryPlanFlags {
  std::string model;
  bool train = false;
  int64_t batch = 8;
  int64_t seq = 32;
  std::string graph;
  int64_t scratchpad = 0;
  std::vector<std::string> methods;
  double time_limit = 60;
  int64_t segment_ops = 8;
  bool json = false;
};

// The model's forward pass, or training step, as the device ran it.
accel::OpGraph record_model(const MemoryPlanFlags& f) {
  torch::manual_seed(0);
  torch::nn::Sequential model;
  at::Tensor x, y;
  const bool lm = f.model == "fortunes-lm";
  if (lm) {
    const auto options = core::TransformerLMOptions().context(f.seq);
    core::check_fits("--model fortunes-lm with --batch " + std::to_string(f.batch) + " and --seq " +
                         std::to_string(f.seq),
                     core::transformer_lm_training_bytes(options, f.batch));
    model = core::make_transformer_lm(options);
    x = torch::randint(0, options.vocab(), {f.batch, f.seq});
    y = torch::randint(0, options.vocab(), {f.batch, f.seq});
  } else {
    STRATA_CHECK(f.model == "fmnist-cnn" || f.model == "fmnist-mlp", "--model ", f.model,
                 ": unknown, expected fmnist-cnn, fmnist-mlp or fortunes-lm");
    core::check_fits("--model " + f.model + " with --batch " + std::to_string(f.batch),
                     core::fmnist_training_bytes(f.model.substr(7), f.batch));
    model = core::make_fmnist_model(f.model.substr(7));
    x = torch::rand({f.batch, 1, 28, 28});
    y = torch::randint(0, 10, {f.batch});
  }
  model->train(f.train);
  const c10::Device d = accel::device(0);
  accel::to_device(model, d);
  x = x.to(d);
  y = y.to(d);
  torch::optim::SGD sgd(core::unique_parameters(*model), torch::optim::SGDOptions(0.05));
  auto recorder = std::make_shared<accel::GraphRecorder>();
  {
    accel::RecorderScope scope(recorder);
    if (!f.train) {
      torch::NoGradGuard no_grad;
      model->forward(x);
    } else {
      const at::Tensor out = model->forward(x);
      const at::Tensor loss =
          lm ? core::lm_loss(out, y) : torch::nn::functional::cross_entropy(out, y);
      loss.backward();
      sgd.step();
    }
  }
  return recorder->graph();
}

int run(const MemoryPlanFlags& f) {
  std::vector<std::string> methods = f.methods;
  if (methods.empty()) methods = accel::memory_plan_methods();
  // Every method checked before the (possibly long) recording and solving.
  for (const auto& m : methods) {
    const auto known = accel::memory_plan_methods();
    if (std::find(known.begin(), known.end(), m) != known.end()) continue;
    STRATA_CHECK(m != "ilp" && m != "divide-and-conquer", "--methods ", m,
                 ": unavailable, this strata-accel was built without COIN-OR CBC (install "
                 "coinor-libcbc-dev and rebuild); available: lru, belady");
    STRATA_FAIL("--methods ", m,
                ": unknown method, expected ilp, lru, belady or "
                "divide-and-conquer");
  }
  const accel::OpGraph graph =
      f.graph.empty()
          ? record_model(f)
          : accel::OpGraph::from_json(core::read_json_file(f.graph, "--graph"), f.graph);
  accel::check_scratchpad(graph, f.scratchpad);
  if (f.methods.empty() && graph.ops.size() > kDefaultIlpOps) {
    methods.erase(std::remove(methods.begin(), methods.end(), "ilp"), methods.end());
    std::cerr << "memory-plan: " << graph.ops.size() << " ops, more than " << kDefaultIlpOps
              << ": ilp left out (ask for it with --methods)\n";
  }
  const auto options =
      accel::PlanOptions().time_limit_seconds(f.time_limit).segment_ops(f.segment_ops);
  std::vector<accel::MemoryPlan> plans;
  for (const auto& m : methods) {
    if (!f.json) std::cerr << "memory-plan: " << m << " on " << graph.ops.size() << " ops\n";
    plans.push_back(accel::plan_memory(graph, f.scratchpad, m, options));
  }
  if (f.json) {
    nlohmann::ordered_json out;
    out["scratchpad_bytes"] = f.scratchpad;
    out["graph"] = graph.to_json();
    out["plans"] = nlohmann::ordered_json::array();
    for (const auto& p : plans) out["plans"].push_back(p.to_json());
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::cout << graph.ops.size() << " ops, " << graph.tensors.size() << " tensors, scratchpad "
            << f.scratchpad << " bytes (at least " << accel::minimum_scratchpad(graph) << ")\n"
            << std::left << std::setw(20) << "method" << std::setw(9) << "optimal" << std::setw(14)
            << "read" << std::setw(14) << "written" << std::setw(14) << "compulsory"
            << std::setw(16) << "non-compulsory"
            << "seconds\n";
  for (const auto& p : plans)
    std::cout << std::setw(20) << p.method << std::setw(9) << (p.optimal ? "yes" : "no")
              << std::setw(14) << p.offchip_read_bytes << std::setw(14) << p.offchip_write_bytes
              << std::setw(14) << p.compulsory_bytes << std::setw(16) << p.non_compulsory_bytes()
              << std::setprecision(3) << p.solve_seconds << "\n";
  return 0;
}

}  // namespace

Subcommand add_memory_plan_command(CLI::App& app) {
  static MemoryPlanFlags f;
  CLI::App* cmd = app.add_subcommand(
      "memory-plan",
      "Plan a scratchpad (order, offsets, evictions) that minimizes off-chip traffic (COSMA)");
  auto* model = cmd->add_option("--model", f.model, "fmnist-cnn, fmnist-mlp or fortunes-lm");
  auto* graph = cmd->add_option("--graph", f.graph, "An op graph (JSON: the contract's graph)");
  model->excludes(graph);
  cmd->add_flag("--train", f.train, "--model: a whole training step, not a forward pass")
      ->needs(model);
  programs::integer_range(cmd->add_option("--batch", f.batch, "--model: batch size"), 1,
                          programs::kMaxBatch)
      ->needs(model);
  programs::integer_range(cmd->add_option("--seq", f.seq, "fortunes-lm: tokens per sequence"), 1,
                          programs::kMaxContext)
      ->needs(model);
  programs::integer_range(
      cmd->add_option("--scratchpad", f.scratchpad, "Scratchpad bytes")->required(), 1,
      int64_t(1) << 50);
  cmd->add_option("--methods", f.methods,
                  "Comma-separated: ilp, lru, belady, divide-and-conquer (default: all built)")
      ->delimiter(',');
  programs::positive_real(cmd->add_option("--time-limit", f.time_limit,
                                          "ilp: seconds per solve (divide-and-conquer: per "
                                          "segment)"),
                          programs::kMaxSeconds);
  programs::integer_range(
      cmd->add_option("--segment-ops", f.segment_ops, "divide-and-conquer: ops per segment"), 1,
      1000);
  cmd->add_flag("--json", f.json, "Print the plans as the contract's JSON document");
  return {cmd, [cmd, model, graph] {
            STRATA_CHECK(model->count() + graph->count() == 1,
                         "memory-plan: give --model NAME or --graph FILE");
            (void)cmd;
            return run(f);
          }};
}

}  // namespace strata::tools
