#include "strata/moe/expert_parallel.h"

#include <torch/torch.h>

#include <numeric>

#include "strata/core/error.h"
#include "strata/moe/moe_layer.h"

namespace strata::moe {

namespace {

using parallel::CommunicatorPtr;

// The communicator rides in the autograd context as a capsule (saved_data holds IValues).
struct GroupCapsule : torch::CustomClassHolder {
  explicit GroupCapsule(CommunicatorPtr group_) : group(std::move(group_)) {}
  CommunicatorPtr group;
};

int64_t sum(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{0});
}

at::Tensor exchange(const at::Tensor& x, parallel::Communicator& group,
                    const std::vector<int64_t>& send_splits,
                    const std::vector<int64_t>& recv_splits) {
  std::vector<int64_t> shape = x.sizes().vec();
  shape[0] = sum(recv_splits);
  at::Tensor out = at::empty(shape, x.options());
  group.alltoall(x.contiguous(), out, send_splits, recv_splits)->wait();
  return out;
}

struct AllToAll : torch::autograd::Function<AllToAll> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const CommunicatorPtr& group, const std::vector<int64_t>& send_splits,
                            const std::vector<int64_t>& recv_splits) {
    ctx->saved_data["group"] = c10::IValue::make_capsule(c10::make_intrusive<GroupCapsule>(group));
    ctx->saved_data["send"] = send_splits;
    ctx->saved_data["recv"] = recv_splits;
    return exchange(x, *group, send_splits, recv_splits);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto capsule =
        c10::static_intrusive_pointer_cast<GroupCapsule>(ctx->saved_data["group"].toCapsule());
    const std::vector<int64_t> send = ctx->saved_data["send"].toIntVector();
    const std::vector<int64_t> recv = ctx->saved_data["recv"].toIntVector();
    // The rows came from where they were sent to: the same exchange with the roles swapped.
    return {exchange(grads[0], *capsule->group, recv, send), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

at::Tensor all_to_all(const at::Tensor& x, const CommunicatorPtr& group,
                      const std::vector<int64_t>& send_splits,
                      const std::vector<int64_t>& recv_splits) {
  STRATA_CHECK(group != nullptr, "all_to_all: got a null group");
  return AllToAll::apply(x, group, send_splits, recv_splits);
}

at::Tensor run_experts_parallel(const at::Tensor& x_sorted, const std::vector<int64_t>& counts,
                                const CommunicatorPtr& group, const LocalExperts& run_local) {
  const int64_t ranks = group->size();
  const int64_t experts = static_cast<int64_t>(counts.size());
  STRATA_CHECK(experts % ranks == 0, "expert parallelism: ", experts,
               " experts are not divisible by the expert-parallel size ", ranks);
  const int64_t local = experts / ranks;

  // 1. Every rank learns how many rows it receives from each rank for each of its experts:
  //    received_counts[s * local + j] = rows from rank s for local expert j.
  at::Tensor send_counts = at::tensor(counts, at::kLong);
  at::Tensor recv_counts = at::empty({experts}, at::kLong);
  group->alltoall(send_counts, recv_counts)->wait();
  const std::vector<int64_t> received(recv_counts.data_ptr<int64_t>(),
                                      recv_counts.data_ptr<int64_t>() + experts);
  std::vector<int64_t> send_splits(ranks, 0), recv_splits(ranks, 0);
  for (int64_t e = 0; e < experts; ++e) {
    send_splits[e / local] += counts[e];
    recv_splits[e / local] += received[e];
  }

  // 2. Tokens to their experts' ranks; they arrive grouped by source rank, then expert.
  const at::Tensor arrived = all_to_all(x_sorted, group, send_splits, recv_splits);

  // 3. Regroup by local expert (source rank order within an expert), run, and put back.
  std::vector<int64_t> by_expert, local_counts(local, 0);
  std::vector<int64_t> start(experts);  // start[s * local + j]: offset of that block
  std::exclusive_scan(received.begin(), received.end(), start.begin(), int64_t{0});
  for (int64_t j = 0; j < local; ++j) {
    for (int64_t s = 0; s < ranks; ++s) {
      const int64_t block = s * local + j;
      for (int64_t i = 0; i < received[block]; ++i) by_expert.push_back(start[block] + i);
      local_counts[j] += received[block];
    }
  }
  const at::Tensor order = at::tensor(by_expert, at::kLong);
  const at::Tensor outputs = run_local(arrived.index_select(0, order), local_counts);
  const at::Tensor inverse =
      at::empty_like(order).scatter_(0, order, at::arange(order.numel(), order.options()));
  const at::Tensor back = outputs.index_select(0, inverse);

  // 4. Outputs back to the ranks their tokens came from.
  return all_to_all(back, group, recv_splits, send_splits);
}

std::vector<std::string> expert_parameter_names(const torch::nn::Module& model) {
  std::vector<std::string> names;
  for (const auto& item : model.named_modules()) {
    const auto* layer = item.value()->as<MoELayerImpl>();
    if (layer == nullptr || layer->expert_parallel_size() == 1) continue;
    for (const auto& parameter : layer->expert_parameters()) {
      names.push_back(item.key().empty() ? parameter.key() : item.key() + "." + parameter.key());
    }
  }
  return names;
}

}  // namespace strata::moe
