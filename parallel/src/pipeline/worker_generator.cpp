#include "worker_generator.h"

#include <ATen/CPUGeneratorImpl.h>

namespace strata::parallel::pipeline_detail {

namespace {

thread_local c10::optional<at::Generator> worker_generator;

// One worker at a time holds the default generator.
std::mutex& swap_mutex() {
  static std::mutex mutex;
  return mutex;
}

at::Tensor get_state(at::Generator& generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}
void set_state(at::Generator& generator, const at::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

}  // namespace

void set_worker_generator(c10::optional<at::Generator> generator) {
  worker_generator = std::move(generator);
}

WorkerGeneratorScope::WorkerGeneratorScope() {
  if (!worker_generator) return;
  lock_ = std::unique_lock<std::mutex>(swap_mutex());
  worker_ = &*worker_generator;
  at::Generator global = at::detail::getDefaultCPUGenerator();
  default_state_ = get_state(global);
  set_state(global, get_state(*worker_));
}

WorkerGeneratorScope::~WorkerGeneratorScope() {
  if (worker_ == nullptr) return;
  at::Generator global = at::detail::getDefaultCPUGenerator();
  set_state(*worker_, get_state(global));
  set_state(global, default_state_);
}

}  // namespace strata::parallel::pipeline_detail
