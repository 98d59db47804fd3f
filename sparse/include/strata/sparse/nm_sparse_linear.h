#pragma once
// N:M sparse training: a Linear whose forward pass multiplies by the N:M-pruned weight with
// the sparse kernels, while the optimizer updates the dense weight underneath.
//
//   auto layer = strata::sparse::NMSparseLinear(
//       NMSparseLinearOptions(1024, 1024).n(2).m(8).method(NMTraining::Bdwp));
//   at::Tensor y = layer(x);   // x [*, 1024]; trains like a Linear
//
// Every forward prunes the current dense weight W [out, in] to its n largest |w| in each
// group of m consecutive input channels (mask P) and multiplies with spmm. Backward:
//   SR-STE (Zhou et al. 2021)  dx = dy (W*P)        the exact gradient of the sparse forward
//                              dW = dy^T x + decay * (1 - P) * W
//   BDWP (the seed paper)      dx = dy (W*Q)        Q: the N:M mask of W^T, i.e. groups of m
//                                                   consecutive OUTPUT channels, so this
//                                                   product is an N:M spmm too
//                              dW = dy^T x + decay * (1 - P) * W
// In both, dW reaches every weight (the straight-through estimator), so pruned weights
// can grow back; the decay term (SR-STE's lambda) pulls them towards zero. BDWP's dx is
// the gradient of the sparse forward only where Q and P keep the same weights; it is the
// cheaper approximation the seed paper trains with (both passes on the sparse kernels).
// The weight-gradient product stays dense in both, and so does SR-STE's dx (the transpose
// of an N:M weight is not N:M).
//
// Two options trade that for speed (both 1 by default: every step as above):
//   mask_every K        the masks P (and BDWP's Q) are chosen every K training steps
//                       (training-mode forwards with grad); in between, the packed weights
//                       keep their positions and only re-read their values from the dense
//                       weight (NMSparse::regather: no selection).
//   dense_grad_every D  the dense dW above every D training steps (0: never); on the other
//                       steps dW = sddmm(P, dy, x) at the kept positions only (n/m of the
//                       dense product's work) and decay * W at the pruned ones.
// Eval-mode forwards use the current masks and count no step.

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include "strata/sparse/formats.h"
#include "strata/sparse/sparse_linear.h"
#include "strata/sparse/spmm.h"

#include <ostream>
#include <string>

namespace strata::sparse {

enum class NMTraining { SrSte, Bdwp };

// "srste" or "bdwp"; anything else is a strata::Error naming both.
NMTraining parse_nm_training(const std::string& name);
std::string to_string(NMTraining method);

struct NMSparseLinearOptions {
  NMSparseLinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
  TORCH_ARG(int64_t, n) = 2;
  TORCH_ARG(int64_t, m) = 8;
  TORCH_ARG(NMTraining, method) = NMTraining::Bdwp;
  // SR-STE's lambda: the gradient of a pruned weight gets decay * w added.
  TORCH_ARG(double, decay) = 2e-4;
  TORCH_ARG(SpmmOptions, spmm) = {};
  // Training steps between mask updates (>= 1), see above.
  TORCH_ARG(int64_t, mask_every) = 1;
  // Training steps between dense weight gradients (>= 0; 0: only the masked one), see above.
  TORCH_ARG(int64_t, dense_grad_every) = 1;
};

class NMSparseLinearImpl : public torch::nn::Cloneable<NMSparseLinearImpl> {
 public:
  explicit NMSparseLinearImpl(const NMSparseLinearOptions& options);
  // Starts from a trained Linear's weight and bias (copied).
  NMSparseLinearImpl(const torch::nn::Linear& linear, NMSparseLinearOptions options);

  void reset() override;  // Linear's initialisation
  at::Tensor forward(const at::Tensor& x);

  // The N:M mask the next training forward uses, bool [out, in].
  at::Tensor mask() const;
  // The weight the forward multiplies by: weight * mask().
  at::Tensor sparse_weight() const;
  // An inference copy: a SparseLinear in the N:M format with this mask.
  SparseLinear to_sparse_linear() const;
  void pretty_print(std::ostream& stream) const override;

  NMSparseLinearOptions options;
  at::Tensor weight;  // dense [out, in], the parameter the optimizer updates
  at::Tensor bias;    // [out] or undefined

 private:
  // The packed weight the next training forward multiplies by (see mask_every).
  NMSparse next_weight() const;

  int64_t steps_ = 0;  // training forwards so far
  // With mask_every > 1: the positions chosen at the last mask update (P, and BDWP's Q of
  // W^T); their values are stale, regather() refreshes them.
  NMSparse forward_pattern_, backward_pattern_;
};

TORCH_MODULE(NMSparseLinear);

// The same model with each Linear of `model` (a Sequential, searched one level deep)
// replaced by an NMSparseLinear that starts from its weights, except the last Linear when
// keep_last_dense (the classifier, usually kept dense). A Linear whose input size M does
// not divide is padded (see formats.h). Returns how many layers were replaced in *replaced.
torch::nn::Sequential with_nm_sparse_training(const torch::nn::Sequential& model,
                                              const NMSparseLinearOptions& like,
                                              bool keep_last_dense = true, int* replaced = nullptr);

}  // namespace strata::sparse
