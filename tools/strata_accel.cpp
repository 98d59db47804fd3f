// strata-accel: what one layer costs on a simulated accelerator, as JSON.
//
//   strata-accel gemm --array 32x32 --dataflow os --m 256 --k 1568 --n 10
//   strata-accel conv --preset eyeriss --batch 256 --in-channels 1 --out-channels 16
//                     --height 28 --width 28 --kernel 5 --padding 2
//   strata-accel attention --preset fusemax --mapping fused --seq-q 4096 --head-dim 64
//   strata-accel gemm --spec accel/specs/systolic_ws_32.json --m 128 --k 768 --n 3072
//   strata-accel presets
//   strata-accel templates
//   strata-accel model --preset eyeriss --model fmnist-cnn --batch 64 --train-steps 1
//   strata-accel model --model fmnist-cnn --devices nvdla,shidiannao --json
//
// The accelerator is --spec FILE (a JSON spec, or a preset's name), --preset NAME, or the
// generic-32 preset; --array, --dataflow and --bandwidth replace its fields. The output
// is {"spec": ..., "op": ..., "cost": ..., "microseconds": ...}; access counts are words
// of the spec's word size, energies pJ (docs/accel.md).
//
// `model` runs a built-in model (fmnist-cnn, fmnist-mlp, fortunes-lm) on the simulated
// device with random inputs under the Simulator and prints its CostReport (a table, or
// JSON with --json); --devices A,B,... cuts the model into a pipeline of stages, stage i
// on device i with spec i, trains it with the real pipeline (the executor, one worker
// thread per device, --schedule and --micro-batches) and adds the per-stage report and the
// pipeline's figures in simulated time (programs/simulated_time.h).
#include <torch/torch.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>

#include "accel_memory_plan.h"
#include "strata/accel/accel_spec.h"
#include "strata/accel/accelerator_template.h"
#include "strata/accel/cost_model.h"
#include "strata/accel/device.h"
#include "strata/accel/pipeline_placement.h"
#include "strata/accel/simulator.h"
#include "strata/accel/to_device.h"
#include "strata/core/error.h"
#include "strata/core/memory.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/models/transformer_lm.h"
#include "strata/core/output_files.h"
#include "strata/core/parameters.h"
#include "strata/parallel/comm/inprocess_communicator.h"
#include "strata/parallel/pipeline/pipeline_parallel.h"
#include "strata/programs/cli.h"
#include "strata/programs/number_flags.h"
#include "strata/programs/simulated_time.h"

namespace {

namespace accel = strata::accel;
using strata::programs::integer_range;

// A layer dimension: far above any real layer, and large enough that a product of three
// can overflow, which the cost models then report instead of wrapping around.
constexpr int64_t kMaxDimension = 1'000'000'000'000'000;
// Each simulated step runs the model's kernels on the CPU: a million steps would take days.
constexpr int64_t kMaxTrainSteps = 10'000;

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
  // The templates are registered before main runs, so the help can name them.
  std::vector<std::string> dataflow_templates;
  for (const auto& name : accel::template_names())
    if (accel::accelerator_template(name).has_dataflow()) dataflow_templates.push_back(name);

  cmd->add_option("--dataflow", f.dataflow,
                  "os, ws or is (replaces the spec's; templates " +
                      accel::join_names(dataflow_templates) + ")");
  strata::programs::positive_real(
      cmd->add_option("--bandwidth", f.bandwidth, "DRAM bytes per cycle (replaces the spec's)"),
      accel::kMaxDramBytesPerCycle);
}

std::pair<int64_t, int64_t> parse_array(const std::string& text) {
  const auto x = text.find('x');
  STRATA_CHECK(x != std::string::npos && x > 0 && x + 1 < text.size(), "--array ", text,
               ": expected RxC, e.g. 32x32");
  // Each side as typed: a whole number, and a value too large for int64_t is out of range
  // (std::stoll would clamp or throw).
  const auto side = [&](const std::string& part) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(part.c_str(), &end, 10);
    STRATA_CHECK(end == part.c_str() + part.size() && !part.empty() && part[0] != ' ', "--array ",
                 text, ": expected RxC, e.g. 32x32");
    STRATA_CHECK(errno != ERANGE && v >= 1 && v <= accel::kMaxArraySide, "--array ", text,
                 ": R and C must be between 1 and ", accel::kMaxArraySide);
    return static_cast<int64_t>(v);
  };
  return {side(text.substr(0, x)), side(text.substr(x + 1))};
}

