#include "strata/core/models/fmnist_models.h"

#include <torch/torch.h>

#include "strata/core/error.h"
#include "strata/core/memory.h"
#include "strata/core/models/fmnist_vit.h"

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
  if (name == "vit") return make_fmnist_vit();
  STRATA_FAIL("model '", name, "': unknown, expected one of: mlp, cnn, vit");
}

int64_t fmnist_training_bytes(const std::string& name, int64_t batch) {
  if (name == "vit") return fmnist_vit_training_bytes(FmnistVitOptions(), batch);
  STRATA_CHECK(name == "mlp" || name == "cnn", "fmnist model '", name,
               "': expected mlp, cnn or vit");
  constexpr int64_t kFloat = 4;
  // Per image: the input and every layer's output, kept for backward and matched by a
  // gradient (x 2): the sums below.
  const int64_t per_image =
      name == "mlp" ? 784 + 12 * 1024 + 10
                    : 784 + 2 * 16 * 28 * 28 + 16 * 14 * 14 + 2 * 32 * 14 * 14 + 32 * 7 * 7 + 10;
  const int64_t params =
      name == "mlp" ? 784 * 1024 + 5 * 1024 * 1024 + 1024 * 10 : 16 * 25 + 32 * 16 * 25 + 1568 * 10;
  return saturating_product(
      {kFloat, saturating_add(saturating_product({2, batch, per_image}), 3 * params)});
}

}  // namespace strata::core
