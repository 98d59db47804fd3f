#pragma once
// The standard workloads of docs/BENCHMARKS.md, so that every benchmark, example and
// test trains the same networks.

#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <string>

namespace strata::core {

// fmnist-mlp: Flatten, Linear(784,1024), ReLU, 5 x [Linear(1024,1024), ReLU], Linear(1024,10).
torch::nn::Sequential make_fmnist_mlp();

// fmnist-cnn: Conv2d(1,16,5,pad 2), ReLU, MaxPool2d(2), Conv2d(16,32,5,pad 2), ReLU,
// MaxPool2d(2), Flatten, Linear(1568,10).
torch::nn::Sequential make_fmnist_cnn();

// "mlp", "cnn" or "vit" (fmnist-vit with its default options, fmnist_vit.h; for a --model
// flag); anything else is a strata::Error listing them.
torch::nn::Sequential make_fmnist_model(const std::string& name);

// Bytes one training step of `batch` images of fmnist-mlp, fmnist-cnn or fmnist-vit
// ("mlp", "cnn", "vit")
// needs, about (weights, gradients, momentum, and the activations autograd keeps): an
// estimate to refuse absurd batches with (core::check_fits); saturates at INT64_MAX.
int64_t fmnist_training_bytes(const std::string& name, int64_t batch);

}  // namespace strata::core