accel::AcceleratorSpec build_spec(const SpecFlags& f) {
  accel::AcceleratorSpec s = !f.spec.empty()     ? accel::AcceleratorSpec::resolve(f.spec)
                             : !f.preset.empty() ? accel::AcceleratorSpec::preset(f.preset)
                                                 : accel::AcceleratorSpec::preset("generic-32");
  const accel::AcceleratorTemplate& t = accel::accelerator_template(s.kind);
  if (!f.array.empty()) {
    STRATA_CHECK(t.has_pe_array(), "--array: spec '", s.name, "' is ", t.name(), " (no PE array)");
    std::tie(s.rows, s.cols) = parse_array(f.array);
  }
  if (!f.dataflow.empty()) {
    STRATA_CHECK(t.has_dataflow(), "--dataflow: spec '", s.name, "' is ", t.name(),
                 ", only a systolic array has a dataflow");
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
  nlohmann::ordered_json spec_json = {{"name", spec.name},
                                      {"template", accel::to_string(spec.kind)},
                                      {"model", device.model().name()}};
  if (accel::accelerator_template(spec.kind).has_pe_array()) {
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
    for (const auto& name : accel::preset_names())
      all[name] = accel::AcceleratorSpec::preset(name).to_json();
    std::cout << all.dump(2) << "\n";
    return 0;
  }
  for (const auto& name : accel::preset_names()) {
    const accel::AcceleratorSpec s = accel::AcceleratorSpec::preset(name);
    std::cout << name << "  (" << accel::accelerator_template(s.kind).summary(s) << ")\n    "
              << accel::preset_description(name) << "\n";
  }
  return 0;
}

int list_templates(bool as_json) {
  nlohmann::ordered_json all = nlohmann::ordered_json::object();
  for (const auto& name : accel::template_names()) {
    const accel::AcceleratorTemplate& t = accel::accelerator_template(name);
    if (as_json) {
      all[name] = {{"description", t.description()},
                   {"fields", t.fields()},
                   {"area_model", t.has_area_model()}};
      continue;
    }
    const std::string fields = accel::join_names(t.fields());
    std::cout << name << "  (fields: " << (fields.empty() ? "none" : fields) << ")\n    "
              << t.description() << "\n";
  }
  if (as_json) std::cout << all.dump(2) << "\n";
  return 0;
}

struct ModelFlags {
  std::string model = "fmnist-cnn";
  int64_t batch = 64;
  int64_t seq = 128;  // fortunes-lm tokens per sequence
  int64_t train_steps = 1;
  bool json = false;
  std::string trace;
  std::vector<std::string> devices;
  std::string balance = "cycles";
  std::string schedule = "1f1b";
  int micro_batches = 0;  // 0: the largest of 4, 2, 1 that divides --batch
};

// A built-in model with random inputs and its loss; step() runs forward (every child under
// its own layer name) and, when training, the loss's backward.
struct Workload {
  torch::nn::Sequential model;
  at::Tensor x, y;
  bool lm = false;

  explicit Workload(const ModelFlags& f) {
    torch::manual_seed(0);
    if (f.model == "fortunes-lm") {
      lm = true;
      auto options = strata::core::TransformerLMOptions().context(f.seq);
      model = strata::core::make_transformer_lm(options);
      x = torch::randint(0, options.vocab(), {f.batch, f.seq});
      y = torch::randint(0, options.vocab(), {f.batch, f.seq});
    } else {
      STRATA_CHECK(f.model == "fmnist-cnn" || f.model == "fmnist-mlp", "--model ", f.model,
                   ": unknown, expected fmnist-cnn, fmnist-mlp or fortunes-lm");
      model = strata::core::make_fmnist_model(f.model.substr(7));
      // Normalized as Fashion-MNIST would be (mean 0.2860, std 0.3530).
      x = (torch::rand({f.batch, 1, 28, 28}) - 0.2860) / 0.3530;
      y = torch::randint(0, 10, {f.batch});
    }
  }
  at::Tensor loss(const at::Tensor& out) {
    accel::LayerScope scope("loss");
    const auto target = y.to(out.device());
    return lm ? strata::core::lm_loss(out, target)
              : torch::nn::functional::cross_entropy(out, target);
  }
  // forward and backward of one batch on a model already placed; `run` maps input -> output.
  void step(const std::function<at::Tensor(const at::Tensor&)>& run, bool train) {
    if (!train) {
      torch::NoGradGuard no_grad;
      run(x);
      return;
    }
    const at::Tensor l = loss(run(x));
    accel::LayerScope scope("loss");  // the seed gradient (ones) is made on this thread
    l.backward();
  }
};

// fortunes-lm's head shares its weight with the embedding, and one tensor cannot live on
// two devices: a pipeline gives the head its own copy. What is charged is the same but for
// the one add that sums a tied weight's two gradients (and the copy's optimizer update).
void untie_head(torch::nn::Sequential& model) {
  const auto names = model->named_children().keys();
  torch::nn::Sequential untied;
  size_t i = 0;
  for (const auto& any : *model) {
    if (auto head = std::dynamic_pointer_cast<strata::core::LMHeadImpl>(any.ptr()))
      untied->push_back(std::string(names[i]),
                        strata::core::LMHead(head->weight.detach().clone().requires_grad_(true)));
    else
      untied->push_back(std::string(names[i]), any);
    ++i;
  }
  untied->train(model->is_training());
  model = untied;
}

// The pipeline's part of the report: per stage (pipeline_report's view of the CostReport)
// and the timeline in simulated time (SimulatedTime's fields; empty without training).
struct PipelineView {
  accel::PipelineReport stages;
  nlohmann::json timeline;
};

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const Workload& w,
                                                        const std::vector<at::Tensor>& params) {
  if (w.lm) return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(3e-4));
  return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.05).momentum(0.9));
}

