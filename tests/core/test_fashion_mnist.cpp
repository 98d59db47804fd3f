#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <filesystem>

#include "strata/core/data/fashion_mnist.h"
#include "test_util.h"

using strata::core::FashionMnistSplit;
using strata::core::load_fashion_mnist;
using strata::core::read_idx_file;
using strata::test::error_of;
using strata::test::TempDir;
using testing::HasSubstr;

namespace {

const std::string kDir = strata::core::kFashionMnistDir;

bool have_data() { return std::filesystem::is_directory(kDir); }

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// An IDX header followed by `payload` bytes of value 7.
std::string idx_bytes(uint32_t magic, std::vector<uint32_t> dims, size_t payload) {
  std::string out = be32(magic);
  for (uint32_t d : dims) out += be32(d);
  return out + std::string(payload, '\x07');
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(file);
}

}  // namespace

TEST(IdxFile, ReadsSmallLabelAndImageFiles) {
  TempDir dir;
  write_gz(dir / "labels.gz", be32(0x801) + be32(3) + std::string("\x01\x02\x09", 3));
  at::Tensor labels = read_idx_file(dir / "labels.gz");
  EXPECT_EQ(labels.scalar_type(), at::kByte);
  EXPECT_TRUE(torch::equal(labels, torch::tensor({1, 2, 9}, at::kByte)));

  write_gz(dir / "images.gz", idx_bytes(0x803, {2, 3, 4}, 24));
  at::Tensor images = read_idx_file(dir / "images.gz");
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(images.sum().item<int64_t>(), 7 * 24);
}

TEST(IdxFile, TruncatedPayloadIsAnError) {
  TempDir dir;
  write_gz(dir / "half.gz", idx_bytes(0x803, {2, 28, 28}, 784));  // half of 2*28*28
  const std::string message = error_of([&] { read_idx_file(dir / "half.gz"); });
  EXPECT_THAT(message, HasSubstr("half.gz"));
  EXPECT_THAT(message, HasSubstr("truncated"));
  EXPECT_THAT(message, HasSubstr("784 bytes of data, expected 1568"));
}

TEST(IdxFile, CutGzipStreamIsTruncated) {
  TempDir dir;
  // Varied bytes, so that the compressed stream is long and the cut falls inside the data.
  std::string bytes = be32(0x803) + be32(100) + be32(28) + be32(28);
  for (int i = 0; i < 78400; ++i) bytes += static_cast<char>((i * 7919) % 251);
  write_gz(dir / "full.gz", bytes);
  const std::string full = strata::test::read_file(dir / "full.gz");
  strata::test::write_file(dir / "cut.gz", full.substr(0, full.size() / 2));
  EXPECT_THAT(error_of([&] { read_idx_file(dir / "cut.gz"); }), HasSubstr("truncated"));
}

TEST(IdxFile, TrailingBytesAreAnError) {
  TempDir dir;
  write_gz(dir / "long.gz", idx_bytes(0x801, {10}, 11));
  EXPECT_THAT(error_of([&] { read_idx_file(dir / "long.gz"); }), HasSubstr("trailing bytes"));
}

TEST(IdxFile, WrongMagicIsAnError) {
  TempDir dir;
  write_gz(dir / "magic.gz", idx_bytes(0x802, {10, 10}, 100));
  EXPECT_THAT(error_of([&] { read_idx_file(dir / "magic.gz"); }),
              HasSubstr("magic.gz: magic number 2050, expected 2051 (images) or 2049 (labels)"));
}

TEST(IdxFile, NotGzipIsAnError) {
  TempDir dir;
  strata::test::write_file(dir / "plain.gz", idx_bytes(0x801, {4}, 4));
  EXPECT_THAT(error_of([&] { read_idx_file(dir / "plain.gz"); }), HasSubstr("not a gzip file"));
  strata::test::write_file(dir / "garbage.gz", "this is not an idx file at all\n");
  EXPECT_THAT(error_of([&] { read_idx_file(dir / "garbage.gz"); }), HasSubstr("not a gzip file"));
}

TEST(IdxFile, MissingFileIsAnError) {
  TempDir dir;
  EXPECT_EQ(error_of([&] { read_idx_file(dir / "nope.gz"); }), dir / "nope.gz: no such file");
}

TEST(FashionMnist, MissingDirectoryIsAnError) {
  EXPECT_EQ(error_of([] { load_fashion_mnist("/no/such/dir", FashionMnistSplit::Train); }),
            "fashion-mnist data directory /no/such/dir: no such directory "
            "(install dataset-fashion-mnist)");
}

