#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "checkpoint_compare.h"
#include "strata/core/checkpoint.h"
#include "strata/core/models/fmnist_models.h"
#include "test_util.h"

using namespace strata::core;
using strata::test::error_of;
using strata::test::TempDir;
using testing::HasSubstr;
namespace fs = std::filesystem;
namespace nn = torch::nn;

namespace {

// A model with buffers (BatchNorm's running statistics and its int64 batch counter).
nn::Sequential small_model() {
  return nn::Sequential(nn::Linear(8, 16), nn::BatchNorm1d(16), nn::ReLU(), nn::Linear(16, 4));
}

void train(nn::Sequential& model, torch::optim::Optimizer& optimizer, int steps, int seed) {
  torch::manual_seed(seed);
  model->train();
  for (int i = 0; i < steps; ++i) {
    optimizer.zero_grad();
    const at::Tensor x = torch::randn({32, 8});
    const at::Tensor loss = model->forward(x).pow(2).mean();
    loss.backward();
    optimizer.step();
  }
}

// Copies of every parameter and buffer, to prove a failed load changed nothing.
std::vector<at::Tensor> snapshot(const nn::Module& model) {
  std::vector<at::Tensor> out;
  for (const auto& p : model.parameters()) out.push_back(p.detach().clone());
  for (const auto& b : model.buffers()) out.push_back(b.detach().clone());
  return out;
}

void expect_bit_identical(const nn::Module& model, const std::vector<at::Tensor>& before) {
  const auto now = snapshot(model);
  ASSERT_EQ(now.size(), before.size());
  for (size_t i = 0; i < now.size(); ++i) EXPECT_TRUE(torch::equal(now[i], before[i])) << i;
}

void expect_same_model(const nn::Module& a, const nn::Module& b) {
  expect_bit_identical(a, snapshot(b));
}

// The loaded optimizer holds the saved one's state, field by field, by parameter name;
// then one more identical step on both gives equal parameters, so the restored state is
// bound to the right parameters.
void expect_same_next_step(nn::Sequential& a, torch::optim::Optimizer& oa, nn::Sequential& b,
                           torch::optim::Optimizer& ob) {
  EXPECT_THAT(strata::test::tensor_differences(strata::test::optimizer_state(*a, oa),
                                               strata::test::optimizer_state(*b, ob)),
              testing::IsEmpty());
  train(a, oa, 1, 99);
  train(b, ob, 1, 99);
  expect_same_model(*a, *b);
}

nlohmann::json read_manifest(const std::string& path) {
  std::ifstream in(path + "/manifest.json");
  return nlohmann::json::parse(in);
}

}  // namespace

TEST(Checkpoint, PathsAreZeroPadded) {
  EXPECT_EQ(checkpoint_path("ckpt", 1200), "ckpt/step-00001200");
  EXPECT_EQ(checkpoint_path("a/b/", 0), "a/b/step-00000000");
  EXPECT_THAT(error_of([] { checkpoint_path("ckpt", -1); }), HasSubstr("step -1"));
}

