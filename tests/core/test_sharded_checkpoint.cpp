// Sharded checkpoints (several writers, one manifest) read back as the unsharded ones do,
// and refuse shards that are missing or disagree with the manifest; asynchronous writes
// give the synchronous files, byte for byte.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "checkpoint_compare.h"
#include "strata/core/async_checkpoint.h"
#include "strata/core/checkpoint.h"
#include "test_util.h"

using namespace strata::core;
using strata::test::checkpoint_tensors;
using strata::test::error_of;
using strata::test::TempDir;
using testing::HasSubstr;
namespace fs = std::filesystem;
namespace nn = torch::nn;

namespace {

const std::set<std::string> kAllKinds = {"parameter", "buffer", "optimizer"};

nn::Sequential trained_model(std::unique_ptr<torch::optim::Adam>* optimizer) {
  torch::manual_seed(3);
  nn::Sequential model(nn::Linear(7, 5), nn::BatchNorm1d(5), nn::Linear(5, 3));
  *optimizer =
      std::make_unique<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(0.01));
  for (int i = 0; i < 2; ++i) {
    (*optimizer)->zero_grad();
    model->forward(torch::randn({8, 7})).pow(2).mean().backward();
    (*optimizer)->step();
  }
  return model;
}

// `contents` written by `shards` writers: writer w holds the w-th part of every tensor
// (uneven parts, some empty), scalars by writer 0.
void write_sharded(const std::string& path, const CheckpointContents& contents, int shards) {
  const std::string tmp = sharded_checkpoint_tmp(path, "test");
  begin_sharded_checkpoint(tmp);
  std::vector<nlohmann::json> entries;
  for (int w = 0; w < shards; ++w) {
    std::vector<CheckpointPiece> pieces;
    for (const CheckpointTensor& t : contents.tensors) {
      const at::Tensor flat = t.tensor.detach().reshape({-1});
      const int64_t chunk = (flat.numel() + shards - 1) / shards;
      const int64_t begin = std::min(w * chunk, flat.numel());
      const int64_t end = std::min(begin + chunk, flat.numel());
      if (t.tensor.dim() == 0 && w != 0) continue;
      if (t.tensor.dim() == 0) {
        pieces.push_back({t.name, t.kind, {}, 0, t.tensor});
      } else if (end > begin) {
        pieces.push_back(
            {t.name, t.kind, t.tensor.sizes().vec(), begin, flat.narrow(0, begin, end - begin)});
      }
    }
    entries.push_back(write_checkpoint_shard(tmp, w, shards, pieces));
  }
  commit_sharded_checkpoint(path, tmp, entries, 2, {{"note", "sharded"}}, contents.optimizer);
}

}  // namespace

TEST(ShardedCheckpoint, ReadsBackAsTheUnshardedOne) {
  TempDir dir;
  std::unique_ptr<torch::optim::Adam> optimizer;
  nn::Sequential model = trained_model(&optimizer);
  const CheckpointContents contents = checkpoint_contents(*model, optimizer.get());
  write_checkpoint(dir / "whole", contents, 2);
  write_sharded(dir / "sharded", contents, 3);
  EXPECT_FALSE(fs::exists(dir / "sharded/tensors.bin"));
  EXPECT_TRUE(fs::exists(dir / "sharded/shard-00002-of-00003.bin"));
  EXPECT_FALSE(fs::exists(sharded_checkpoint_tmp(dir / "sharded", "test")));

  const auto whole = checkpoint_tensors(dir / "whole", kAllKinds);
  const auto sharded = checkpoint_tensors(dir / "sharded", kAllKinds);
  ASSERT_EQ(whole.size(), sharded.size());
  for (const auto& [name, tensor] : whole) {
    ASSERT_TRUE(sharded.count(name)) << name;
    EXPECT_TRUE(sharded.at(name).equal(tensor)) << name;
  }
  // Loaded into a fresh model and optimizer like any checkpoint, found by --resume auto.
  std::unique_ptr<torch::optim::Adam> other;
  nn::Sequential fresh = trained_model(&other);
  for (auto& p : fresh->parameters()) p.detach().add_(1);
  nlohmann::json extra;
  EXPECT_EQ(load_checkpoint(dir / "sharded", *fresh, other.get(), &extra), 2);
  EXPECT_EQ(extra.value("note", ""), "sharded");
  for (const auto& item : model->named_parameters())
    EXPECT_TRUE(fresh->named_parameters()[item.key()].equal(item.value())) << item.key();
  EXPECT_EQ(CheckpointReader(dir / "sharded").optimizer().at("type"), "Adam");
}

