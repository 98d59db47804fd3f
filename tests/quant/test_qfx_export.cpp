// export_qfx: the JSON round trip, and an integer-only re-implementation of the exported
// fmnist-cnn that must give the training-time emulation's logits bit for bit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/test_util.h"
#include "quant/reference.h"
#include "strata/core/data/fashion_mnist.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/quant/qfx.h"

using namespace strata::quant;
using nlohmann::json;
using strata::test::error_of;
using strata::test::TempDir;
using testing::HasSubstr;
namespace nn = torch::nn;

namespace {

// ---------------------------------------------------------------------------------------
// The integer-only model: int64 values of one image (C x H x W) and their type. Every
// step is integer arithmetic on raw values; retyping goes through tests/quant/reference,
// which was written apart from the library.

struct IntImage {
  std::vector<int64_t> v;
  int64_t c = 0, h = 0, w = 0;
  FixedPointType type;
  int64_t at(int64_t ch, int64_t y, int64_t x) const { return v[(ch * h + y) * w + x]; }
};

int64_t assign(int64_t raw, const FixedPointType& from, const FixedPointType& to) {
  return static_cast<int64_t>(reference::assign(raw, -from.fraction_bits(), to));
}

IntImage retype(const IntImage& in, const FixedPointType& to) {
  IntImage out = in;
  out.type = to;
  for (auto& x : out.v) x = assign(x, in.type, to);
  return out;
}

std::vector<int64_t> ints(const json& j) { return j.get<std::vector<int64_t>>(); }

// The accumulator register wraps, then the output type takes the value with its modes.
void finish_accumulator(IntImage& out, const json& layer) {
  const FixedPointType acc = parse_fixed_point_type(layer["accumulator_type"]);
  const FixedPointType type = parse_fixed_point_type(layer["output_type"]);
  for (auto& x : out.v) x = assign(assign(x, acc, acc), acc, type);
  out.type = type;
}

IntImage conv2d(const IntImage& image, const json& layer) {
  EXPECT_EQ(layer["groups"], 1);
  EXPECT_EQ(ints(layer["dilation"]), (std::vector<int64_t>{1, 1}));
  const IntImage in = retype(image, parse_fixed_point_type(layer["input_type"]));
  const std::vector<int64_t> w = ints(layer["weight"]), b = ints(layer["bias"]);
  const std::vector<int64_t> shape = ints(layer["weight_shape"]);
  const int64_t out_c = shape[0], in_c = shape[1], kh = shape[2], kw = shape[3];
  const int64_t stride = layer["stride"][0], pad = layer["padding"][0];
  EXPECT_EQ(in_c, in.c);
  IntImage out;
  out.c = out_c;
  out.h = (in.h + 2 * pad - kh) / stride + 1;
  out.w = (in.w + 2 * pad - kw) / stride + 1;
  out.type = parse_fixed_point_type(layer["accumulator_type"]);
  out.v.assign(out.c * out.h * out.w, 0);
  for (int64_t o = 0; o < out_c; ++o)
    for (int64_t y = 0; y < out.h; ++y)
      for (int64_t x = 0; x < out.w; ++x) {
        int64_t sum = b[o];  // already in accumulator LSBs
        for (int64_t i = 0; i < in_c; ++i)
          for (int64_t ky = 0; ky < kh; ++ky)
            for (int64_t kx = 0; kx < kw; ++kx) {
              const int64_t iy = y * stride + ky - pad, ix = x * stride + kx - pad;
              if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w) continue;
              sum += in.at(i, iy, ix) * w[((o * in_c + i) * kh + ky) * kw + kx];
            }
        out.v[(o * out.h + y) * out.w + x] = sum;
      }
  finish_accumulator(out, layer);
  return out;
}

IntImage linear(const IntImage& image, const json& layer) {
  const IntImage in = retype(image, parse_fixed_point_type(layer["input_type"]));
  const std::vector<int64_t> w = ints(layer["weight"]), b = ints(layer["bias"]);
  const int64_t out_f = layer["out_features"], in_f = layer["in_features"];
  EXPECT_EQ(static_cast<int64_t>(in.v.size()), in_f);
  IntImage out;
  out.c = out_f;
  out.h = out.w = 1;
  out.v.assign(out_f, 0);
  for (int64_t o = 0; o < out_f; ++o) {
    int64_t sum = b[o];
    for (int64_t i = 0; i < in_f; ++i) sum += in.v[i] * w[o * in_f + i];
    out.v[o] = sum;
  }
  finish_accumulator(out, layer);
  return out;
}

