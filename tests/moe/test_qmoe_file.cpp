// The .qmoe file: a round trip keeps every bit and runs the same experts; a truncated or
// corrupt file, wherever the damage, fails with one error naming the file and the fault;
// a failed write leaves nothing behind.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/test_util.h"
#include "strata/moe/qmoe_file.h"

namespace strata::moe {
namespace {

using strata::test::error_of;
using strata::test::read_file;
using strata::test::TempDir;
using strata::test::write_file;

TernaryMatrix random_ternary(int64_t rows, int64_t cols, at::Generator& gen) {
  const at::Tensor u = at::rand({rows, cols}, gen);
  const at::Tensor codes = (u > 0.88).to(at::kByte) + (u > 0.94).to(at::kByte);
  return ternary_encode(codes, at::stack({-at::rand({rows}, gen), at::rand({rows}, gen)}, 1));
}

QmoeLayer random_layer(const std::string& name, int64_t experts, int64_t d, int64_t hidden,
                       uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  QmoeLayer layer;
  layer.name = name;
  for (int64_t e = 0; e < experts; ++e) {
    layer.w_in.push_back(random_ternary(hidden, d, gen));
    layer.w_out.push_back(random_ternary(d, hidden, gen));
  }
  layer.b_in = at::randn({experts, hidden}, gen);
  layer.b_out = at::randn({experts, d}, gen);
  return layer;
}

QmoeModel random_model() {
  QmoeModel model;
  model.layers.push_back(random_layer("blocks.0.moe", 3, 13, 29, 1));
  model.layers.push_back(random_layer("blocks.1.moe", 2, 13, 29, 2));
  model.extra = {{"calibration_tokens", 64}};
  return model;
}

TEST(QmoeFile, RoundTripsEveryBitAndRunsTheSameExperts) {
  TempDir dir;
  const QmoeModel model = random_model();
  write_qmoe(dir / "m.qmoe", model);
  EXPECT_FALSE(std::filesystem::exists(dir / "m.qmoe.tmp-" + std::to_string(::getpid())));
  const QmoeModel back = read_qmoe(dir / "m.qmoe");
  ASSERT_EQ(back.layers.size(), 2u);
  EXPECT_EQ(back.extra, model.extra);
  for (size_t l = 0; l < 2; ++l) {
    const QmoeLayer &a = model.layers[l], &b = back.layers[l];
    EXPECT_EQ(a.name, b.name);
    ASSERT_EQ(a.experts(), b.experts());
    for (int64_t e = 0; e < a.experts(); ++e) {
      EXPECT_TRUE(at::equal(a.w_in[e].codes, b.w_in[e].codes));
      EXPECT_TRUE(at::equal(a.w_out[e].row_offsets, b.w_out[e].row_offsets));
      EXPECT_TRUE(at::equal(a.w_out[e].levels, b.w_out[e].levels));
    }
    EXPECT_TRUE(at::equal(a.b_in, b.b_in));
    EXPECT_NEAR(a.bits_per_weight(), b.bits_per_weight(), 0);
    const at::Tensor x = at::randn({5, 13});
    EXPECT_TRUE(at::equal(make_compressed_experts(a)->forward(1, x),
                          make_compressed_experts(b)->forward(1, x)));
  }
}

TEST(QmoeFile, CorruptOrTruncatedFilesFailWithAClearError) {
  TempDir dir;
  write_qmoe(dir / "good.qmoe", random_model());
  const std::string bytes = read_file(dir / "good.qmoe");
  const std::string bad = dir / "bad.qmoe";
  auto error_with = [&](const std::string& content) {
    write_file(bad, content);
    return error_of([&] { read_qmoe(bad); });
  };
  auto flipped = [&](size_t at) {
    std::string b = bytes;
    b[at] = static_cast<char>(b[at] ^ 0x5A);
    return b;
  };
  // Every message starts with the file's path.
  for (const size_t cut :
       {size_t(0), size_t(5), size_t(20), size_t(200), bytes.size() / 2, bytes.size() - 1}) {
    const std::string error = error_with(bytes.substr(0, cut));
    EXPECT_EQ(error.rfind(bad + ": ", 0), 0u) << error;
    EXPECT_NE(error.find("truncated"), std::string::npos) << "cut at " << cut << ": " << error;
  }
  EXPECT_NE(error_with(flipped(2)).find("bad magic"), std::string::npos);
  EXPECT_NE(error_with(flipped(40)).find("header checksum mismatch"), std::string::npos);
  EXPECT_NE(error_with(flipped(bytes.size() - 3)).find("checksum mismatch (corrupt file)"),
            std::string::npos);
  EXPECT_NE(error_with(bytes + "xyz").find("trailing data"), std::string::npos);
  EXPECT_NE(error_of([&] { read_qmoe(dir / "missing.qmoe"); }).find("no such file"),
            std::string::npos);
  EXPECT_EQ(error_with(bytes), "<no error>");
}

TEST(QmoeFile, ValidChecksumsButBrokenCodeStreamsAreCaught) {
  // A stream that checksums fine but does not decode to the layer's shape (a writer bug, or
  // a file edited by hand): the structural check names the expert and the row.
  TempDir dir;
  QmoeModel model = random_model();
  QmoeLayer& layer = model.layers[0];
  layer.w_in[1].cols = 12;  // encoded with 13 columns
  EXPECT_NE(error_of([&] { write_qmoe(dir / "x.qmoe", model); }).find("expert 1 w_in"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.qmoe"));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "nothing half-written";
}

}  // namespace
}  // namespace strata::moe
