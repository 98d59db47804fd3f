// The values in the JSON files strata reads, not only their bytes (issue 23): a valid
// checkpoint manifest or a valid pipeline schedule, with fields the fuzzer chooses replaced
// by values it chooses (integers of any size, fractions, NaN, infinity, strings, booleans,
// null, arrays, objects). The other targets rarely get past the JSON parser to the meaning
// of a field; this one starts past it. Reading must succeed or raise strata::Error with a
// message: any other exception (nlohmann's "[json.exception...]", std::bad_alloc,
// c10::Error) is a bug, and so is a checkpoint accepted with a step below 0 or a learning
// rate below 0 or not finite.
#include <fuzzer/FuzzedDataProvider.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "fuzz_support.h"
#include "strata/core/checkpoint.h"
#include "strata/core/error.h"
#include "strata/parallel/pipeline/schedule.h"
#include "strata/parallel/pipeline/schedule_json.h"

namespace {

using nlohmann::json;

// The model fuzz_checkpoint loads into: a parameter, a buffer and momentum state.
struct Model {
  torch::nn::Sequential net{torch::nn::Linear(2, 2), torch::nn::BatchNorm1d(2)};
  torch::optim::SGD sgd{net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9)};
};

// A checkpoint of Model after one step: its manifest and tensors.bin, written once.
const std::pair<json, std::string>& base_checkpoint() {
  static const std::pair<json, std::string> base = [] {
    Model model;
    model.net->forward(torch::randn({4, 2})).sum().backward();
    model.sgd.step();
    const auto dir = std::filesystem::temp_directory_path() /
                     ("strata-fuzz-values-" + std::to_string(::getpid()));
    strata::core::save_checkpoint((dir / "base").string(), *model.net, &model.sgd, 1);
    std::ifstream manifest(dir / "base" / "manifest.json");
    std::ifstream bin(dir / "base" / "tensors.bin", std::ios::binary);
    std::pair<json, std::string> out{json::parse(manifest),
                                     std::string(std::istreambuf_iterator<char>(bin), {})};
    std::filesystem::remove_all(dir);
    return out;
  }();
  return base;
}

// 1F1B on 2 ranks with 1 micro-batch, as schedule_to_json writes it.
const json& base_schedule() {
  static const json base = json::parse(R"({"name": "1f1b", "num_ranks": 2, "num_stages": 2,
    "num_micro_batches": 1, "ranks": [
    [{"op": "F", "stage": 0, "mb": 0}, {"op": "send-act", "stage": 0, "mb": 0, "peer": 1},
     {"op": "recv-grad", "stage": 1, "mb": 0, "peer": 1}, {"op": "BW", "stage": 0, "mb": 0},
     {"op": "all-reduce-grads"}, {"op": "optimizer-step"}],
    [{"op": "recv-act", "stage": 0, "mb": 0, "peer": 0}, {"op": "F", "stage": 1, "mb": 0},
     {"op": "BW", "stage": 1, "mb": 0}, {"op": "send-grad", "stage": 1, "mb": 0, "peer": 0},
     {"op": "all-reduce-grads"}, {"op": "optimizer-step"}]]})");
  return base;
}

// Every value in `doc` below the root, as pointers.
void collect(const json& doc, const json::json_pointer& at, std::vector<json::json_pointer>& out) {
  if (!at.empty()) out.push_back(at);
  if (doc.is_object()) {
    for (const auto& item : doc.items()) collect(item.value(), at / item.key(), out);
  } else if (doc.is_array()) {
    for (size_t i = 0; i < doc.size(); ++i) collect(doc[i], at / i, out);
  }
}

json fuzzed_value(FuzzedDataProvider& in) {
  constexpr double kSpecial[] = {std::numeric_limits<double>::quiet_NaN(),
                                 std::numeric_limits<double>::infinity(),
                                 -std::numeric_limits<double>::infinity(),
                                 1e30,
                                 -1e30,
                                 2.5,
                                 -0.0,
                                 4294967297.0};
  switch (in.ConsumeIntegralInRange<int>(0, 9)) {
    case 0: return in.ConsumeIntegral<int64_t>();
    case 1: return in.ConsumeIntegral<uint64_t>();
    case 2: return in.ConsumeIntegralInRange<int64_t>(-3, 3);
    case 3: return in.ConsumeFloatingPoint<double>();
    case 4: return kSpecial[in.ConsumeIntegralInRange<size_t>(0, std::size(kSpecial) - 1)];
    case 5: return in.ConsumeRandomLengthString(24);
    case 6: return in.ConsumeBool();
    case 7: return nullptr;
    case 8: return json::array({in.ConsumeIntegral<int64_t>()});
    default: return json::object();
  }
}

// `base` with up to 4 fuzzer-chosen values replaced.
json mutated(const json& base, FuzzedDataProvider& in) {
  json doc = base;
  const int edits = in.ConsumeIntegralInRange<int>(1, 4);
  for (int e = 0; e < edits && in.remaining_bytes() > 0; ++e) {
    std::vector<json::json_pointer> places;
    collect(doc, json::json_pointer(), places);
    if (places.empty()) break;
    doc[places[in.ConsumeIntegralInRange<size_t>(0, places.size() - 1)]] = fuzzed_value(in);
  }
  return doc;
}

// A fuzzed string may hold bytes that are not UTF-8: written as U+FFFD, as a text editor
// would save it.
std::string text(const json& doc) {
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

[[noreturn]] void bug(const std::string& what) {
  std::fprintf(stderr, "fuzz_manifest_values: %s\n", what.c_str());
  std::abort();
}

template <typename Load>
void expect_clean(const char* what, const json& doc, Load&& load) {
  try {
    load();
  } catch (const strata::Error&) {
  } catch (const std::exception& e) {
    bug(std::string(what) + ": " + e.what() + " (not a strata::Error) for " + text(doc));
  }
}

void try_checkpoint(const json& manifest) {
  const auto dir = strata::fuzz::scratch() / "step-00000001";
  std::filesystem::create_directories(dir);
  // NaN and infinity have no JSON text: dump() writes null, as a writer would.
  strata::fuzz::write_file(dir / "manifest.json", text(manifest));
  strata::fuzz::write_file(dir / "tensors.bin", base_checkpoint().second);
  expect_clean("CheckpointReader", manifest, [&] {
    strata::core::CheckpointReader reader(dir.string());
    if (reader.step() < 0) bug("CheckpointReader accepted step " + std::to_string(reader.step()));
    for (const auto& entry : reader.entries()) reader.read(entry.name);
  });
  Model model;
  expect_clean("load_checkpoint", manifest, [&] {
    const int64_t step = strata::core::load_checkpoint(dir.string(), *model.net, &model.sgd);
    if (step < 0) bug("load_checkpoint accepted step " + std::to_string(step));
    for (const auto& group : model.sgd.param_groups()) {
      const double lr = group.options().get_lr();
      if (!std::isfinite(lr) || lr < 0) bug("load_checkpoint accepted lr " + std::to_string(lr));
    }
  });
}

void try_schedule(const json& doc) {
  expect_clean("schedule_from_json", doc, [&] {
    const auto schedule = strata::parallel::schedule_from_json(doc);
    if (schedule.num_ranks < 1 || schedule.num_micro_batches < 1 || schedule.num_stages < 1)
      bug("schedule_from_json accepted a count below 1");
    strata::parallel::verify_schedule(schedule);
    strata::parallel::simulate_schedule(schedule);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  if (in.ConsumeBool()) {
    try_schedule(mutated(base_schedule(), in));
  } else {
    try_checkpoint(mutated(base_checkpoint().first, in));
  }
  return 0;
}
