#pragma once
// QFX: trainable fixed point. Layers whose weights, input activations and outputs are
// cast to HLS fixed-point types (bit-exact, fixed_point.h) in the forward pass, with the
// binary point of every tensor (its integer bits I, for a fixed width W) learned by a
// straight-through gradient; a pass that swaps the layers of a trained model; a
// multiplier-free mode (K-hot weights); post-training quantization with the same types;
// and a JSON export of integer weights and types. docs/quant.md has the walk-through.
//
//   torch::nn::Sequential float_model = strata::core::make_fmnist_cnn();  // ... trained
//   auto model = strata::quant::quantize_model(float_model, QfxOptions(6));
//   model->forward(batch);            // first forward: every binary point from max |x|
//   ... train model->parameters() as usual (weights and binary points) ...
//   strata::quant::export_qfx(model, "cnn.qfx.json");

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "strata/quant/fixed_point.h"

namespace strata::quant {

// ---------------------------------------------------------------------------------------
// The quantizer

struct FixedPointQuantizerOptions {
  explicit FixedPointQuantizerOptions(int width) : width_(width) {}
  TORCH_ARG(int, width);                                     // W, 1..24 (exact in float32)
  TORCH_ARG(bool, is_signed) = true;                         // ap_fixed, else ap_ufixed
  TORCH_ARG(QuantMode, quant) = QuantMode::AP_RND;           // Q
  TORCH_ARG(OverflowMode, overflow) = OverflowMode::AP_SAT;  // O
  // I to start from; unset: from max |x| of the first forward (calibration).
  TORCH_ARG(std::optional<double>, integer_bits) = std::nullopt;
  TORCH_ARG(bool, learn_integer_bits) = true;  // the binary point is a trained parameter
  // Multiplies the binary point's gradient by LSQ's 1/sqrt(numel * Qp), so that its steps
  // stay comparable with the weights' however large the tensor is.
  TORCH_ARG(bool, scale_gradient) = true;
  // K: at most K set bits in the magnitude of every value's integer (K-hot weights).
  TORCH_ARG(std::optional<int>, k_hot) = std::nullopt;
};

// How post-training quantization picks a binary point from calibration data.
enum class RangeStatistic {
  Max,         // the largest |x| seen
  Percentile,  // the mean over batches of the given percentile of |x|
};

// Casts its input to ap_fixed<W, round(I), Q, O> (or ap_ufixed) with fixed_point_cast;
// I is the parameter `integer_bits`. Gradients (derivation in qfx_quantizer.cpp):
//   d y / d x = 1 inside [min, max] (everywhere under AP_WRAP), 0 outside;
//   d y / d I = ln2 * (y - x) inside, ln2 * y (the clip bound) outside.
class FixedPointQuantizerImpl : public torch::nn::Cloneable<FixedPointQuantizerImpl> {
 public:
  explicit FixedPointQuantizerImpl(FixedPointQuantizerOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);

  // The type the next forward uses; calibrated() must be true.
  FixedPointType type() const;
  bool calibrated() const;
  void set_integer_bits(double integer_bits);
  // The raw integers V (int64) the forward casts x to, K-hot projection included.
  at::Tensor raw(const at::Tensor& x) const;

  // Post-training calibration: while observing, forward returns x unchanged and records
  // statistic(|x|); finish_observing sets I so that the range covers it.
  void start_observing(RangeStatistic statistic, double percentile = 99.99);
  void finish_observing();
  bool observing() const { return observing_.has_value(); }

  FixedPointQuantizerOptions options;
  at::Tensor integer_bits;  // float scalar parameter, NaN until calibrated