TEST(Checkpoint, RoundTripWithSgdMomentum) {
  TempDir dir;
  torch::manual_seed(1);
  auto model = small_model();
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  train(model, sgd, 3, 2);
  static_cast<torch::optim::SGDOptions&>(sgd.param_groups()[0].options()).lr(0.02);
  const std::string path = checkpoint_path(dir.path(), 3);
  save_checkpoint(path, *model, &sgd, 3, {{"epoch", 1}, {"note", "hello"}});

  const auto manifest = read_manifest(path);
  EXPECT_EQ(manifest["format"], "strata-checkpoint");
  EXPECT_EQ(manifest["step"], 3);
  EXPECT_EQ(manifest["optimizer"]["type"], "SGD");
  EXPECT_EQ(manifest["optimizer"]["lr"], nlohmann::json::array({0.02}));
  std::vector<std::string> names;
  uint64_t total = 0;
  for (const auto& t : manifest["tensors"]) {
    names.push_back(t["name"]);
    total += t["nbytes"].get<uint64_t>();
  }
  EXPECT_THAT(names, testing::Contains("0.weight"));
  EXPECT_THAT(names, testing::Contains("1.running_mean"));
  EXPECT_THAT(names, testing::Contains("1.num_batches_tracked"));
  EXPECT_THAT(names, testing::Contains("optimizer/3.bias/momentum_buffer"));
  EXPECT_EQ(names.size(), 6u + 3u + 6u);  // 6 parameters, 3 buffers, 6 momentum buffers
  EXPECT_EQ(fs::file_size(path + "/tensors.bin"), total);
  for (const auto& t : manifest["tensors"]) {
    if (t["name"] == "1.num_batches_tracked") {
      EXPECT_EQ(t["dtype"], "int64");
      EXPECT_EQ(t["kind"], "buffer");
    }
    if (t["name"] == "0.weight") {
      EXPECT_EQ(t["shape"], nlohmann::json::array({16, 8}));
    }
  }

  torch::manual_seed(123);  // different initial weights
  auto copy = small_model();
  torch::optim::SGD copy_sgd(copy->parameters(), torch::optim::SGDOptions(0.5).momentum(0.9));
  nlohmann::json extra;
  EXPECT_EQ(load_checkpoint(path, *copy, &copy_sgd, &extra), 3);
  EXPECT_EQ(extra, nlohmann::json({{"epoch", 1}, {"note", "hello"}}));
  expect_same_model(*model, *copy);
  EXPECT_EQ(copy->named_buffers()["1.num_batches_tracked"].item<int64_t>(), 3);
  EXPECT_DOUBLE_EQ(copy_sgd.param_groups()[0].options().get_lr(), 0.02);
  EXPECT_EQ(copy_sgd.state().size(), 6u);
  expect_same_next_step(model, sgd, copy, copy_sgd);
}

TEST(Checkpoint, RoundTripWithAdamAndAdamW) {
  TempDir dir;
  torch::manual_seed(1);
  auto model = small_model();
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-2));
  train(model, adam, 4, 2);
  save_checkpoint(dir / "adam", *model, &adam, 4);
  const auto manifest = read_manifest(dir / "adam");
  bool saw_step = false;
  for (const auto& t : manifest["tensors"]) {
    if (t["name"] == "optimizer/0.weight/step") {
      saw_step = true;
      EXPECT_EQ(t["dtype"], "int64");
      EXPECT_EQ(t["shape"], nlohmann::json::array());
    }
  }
  EXPECT_TRUE(saw_step);

  torch::manual_seed(5);
  auto copy = small_model();
  torch::optim::Adam copy_adam(copy->parameters(), torch::optim::AdamOptions(1e-2));
  EXPECT_EQ(load_checkpoint(dir / "adam", *copy, &copy_adam), 4);
  expect_same_model(*model, *copy);
  expect_same_next_step(model, adam, copy, copy_adam);

  // AdamW with amsgrad also has max_exp_avg_sq.
  torch::manual_seed(1);
  auto w_model = small_model();
  torch::optim::AdamW adamw(w_model->parameters(), torch::optim::AdamWOptions(1e-2).amsgrad(true));
  train(w_model, adamw, 2, 3);
  save_checkpoint(dir / "adamw", *w_model, &adamw, 2);
  EXPECT_THAT(read_manifest(dir / "adamw").dump(), HasSubstr("optimizer/3.weight/max_exp_avg_sq"));
  torch::manual_seed(6);
  auto w_copy = small_model();
  torch::optim::AdamW w_copy_opt(w_copy->parameters(),
                                 torch::optim::AdamWOptions(1e-2).amsgrad(true));
  load_checkpoint(dir / "adamw", *w_copy, &w_copy_opt);
  expect_same_next_step(w_model, adamw, w_copy, w_copy_opt);
}

