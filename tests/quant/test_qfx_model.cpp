// quantize_model, K-hot weights and their multiplier report, BatchNorm and Add layers,
// post-training calibration, and the errors for bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/test_util.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/quant/fixed_arith.h"
#include "strata/quant/qfx.h"

using namespace strata::quant;
using strata::test::error_of;
using testing::HasSubstr;
namespace nn = torch::nn;

namespace {

double relative_error(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

}  // namespace

TEST(QfxModel, SixteenBitsStayCloseToFloat) {
  torch::manual_seed(10);
  nn::Sequential model = strata::core::make_fmnist_cnn();
  model->eval();
  const at::Tensor x = torch::randn({8, 1, 28, 28});
  const at::Tensor expected = model->forward(x);
  nn::Sequential quantized = quantize_model(model, QfxOptions(16));
  quantized->eval();
  const at::Tensor got = quantized->forward(x);
  EXPECT_LT(relative_error(got, expected), 2e-3);
  // Quantized, not float passed through: the logits lie on the last layer's output grid
  // (a cast to it changes nothing), which the float logits do not.
  const FixedPointType out_type = quantized->ptr<QfxLinearImpl>(7)->quantizers.output->type();
  EXPECT_TRUE(torch::equal(fixed_point_cast(got, out_type), got));
  EXPECT_FALSE(torch::equal(fixed_point_cast(expected, out_type), expected));
  // The float model is untouched and the structure kept.
  EXPECT_EQ(quantized->size(), model->size());
  EXPECT_TRUE(torch::equal(model->forward(x), expected));
}

TEST(QfxModel, SwapsLayersAndPicksSignedness) {
  nn::Sequential model = strata::core::make_fmnist_cnn();
  nn::Sequential q = quantize_model(model, QfxOptions(8));
  auto conv1 = q->ptr<QfxConv2dImpl>(0);
  auto conv2 = q->ptr<QfxConv2dImpl>(3);
  auto linear = q->ptr<QfxLinearImpl>(7);
  ASSERT_TRUE(conv1 && conv2 && linear);
  EXPECT_TRUE(q->ptr<nn::ReLUImpl>(1) && q->ptr<nn::MaxPool2dImpl>(2) &&
              q->ptr<nn::FlattenImpl>(6));
  // The image can be negative; everything after a ReLU is not.
  EXPECT_TRUE(conv1->quantizers.input->options.is_signed());
  EXPECT_FALSE(conv2->quantizers.input->options.is_signed());
  EXPECT_FALSE(linear->quantizers.input->options.is_signed());
  // Outputs feeding a ReLU are unsigned (the clamp is the ReLU); the logits are signed.
  EXPECT_FALSE(conv1->quantizers.output->options.is_signed());
  EXPECT_TRUE(linear->quantizers.output->options.is_signed());
  // Trained weights are copied, not shared.
  EXPECT_TRUE(torch::equal(conv1->weight, model->ptr<nn::Conv2dImpl>(0)->weight));
  EXPECT_NE(conv1->weight.data_ptr(), model->ptr<nn::Conv2dImpl>(0)->weight.data_ptr());
  // Weights and binary points split into two groups covering every parameter.
  EXPECT_EQ(binary_point_parameters(*q).size(), 9u);
  EXPECT_EQ(binary_point_parameters(*q).size() + weight_parameters(*q).size(),
            q->parameters().size());
}

TEST(QfxModel, KHotProjectionIsNearestWithAtMostKBits) {
  // Every raw value of ap_fixed<8,..> against a brute-force search over all candidates.
  const FixedPointType t = ap_fixed(8, 3, QuantMode::AP_RND, OverflowMode::AP_SAT);
  const at::Tensor raw = torch::arange(-128, 128, torch::kLong);
  for (int k = 1; k <= 3; ++k) {
    const at::Tensor projected = project_k_hot(raw, k, t);
    for (int64_t i = 0; i < raw.numel(); ++i) {
      const int64_t v = raw[i].item<int64_t>(), p = projected[i].item<int64_t>();
      ASSERT_LE(__builtin_popcountll(static_cast<uint64_t>(std::abs(p))), k) << v;
      ASSERT_TRUE(p >= -128 && p <= 127) << v;
      int64_t best = 0;
      for (int64_t c = -128; c <= 127; ++c) {
        if (__builtin_popcountll(static_cast<uint64_t>(std::abs(c))) > k) continue;
        // Nearest; ties to the smaller magnitude.
        const int64_t d = std::abs(c - v), bd = std::abs(best - v);
        if (d < bd || (d == bd && std::abs(c) < std::abs(best))) best = c;
      }
      ASSERT_EQ(p, best) << "K=" << k << " v=" << v;
    }
  }
  EXPECT_THAT(error_of([&] { project_k_hot(raw, 0, t); }), HasSubstr("K=0"));
}

TEST(QfxModel, KHotLayerNeedsNoMultipliers) {
  torch::manual_seed(11);
  nn::Sequential model = strata::core::make_fmnist_cnn();
  nn::Sequential plain = quantize_model(model, QfxOptions(8));
  nn::Sequential khot = quantize_model(model, QfxOptions(8).k_hot(2));
  const at::Tensor x = torch::randn({4, 1, 28, 28});
  plain->forward(x);
  khot->forward(x);
  for (size_t i : {0, 3, 7}) {
    const MultiplierReport r = multiplier_report(*khot->ptr(i));
    EXPECT_LE(r.max_set_bits, 2);
    EXPECT_EQ(r.multipliers, 0);
    EXPECT_GT(r.shift_adds, 0);
    EXPECT_LE(r.shift_adds, 2 * r.nonzero_weights);
    const MultiplierReport p = multiplier_report(*plain->ptr(i));
    EXPECT_EQ(p.multipliers, p.nonzero_weights);
    EXPECT_EQ(p.shift_adds, 0);
    EXPECT_GT(p.max_set_bits, 2);
    // The raw weights the forward used really have at most 2 set bits.
    auto* layer = dynamic_cast<QfxConv2dImpl*>(khot->ptr(i).get());
    if (layer) {
      EXPECT_LE(count_set_bits(layer->quantizers.weight->raw(layer->weight)).max().item<int64_t>(),
                2);
    }
  }
  const MultiplierReport total = multiplier_report(*plain);
  EXPECT_EQ(total.weights, 16 * 25 + 32 * 16 * 25 + 1568 * 10);
}

TEST(QfxModel, BatchNormFoldsAndStaysClose) {
  torch::manual_seed(12);
  nn::Sequential model(nn::Conv2d(nn::Conv2dOptions(3, 8, 3).padding(1)), nn::BatchNorm2d(8),
                       nn::ReLU(), nn::Flatten(), nn::Linear(8 * 6 * 6, 5));
  // A few training batches give the BatchNorm non-trivial running statistics.
  for (int i = 0; i < 5; ++i) model->forward(torch::randn({16, 3, 6, 6}) * 2 + 1);
  model->eval();
  const at::Tensor x = torch::randn({4, 3, 6, 6});
  const at::Tensor expected = model->forward(x);
  nn::Sequential q = quantize_model(model, QfxOptions(16));
  q->eval();
  ASSERT_TRUE(q->ptr<QfxBatchNorm2dImpl>(1));
  const at::Tensor got = q->forward(x);
  EXPECT_LT(relative_error(got, expected), 2e-3);
  const FixedPointType out_type = q->ptr<QfxLinearImpl>(4)->quantizers.output->type();
  EXPECT_TRUE(torch::equal(fixed_point_cast(got, out_type), got));
  EXPECT_FALSE(torch::equal(fixed_point_cast(expected, out_type), expected));
  // Training mode uses batch statistics and updates the running ones.
  q->train();
  const at::Tensor before = q->ptr<QfxBatchNorm2dImpl>(1)->running_mean.clone();
  q->forward(torch::randn({16, 3, 6, 6}) + 3).sum().backward();
  EXPECT_FALSE(torch::equal(before, q->ptr<QfxBatchNorm2dImpl>(1)->running_mean));
  EXPECT_TRUE(q->ptr<QfxBatchNorm2dImpl>(1)->weight.grad().defined());
}

TEST(QfxModel, AddCastsTheExactSum) {
  QfxAdd add(QfxOptions(6));
  const at::Tensor a = torch::tensor({0.3, -1.2, 2.9}), b = torch::tensor({0.26, 0.7, 1.4});
  const at::Tensor got = add(a, b);
  // The first forward calibrates each operand and the output from max |x|.
  const at::Tensor qa = fixed_point_cast(a, add->input_a->type());
  const at::Tensor qb = fixed_point_cast(b, add->input_b->type());
  EXPECT_TRUE(torch::equal(
      got, fixed_point_cast(qa.to(torch::kDouble) + qb.to(torch::kDouble), add->output->type())
               .to(torch::kFloat)));
}

TEST(QfxModel, PostTrainingCalibration) {
  torch::manual_seed(13);
  nn::Sequential model = strata::core::make_fmnist_cnn();
  nn::Sequential q = quantize_model(model, QfxOptions(8));
  std::vector<at::Tensor> batches = {torch::randn({8, 1, 28, 28}), torch::randn({8, 1, 28, 28})};
  calibrate_ptq(q, batches);
  auto conv1 = q->ptr<QfxConv2dImpl>(0);
  const double max_input =
      std::max(batches[0].abs().max().item<double>(), batches[1].abs().max().item<double>());
  EXPECT_EQ(conv1->quantizers.input->type().integer_bits, integer_bits_for_range(max_input, true));
  EXPECT_EQ(conv1->quantizers.weight->type().integer_bits,
            integer_bits_for_range(conv1->weight.abs().max().item<double>(), true));
  const int max_bits = q->ptr<QfxLinearImpl>(7)->quantizers.output->type().integer_bits;
  // A percentile never gives a wider range than the max.
  calibrate_ptq(q, batches, PtqOptions().statistic(RangeStatistic::Percentile).percentile(99));
  EXPECT_LE(q->ptr<QfxLinearImpl>(7)->quantizers.output->type().integer_bits, max_bits);
  EXPECT_LE(conv1->quantizers.input->type().integer_bits, integer_bits_for_range(max_input, true));
  EXPECT_EQ(integer_bits_for_range(3.0, true), 3);   // ap_fixed<W,3>: [-4, 4)
  EXPECT_EQ(integer_bits_for_range(4.0, false), 2);  // ap_ufixed<W,2>: [0, 4), 4 saturates
}

TEST(QfxModel, BadInputIsAClearError) {
  nn::Sequential model = strata::core::make_fmnist_cnn();
  EXPECT_THAT(error_of([&] { quantize_model(model, QfxOptions(0)); }),
              HasSubstr("width W=0 out of range, expected 1 to 24"));
  EXPECT_THAT(error_of([&] { quantize_model(model, QfxOptions(8).k_hot(0)); }),
              HasSubstr("K-hot with K=0, expected at least 1"));
  EXPECT_THAT(error_of([&] { FixedPointQuantizer q(FixedPointQuantizerOptions(30)); }),
              HasSubstr("width W=30 out of range"));
  std::shared_ptr<nn::Module> linear = nn::Linear(3, 4).ptr();
  EXPECT_THAT(error_of([&] { quantize_model(linear, QfxOptions(8)); }),
              HasSubstr("expected a torch::nn::Sequential, got torch::nn::Linear"));
  nn::Sequential odd(nn::Linear(3, 4), nn::Sigmoid());
  EXPECT_THAT(error_of([&] { quantize_model(odd, QfxOptions(8)); }),
              HasSubstr("layer 1 (torch::nn::Sigmoid) is not supported"));
  EXPECT_THAT(error_of([&] { calibrate_ptq(quantize_model(model, QfxOptions(8)), {}); }),
              HasSubstr("no calibration batches"));
}

TEST(QfxModel, AccumulatorWrapsLikeTheRegister) {
  // A bias saturated at the register's maximum plus positive products: the sum passes the
  // top and wraps, as fixed_arith's Accumulator (the hardware register) does.
  QfxLinear layer(QfxLinearOptions(2, 1, QfxOptions(4).output_width(24)));
  layer->quantizers.input->set_integer_bits(2);   // ap_fixed<4,2>, LSB 0.25
  layer->quantizers.weight->set_integer_bits(1);  // ap_fixed<4,1>, LSB 0.125
  layer->quantizers.output->set_integer_bits(5);  // ap_fixed<24,5> holds the register
  {
    torch::NoGradGuard no_grad;
    layer->weight.copy_(torch::tensor({{0.5, 0.75}}));
    layer->bias.fill_(1e6);
  }
  layer->eval();
  const at::Tensor x = torch::tensor({{1.5, 1.0}});
  const at::Tensor got = layer(x);

  const FixedPointType acc_type = layer->accumulator_type();
  ASSERT_EQ(acc_type, ap_fixed(10, 5));  // <8,3> products, 2 guard bits for 2 terms + bias
  Accumulator acc(acc_type, {1});
  FixedPointType bias_type = acc_type;
  bias_type.quant = QuantMode::AP_RND;
  bias_type.overflow = OverflowMode::AP_SAT;
  acc.add(to_fixed(layer->bias.detach().to(torch::kDouble), bias_type));
  const auto in = to_fixed(x.to(torch::kDouble).flatten(), layer->quantizers.input->type());
  const auto w = to_fixed(layer->weight.detach().to(torch::kDouble).flatten(),
                          layer->quantizers.weight->type());
  for (int64_t i = 0; i < 2; ++i) {
    acc.add_product({in.raw.slice(0, i, i + 1), in.type}, {w.raw.slice(0, i, i + 1), w.type});
  }
  // 15.96875 + 0.75 + 0.75 = 17.46875 wraps to 17.46875 - 32.
  EXPECT_EQ(acc.value().to_double().item<double>(), -14.53125);
  EXPECT_EQ(got.item<double>(), -14.53125);
}