 private:
  std::optional<RangeStatistic> observing_;
  double percentile_ = 99.99;
  double observed_ = 0;  // max, or sum of per-batch percentiles
  int64_t observed_batches_ = 0;
};
TORCH_MODULE(FixedPointQuantizer);

// I such that the type's range covers magnitude r: ceil(log2 r) (+1 for the sign bit).
int integer_bits_for_range(double r, bool is_signed);

// ---------------------------------------------------------------------------------------
// K-hot values (multiplier-free weights)

// The nearest integers to raw (int64, values of type t) whose magnitudes have at most k
// set bits, within t's range; ties go to the smaller magnitude. Exact projection: every
// admissible magnitude is enumerated and the nearest chosen (greedy top-k truncation of
// the bits can be one admissible value off; see qfx_k_hot.cpp).
at::Tensor project_k_hot(const at::Tensor& raw, int k, const FixedPointType& t);

// Set bits of |v| for every element (int64 tensor in, int64 tensor out).
at::Tensor count_set_bits(const at::Tensor& raw);

// ---------------------------------------------------------------------------------------
// Layers

// What quantize_model and the layers share: one width and mode set for every tensor.
struct QfxOptions {
  explicit QfxOptions(int width) : width_(width) {}
  TORCH_ARG(int, width);             // W of weights and input activations, 1..24
  TORCH_ARG(int, output_width) = 0;  // W of each layer's output (0: width)
  TORCH_ARG(QuantMode, quant) = QuantMode::AP_RND;
  TORCH_ARG(OverflowMode, overflow) = OverflowMode::AP_SAT;
  // K: multiplier-free weights with at most K set bits (K >= 1); unset: off.
  TORCH_ARG(std::optional<int>, k_hot) = std::nullopt;
  TORCH_ARG(bool, learn_integer_bits) = true;

 public:
  // Throws strata::Error for W or output W outside 1..24 or K < 1.
  void check() const;
  FixedPointQuantizerOptions quantizer(bool is_signed) const;  // activations
  FixedPointQuantizerOptions weight_quantizer() const;         // with k_hot
  FixedPointQuantizerOptions output_quantizer(bool is_signed) const;
};

// The quantizers of a layer that multiplies and accumulates. Its accumulator holds
// every product and the bias without overflow: mul_result_type(input, weight) widened
// by ceil(log2(fan_in + 1)) guard bits, wrapping like an HLS register; the bias is cast
// to it (AP_RND, AP_SAT), and the output cast from it to the output type. In eval mode
// the sums are exact (double when the accumulator is wider than 24 bits), so the output
// is the hardware's bit for bit; in training they run in float32, whose rounding of an
// accumulator wider than 24 bits only touches its lowest bits.
struct QfxQuantizers {
  FixedPointQuantizer input = nullptr, weight = nullptr, output = nullptr;
};

struct QfxLinearOptions {
  QfxLinearOptions(int64_t in_features, int64_t out_features, QfxOptions qfx)
      : in_features_(in_features), out_features_(out_features), qfx_(qfx) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(QfxOptions, qfx);
  TORCH_ARG(bool, unsigned_input) = false;   // input known >= 0 (after a ReLU)
  TORCH_ARG(bool, unsigned_output) = false;  // output feeds a ReLU: clamp at 0 instead
};

class QfxLinearImpl : public torch::nn::Cloneable<QfxLinearImpl> {
 public:
  explicit QfxLinearImpl(QfxLinearOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  FixedPointType accumulator_type() const;
  int64_t fan_in() const { return options.in_features(); }

  QfxLinearOptions options;
  at::Tensor weight, bias;
  QfxQuantizers quantizers;
};
TORCH_MODULE(QfxLinear);

struct QfxConv2dOptions {
  // conv: in/out channels, kernel, stride, padding, dilation, groups (zeros padding).
  QfxConv2dOptions(torch::nn::Conv2dOptions conv, QfxOptions qfx) : conv_(conv), qfx_(qfx) {}
  TORCH_ARG(torch::nn::Conv2dOptions, conv);
  TORCH_ARG(QfxOptions, qfx);
  TORCH_ARG(bool, unsigned_input) = false;
  TORCH_ARG(bool, unsigned_output) = false;
};

class QfxConv2dImpl : public torch::nn::Cloneable<QfxConv2dImpl> {
 public:
  explicit QfxConv2dImpl(QfxConv2dOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  FixedPointType accumulator_type() const;
  int64_t fan_in() const;

  QfxConv2dOptions options;
  at::Tensor weight, bias;
  QfxQuantizers quantizers;
};
TORCH_MODULE(QfxConv2d);

// BatchNorm2d folded into its per-channel affine map y = a * x + b, a = gamma /
// sqrt(var + eps), b = beta - a * mean (batch statistics in training, running ones in
// eval): a is quantized like a weight, b to the accumulator type of x * a, and the
// output of the multiply-add is quantized. This is what the hardware computes, so the
// quantized quantities are the ones it stores.
struct QfxBatchNorm2dOptions {
  QfxBatchNorm2dOptions(int64_t num_features, QfxOptions qfx)
      : num_features_(num_features), qfx_(qfx) {}
  TORCH_ARG(int64_t, num_features);
  TORCH_ARG(double, eps) = 1e-5;
  TORCH_ARG(double, momentum) = 0.1;
  TORCH_ARG(QfxOptions, qfx);
  TORCH_ARG(bool, unsigned_input) = false;
  TORCH_ARG(bool, unsigned_output) = false;
};

class QfxBatchNorm2dImpl : public torch::nn::Cloneable<QfxBatchNorm2dImpl> {
 public:
  explicit QfxBatchNorm2dImpl(QfxBatchNorm2dOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  // The folded per-channel scale and shift (float) the forward quantizes.
  std::pair<at::Tensor, at::Tensor> folded() const;
  FixedPointType accumulator_type() const;

  QfxBatchNorm2dOptions options;
  at::Tensor weight, bias, running_mean, running_var;
  QfxQuantizers quantizers;  // `weight` quantizes the folded scale a
};
TORCH_MODULE(QfxBatchNorm2d);

// a + b for residual connections: each operand cast to its own type, the exact sum
// (add_result_type) cast to the output type.
class QfxAddImpl : public torch::nn::Cloneable<QfxAddImpl> {
 public:
  explicit QfxAddImpl(QfxOptions options);
  void reset() override;
  at::Tensor forward(const at::Tensor& a, const at::Tensor& b);

