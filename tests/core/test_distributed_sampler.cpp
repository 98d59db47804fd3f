#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "strata/core/data/distributed_sampler.h"
#include "test_util.h"

using strata::core::DistributedSampler;
using strata::core::DistributedSamplerOptions;
using strata::test::error_of;
using testing::HasSubstr;

namespace {

std::vector<at::Tensor> all_ranks(DistributedSamplerOptions options, int64_t epoch) {
  std::vector<at::Tensor> out;
  for (int rank = 0; rank < options.world_size(); ++rank) {
    DistributedSampler sampler(DistributedSamplerOptions(options).rank(rank));
    sampler.set_epoch(epoch);
    out.push_back(sampler.indices());
  }
  return out;
}

}  // namespace

TEST(DistributedSampler, RanksPartitionAPermutation) {
  const auto parts = all_ranks(DistributedSamplerOptions(100).world_size(4).seed(3), 0);
  ASSERT_EQ(parts.size(), 4u);
  for (const auto& part : parts) {
    EXPECT_EQ(part.numel(), 25);
    EXPECT_EQ(part.scalar_type(), at::kLong);
  }
  // Disjoint and covering: the sorted union is 0..99.
  const at::Tensor all = std::get<0>(torch::cat(parts).sort());
  EXPECT_TRUE(torch::equal(all, torch::arange(100, at::kLong)));
  // Shuffled, not in order.
  EXPECT_FALSE(torch::equal(parts[0], torch::arange(0, 100, 4, at::kLong)));
}

TEST(DistributedSampler, EpochsDifferAndRepeat) {
  DistributedSampler a(DistributedSamplerOptions(1000).world_size(2).rank(1).seed(42));
  DistributedSampler b(DistributedSamplerOptions(1000).world_size(2).rank(1).seed(42));
  a.set_epoch(5);
  b.set_epoch(5);
  EXPECT_TRUE(torch::equal(a.indices(), b.indices()));
  EXPECT_TRUE(torch::equal(a.indices(), a.indices()));
  b.set_epoch(6);
  EXPECT_FALSE(torch::equal(a.indices(), b.indices()));
  DistributedSampler c(DistributedSamplerOptions(1000).world_size(2).rank(1).seed(43));
  c.set_epoch(5);
  EXPECT_FALSE(torch::equal(a.indices(), c.indices()));
}

TEST(DistributedSampler, DropLastAndPadding) {
  // 10 samples on 3 ranks: drop_last gives 3 each (9 in all), padding 4 each (12 in all).
  const auto dropped = all_ranks(DistributedSamplerOptions(10).world_size(3), 0);
  for (const auto& part : dropped) EXPECT_EQ(part.numel(), 3);
  const at::Tensor kept = torch::cat(dropped);
  EXPECT_EQ(std::get<0>(at::_unique(kept)).numel(), 9);  // all distinct

  const auto padded = all_ranks(DistributedSamplerOptions(10).world_size(3).drop_last(false), 0);
  for (const auto& part : padded) EXPECT_EQ(part.numel(), 4);
  const at::Tensor all = torch::cat(padded);
  EXPECT_EQ(std::get<0>(at::_unique(all)).numel(), 10);  // covers every sample
  EXPECT_EQ(
      DistributedSampler(DistributedSamplerOptions(10).world_size(3).drop_last(false)).local_size(),
      4);

  // Without shuffling, rank r takes r, r + world, ...; padding wraps to 0, 1.
  DistributedSampler plain(
      DistributedSamplerOptions(10).world_size(3).rank(1).shuffle(false).drop_last(false));
  EXPECT_TRUE(torch::equal(plain.indices(), torch::tensor({1, 4, 7, 0}, at::kLong)));
  DistributedSampler plain2(
      DistributedSamplerOptions(10).world_size(3).rank(2).shuffle(false).drop_last(false));
  EXPECT_TRUE(torch::equal(plain2.indices(), torch::tensor({2, 5, 8, 1}, at::kLong)));
}

TEST(DistributedSampler, BadOptions) {
  EXPECT_EQ(
      error_of([] { DistributedSampler(DistributedSamplerOptions(10).world_size(2).rank(2)); }),
      "distributed sampler: rank 2, expected 0 to 1 (world_size 2)");
  EXPECT_THAT(error_of([] { DistributedSampler(DistributedSamplerOptions(10).rank(-1)); }),
              HasSubstr("rank -1"));
  EXPECT_THAT(error_of([] { DistributedSampler(DistributedSamplerOptions(10).world_size(0)); }),
              HasSubstr("world_size 0, expected at least 1"));
  EXPECT_THAT(error_of([] { DistributedSampler(DistributedSamplerOptions(0)); }),
              HasSubstr("num_samples 0"));
  DistributedSampler ok(DistributedSamplerOptions(10));
  EXPECT_THAT(error_of([&] { ok.set_epoch(-1); }), HasSubstr("epoch -1"));
}
