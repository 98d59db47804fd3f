#pragma once
// Fashion-MNIST from the gzip'ed IDX files of Debian's dataset-fashion-mnist package.

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <string>

namespace strata::core {

// Where dataset-fashion-mnist installs the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Reads one gzip'ed IDX file: magic 0x00000803 gives uint8 [N, rows, cols] (images),
// 0x00000801 gives uint8 [N] (labels). The payload must be exactly as long as the header
// says: a truncated download or trailing bytes are errors, not silently short data.
at::Tensor read_idx_file(const std::string& path);

enum class FashionMnistSplit { Train, Test };

struct FashionMnist {
  at::Tensor images;  // float32 [N, 1, 28, 28], normalized (x/255 - 0.2860) / 0.3530
  at::Tensor labels;  // int64 [N], each in [0, 10)
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

// Loads `<dir>/train-*-ubyte.gz` (60,000 samples) or `<dir>/t10k-*-ubyte.gz` (10,000).
FashionMnist load_fashion_mnist(const std::string& dir, FashionMnistSplit split);

// Fraction of `data` a classifier gets right (argmax of its logits), in batches of
// `batch`, in eval mode and without gradients; the model's training flag is restored.
double classification_accuracy(torch::nn::Sequential& model, const FashionMnist& data,
                               int64_t batch = 1000);

}  // namespace strata::core