TEST(Checkpoint, WithoutOptimizer) {
  TempDir dir;
  auto model = small_model();
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  train(model, sgd, 1, 2);
  save_checkpoint(dir / "c", *model, nullptr, 7);
  EXPECT_TRUE(read_manifest(dir / "c")["optimizer"].is_null());

  auto copy = small_model();
  torch::optim::SGD copy_sgd(copy->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  train(copy, copy_sgd, 1, 3);  // leaves momentum buffers behind
  ASSERT_FALSE(copy_sgd.state().empty());
  EXPECT_EQ(load_checkpoint(dir / "c", *copy, &copy_sgd), 7);
  expect_same_model(*model, *copy);
  EXPECT_TRUE(copy_sgd.state().empty());  // the checkpoint had none

  // A checkpoint with optimizer state loads into a model alone, too.
  save_checkpoint(dir / "d", *model, &sgd, 8);
  auto third = small_model();
  EXPECT_EQ(load_checkpoint(dir / "d", *third, nullptr), 8);
  expect_same_model(*model, *third);
}

TEST(Checkpoint, ReplacesAnExistingCheckpoint) {
  TempDir dir;
  auto model = small_model();
  save_checkpoint(dir / "c/", *model, nullptr, 1);
  torch::manual_seed(9);
  auto other = small_model();
  save_checkpoint(dir / "c", *other, nullptr, 2);
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir.path())) entries.push_back(e.path().filename());
  EXPECT_THAT(entries, testing::ElementsAre("c"));  // no .tmp- or .old- left behind
  EXPECT_EQ(load_checkpoint(dir / "c", *model, nullptr), 2);
  expect_same_model(*model, *other);
}

TEST(Checkpoint, UnsupportedOptimizerIsAnError) {
  TempDir dir;
  auto model = small_model();
  torch::optim::RMSprop rms(model->parameters(), torch::optim::RMSpropOptions(0.01));
  const std::string message = error_of([&] { save_checkpoint(dir / "c", *model, &rms, 0); });
  EXPECT_THAT(message, HasSubstr("torch::optim::RMSprop"));
  EXPECT_THAT(message, HasSubstr("not supported"));
  EXPECT_FALSE(fs::exists(dir / "c"));
}

TEST(Checkpoint, LatestPicksHighestCompleteStep) {
  TempDir dir;
  EXPECT_EQ(latest_checkpoint(dir / "missing"), std::nullopt);
  EXPECT_EQ(latest_checkpoint(dir.path()), std::nullopt);
  auto model = small_model();
  save_checkpoint(checkpoint_path(dir.path(), 5), *model, nullptr, 5);
  save_checkpoint(checkpoint_path(dir.path(), 20), *model, nullptr, 20);
  save_checkpoint(checkpoint_path(dir.path(), 9), *model, nullptr, 9);
  // An unfinished save of step 100 and a directory without a manifest are not checkpoints.
  save_checkpoint(dir / "scratch", *model, nullptr, 100);
  fs::rename(dir / "scratch", checkpoint_path(dir.path(), 100) + ".tmp-4242");
  fs::create_directories(checkpoint_path(dir.path(), 300));
  EXPECT_EQ(latest_checkpoint(dir.path()), checkpoint_path(dir.path(), 20));
}

// Each broken checkpoint gives its own error and leaves model and optimizer untouched.
class CorruptCheckpoint : public testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(1);
    auto source = small_model();
    torch::optim::SGD sgd(source->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    train(source, sgd, 2, 2);
    path_ = dir_ / "ckpt";
    save_checkpoint(path_, *source, &sgd, 2);

    torch::manual_seed(2);
    model_ = small_model();
    optimizer_ = std::make_unique<torch::optim::SGD>(model_->parameters(),
                                                     torch::optim::SGDOptions(0.3).momentum(0.5));
    train(model_, *optimizer_, 1, 4);
    before_ = snapshot(*model_);
    momentum_before_ = momentum();
  }

  // Loads, expects an error containing `expected`, and checks nothing changed.
  void expect_failure(const std::string& expected) {
    const std::string message =
        error_of([&] { load_checkpoint(path_, *model_, optimizer_.get()); });
    EXPECT_THAT(message, HasSubstr(expected));
    expect_bit_identical(*model_, before_);
    const auto now = momentum();
    ASSERT_EQ(now.size(), momentum_before_.size());
    for (size_t i = 0; i < now.size(); ++i) EXPECT_TRUE(torch::equal(now[i], momentum_before_[i]));
    EXPECT_DOUBLE_EQ(optimizer_->param_groups()[0].options().get_lr(), 0.3);
  }

  std::vector<at::Tensor> momentum() const {
    std::vector<at::Tensor> out;
    for (const auto& [key, state] : optimizer_->state()) {
      out.push_back(static_cast<torch::optim::SGDParamState&>(*state).momentum_buffer().clone());
    }
    return out;
  }

  std::string bin() const { return path_ + "/tensors.bin"; }

  TempDir dir_;
  std::string path_;
  nn::Sequential model_{nullptr};
  std::unique_ptr<torch::optim::SGD> optimizer_;
  std::vector<at::Tensor> before_;
  std::vector<at::Tensor> momentum_before_;
};

