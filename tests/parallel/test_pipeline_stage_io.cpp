// Several tensors between pipeline stages (stage_io.h): a list message carries tensors of
// any dtypes and shapes over every backend; a model whose layers pass {hidden, mask, aux}
// gives the single-process loss and gradients under every registered schedule, K in {2, 4}
// and M in {1, 3, 8}, with recomputation and a sequence length that changes between
// steps; a mask gets no gradient; bf16 messages cast only the fp32 tensors.
#include <torch/torch.h>

#include <thread>

#include "comm_test_support.h"
#include "pipeline_stages.h"
#include "sequential_schedule.h"
#include "strata/core/error.h"
#include "strata/parallel/comm/tensor_message.h"
#include "strata/parallel/control/control_plane.h"
#include "strata/parallel/pipeline/executor.h"
#include "strata/parallel/pipeline/partition.h"
#include "strata/parallel/pipeline/schedule_registry.h"
#include "strata/parallel/pipeline/stage_io.h"

namespace strata::parallel::testing {
namespace {

constexpr int64_t kWidth = 6;
constexpr double kTolerance = 1e-5;  // relative, float32

// ---- Messages of several tensors ------------------------------------------------------

// Rank 0 sends lists of mixed dtypes and shapes (an empty list, a list of one, a list with
// an empty tensor) and a plain tensor on one tag; rank 1 receives each as it was sent.
void check_list_messages(Communicator& comm) {
  const std::vector<StageIO> lists = {
      {at::arange(6, at::kFloat).reshape({2, 3}), at::tensor({1, 0, 1}, at::kLong),
       at::tensor({1, 0}, at::kLong).to(at::kBool)},
      {},
      {at::full({4}, 2.5, at::kDouble)},
      {at::empty({0, 5}, at::kFloat), at::arange(3, at::kInt)},
  };
  const at::Tensor plain = at::arange(4, at::kShort);
  constexpr int kTag = 7;
  if (comm.rank() == 0) {
    std::vector<WorkPtr> works;
    for (const auto& list : lists)
      for (auto& w : isend_tensors(comm, list, 1, kTag)) works.push_back(w);
    for (auto& w : comm.isend_tensor(plain, 1, kTag)) works.push_back(w);
    for (auto& w : works) w->wait();
  } else if (comm.rank() == 1) {
    for (const auto& list : lists) {
      TensorWorkPtr work = comm.irecv_tensor(0, kTag);
      work->wait();
      EXPECT_TRUE(received_list(*work));
      const auto received = received_tensors(*work);
      ASSERT_EQ(received.size(), list.size());
      for (size_t i = 0; i < list.size(); ++i) {
        EXPECT_EQ(received[i].scalar_type(), list[i].scalar_type());
        EXPECT_EQ(received[i].sizes(), list[i].sizes());
        EXPECT_TRUE(at::equal(received[i], list[i]));
      }
      if (list.size() == 1) {
        EXPECT_TRUE(at::equal(work->tensor(), list[0]));
      } else {
        expect_error([&] { work->tensor(); }, "expected one tensor");
      }
    }
    // is_completed() drives the header and data receives (Gloo's Works complete in wait()).
    TensorWorkPtr work = comm.irecv_tensor(0, kTag);
    for (int i = 0; i < 1000 && !work->is_completed(); ++i) std::this_thread::yield();
    work->wait();
    EXPECT_FALSE(received_list(*work));
    EXPECT_TRUE(at::equal(work->tensor(), plain));
  }
}

TEST(TensorListMessage, InProcessHandsListsOver) { run_in_process(2, check_list_messages); }

TEST(TensorListMessage, GlooSendsHeadersAndData) {
  if (!gloo_available()) GTEST_SKIP() << "built without Gloo";
  run_gloo(2, check_list_messages);
}

TEST(MpiTensorListMessage, SendsHeadersAndData) { run_mpi(check_list_messages); }

TEST(TensorListMessage, RejectsTooManyTensors) {
  const StageIO many(kTensorListMaxTensors + 1, at::zeros({1}));
  expect_error([&] { tensor_list_header(many); }, "a list of 9 tensors, expected at most 8");
  run_in_process(2, [&](Communicator& comm) {
    if (comm.rank() == 0)
      expect_error([&] { isend_tensors(comm, many, 1, 0); }, "expected at most 8");
  });
}

// ---- Stages that pass several tensors -------------------------------------------------

// Tensor x [B, T, W] -> {x, mask [B, T] (int64: the positions whose first feature is
// positive), aux [B, T] (float)}.
class SplitImpl : public torch::nn::Module {
 public:
  StageIO forward(const at::Tensor& x) {
    return {x, (x.select(-1, 0) > 0).to(at::kLong), x.sum(-1)};
  }
};
TORCH_MODULE(Split);

// {h, mask, aux} -> {linear(h) masked, plus aux, mask, aux mixed with h}: gradients flow
// into h and aux, none into the mask.
class MaskedLinearImpl : public torch::nn::Module {
 public:
  MaskedLinearImpl() : linear_(register_module("linear", torch::nn::Linear(kWidth, kWidth))) {}
  StageIO forward(const StageIO& in) {
    const at::Tensor& h = in.at(0);
    const at::Tensor& mask = in.at(1);
    const at::Tensor& aux = in.at(2);
    at::Tensor out = torch::tanh(linear_(h)) * mask.unsqueeze(-1) + 0.1 * aux.unsqueeze(-1);
    return {out, mask, 0.5 * aux + out.mean(-1)};
  }

