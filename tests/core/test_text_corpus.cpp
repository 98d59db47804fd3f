#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>

#include "strata/core/data/text_corpus.h"
#include "test_util.h"

using strata::core::TextCorpus;
using strata::test::error_of;
using strata::test::TempDir;
using strata::test::write_file;
using testing::ElementsAre;
using testing::HasSubstr;

namespace {

std::string bytes_from(int first, int count) {
  std::string out;
  for (int i = 0; i < count; ++i) out += static_cast<char>(first + i);
  return out;
}

at::Generator generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

}  // namespace

TEST(TextCorpus, SplitsByFileOrderAndSkipsIndexFiles) {
  TempDir dir;
  // Bytes 0..99 spread over three files; the byte value equals its position in the corpus.
  write_file(dir / "b", bytes_from(50, 40));
  write_file(dir / "a", bytes_from(0, 50));
  write_file(dir / "c", bytes_from(90, 10));
  write_file(dir / "a.dat", std::string(1000, 'x'));
  write_file(dir / "b.u8", std::string(1000, 'x'));
  write_file(dir / ".hidden", std::string(1000, 'x'));
  std::filesystem::create_directories(dir / "off");
  write_file(dir / "off/d", std::string(1000, 'x'));

  const TextCorpus corpus = TextCorpus::load(dir.path(), 0.9);
  EXPECT_THAT(corpus.train_files(), ElementsAre("a", "b"));
  EXPECT_THAT(corpus.validation_files(), ElementsAre("c"));
  EXPECT_TRUE(torch::equal(corpus.train(), torch::arange(90, at::kByte)));
  EXPECT_TRUE(torch::equal(corpus.validation(), torch::arange(90, 100, at::kByte)));

  // Each input row is a window of the train bytes and its targets the next bytes.
  auto [inputs, targets] = corpus.sample_batch(true, 16, 8, generator(1));
  EXPECT_EQ(inputs.sizes(), (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(targets.sizes(), (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(inputs.scalar_type(), at::kLong);
  for (int64_t i = 0; i < 16; ++i) {
    const int64_t start = inputs[i][0].item<int64_t>();
    EXPECT_LE(start + 8, 89);
    EXPECT_TRUE(torch::equal(inputs[i], torch::arange(start, start + 8, at::kLong)));
    EXPECT_TRUE(torch::equal(targets[i], torch::arange(start + 1, start + 9, at::kLong)));
  }

  auto [val_inputs, val_targets] = corpus.sample_batch(false, 4, 9, generator(2));
  // The validation split has 10 bytes: a 9-byte context fits exactly once.
  EXPECT_TRUE(torch::equal(val_inputs[3], torch::arange(90, 99, at::kLong)));
  EXPECT_TRUE(torch::equal(val_targets[3], torch::arange(91, 100, at::kLong)));
  EXPECT_THAT(error_of([&] { corpus.sample_batch(false, 4, 10, generator(2)); }),
              HasSubstr("context 10 needs at least 11 bytes, the validation split has 10"));
  EXPECT_THAT(error_of([&] { corpus.sample_batch(true, 0, 4, generator(2)); }),
              HasSubstr("batch 0, expected at least 1"));
}

TEST(TextCorpus, BadDirectories) {
  EXPECT_THAT(error_of([] { TextCorpus::load("/no/such/dir"); }),
              HasSubstr("text corpus directory /no/such/dir: no such directory"));
  TempDir dir;
  write_file(dir / "x.dat", "abc");
  EXPECT_THAT(error_of([&] { TextCorpus::load(dir.path()); }), HasSubstr("has no text files"));
  write_file(dir / "only", "abcdef");
  EXPECT_THAT(error_of([&] { TextCorpus::load(dir.path()); }),
              HasSubstr("leave nothing for validation"));
  EXPECT_THAT(error_of([&] { TextCorpus::load(dir.path(), 1.5); }),
              HasSubstr("train_fraction 1.5"));
}

TEST(TextCorpus, Fortunes) {
  if (!std::filesystem::is_directory(strata::core::kFortunesDir)) GTEST_SKIP() << "no fortunes";
  const TextCorpus corpus = TextCorpus::load();
  const int64_t train = corpus.train().numel(), validation = corpus.validation().numel();
  ASSERT_GT(train, 0);
  ASSERT_GT(validation, 0);
  const double fraction = static_cast<double>(train) / static_cast<double>(train + validation);
  EXPECT_GT(fraction, 0.85);
  EXPECT_LT(fraction, 0.95);
  EXPECT_EQ(corpus.train_files().front(), "art");  // the first name in sorted order

  auto [inputs, targets] = corpus.sample_batch(true, 32, 128, generator(7));
  EXPECT_EQ(inputs.sizes(), (std::vector<int64_t>{32, 128}));
  EXPECT_TRUE(torch::equal(inputs.slice(1, 1), targets.slice(1, 0, 127)));
  EXPECT_GE(inputs.min().item<int64_t>(), 0);
  EXPECT_LE(inputs.max().item<int64_t>(), 255);
  // Every row is really a window of the train bytes.
  const at::Tensor& bytes = corpus.train();
  const std::string text(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), train);
  for (int64_t i = 0; i < 32; ++i) {
    const at::Tensor row = torch::cat({inputs[i], targets[i].slice(0, 127)}).to(at::kByte);
    const std::string window(reinterpret_cast<const char*>(row.data_ptr<uint8_t>()), 129);
    EXPECT_NE(text.find(window), std::string::npos) << "row " << i;
  }

  // The same generator seed gives the same batch.
  auto [again, unused] = corpus.sample_batch(true, 32, 128, generator(7));
  EXPECT_TRUE(torch::equal(inputs, again));
}
