// OpGraph: validation, JSON, and building it from the simulated device's reports.

#include <algorithm>
#include <queue>
#include <set>
#include <unordered_map>

#include "strata/accel/memory_plan.h"
#include "strata/core/error.h"
#include "strata/core/json_fields.h"

namespace strata::accel {

std::string to_string(TensorKind kind) {
  switch (kind) {
    case TensorKind::Input: return "input";
    case TensorKind::Weight: return "weight";
    case TensorKind::Activation: return "activation";
    case TensorKind::Output: return "output";
  }
  return "?";
}

TensorKind parse_tensor_kind(const std::string& text, const std::string& where) {
  for (auto kind :
       {TensorKind::Input, TensorKind::Weight, TensorKind::Activation, TensorKind::Output})
    if (text == to_string(kind)) return kind;
  STRATA_FAIL(where, ": got \"", text, "\", expected input, weight, activation or output");
}

namespace {

template <typename Item>
std::unordered_map<int64_t, size_t> index_by_id(const std::vector<Item>& items,
                                                const std::string& source, const char* what) {
  std::unordered_map<int64_t, size_t> index;
  for (size_t i = 0; i < items.size(); ++i)
    STRATA_CHECK(index.emplace(items[i].id, i).second, source, ": ", what, " id ", items[i].id,
                 " is declared twice (", what, "s[", index[items[i].id], "] and ", what, "s[", i,
                 "])");
  return index;
}

}  // namespace

size_t OpGraph::tensor_index(int64_t id) const {
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].id == id) return i;
  STRATA_FAIL("graph: tensor id ", id, " is not declared");
}

size_t OpGraph::op_index(int64_t id) const {
  for (size_t i = 0; i < ops.size(); ++i)
    if (ops[i].id == id) return i;
  STRATA_FAIL("graph: op id ", id, " is not declared");
}

void OpGraph::validate(const std::string& source) const {
  const auto tensor_at = index_by_id(tensors, source, "tensor");
  index_by_id(ops, source, "op");
  for (const auto& t : tensors)
    STRATA_CHECK(t.bytes > 0, source, ": tensor ", t.id, " has ", t.bytes,
                 " bytes, expected at least 1");
  std::vector<int64_t> producer(tensors.size(), -1);
  for (const auto& op : ops) {
    for (const auto* list : {&op.inputs, &op.outputs})
      for (int64_t id : *list)
        STRATA_CHECK(tensor_at.count(id), source, ": op ", op.id, " ('", op.name,
                     "') uses tensor id ", id, ", which is not declared in tensors");
    STRATA_CHECK(!op.outputs.empty(), source, ": op ", op.id, " ('", op.name,
                 "') has no outputs, expected at least one");
    for (int64_t id : op.outputs) {
      const size_t t = tensor_at.at(id);
      STRATA_CHECK(producer[t] < 0, source, ": tensor ", id, " is produced by op ", producer[t],
                   " and by op ", op.id, ", expected one producer");
      producer[t] = op.id;
      const TensorKind kind = tensors[t].kind;
      STRATA_CHECK(kind == TensorKind::Activation || kind == TensorKind::Output, source,
                   ": tensor ", id, " is produced by op ", op.id, " but is of kind ",
                   to_string(kind), ", expected activation or output");
      STRATA_CHECK(std::count(op.inputs.begin(), op.inputs.end(), id) == 0, source, ": op ", op.id,
                   " reads its own output tensor ", id);
    }
  }
  for (size_t t = 0; t < tensors.size(); ++t) {
    const TensorKind kind = tensors[t].kind;
    STRATA_CHECK(producer[t] >= 0 || kind == TensorKind::Input || kind == TensorKind::Weight,
                 source, ": tensor ", tensors[t].id, " is of kind ", to_string(kind),
                 " but no op produces it");
  }
  program_order(source);
}

std::vector<size_t> OpGraph::program_order(const std::string& source) const {
  std::unordered_map<int64_t, size_t> producer;  // tensor id -> op index
  for (size_t o = 0; o < ops.size(); ++o)
    for (int64_t id : ops[o].outputs) producer[id] = o;
  std::vector<std::vector<size_t>> consumers(ops.size());
  std::vector<size_t> waiting(ops.size(), 0);
  for (size_t o = 0; o < ops.size(); ++o) {
    std::set<size_t> from;
    for (int64_t id : ops[o].inputs) {
      auto it = producer.find(id);
      if (it != producer.end()) from.insert(it->second);
    }
    for (size_t p : from) consumers[p].push_back(o);
    waiting[o] = from.size();
  }
  // Smallest listed index first: a list already in a topological order is kept as it is.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t o = 0; o < ops.size(); ++o)
    if (waiting[o] == 0) ready.push(o);
  std::vector<size_t> order;
  while (!ready.empty()) {
    const size_t o = ready.top();
    ready.pop();
    order.push_back(o);
    for (size_t c : consumers[o])
      if (--waiting[c] == 0) ready.push(c);
  }
  if (order.size() < ops.size()) {
    size_t stuck = 0;
    while (waiting[stuck] == 0) ++stuck;
    STRATA_FAIL(source, ": the ops form a cycle (op ", ops[stuck].id, " '", ops[stuck].name,
                "' depends on itself through its inputs)");
  }
  return order;
}

