// The .qmoe file: a round trip keeps every bit and runs the same experts; a truncated or
// corrupt file, wherever the damage, fails with one error naming the file and the fault;
// a failed write leaves nothing behind.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <limits>

#define XXH_INLINE_ALL  // the tests forge checksums without linking the library
#include <xxhash.h>

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

// `bytes` (a .qmoe file) with `value` in the first element of tensor `name` and every
// checksum recomputed, as a file edited by someone who knows the format would be: only a
// check of the values themselves can catch it.
std::string with_first_value(const std::string& bytes, const std::string& name, float value) {
  uint64_t header_size = 0;
  for (int b = 0; b < 8; ++b) header_size |= uint64_t(uint8_t(bytes[8 + b])) << (8 * b);
  nlohmann::json header = nlohmann::json::parse(bytes.substr(16, header_size));
  const size_t payload = 16 + header_size + 8;
  std::string out = bytes;
  for (auto& entry : header["tensors"]) {
    if (entry["name"] != name) continue;
    const size_t at = payload + entry["offset"].get<size_t>();
    const size_t nbytes = entry["nbytes"].get<size_t>();
    const at::Tensor one = at::full({1}, value,
                                    entry["dtype"] == "bfloat16"  ? at::kBFloat16
                                    : entry["dtype"] == "float64" ? at::kDouble
                                                                  : at::kFloat);
    out.replace(at, one.nbytes(), static_cast<const char*>(one.data_ptr()), one.nbytes());
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(XXH3_64bits(out.data() + at, nbytes)));
    entry["xxh64"] = hex;
  }
  const std::string text = header.dump();
  EXPECT_EQ(text.size(), header_size);
  out.replace(16, header_size, text);
  const uint64_t sum = XXH3_64bits(text.data(), text.size());
  for (int b = 0; b < 8; ++b)
    out[16 + header_size + b] = static_cast<char>((sum >> (8 * b)) & 0xFF);
  return out;
}

TEST(QmoeFile, NonFiniteLevelsAndBiasesAreRefused) {
  // A NaN level or an infinite bias evaluates to a NaN loss; the file is refused instead.
  TempDir dir;
  write_qmoe(dir / "good.qmoe", random_model());
  const std::string bytes = read_file(dir / "good.qmoe");
  const std::string bad = dir / "bad.qmoe";
  const auto error_with = [&](const std::string& name, float value) {
    write_file(bad, with_first_value(bytes, name, value));
    return error_of([&] { read_qmoe(bad); });
  };
  EXPECT_EQ(error_with("blocks.0.moe/b_in", 0.5f), "<no error>");  // the forging works
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(error_with("blocks.0.moe/1/w_in/levels", nan),
            bad +
                ": tensor 'blocks.0.moe/1/w_in/levels' holds nan at element 0, expected finite "
                "values");
  EXPECT_EQ(error_with("blocks.1.moe/0/w_out/levels", -inf),
            bad +
                ": tensor 'blocks.1.moe/0/w_out/levels' holds -inf at element 0, expected "
                "finite values");
  EXPECT_EQ(error_with("blocks.1.moe/b_out", inf),
            bad + ": tensor 'blocks.1.moe/b_out' holds inf at element 0, expected finite values");
  // The writer refuses them too: no .qmoe file holds them.
  QmoeModel model = random_model();
  model.layers[0].b_in[0][0] = nan;
  EXPECT_NE(
      error_of([&] { write_qmoe(dir / "nan.qmoe", model); }).find("'blocks.0.moe/b_in' holds nan"),
      std::string::npos);
}

TEST(QmoeFile, HeaderValuesAreCheckedByTypeAndRange) {
  TempDir dir;
  write_qmoe(dir / "good.qmoe", random_model());
  const std::string bytes = read_file(dir / "good.qmoe");
  uint64_t header_size = 0;
  for (int b = 0; b < 8; ++b) header_size |= uint64_t(uint8_t(bytes[8 + b])) << (8 * b);
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(16, header_size));
  const std::string bad = dir / "bad.qmoe";
  const auto error_with = [&](const std::string& pointer, const nlohmann::json& value) {
    nlohmann::json edited = header;
    edited[nlohmann::json::json_pointer(pointer)] = value;
    const std::string text = edited.dump();
    std::string out = bytes.substr(0, 8);
    for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>((text.size() >> (8 * b)) & 0xFF));
    out += text;
    const uint64_t sum = XXH3_64bits(text.data(), text.size());
    for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>((sum >> (8 * b)) & 0xFF));
    out += bytes.substr(16 + header_size + 8);
    write_file(bad, out);
    return error_of([&] { read_qmoe(bad); });
  };
  EXPECT_EQ(error_with("/version", 2),
            bad + ": field 'version': got 2, expected 1, the format version this strata reads");
  EXPECT_EQ(
      error_with("/layers/0/experts", "3")
          .rfind(bad + ": field 'layers[0].experts': got \"3\", expected an integer from 1 to ", 0),
      0u);
  EXPECT_EQ(error_with("/tensors/0/shape/0", -1),
            bad + ": field 'tensors[0].shape[0]': got -1, expected an integer of at least 0");
}

