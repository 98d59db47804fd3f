#pragma once
// Skip connections in a Sequential: SkipStash("a") passes its input on and keeps it under
// "a"; a later SkipPop("a") combines its input with the kept tensor (x + stashed by
// default) and drops it. The kept tensors live on a tray of the calling thread, so a plain
// model->forward works in one process, and threads (in-process pipeline ranks) never see
// each other's tensors. The pipeline executor moves a tensor stashed in one stage and
// popped in a later one between the two stages' ranks. See docs/pipeline.md.

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <map>
#include <string>

namespace strata::parallel {

// This thread's tray: name -> the tensor stashed under it and not popped yet.
using SkipTray = std::map<std::string, at::Tensor>;
// Puts `tray` in place of this thread's tray and returns the one that was there.
SkipTray exchange_skip_tray(SkipTray tray);

class SkipStashImpl : public torch::nn::Cloneable<SkipStashImpl> {
 public:
  explicit SkipStashImpl(std::string name);
  void reset() override {}
  // Returns x; raises strata::Error when `name` is already stashed and not popped.
  at::Tensor forward(const at::Tensor& x);
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};
TORCH_MODULE(SkipStash);

using SkipCombine = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& stashed)>;

class SkipPopImpl : public torch::nn::Cloneable<SkipPopImpl> {
 public:
  // `combine` defaults to x + stashed.
  explicit SkipPopImpl(std::string name, SkipCombine combine = nullptr);
  void reset() override {}
  // Returns combine(x, stashed); raises strata::Error when nothing is stashed under `name`.
  at::Tensor forward(const at::Tensor& x);
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  SkipCombine combine_;
};
TORCH_MODULE(SkipPop);

}  // namespace strata::parallel
