#include "strata/parallel/pipeline/skip.h"

#include <utility>

#include "strata/core/error.h"

namespace strata::parallel {

namespace {
// Thread-local: in-process pipeline ranks are threads, each running its own stages.
thread_local SkipTray tray;
}  // namespace

SkipTray exchange_skip_tray(SkipTray contents) { return std::exchange(tray, std::move(contents)); }

SkipStashImpl::SkipStashImpl(std::string name) : name_(std::move(name)) {
  STRATA_CHECK(!name_.empty() && name_.find('\n') == std::string::npos, "SkipStash: name '", name_,
               "' must be non-empty and on one line");
}

at::Tensor SkipStashImpl::forward(const at::Tensor& x) {
  STRATA_CHECK(tray.count(name_) == 0, "SkipStash('", name_, "'): '", name_,
               "' is already stashed and not popped yet");
  tray[name_] = x;
  return x;
}

SkipPopImpl::SkipPopImpl(std::string name, SkipCombine combine)
    : name_(std::move(name)), combine_(std::move(combine)) {
  STRATA_CHECK(!name_.empty() && name_.find('\n') == std::string::npos, "SkipPop: name '", name_,
               "' must be non-empty and on one line");
}

at::Tensor SkipPopImpl::forward(const at::Tensor& x) {
  auto it = tray.find(name_);
  STRATA_CHECK(it != tray.end(), "SkipPop('", name_, "'): nothing is stashed under '", name_,
               "' (a SkipStash('", name_, "') must run before it)");
  const at::Tensor stashed = std::move(it->second);
  tray.erase(it);
  return combine_ ? combine_(x, stashed) : x + stashed;
}

}  // namespace strata::parallel