TEST_F(CorruptCheckpoint, LoadsWhenIntact) {
  EXPECT_EQ(load_checkpoint(path_, *model_, optimizer_.get()), 2);
}

TEST_F(CorruptCheckpoint, MissingManifest) {
  fs::remove(path_ + "/manifest.json");
  expect_failure(path_ + ": not a strata checkpoint (manifest.json missing)");
}

TEST_F(CorruptCheckpoint, MissingDirectory) {
  path_ = dir_ / "nothing-here";
  expect_failure("does not exist");
}

TEST_F(CorruptCheckpoint, ManifestNotJson) {
  strata::test::write_file(path_ + "/manifest.json", "{\"format\": ");
  expect_failure("manifest.json: not JSON (line 1, column 12)");
}

TEST_F(CorruptCheckpoint, WrongFormat) {
  auto manifest = read_manifest(path_);
  manifest["format"] = "something-else";
  strata::test::write_file(path_ + "/manifest.json", manifest.dump());
  expect_failure(
      "manifest.json: field 'format': got \"something-else\", expected \"strata-checkpoint\"");
}

TEST_F(CorruptCheckpoint, FlippedByte) {
  std::string bytes = strata::test::read_file(bin());
  bytes[bytes.size() / 2] ^= 0x10;
  strata::test::write_file(bin(), bytes);
  expect_failure("checksum mismatch (corrupt checkpoint");
}

TEST_F(CorruptCheckpoint, FlippedByteInLastTensor) {
  // The last tensor is optimizer state: it too is verified before the model changes.
  std::string bytes = strata::test::read_file(bin());
  bytes[bytes.size() - 1] ^= 0x01;
  strata::test::write_file(bin(), bytes);
  expect_failure("tensor 'optimizer/3.bias/momentum_buffer': checksum mismatch");
}

TEST_F(CorruptCheckpoint, TruncatedTensors) {
  const auto size = fs::file_size(bin());
  fs::resize_file(bin(), size - 10);
  expect_failure("tensors.bin is truncated: " + std::to_string(size - 10) + " bytes, expected " +
                 std::to_string(size));
}

TEST_F(CorruptCheckpoint, MissingTensorsFile) {
  fs::remove(bin());
  expect_failure("tensors.bin: no such file");
}

TEST_F(CorruptCheckpoint, DifferentModel) {
  save_checkpoint(path_, *make_fmnist_mlp(), nullptr, 1);
  expect_failure("checkpoint " + path_ +
                 " has no tensor for parameter '0.weight' — was it saved from another model?");
}

TEST_F(CorruptCheckpoint, ExtraTensor) {
  // The model is a prefix of the saved one: everything it needs is there, but not all used.
  auto bigger = small_model();
  bigger->push_back(nn::Linear(4, 4));
  save_checkpoint(path_, *bigger, nullptr, 1);
  expect_failure("has tensor '4.weight' the model lacks");
}

TEST_F(CorruptCheckpoint, ShapeMismatch) {
  auto wide = nn::Sequential(nn::Linear(8, 32), nn::BatchNorm1d(16), nn::ReLU(), nn::Linear(16, 4));
  save_checkpoint(path_, *wide, nullptr, 1);
  expect_failure("parameter '0.weight': shape [32, 8] in checkpoint, [16, 8] in the model");
}

TEST_F(CorruptCheckpoint, DtypeMismatch) {
  auto doubled = small_model();
  doubled->to(torch::kDouble);
  save_checkpoint(path_, *doubled, nullptr, 1);
  expect_failure("parameter '0.weight': dtype float64 in checkpoint, float32 in the model");
}

TEST_F(CorruptCheckpoint, OtherOptimizerType) {
  auto source = small_model();
  torch::optim::Adam adam(source->parameters(), torch::optim::AdamOptions(1e-3));
  train(source, adam, 1, 2);
  save_checkpoint(path_, *source, &adam, 1);
  expect_failure("holds Adam optimizer state, the optimizer is SGD");
}