// random_model() with its second layer coded in a dictionary fitted to its codes.
QmoeModel fitted_model() {
  QmoeModel model = random_model();
  QmoeLayer& layer = model.layers[1];
  std::vector<at::Tensor> codes;
  for (int64_t e = 0; e < layer.experts(); ++e) {
    codes.push_back(ternary_decode_codes(layer.w_in[e]));
    codes.push_back(ternary_decode_codes(layer.w_out[e]));
  }
  const auto fitted = make_ternary_dictionary(fit_pair_probabilities(codes));
  for (auto* matrices : {&layer.w_in, &layer.w_out}) {
    for (TernaryMatrix& m : *matrices)
      m = ternary_encode(ternary_decode_codes(m), m.levels.to(at::kFloat), fitted);
  }
  return model;
}

TEST(QmoeFile, FittedDictionaryRoundTripsAndReferenceLayersStillLoad) {
  TempDir dir;
  const QmoeModel model = fitted_model();
  write_qmoe(dir / "m.qmoe", model);
  const std::string bytes = read_file(dir / "m.qmoe");
  EXPECT_NE(bytes.find("\"blocks.1.moe/dictionary\""), std::string::npos);
  EXPECT_EQ(bytes.find("\"blocks.1.moe/0/w_in/row_offsets\""), std::string::npos)
      << "a fitted layer's offsets follow from its codes";
  EXPECT_NE(bytes.find("\"blocks.0.moe/0/w_in/row_offsets\""), std::string::npos);
  const QmoeModel back = read_qmoe(dir / "m.qmoe");
  EXPECT_EQ(back.layers[0].fitted(), nullptr);
  ASSERT_NE(back.layers[1].fitted(), nullptr);
  EXPECT_EQ(back.layers[1].fitted()->decode_table, model.layers[1].fitted()->decode_table);
  for (size_t l = 0; l < 2; ++l) {
    const QmoeLayer &a = model.layers[l], &b = back.layers[l];
    for (int64_t e = 0; e < a.experts(); ++e) {
      EXPECT_TRUE(at::equal(a.w_in[e].codes, b.w_in[e].codes));
      EXPECT_TRUE(at::equal(a.w_in[e].row_offsets, b.w_in[e].row_offsets));
      EXPECT_TRUE(at::equal(a.w_out[e].row_offsets, b.w_out[e].row_offsets));
      EXPECT_TRUE(at::equal(ternary_decode(a.w_out[e]), ternary_decode(b.w_out[e])));
    }
    EXPECT_EQ(a.bits_per_weight(), b.bits_per_weight());
    const at::Tensor x = at::randn({5, 13});
    EXPECT_TRUE(at::equal(make_compressed_experts(a)->forward(1, x),
                          make_compressed_experts(b)->forward(1, x)));
  }
}

TEST(QmoeFile, CorruptStoredDictionaryIsRefused) {
  TempDir dir;
  write_qmoe(dir / "good.qmoe", fitted_model());
  const std::string bytes = read_file(dir / "good.qmoe");
  const std::string bad = dir / "bad.qmoe";
  const auto error_with = [&](const std::string& content) {
    write_file(bad, content);
    return error_of([&] { read_qmoe(bad); });
  };
  uint64_t header_size = 0;
  for (int b = 0; b < 8; ++b) header_size |= uint64_t(uint8_t(bytes[8 + b])) << (8 * b);
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(16, header_size));
  size_t at = 16 + header_size + 8;
  for (const auto& entry : header["tensors"])
    if (entry["name"] == "blocks.1.moe/dictionary") at += entry["offset"].get<size_t>() + 3;
  std::string flipped = bytes;
  flipped[at] = static_cast<char>(flipped[at] ^ 0x10);
  EXPECT_EQ(error_with(flipped),
            bad + ": tensor 'blocks.1.moe/dictionary': checksum mismatch (corrupt file)");
  // Re-checksummed by someone who knows the format: the values themselves are checked.
  EXPECT_EQ(error_with(with_first_value(bytes, "blocks.1.moe/dictionary", -0.25f)),
            bad +
                ": tensor 'blocks.1.moe/dictionary': probability of pair 0 is -0.25, expected a "
                "number in [1e-6, 1]");
  EXPECT_NE(error_with(with_first_value(bytes, "blocks.1.moe/dictionary", 0.5f))
                .find("the 9 pair probabilities sum to"),
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