  QfxOptions options;
  FixedPointQuantizer input_a = nullptr, input_b = nullptr, output = nullptr;
};
TORCH_MODULE(QfxAdd);

// ---------------------------------------------------------------------------------------
// Whole models

// A copy of `model` with every Linear, Conv2d and BatchNorm2d replaced by its QFX layer
// (trained weights and statistics copied); ReLU, MaxPool2d, Flatten, Dropout and Identity
// stay (they keep values on the grid). A layer that reads the output of a
// ReLU gets an unsigned input type, and a layer followed by a ReLU an unsigned output
// type (clamping at 0 is then the ReLU itself), so no bit is spent on a sign that is
// always +. Any other layer is a strata::Error naming it; `model` is not modified.
torch::nn::Sequential quantize_model(const torch::nn::Sequential& model, const QfxOptions& options);
// The same for a module that must be a Sequential (anything else is a strata::Error).
torch::nn::Sequential quantize_model(const std::shared_ptr<torch::nn::Module>& model,
                                     const QfxOptions& options);

// Every quantizer of `model`, in forward order.
std::vector<FixedPointQuantizer> quantizers_of(const torch::nn::Module& model);

// The binary-point parameters, and every other parameter: for two optimizer groups.
std::vector<at::Tensor> binary_point_parameters(const torch::nn::Module& model);
std::vector<at::Tensor> weight_parameters(const torch::nn::Module& model);

// Post-training quantization: runs `batches` through `model` (eval, no gradient) with
// every quantizer observing instead of quantizing, then sets each binary point from the
// statistic. Weights go through the same rule.
struct PtqOptions {
  TORCH_ARG(RangeStatistic, statistic) = RangeStatistic::Max;
  TORCH_ARG(double, percentile) = 99.99;  // for Percentile, in (0, 100]
};
void calibrate_ptq(torch::nn::Sequential model, const std::vector<at::Tensor>& batches,
                   const PtqOptions& options = {});

// Multipliers a fully unrolled layer needs: one per non-zero weight, or, with K-hot
// weights, none and one shift-add per set bit of each weight.
struct MultiplierReport {
  int64_t weights = 0;
  int64_t nonzero_weights = 0;
  int64_t multipliers = 0;
  int64_t shift_adds = 0;
  int64_t max_set_bits = 0;  // most set bits in one weight's magnitude
  MultiplierReport& operator+=(const MultiplierReport& other);
};
// For a QfxLinear, QfxConv2d or QfxBatchNorm2d (its folded scale), or a Sequential (the
// sum over its layers). Other modules count nothing.
MultiplierReport multiplier_report(const torch::nn::Module& layer);

// ---------------------------------------------------------------------------------------
// Export

// Writes `model` (a quantized Sequential, calibrated) as JSON: for every layer its kind
// and shape parameters and, for QFX layers, the ap_fixed type string of the input,
// weight, bias, accumulator and output, and the integer weights and bias (raw values V,
// value = V * 2^-F). The file is written to a temporary name and renamed, so `path`
// holds the old file or the complete new one. strata::Error (nothing written) for a
// missing directory, an uncalibrated quantizer or a layer the export does not know.
void export_qfx(const torch::nn::Sequential& model, const std::string& path);

}  // namespace strata::quant