IntImage max_pool(const IntImage& in, const json& layer) {
  const int64_t k = layer["kernel_size"][0], s = layer["stride"][0];
  EXPECT_EQ(layer["padding"][0], 0);
  IntImage out = in;
  out.h = (in.h - k) / s + 1;
  out.w = (in.w - k) / s + 1;
  out.v.assign(out.c * out.h * out.w, 0);
  for (int64_t ch = 0; ch < in.c; ++ch)
    for (int64_t y = 0; y < out.h; ++y)
      for (int64_t x = 0; x < out.w; ++x) {
        int64_t best = in.at(ch, y * s, x * s);
        for (int64_t dy = 0; dy < k; ++dy)
          for (int64_t dx = 0; dx < k; ++dx)
            best = std::max(best, in.at(ch, y * s + dy, x * s + dx));
        out.v[(ch * out.h + y) * out.w + x] = best;
      }
  return out;
}

// Raw logits of one [1, 28, 28] float image through the exported model.
std::vector<int64_t> integer_logits(const json& doc, const at::Tensor& image) {
  const json& layers = doc["layers"];
  IntImage x;
  x.c = image.size(0);
  x.h = image.size(1);
  x.w = image.size(2);
  // The float image enters at the first layer's input type, as an HLS design reads it.
  x.type = parse_fixed_point_type(layers[0]["input_type"]);
  const at::Tensor flat = image.contiguous().to(torch::kDouble);
  for (int64_t i = 0; i < flat.numel(); ++i) {
    x.v.push_back(
        static_cast<int64_t>(reference::assign_double(flat.data_ptr<double>()[i], x.type)));
  }
  for (const json& layer : layers) {
    const std::string kind = layer["kind"];
    if (kind == "conv2d") {
      x = conv2d(x, layer);
    } else if (kind == "linear") {
      x = linear(x, layer);
    } else if (kind == "relu") {
      for (auto& v : x.v) v = std::max<int64_t>(v, 0);
    } else if (kind == "maxpool2d") {
      x = max_pool(x, layer);
    } else if (kind == "flatten") {
      x.c = x.c * x.h * x.w;
      x.h = x.w = 1;
    } else {
      ADD_FAILURE() << "unexpected layer kind " << kind;
    }
  }
  return x.v;
}

// A few real test images when the dataset is installed, and random ones.
at::Tensor some_images() {
  at::Tensor random = torch::randn({3, 1, 28, 28}) * 1.5;
  if (!std::filesystem::exists(strata::core::kFashionMnistDir)) return random;
  const auto test = strata::core::load_fashion_mnist(strata::core::kFashionMnistDir,
                                                     strata::core::FashionMnistSplit::Test);
  return torch::cat({test.images.slice(0, 0, 5), random});
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

// Quantizes fmnist-cnn, trains it a few steps (so that weights and binary points move off
// their starting values), exports it and runs the integer model on `images`.
void check_bit_exact(const QfxOptions& options, const at::Tensor& images) {
  SCOPED_TRACE(::testing::Message()
               << "W=" << options.width() << " K=" << options.k_hot().value_or(0) << " "
               << to_string(options.quant()) << " " << to_string(options.overflow()));
  torch::manual_seed(21);
  nn::Sequential model = quantize_model(strata::core::make_fmnist_cnn(), options);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.05));
  for (int step = 0; step < 3; ++step) {
    const at::Tensor x = torch::randn({16, 1, 28, 28});
    optimizer.zero_grad();
    nn::functional::cross_entropy(model->forward(x), torch::randint(0, 10, {16})).backward();
    optimizer.step();
  }
  model->eval();
  const at::Tensor logits = model->forward(images);

  TempDir dir;
  export_qfx(model, dir / "model.json");
  const json doc = read_json(dir / "model.json");
  ASSERT_EQ(doc["format"], "strata-qfx");

  // Round trip: the exported types and integers are the ones the forward used.
  for (size_t i : {0, 3, 7}) {
    const json& layer = doc["layers"][i];
    QfxQuantizers q = i == 7 ? model->ptr<QfxLinearImpl>(i)->quantizers
                             : model->ptr<QfxConv2dImpl>(i)->quantizers;
    const at::Tensor weight =
        i == 7 ? model->ptr<QfxLinearImpl>(i)->weight : model->ptr<QfxConv2dImpl>(i)->weight;
    EXPECT_EQ(parse_fixed_point_type(layer["weight_type"]), q.weight->type());
    EXPECT_EQ(parse_fixed_point_type(layer["input_type"]), q.input->type());
    EXPECT_EQ(parse_fixed_point_type(layer["output_type"]), q.output->type());
    const at::Tensor raw = torch::tensor(ints(layer["weight"]), torch::kLong).view(weight.sizes());
    EXPECT_TRUE(torch::equal(raw, q.weight->raw(weight)));
    const FixedPointType wt = q.weight->type();
    EXPECT_TRUE(torch::equal(raw.to(torch::kDouble) * std::ldexp(1.0, -wt.fraction_bits()),
                             q.weight->forward(weight).detach().to(torch::kDouble)));
  }

  const FixedPointType out_type = parse_fixed_point_type(doc["layers"].back()["output_type"]);
  // The emulated logits lie on the output type's grid, so this cast is exact.
  ASSERT_TRUE(torch::equal(fixed_point_cast(logits, out_type), logits));
  const at::Tensor emulated = fixed_point_cast_raw(logits, out_type);
  // A meaningful comparison: the logits are neither constant nor all saturated.
  EXPECT_GT(std::get<0>(at::_unique(emulated)).numel(), 5);
  for (int64_t n = 0; n < images.size(0); ++n) {
    const std::vector<int64_t> expected(emulated[n].data_ptr<int64_t>(),
                                        emulated[n].data_ptr<int64_t>() + emulated.size(1));
    EXPECT_EQ(integer_logits(doc, images[n]), expected) << "image " << n;
  }
}

}  // namespace