TEST_F(CorruptCheckpoint, TamperedNbytes) {
  auto manifest = read_manifest(path_);
  manifest["tensors"][0]["nbytes"] = 12;
  strata::test::write_file(path_ + "/manifest.json", manifest.dump());
  expect_failure("tensor '0.weight' has nbytes 12, expected 512");
}

TEST_F(CorruptCheckpoint, MalformedEntry) {
  auto manifest = read_manifest(path_);
  manifest["tensors"][1].erase("xxh64");
  strata::test::write_file(path_ + "/manifest.json", manifest.dump());
  expect_failure("manifest.json: missing field 'tensors[1].xxh64', expected a string");
}

TEST_F(CorruptCheckpoint, OtherParamGroupCount) {
  auto manifest = read_manifest(path_);
  manifest["optimizer"]["lr"] = {0.1, 0.2};
  strata::test::write_file(path_ + "/manifest.json", manifest.dump());
  expect_failure("has 2 optimizer param groups, the optimizer has 1");
}

// Values are checked for meaning, not only for form: each bad value is refused with the
// field and the file named, before anything is loaded.
TEST_F(CorruptCheckpoint, BadValues) {
  const auto original = read_manifest(path_);
  const std::string manifest = path_ + "/manifest.json";
  const auto expect_refused = [&](const std::string& pointer, const nlohmann::json& value,
                                  const std::string& expected) {
    SCOPED_TRACE(pointer + " = " + value.dump());
    auto edited = original;
    edited[nlohmann::json::json_pointer(pointer)] = value;
    strata::test::write_file(manifest, edited.dump());
    expect_failure(manifest + ": field " + expected);
  };
  const std::string step = "'step': got ";
  const std::string step_range = ", expected an integer from 0 to 1000000000000000";
  expect_refused("/step", 1e30, step + "1e+30" + step_range);
  expect_refused("/step", -1, step + "-1" + step_range);
  expect_refused("/step", 2.5, step + "2.5" + step_range);
  expect_refused("/step", "2", step + "\"2\"" + step_range);
  expect_refused("/step", uint64_t{1} << 63, step + "9223372036854775808" + step_range);
  const std::string lr = ", expected a finite number of at least 0";
  expect_refused("/optimizer/lr/0", -0.1, "'optimizer.lr[0]': got -0.1" + lr);
  expect_refused("/optimizer/lr/0", nullptr, "'optimizer.lr[0]': got null" + lr);  // NaN's JSON
  expect_refused("/optimizer/type", "Adagrad",
                 "'optimizer.type': got \"Adagrad\", expected \"SGD\", \"Adam\" or \"AdamW\"");
  expect_refused("/version", "9.0.0",
                 "'version': got \"9.0.0\", expected a strata version up to 0.1.0 (written by a "
                 "newer strata?)");
  expect_refused("/version", 1, "'version': got 1, expected a string");
  expect_refused("/tensors/0/shape/0", -16,
                 "'tensors[0].shape[0]': got -16, expected an integer of at least 0");
  expect_refused("/tensors/0/offset", -1,
                 "'tensors[0].offset': got -1, expected an integer of at least 0");
  expect_refused("/tensors/0/shape", nlohmann::json::array({1LL << 40, 1LL << 40, 8}),
                 "'tensors[0].shape': [1099511627776, 1099511627776, 8] holds more than 2^63 "
                 "bytes of float32, expected a size that fits");
  expect_refused("/extra", "x", "'extra': got \"x\", expected an object");
}

// Adam's step count is state, not a checksum's business: a negative one is refused.
TEST(CheckpointOptimizerState, NegativeAdamStepIsRefused) {
  TempDir dir;
  auto model = small_model();
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  train(model, adam, 1, 2);
  CheckpointContents contents = checkpoint_contents(*model, &adam);
  for (CheckpointTensor& t : contents.tensors) {
    if (t.name == "optimizer/0.weight/step") t.tensor = at::scalar_tensor(-5, at::kLong);
  }
  write_checkpoint(dir / "c", contents, 1);
  EXPECT_THAT(error_of([&] { load_checkpoint(dir / "c", *model, &adam); }),
              HasSubstr("tensor 'optimizer/0.weight/step' holds -5, expected a step count >= 0"));
}