 private:
  torch::nn::Linear linear_;
};
TORCH_MODULE(MaskedLinear);

// {h, mask, aux} -> h + aux where the mask is set: one tensor again.
class JoinImpl : public torch::nn::Module {
 public:
  at::Tensor forward(const StageIO& in) { return in.at(0) + (in.at(2) * in.at(1)).unsqueeze(-1); }
};
TORCH_MODULE(Join);

// 12 layers, so that on 2, 4 and 8 stages lists cross most cuts: Linear, Split,
// MaskedLinear x 8, Join, Linear.
torch::nn::Sequential make_model() {
  torch::nn::Sequential model;
  model->push_back(torch::nn::Linear(kWidth, kWidth));
  model->push_back(Split());
  for (int i = 0; i < 8; ++i) model->push_back(MaskedLinear());
  model->push_back(Join());
  model->push_back(torch::nn::Linear(kWidth, kWidth));
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(13);
  for (auto& p : model->parameters()) p.copy_(at::randn(p.sizes(), gen) * 0.5);
  return model;
}

double relative_error(const at::Tensor& actual, const at::Tensor& expected) {
  const double scale = expected.norm().item<double>();
  return (actual - expected).norm().item<double>() / (scale > 0 ? scale : 1);
}

at::Tensor mse(const at::Tensor& output, const at::Tensor& target) {
  return torch::mse_loss(output, target);
}

// Per step, a batch of 24 sequences whose length changes: 5, then 3.
struct Batch {
  at::Tensor inputs, targets;
};
Batch make_batch(int64_t length, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return {at::randn({24, length, kWidth}, gen), at::randn({24, length, kWidth}, gen)};
}
const std::vector<int64_t> kLengths = {5, 3};

struct StageIoCase {
  std::string schedule;
  int ranks = 2, micro_batches = 1;
  Recompute recompute = Recompute::Never;
};

int virtual_stages(const std::string& schedule) {
  return schedule_entry(schedule).supports_virtual_stages ? 2 : 1;
}

// Two steps (two sequence lengths) on the pipeline, gradients accumulating, against the
// same two steps of the whole model in one process.
void check_stage_io(Communicator& comm, const StageIoCase& c,
                    core::Precision precision = core::Precision::Fp32) {
  const PipelineSchedule schedule =
      make_pipeline_schedule(c.schedule, comm.size(), c.micro_batches, virtual_stages(c.schedule));
  auto model = make_model();
  auto stages = my_stages(model, schedule, comm.rank());
  PipelineExecutor executor(stages, comm.shared_from_this(), schedule, mse,
                            PipelineExecutorOptions().recompute(c.recompute).precision(precision));
  auto reference = make_model();
  // bf16 messages round the fp32 tensors between stages to 8 bits of mantissa.
  const double tolerance = precision == core::Precision::Fp32 ? kTolerance : 5e-2;
  for (size_t step = 0; step < kLengths.size(); ++step) {
    SCOPED_TRACE("length " + std::to_string(kLengths[step]));
    const Batch batch = make_batch(kLengths[step], 5 + step);
    const double loss = executor.train_step(batch.inputs, batch.targets);
    at::Tensor expected = mse(reference->forward<at::Tensor>(batch.inputs), batch.targets);
    expected.backward();
    EXPECT_NEAR(loss, expected.item<double>(), tolerance * expected.item<double>());
  }
  const auto expected = reference->named_parameters();
  for (const auto& [s, stage] : stages)
    for (const auto& p : stage->named_parameters()) {
      SCOPED_TRACE("stage " + std::to_string(s) + " parameter " + p.key());
      ASSERT_TRUE(p.value().grad().defined());
      EXPECT_LT(relative_error(p.value().grad(), expected[p.key()].grad()), tolerance);
    }
}

std::vector<StageIoCase> stage_io_cases() {
  register_sequential_schedule();
  std::vector<StageIoCase> cases;
  for (const auto& name : schedule_names())
    for (int ranks : {2, 4})
      for (int micro_batches : {1, 3, 8}) {
        // The one shape interleaving refuses (its own test checks the refusal).
        if (virtual_stages(name) > 1 && micro_batches % ranks != 0) continue;
        cases.push_back({name, ranks, micro_batches,
                         micro_batches == 3 ? Recompute::Always : Recompute::Never});
      }
  return cases;
}

std::string stage_io_name(const ::testing::TestParamInfo<StageIoCase>& info) {
  std::string name = info.param.schedule + "_K" + std::to_string(info.param.ranks) + "_M" +
                     std::to_string(info.param.micro_batches) + "_" +
                     to_string(info.param.recompute);
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

class PipelineStageIo : public ::testing::TestWithParam<StageIoCase> {};

TEST_P(PipelineStageIo, SeveralTensorsBetweenStagesMatchSingleProcess) {
  run_in_process(GetParam().ranks, [&](Communicator& comm) { check_stage_io(comm, GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(EverySchedule, PipelineStageIo, ::testing::ValuesIn(stage_io_cases()),
                         stage_io_name);

TEST(PipelineStageIoPrecision, Bf16MessagesCastOnlyFloatTensors) {
  run_in_process(2, [](Communicator& comm) {
    check_stage_io(comm, {"1f1b", 2, 4, Recompute::ExceptLast}, core::Precision::Bf16);
  });
}

TEST(PipelineStageIoErrors, LastStageMustEndInOneTensor) {
  run_in_process(1, [](Communicator& comm) {
    const auto schedule = make_pipeline_schedule("gpipe", 1, 2);
    torch::nn::Sequential stage(torch::nn::Linear(kWidth, kWidth), Split());
    PipelineExecutor executor({{0, stage}}, comm.shared_from_this(), schedule, mse);
    const Batch batch = make_batch(2, 1);
    expect_error([&] { executor.train_step(batch.inputs, batch.targets); },
                 "the last stage (0) returned a StageIO of 3 tensors, expected one tensor");
  });
}

// Over the whole mpirun job, K = the world size.
TEST(MpiPipelineStageIo, SeveralTensorsBetweenStagesMatchSingleProcess) {
  run_mpi([](Communicator& comm) {
    check_stage_io(comm, {"1f1b", comm.size(), 4, Recompute::Always});
    check_stage_io(comm, {"zb-h1", comm.size(), 3});
    check_stage_io(comm, {"interleaved", comm.size(), 2 * comm.size()});
    check_stage_io(comm, {"1f1b", comm.size(), 2}, core::Precision::Bf16);
  });
}

}  // namespace
}  // namespace strata::parallel::testing