TEST(QfxExport, IntegerOnlyModelGivesTheSameLogitsBitForBit) {
  const at::Tensor images = some_images();
  check_bit_exact(QfxOptions(8), images);  // conv2 and linear accumulate in double
  check_bit_exact(QfxOptions(6), images);
  check_bit_exact(QfxOptions(4), images);
  check_bit_exact(QfxOptions(8).k_hot(2), images);
  check_bit_exact(QfxOptions(6)
                      .quant(QuantMode::AP_RND_CONV)
                      .overflow(OverflowMode::AP_SAT_SYM)
                      .output_width(10),
                  images);
  check_bit_exact(QfxOptions(5).quant(QuantMode::AP_TRN).overflow(OverflowMode::AP_WRAP), images);
}

TEST(QfxExport, LayersAndTypesAreListed) {
  torch::manual_seed(22);
  nn::Sequential model = quantize_model(strata::core::make_fmnist_cnn(), QfxOptions(6));
  model->forward(torch::randn({2, 1, 28, 28}));
  TempDir dir;
  export_qfx(model, dir / "m.json");
  const json doc = read_json(dir / "m.json");
  std::vector<std::string> kinds;
  for (const auto& l : doc["layers"]) kinds.push_back(l["kind"]);
  EXPECT_EQ(kinds, (std::vector<std::string>{"conv2d", "relu", "maxpool2d", "conv2d", "relu",
                                             "maxpool2d", "flatten", "linear"}));
  const json& conv = doc["layers"][0];
  EXPECT_THAT(conv["input_type"].get<std::string>(), HasSubstr("ap_fixed<6,"));
  EXPECT_THAT(conv["output_type"].get<std::string>(), HasSubstr("ap_ufixed<6,"));
  EXPECT_EQ(conv["weight"].size(), 16u * 25u);
  EXPECT_EQ(conv["bias"].size(), 16u);
  // No temporary file is left beside it.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(QfxExport, BadInputWritesNothing) {
  nn::Sequential model = quantize_model(strata::core::make_fmnist_cnn(), QfxOptions(6));
  TempDir dir;
  // Not calibrated yet.
  EXPECT_THAT(error_of([&] { export_qfx(model, dir / "m.json"); }),
              HasSubstr("layer 0: the input quantizer is not calibrated"));
  model->forward(torch::randn({2, 1, 28, 28}));
  EXPECT_THAT(error_of([&] { export_qfx(model, dir / "missing/m.json"); }),
              HasSubstr("directory " + (dir / "missing") + " does not exist"));
  EXPECT_THAT(error_of([&] { export_qfx(strata::core::make_fmnist_cnn(), dir / "f.json"); }),
              HasSubstr("layer 0 (torch::nn::Conv2d) cannot be exported"));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}
