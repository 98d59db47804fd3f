#include "strata/core/models/fmnist_models.h"

#include <torch/torch.h>

#include "strata/core/error.h"

namespace strata::core {

namespace nn = torch::nn;

torch::nn::Sequential make_fmnist_mlp() {
  nn::Sequential model(nn::Flatten(), nn::Linear(784, 1024), nn::ReLU());
  for (int i = 0; i < 5; ++i) {
    model->push_back(nn::Linear(1024, 1024));
    model->push_back(nn::ReLU());
  }
  model->push_back(nn::Linear(1024, 10));
  return model;
}

torch::nn::Sequential make_fmnist_cnn() {
  return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 16, 5).padding(2)), nn::ReLU(),
                        nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                        nn::Conv2d(nn::Conv2dOptions(16, 32, 5).padding(2)), nn::ReLU(),
                        nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Flatten(),
                        nn::Linear(32 * 7 * 7, 10));
}

torch::nn::Sequential make_fmnist_model(const std::string& name) {
  if (name == "mlp") return make_fmnist_mlp();
  if (name == "cnn") return make_fmnist_cnn();
  STRATA_FAIL("model '", name, "': unknown, expected one of: mlp, cnn");
}

}  // namespace strata::core