TEST(ShardedCheckpoint, RefusesShardsThatDisagreeWithTheManifest) {
  TempDir dir;
  std::unique_ptr<torch::optim::Adam> optimizer;
  nn::Sequential model = trained_model(&optimizer);
  const CheckpointContents contents = checkpoint_contents(*model, optimizer.get());
  const std::string ckpt = dir / "ckpt/step-00000002";
  write_sharded(ckpt, contents, 2);
  const std::string shard1 = ckpt + "/shard-00001-of-00002.bin";
  const auto fresh_copy = [&](const std::string& name) {
    const std::string copy = dir / name;
    fs::copy(ckpt, copy, fs::copy_options::recursive);
    return copy;
  };

  const std::string missing = fresh_copy("missing");
  fs::remove(missing + "/shard-00001-of-00002.bin");
  EXPECT_THAT(
      error_of([&] { CheckpointReader reader(missing); }),
      HasSubstr("shard file shard-00001-of-00002.bin is missing (2 shards in its manifest)"));

  const std::string foreign = fresh_copy("foreign");
  {
    std::fstream f(foreign + "/shard-00001-of-00002.bin",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4);
    f.put('\x7f');
  }
  EXPECT_THAT(error_of([&] { CheckpointReader reader(foreign); }),
              HasSubstr("shard-00001-of-00002.bin has checksum"));

  const std::string longer = fresh_copy("longer");
  std::ofstream(longer + "/shard-00001-of-00002.bin", std::ios::app) << "x";
  EXPECT_THAT(error_of([&] { CheckpointReader reader(longer); }),
              HasSubstr("shard-00001-of-00002.bin has"));

  // The layout: a piece of the first tensor moved by one element (two pieces overlap).
  const std::string layout = fresh_copy("layout");
  std::stringstream text;
  text << std::ifstream(layout + "/manifest.json").rdbuf();
  nlohmann::json manifest = nlohmann::json::parse(text.str());
  auto& piece = manifest["tensors"][0]["pieces"][1];
  piece["start"] = piece["start"].get<int64_t>() - 1;
  std::ofstream(layout + "/manifest.json") << manifest.dump();
  EXPECT_THAT(error_of([&] { CheckpointReader reader(layout); }),
              HasSubstr("(shards that disagree on the sharding layout)"));

  // --resume auto takes the one before a broken sharded checkpoint.
  fs::remove(shard1);
  write_checkpoint(dir / "ckpt/step-00000001", contents, 1);
  std::vector<std::string> rejected;
  EXPECT_EQ(latest_valid_checkpoint(dir / "ckpt", &rejected), dir / "ckpt/step-00000001");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_THAT(rejected[0], HasSubstr("is missing"));
}

TEST(AsyncCheckpoint, WritesTheSynchronousFilesWhileTrainingGoesOn) {
  TempDir dir;
  std::unique_ptr<torch::optim::Adam> optimizer;
  nn::Sequential model = trained_model(&optimizer);
  const CheckpointContents contents = checkpoint_contents(*model, optimizer.get());
  write_checkpoint(dir / "sync", contents, 2, {{"k", 1}});
  AsyncCheckpointWriter writer;
  writer.submit([copy = copy_checkpoint_contents(contents), path = dir / "async"] {
    write_checkpoint(path, copy, 2, {{"k", 1}});
  });
  // Training goes on and changes the model under the write.
  for (auto& p : model->parameters()) p.detach().mul_(3);
  writer.wait();
  for (const std::string file : {"manifest.json", "tensors.bin"}) {
    std::stringstream a, b;
    a << std::ifstream(dir / ("sync/" + file), std::ios::binary).rdbuf();
    b << std::ifstream(dir / ("async/" + file), std::ios::binary).rdbuf();
    EXPECT_EQ(a.str(), b.str()) << file;
  }
  // A failed write is the caller's error at the next wait.
  writer.submit([] { throw strata::Error("disk full"); });
  EXPECT_EQ(error_of([&] { writer.wait(); }), "disk full");
}