// Prints the report (and the pipeline's) as a table, or JSON with --json.
int print_model_report(const ModelFlags& f, const Workload& w,
                       const std::vector<accel::AcceleratorSpec>& specs,
                       const accel::CostReport& report, std::unique_ptr<PipelineView> pipe) {
  const bool train = f.train_steps > 0;
  if (!f.trace.empty()) report.write_chrome_trace(f.trace);
  if (f.json) {
    nlohmann::ordered_json out;
    out["model"] = f.model;
    out["batch"] = f.batch;
    if (w.lm) out["seq"] = f.seq;
    out["train_steps"] = f.train_steps;
    nlohmann::json spec_list = nlohmann::json::array();
    for (const auto& s : specs) spec_list.push_back(s.to_json());
    out["specs"] = spec_list;
    out["report"] = report.to_json();
    if (pipe) {
      out["pipeline"] = pipe->stages.to_json();
      if (!pipe->timeline.empty()) out["pipeline"]["simulated"] = pipe->timeline;
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << f.model << ", batch " << f.batch
            << (w.lm ? " x " + std::to_string(f.seq) : std::string()) << ", "
            << (train ? std::to_string(f.train_steps) + " training step(s)"
                      : std::string("forward only"))
            << "\n"
            << report.table();
  if (pipe) {
    std::cout << "pipeline\n" << pipe->stages.table();
    if (!pipe->timeline.empty()) {
      const auto& t = pipe->timeline;
      std::cout << fmt::format(
          "simulated {} pipeline, M = {}: {:.1f} us per step, {:.1f} samples/s, "
          "{:.1f} uJ\n",
          t["schedule"].get<std::string>(), t["micro_batches"].get<int>(),
          t["step_us"].get<double>(), t["simulated_samples_per_s"].get<double>(),
          t["energy_uj"].get<double>());
      for (size_t i = 0; i < t["device"].size(); ++i)
        std::cout << fmt::format("  {}: idle {:.1f}%, utilization {:.1f}%\n",
                                 t["device"][i].get<std::string>(),
                                 100 * t["simulated_idle_fraction"][i].get<double>(),
                                 100 * t["simulated_utilization"][i].get<double>());
    }
  }
  return 0;
}

int run_model(const SpecFlags& sf, const ModelFlags& f) {
  STRATA_CHECK(f.balance == "cycles" || f.balance == "parameters", "--balance ", f.balance,
               ": expected cycles or parameters");
  std::vector<accel::AcceleratorSpec> specs;
  if (f.devices.empty()) {
    specs.push_back(build_spec(sf));
  } else {
    STRATA_CHECK(sf.spec.empty() && sf.preset.empty() && sf.array.empty() && sf.dataflow.empty() &&
                     sf.bandwidth == 0,
                 "--devices gives every device's spec: --spec, --preset, --array, --dataflow and "
                 "--bandwidth "
                 "do not apply");
    STRATA_CHECK(static_cast<int>(f.devices.size()) <= accel::device_count(),
                 "--devices: ", f.devices.size(), " devices, at most ", accel::device_count());
    for (const auto& d : f.devices) specs.push_back(accel::AcceleratorSpec::resolve(d));
  }
  // Before LibTorch allocates: a --batch or --seq beyond this machine is refused with the size.
  if (f.model == "fortunes-lm")
    strata::core::check_fits("--model fortunes-lm with --batch " + std::to_string(f.batch) +
                                 " and --seq " + std::to_string(f.seq),
                             strata::core::transformer_lm_training_bytes(
                                 strata::core::TransformerLMOptions().context(f.seq), f.batch));
  else if (f.model == "fmnist-cnn" || f.model == "fmnist-mlp")
    strata::core::check_fits("--model " + f.model + " with --batch " + std::to_string(f.batch),
                             strata::core::fmnist_training_bytes(f.model.substr(7), f.batch));
  Workload w(f);
  const bool train = f.train_steps > 0;
  w.model->train(train);
  if (specs.size() == 1) {
    auto sim = std::make_shared<accel::Simulator>(specs.front());
    sim->configure(0, specs.front());
    accel::to_device(w.model, accel::device(0));
    const auto forward = [&](const at::Tensor& x) {
      return accel::forward_by_layer(w.model, x.to(accel::device(0)));
    };
    // Made after placing: its state lives where the parameters are.
    const auto optimizer = make_optimizer(w, strata::core::unique_parameters(*w.model));
    {
      accel::RecorderScope scope(sim);
      for (int64_t s = 0; s < std::max<int64_t>(f.train_steps, 1); ++s) {
        if (train) optimizer->zero_grad();
        w.step(forward, train);
        if (train) {
          accel::LayerScope optimizer_scope("optimizer");
          optimizer->step();
        }
      }
    }
    return print_model_report(f, w, specs, sim->report(), nullptr);
  }

  // A pipeline: the split, then the real pipeline on one worker thread per device.
  if (w.lm) untie_head(w.model);
  std::vector<int64_t> balance;
  if (f.balance == "parameters") {
    balance =
        accel::balance_stages(accel::parameter_costs(w.model, static_cast<int>(specs.size())));
  } else {
    // Simulated time: each layer's on each device, plus the copies a cut makes.
    const auto cuts = accel::cut_microseconds(accel::layer_input_bytes(w.model, w.x), specs, train);
    const auto costs = accel::layer_microseconds(w.model, specs, [&](c10::Device d) {
      w.step([&](const at::Tensor& x) { return accel::forward_by_layer(w.model, x.to(d)); }, train);
    });
    balance = accel::balance_stages(costs, cuts.enter, cuts.leave);
    strata::accel::to_device(w.model, c10::kCPU);  // the pipeline places the stages itself
  }
  std::vector<strata::programs::StageDevice> devices;
  std::string counts;
  for (size_t i = 0; i < specs.size(); ++i) {
    devices.push_back({f.devices[i], accel::device(static_cast<int>(i)), specs[i]});
    counts += (i == 0 ? "" : ",") + std::to_string(balance[i]);
  }
  int micro_batches = f.micro_batches;
  if (micro_batches == 0)
    for (const int m : {4, 2, 1})
      if (f.batch % m == 0) {
        micro_batches = m;
        break;
      }
  STRATA_CHECK(f.batch % micro_batches == 0, "--micro-batches ", micro_batches,
               ": does not divide --batch ", f.batch);
  namespace parallel = strata::parallel;
  spdlog::set_level(spdlog::level::warn);  // stdout is the report's (the partition's log line)
  parallel::ProcessGrid grid(parallel::InProcessCommunicator::create(1)[0]);
  const bool lm = w.lm;
  parallel::PipelineParallel pipe(
      w.model, grid,
      [lm](const at::Tensor& out, const at::Tensor& target) {
        return lm ? strata::core::lm_loss(out, target)
                  : torch::nn::functional::cross_entropy(out, target);
      },
      w.x,
      parallel::PipelineParallelOptions()
          .devices(strata::programs::devices_of(devices))
          .move_module(strata::programs::stage_mover())
          .schedule(f.schedule)
          .micro_batches(micro_batches)
          .balance(counts)
          .optimizer_state_factor(w.lm ? 2 : 1));
  strata::programs::SimulatedTime simulated(&pipe, devices);
  const auto optimizer = make_optimizer(w, pipe.parameters());
  if (train) {
    for (int64_t s = 0; s < f.train_steps; ++s) {
      optimizer->zero_grad();
      pipe.train_step(w.x, w.y, optimizer.get());
      simulated.record(s, 0, f.batch);
    }
  } else {
    pipe.evaluate(w.x);  // the stages in turn: no schedule without a backward
  }
  std::vector<accel::PipelineStage> stages;
  for (size_t i = 0; i < pipe.partition().stages.size(); ++i) {
    const auto& plan = pipe.partition().stages[i];
    stages.push_back(
        {static_cast<int>(i), plan.begin, plan.end, plan.layer_names, plan.parameters});
  }
  nlohmann::json timeline;
  simulated.add_fields(timeline);
  if (!timeline.empty()) {
    timeline["schedule"] = f.schedule;
    timeline["micro_batches"] = micro_batches;
    timeline["step_us"] =
        1e6 * static_cast<double>(f.batch) / timeline["simulated_samples_per_s"].get<double>();
  }
  const accel::CostReport report = simulated.simulator()->report();
  return print_model_report(f, w, specs, report,
                            std::make_unique<PipelineView>(
                                PipelineView{accel::pipeline_report(report, stages), timeline}));
}

}  // namespace

int main(int argc, char** argv) {
  return strata::programs::run_main([&] {
    CLI::App app{
        "Cost of one layer on a simulated accelerator (cycles, stalls, utilization, "
        "SRAM/DRAM accesses, energy) as JSON."};
    strata::programs::configure_cli(app);
    app.require_subcommand(1);

    SpecFlags sf;
    accel::GemmShape g;
    CLI::App* gemm = app.add_subcommand("gemm", "An M x K by K x N matrix product");
    add_spec_flags(gemm, sf);
    integer_range(
        gemm->add_option("--m", g.m, "Rows of the input (tokens, output pixels)")->required(), 1,
        kMaxDimension);
    integer_range(gemm->add_option("--k", g.k, "Reduction")->required(), 1, kMaxDimension);
    integer_range(gemm->add_option("--n", g.n, "Output columns (channels)")->required(), 1,
                  kMaxDimension);
    integer_range(gemm->add_option("--batch", g.batch, "Independent GEMMs"), 1, kMaxDimension);

    accel::ConvShape c;
    int64_t kernel = 0, stride = 1, padding = 0, dilation = 1;
    CLI::App* conv = app.add_subcommand("conv", "A 2-D convolution (square kernel, NCHW)");
    add_spec_flags(conv, sf);
    integer_range(conv->add_option("--batch", c.batch, "Images"), 1, kMaxDimension);
    integer_range(conv->add_option("--in-channels", c.in_channels, "Input channels")->required(), 1,
                  kMaxDimension);
    integer_range(conv->add_option("--out-channels", c.out_channels, "Output channels")->required(),
                  1, kMaxDimension);
    integer_range(conv->add_option("--height", c.height, "Input height")->required(), 1,
                  kMaxDimension);
    integer_range(conv->add_option("--width", c.width, "Input width")->required(), 1,
                  kMaxDimension);
    integer_range(conv->add_option("--kernel", kernel, "Kernel size")->required(), 1,
                  kMaxDimension);
    integer_range(conv->add_option("--stride", stride, "Stride"), 1, kMaxDimension);
    integer_range(conv->add_option("--padding", padding, "Zero padding on each side"), 0,
                  kMaxDimension);
    integer_range(conv->add_option("--dilation", dilation, "Dilation"), 1, kMaxDimension);
    integer_range(conv->add_option("--groups", c.groups, "Groups"), 1, kMaxDimension);

    accel::AttentionShape a;
    std::string mapping = "fused";
    int64_t seq_kv = 0;
    CLI::App* attention = app.add_subcommand("attention", "softmax(Q K^T) V per batch and head");
    add_spec_flags(attention, sf);
    attention->add_option("--mapping", mapping,
                          "unfused, flat or fused (flat and fused need an attention spec)");
    integer_range(attention->add_option("--batch", a.batch, "Batch"), 1, kMaxDimension);
    integer_range(attention->add_option("--heads", a.heads, "Heads"), 1, kMaxDimension);
    integer_range(attention->add_option("--seq-q", a.seq_q, "Query length")->required(), 1,
                  kMaxDimension);
    integer_range(attention->add_option("--seq-kv", seq_kv, "Key/value length (default: --seq-q)"),
                  1, kMaxDimension);
    integer_range(attention->add_option("--head-dim", a.head_dim, "Head dimension")->required(), 1,
                  kMaxDimension);

    bool as_json = false;
    CLI::App* presets = app.add_subcommand("presets", "List the presets");
    presets->add_flag("--json", as_json, "Every preset's full spec as JSON");
    CLI::App* templates = app.add_subcommand(
        "templates", "List the accelerator templates (the \"template\" of a spec file)");
    templates->add_flag("--json", as_json, "As JSON: description, spec fields, area model");

    ModelFlags mf;
    CLI::App* model = app.add_subcommand(
        "model", "Run a built-in model on simulated accelerators and report its cost");
    add_spec_flags(model, sf);
    model->add_option("--model", mf.model, "fmnist-cnn, fmnist-mlp or fortunes-lm");
    integer_range(model->add_option("--batch", mf.batch, "Batch size"), 1,
                  strata::programs::kMaxBatch);
    integer_range(model->add_option("--seq", mf.seq, "fortunes-lm: tokens per sequence"), 1,
                  strata::programs::kMaxContext);
    integer_range(model->add_option("--train-steps", mf.train_steps,
                                    "Training steps (0: one forward pass only)"),
                  0, kMaxTrainSteps);
    model->add_flag("--json", mf.json, "The report as JSON");
    model->add_option("--trace", mf.trace, "Write a Chrome trace of the simulated timeline");
    model
        ->add_option("--devices", mf.devices,
                     "Pipeline: one spec (file or preset) per stage, e.g. nvdla,eyeriss")
        ->delimiter(',');
    model->add_option("--balance", mf.balance,
                      "Pipeline split: cycles (simulated time) or parameters");
    model->add_option("--schedule", mf.schedule,
                      "Pipeline schedule (strata-schedule --list), run by the real pipeline");
    integer_range(model->add_option("--micro-batches", mf.micro_batches,
                                    "Pipeline micro-batches (default: the largest of 4, 2, 1 "
                                    "that divides --batch)"),
                  1, strata::programs::kMaxMicroBatches);

    const auto memory_plan = strata::tools::add_memory_plan_command(app);

    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
    if (memory_plan.app->parsed()) return memory_plan.run();
    if (presets->parsed()) return list_presets(as_json);
    if (templates->parsed()) return list_templates(as_json);
    if (model->parsed()) {
      strata::core::check_writable("--trace", mf.trace);  // before the simulation, not after
      return run_model(sf, mf);
    }
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
    STRATA_CHECK(a.mapping == accel::AttentionMapping::Unfused ||
                     accel::accelerator_template(spec.kind).fuses_attention(),
                 "--mapping ", mapping, ": spec '", spec.name, "' is ", accel::to_string(spec.kind),
                 ", only an attention array (e.g. --preset fusemax) fuses attention");
    return print_cost(spec, accel::OpDescription::attention_op("attention", a));
  });
}