TEST(FashionMnist, DirectoriesAndEmptySetsAreNamed) {
  TempDir dir;
  std::filesystem::create_directories(dir / "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(error_of([&] { load_fashion_mnist(dir.path(), FashionMnistSplit::Test); }),
            dir / "t10k-images-idx3-ubyte.gz: is a directory, expected a file");
  std::filesystem::remove(dir / "t10k-images-idx3-ubyte.gz");
  // A header of zero images is well formed, but leaves nothing to test on (accuracy 0/0).
  write_gz(dir / "t10k-images-idx3-ubyte.gz", idx_bytes(0x803, {0, 28, 28}, 0));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", be32(0x801) + be32(0));
  EXPECT_EQ(error_of([&] { load_fashion_mnist(dir.path(), FashionMnistSplit::Test); }),
            dir / "t10k-images-idx3-ubyte.gz: holds 0 images, expected at least 1");
  EXPECT_EQ(error_of([&] {
              load_fashion_mnist(dir / "t10k-labels-idx1-ubyte.gz", FashionMnistSplit::Test);
            }),
            "fashion-mnist data directory " + (dir / "t10k-labels-idx1-ubyte.gz") +
                ": is a file, expected a directory");
}

TEST(FashionMnist, CountMismatchAndBadLabelsAreErrors) {
  TempDir dir;
  write_gz(dir / "t10k-images-idx3-ubyte.gz", idx_bytes(0x803, {2, 28, 28}, 2 * 784));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", be32(0x801) + be32(3) + std::string(3, '\x01'));
  EXPECT_THAT(error_of([&] { load_fashion_mnist(dir.path(), FashionMnistSplit::Test); }),
              HasSubstr("has 2 images but"));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", be32(0x801) + be32(2) + std::string("\x01\x0c", 2));
  EXPECT_THAT(error_of([&] { load_fashion_mnist(dir.path(), FashionMnistSplit::Test); }),
              HasSubstr("label 12, expected 0 to 9"));
  write_gz(dir / "t10k-images-idx3-ubyte.gz", idx_bytes(0x803, {2, 32, 32}, 2 * 1024));
  EXPECT_THAT(error_of([&] { load_fashion_mnist(dir.path(), FashionMnistSplit::Test); }),
              HasSubstr("images of 32x32, expected 28x28"));
}

TEST(FashionMnist, RealTrainFiles) {
  if (!have_data()) GTEST_SKIP() << kDir << " missing";
  at::Tensor images = read_idx_file(kDir + "/train-images-idx3-ubyte.gz");
  at::Tensor labels = read_idx_file(kDir + "/train-labels-idx1-ubyte.gz");
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{60000, 28, 28}));
  EXPECT_EQ(labels.sizes(), (std::vector<int64_t>{60000}));
  EXPECT_EQ(labels[0].item<int64_t>(), 9);
  EXPECT_LT(labels.max().item<int64_t>(), 10);
  EXPECT_EQ(torch::bincount(labels.to(at::kLong)).min().item<int64_t>(), 6000);  // balanced
  EXPECT_NEAR(images.to(at::kDouble).mean().item<double>() / 255.0, 0.2860, 1e-3);
}

TEST(FashionMnist, RealTestFiles) {
  if (!have_data()) GTEST_SKIP() << kDir << " missing";
  at::Tensor labels = read_idx_file(kDir + "/t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(labels.size(0), 10000);
  EXPECT_EQ(labels[0].item<int64_t>(), 9);
}

TEST(FashionMnist, LoadNormalizes) {
  if (!have_data()) GTEST_SKIP() << kDir << " missing";
  const auto train = load_fashion_mnist(kDir, FashionMnistSplit::Train);
  EXPECT_EQ(train.size(), 60000);
  EXPECT_EQ(train.images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(train.images.scalar_type(), at::kFloat);
  EXPECT_EQ(train.labels.scalar_type(), at::kLong);
  const at::Tensor pixels = train.images.to(at::kDouble);
  EXPECT_LT(std::abs(pixels.mean().item<double>()), 1e-2);
  EXPECT_NEAR(pixels.std().item<double>(), 1.0, 2e-2);

  const auto test = load_fashion_mnist(kDir, FashionMnistSplit::Test);
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(test.labels[0].item<int64_t>(), 9);
}