TEST(CheckpointModels, FmnistMlpVsCnn) {
  TempDir dir;
  auto mlp = make_fmnist_mlp();
  auto cnn = make_fmnist_cnn();
  save_checkpoint(dir / "mlp", *mlp, nullptr, 0);
  const auto before = snapshot(*cnn);
  EXPECT_THAT(error_of([&] { load_checkpoint(dir / "mlp", *cnn, nullptr); }),
              HasSubstr("was it saved from another model?"));
  expect_bit_identical(*cnn, before);
}

// A pipeline stage loads its part of a whole-model checkpoint: the tensors and optimizer
// state of the layers it holds, under their whole-model names.
TEST(Checkpoint, SubsetLoadsOnePartOfTheModel) {
  TempDir dir;
  torch::manual_seed(1);
  auto model = small_model();
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  train(model, sgd, 2, 2);
  const std::string path = checkpoint_path(dir.path(), 2);
  save_checkpoint(path, *model, &sgd, 2);

  // The last layer alone, registered under its name in the whole model.
  torch::manual_seed(7);
  nn::Module part;
  auto last = part.register_module("3", nn::Linear(16, 4));
  torch::optim::SGD part_sgd(part.parameters(), torch::optim::SGDOptions(0.5).momentum(0.9));
  EXPECT_THAT(error_of([&] { load_checkpoint(path, part, &part_sgd); }),
              HasSubstr("has tensor '0.weight' the model lacks"));
  EXPECT_EQ(load_checkpoint(path, part, &part_sgd, nullptr, CheckpointMatch::Subset), 2);
  EXPECT_TRUE(torch::equal(last->weight, model[3]->as<nn::Linear>()->weight));
  EXPECT_EQ(part_sgd.state().size(), 2u);  // weight and bias momentum, nothing else
  EXPECT_DOUBLE_EQ(part_sgd.param_groups()[0].options().get_lr(), 0.05);

  // A part the checkpoint does not cover is still an error.
  nn::Module stranger;
  stranger.register_module("9", nn::Linear(16, 4));
  EXPECT_THAT(
      error_of([&] { load_checkpoint(path, stranger, nullptr, nullptr, CheckpointMatch::Subset); }),
      HasSubstr("has no tensor for parameter '9.weight'"));
}

// A weight registered under two names (an embedding and a tied output head) has its
// optimizer state under both, so a part holding either layer finds it.
TEST(Checkpoint, TiedWeightStateIsFoundUnderEitherName) {
  TempDir dir;
  torch::manual_seed(1);
  const at::Tensor shared = torch::randn({4, 4}, torch::requires_grad());
  nn::Module model;
  auto first = model.register_module("first", std::make_shared<nn::Module>());
  auto second = model.register_module("second", std::make_shared<nn::Module>());
  first->register_parameter("weight", shared);
  second->register_parameter("weight", shared);
  const at::Tensor bias = second->register_parameter("bias", torch::zeros({4}));
  torch::optim::SGD sgd({shared, bias}, torch::optim::SGDOptions(0.1).momentum(0.9));
  sgd.zero_grad();
  (torch::randn({2, 4}).mm(shared).mm(shared) + bias).sum().backward();
  sgd.step();
  const std::string path = checkpoint_path(dir.path(), 1);
  save_checkpoint(path, model, &sgd, 1);
  const auto manifest = read_manifest(path);
  std::vector<std::string> names;
  for (const auto& t : manifest["tensors"]) names.push_back(t["name"]);
  EXPECT_THAT(names, testing::Contains("optimizer/first.weight/momentum_buffer"));
  EXPECT_THAT(names, testing::Contains("optimizer/second.weight/momentum_buffer"));

  nn::Module part;  // the second layer alone, as a pipeline's last stage holds it
  auto only = part.register_module("second", std::make_shared<nn::Module>());
  const at::Tensor copy = only->register_parameter("weight", torch::zeros({4, 4}));
  only->register_parameter("bias", torch::ones({4}));
  torch::optim::SGD part_sgd(part.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  load_checkpoint(path, part, &part_sgd, nullptr, CheckpointMatch::Subset);
  EXPECT_TRUE(torch::equal(copy, shared));
  EXPECT_EQ(part_sgd.state().size(), 2u);
}