int64_t OpGraph::working_set(size_t index) const {
  std::set<int64_t> ids(ops[index].inputs.begin(), ops[index].inputs.end());
  ids.insert(ops[index].outputs.begin(), ops[index].outputs.end());
  int64_t bytes = 0;
  for (int64_t id : ids) bytes += tensors[tensor_index(id)].bytes;
  return bytes;
}

bool OpGraph::is_graph_output(size_t t) const {
  if (tensors[t].kind == TensorKind::Output) return true;
  if (tensors[t].kind != TensorKind::Activation) return false;
  for (const auto& op : ops)
    if (std::count(op.inputs.begin(), op.inputs.end(), tensors[t].id)) return false;
  return true;
}

int64_t OpGraph::compulsory_bytes() const {
  std::set<int64_t> used;
  for (const auto& op : ops) used.insert(op.inputs.begin(), op.inputs.end());
  int64_t bytes = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const bool offchip_source =
        tensors[t].kind == TensorKind::Input || tensors[t].kind == TensorKind::Weight;
    if ((offchip_source && used.count(tensors[t].id)) || is_graph_output(t))
      bytes += tensors[t].bytes;
  }
  return bytes;
}

nlohmann::ordered_json OpGraph::to_json() const {
  nlohmann::ordered_json out;
  out["tensors"] = nlohmann::ordered_json::array();
  for (const auto& t : tensors)
    out["tensors"].push_back({{"id", t.id}, {"bytes", t.bytes}, {"kind", to_string(t.kind)}});
  out["ops"] = nlohmann::ordered_json::array();
  for (const auto& op : ops)
    out["ops"].push_back(
        {{"id", op.id}, {"name", op.name}, {"inputs", op.inputs}, {"outputs", op.outputs}});
  return out;
}

OpGraph OpGraph::from_json(const nlohmann::json& json, const std::string& source) {
  // A whole memory-plan document (its "graph"), or the graph object alone.
  const core::JsonField top(json, source);
  const core::JsonField graph = json.is_object() && json.contains("graph") ? top["graph"] : top;
  graph.object();
  OpGraph g;
  for (const auto& t : graph["tensors"].elements()) {
    GraphTensor tensor;
    tensor.id = t["id"].integer(0);
    tensor.bytes = t["bytes"].integer(1, int64_t(1) << 50);
    tensor.kind = parse_tensor_kind(t["kind"].string(), t["kind"].name());
    g.tensors.push_back(tensor);
  }
  for (const auto& o : graph["ops"].elements()) {
    GraphOp op;
    op.id = o["id"].integer(0);
    op.name = o.has("name") ? o["name"].string() : "op" + std::to_string(op.id);
    op.inputs = o["inputs"].integers(0);
    op.outputs = o["outputs"].integers(0);
    g.ops.push_back(std::move(op));
  }
  g.validate(source);
  return g;
}

int64_t GraphRecorder::tensor_for_input(const DeviceTensorRef& ref) {
  if (ref.storage != 0) {
    auto it = current_.find(ref.storage);
    // Memory freed and reused by a tensor copied in from the CPU (a transfer, not an op)
    // looks like the storage it replaced; a different size tells them apart.
    if (it != current_.end() && graph_.tensors[size_t(it->second)].bytes == ref.bytes)
      return it->second;
  }
  const int64_t id = int64_t(graph_.tensors.size());
  graph_.tensors.push_back({id, std::max<int64_t>(ref.bytes, 1),
                            ref.parameter ? TensorKind::Weight : TensorKind::Input});
  if (ref.storage != 0) current_[ref.storage] = id;
  return id;
}

void GraphRecorder::on_op(const DeviceOp& op) {
  std::lock_guard<std::mutex> lock(mutex_);
  GraphOp g;
  g.id = int64_t(graph_.ops.size());
  g.name = op.layer.empty() ? op.name : op.layer + "/" + op.name;
  for (const auto& ref : op.inputs) {
    const int64_t id = tensor_for_input(ref);
    if (std::count(g.inputs.begin(), g.inputs.end(), id) == 0) g.inputs.push_back(id);
  }
  std::set<uint64_t> written;
  for (const auto& ref : op.outputs) {
    if (ref.storage != 0 && !written.insert(ref.storage).second) continue;
    const int64_t id = int64_t(graph_.tensors.size());
    graph_.tensors.push_back({id, std::max<int64_t>(ref.bytes, 1), TensorKind::Activation});
    if (ref.storage != 0) current_[ref.storage] = id;
    g.outputs.push_back(id);
  }
  if (!g.outputs.empty()) graph_.ops.push_back(std::move(g));
}

OpGraph GraphRecorder::graph() const {
  std::lock_guard<std::mutex> lock(mutex_);
  OpGraph g = graph_;
  std::set<int64_t> consumed;
  for (const auto& op : g.ops) consumed.insert(op.inputs.begin(), op.inputs.end());
  for (auto& t : g.tensors)
    if (t.kind == TensorKind::Activation && !consumed.count(t.id)) t.kind = TensorKind::Output;
  return g;
}

}  // namespace strata::accel
