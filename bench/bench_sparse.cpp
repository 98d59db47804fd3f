// Sparse weight x dense activation kernels against torch::matmul fp32 and bf16 on the bert-gemm
// shapes (BENCHMARKS.md): activations M x K times weights K x N, M in {128, 384},
// (K, N) in {(768,768), (768,3072), (3072,768), (1024,4096)}.
//
//   build/bench/bench_sparse                       # threads 1 and 2, 70/80/90%, 5 runs
//   build/bench/bench_sparse --threads 1 --tokens 128 --shapes 768x3072 --runs 3
//
// For every thread count, shape and sparsity it times int8-4x1 (VNNI), fp32-1x16, bf16-1x16
// and bf16-2x16 (vdpbf16ps) and CSR at that sparsity, 2:4 and 2:8 (whose sparsity N:M fixes)
// once per shape, each against the dense product in fp32 and, separately, in bf16 in the
// same run: each of --runs runs times the dense product and then the kernel,
// each long enough (>= --min-ms) to average several calls, after a warm-up, and the ratio
// is the median of the per-run ratios (the machine is shared; pairing cancels its load).
// It prints a table and one JSON line per figure: dense-equivalent GFLOP/s (2 M K N /
// time), the dense products' GFLOP/s as baselines, and the ratios.
// docs/sparse.md, "Benchmark".
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "strata/core/cpu_capability.h"
#include "strata/core/error.h"
#include "strata/core/models/fmnist_models.h"
#include "strata/core/threads.h"
#include "strata/programs/cli.h"
#include "strata/sparse/nm_sparse_linear.h"
#include "strata/sparse/pruning.h"
#include "strata/sparse/spgemm.h"
#include "strata/sparse/spmm.h"

namespace {

namespace sp = strata::sparse;
using nlohmann::json;
using strata::bench::Timing;

struct Config {
  std::vector<int> threads{1, 2};
  std::vector<int64_t> tokens{128, 384};
  std::vector<std::string> shapes{"768x768", "768x3072", "3072x768", "1024x4096"};
  std::vector<double> sparsities{0.7, 0.8, 0.9};
  int runs = 5;
  double min_ms = 20;
  bool portable = false;
  std::vector<std::string> kernels{"int8-4x1", "fp32-1x16", "bf16-1x16", "bf16-2x16",
                                   "csr",      "2:4",       "2:8"};
  // Also: "training" (fmnist-mlp steps, dense vs 2:8 BDWP and SR-STE), "spgemm".
  std::vector<std::string> sections{"kernels", "training", "spgemm"};
  int64_t train_batch = 256;
  // The training section's extra variant (NMSparseLinearOptions::mask_every and
  // dense_grad_every), timed beside today's every-step variant.
  int64_t train_mask_every = 10;
  int64_t train_dense_grad_every = 10;
  bool wants_section(const std::string& s) const {
    return std::find(sections.begin(), sections.end(), s) != sections.end();
  }
  bool wants(const std::string& k) const {
    return std::find(kernels.begin(), kernels.end(), k) != kernels.end();
  }
};

// bench_common.h with this run's --runs and --min-ms.
template <typename D, typename F>
Timing time_paired(const Config& c, D&& dense, F&& f) {
  return strata::bench::time_paired(c.runs, c.min_ms, dense, f);
}

std::string fixed2(double v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// The dense peers of one shape: torch::matmul in fp32 (OpenBLAS) and in bf16 (oneDNN,
// inputs already bf16, as a bf16 model holds them).
struct DensePeers {
  std::function<at::Tensor()> fp32, bf16;
};

// Times `f` against both dense peers (two paired timings) and prints one line and one JSON
// line: the GFLOP/s and ratio against fp32 dense ("baseline", "ratio"), and against bf16
// dense ("baseline_bf16", "ratio_bf16").
template <typename F>
void report(const Config& c, int threads, const std::string& kernel, const std::string& shape,
            const std::string& sparsity, double flops, const DensePeers& dense, F&& f,
            const std::string& impl) {
  const Timing t = time_paired(c, dense.fp32, f);
  const Timing tb = time_paired(c, dense.bf16, f);
  const double gflops = flops / t.seconds * 1e-9, base = flops / t.dense_seconds * 1e-9;
  const double base_bf16 = flops / tb.dense_seconds * 1e-9;
  std::printf(
      "%-10s %-16s %-5s %9.1f GFLOP/s  fp32 %6.1f %7.2fx  bf16 %6.1f %7.2fx  %8.1f us  %s\n",
      kernel.c_str(), shape.c_str(), sparsity.c_str(), gflops, base, t.ratio, base_bf16, tb.ratio,
      t.seconds * 1e6, impl.c_str());
  json line = strata::bench::json_line(
      "sparse", kernel + "/" + shape + (sparsity.empty() ? "" : "/" + sparsity), gflops, "GFLOP/s",
      base, t.ratio, c.runs);
  line["baseline_bf16"] = base_bf16;
  line["ratio_bf16"] = tb.ratio;
  line["threads"] = threads;
  line["kernel"] = impl;
  std::cout << line.dump() << std::endl;
}

void run_shape(const Config& c, int threads, int64_t m, int64_t k, int64_t n) {
  torch::manual_seed(0);
  const at::Tensor x = at::randn({m, k});
  const at::Tensor w = at::randn({n, k}) / std::sqrt(double(k));  // [out, in], a Linear's weight
  const at::Tensor wt = w.t().contiguous();                       // K x N for the dense product
  const double flops = 2.0 * double(m) * double(k) * double(n);
  const std::string shape = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
  const sp::SpmmOptions o = sp::SpmmOptions().portable(c.portable);

  const at::Tensor xb = x.to(at::kBFloat16), wtb = wt.to(at::kBFloat16);
  const DensePeers dense{[&] { return torch::matmul(x, wt); },
                         [&] { return torch::matmul(xb, wtb); }};

  for (double s : c.sparsities) {
    const std::string sp_name = fixed2(s);
    if (!c.wants("int8-4x1") && !c.wants("fp32-1x16") && !c.wants("csr") && !c.wants("bf16-1x16") &&
        !c.wants("bf16-2x16"))
      break;
    const auto b4 = sp::Int8BlockSparse::quantize(
        sp::BlockSparse::from_dense(w, sp::block_magnitude_mask(w, s, {4, 1}), {4, 1}));
    if (c.wants("int8-4x1"))
      report(
          c, threads, "int8-4x1", shape, sp_name, flops, dense, [&] { return sp::spmm(b4, x, o); },
          sp::spmm_kernel(b4, o));
    const auto b16 =
        sp::BlockSparse::from_dense(w, sp::block_magnitude_mask(w, s, {1, 16}), {1, 16});
    if (c.wants("fp32-1x16"))
      report(
          c, threads, "fp32-1x16", shape, sp_name, flops, dense,
          [&] { return sp::spmm(b16, x, o); }, sp::spmm_kernel(b16, o));
    // bf16: 1x16 blocks regrouped into channel pairs (a zero partner where a pair holds
    // one block), and 2x16 blocks pruned as such; bf16 activations, like the bf16 peer's.
    for (const sp::BlockShape bs : {sp::BlockShape{1, 16}, sp::BlockShape{2, 16}}) {
      const std::string name = "bf16-" + bs.str();
      if (!c.wants(name)) continue;
      const auto bb = sp::Bf16BlockSparse::from(
          sp::BlockSparse::from_dense(w, sp::block_magnitude_mask(w, s, bs), bs));
      report(
          c, threads, name, shape, sp_name, flops, dense, [&] { return sp::spmm(bb, xb, o); },
          sp::spmm_kernel(bb, o));
    }
    const auto csr = sp::CsrSparse::from_dense(w, sp::magnitude_mask(w, s));
    if (c.wants("csr"))
      report(
          c, threads, "csr", shape, sp_name, flops, dense, [&] { return sp::spmm(csr, x, o); },
          sp::spmm_kernel(csr, o));
  }
  for (auto [nn, mm] : {std::pair<int64_t, int64_t>{2, 4}, {2, 8}}) {
    const std::string name = std::to_string(nn) + ":" + std::to_string(mm);
    if (!c.wants(name)) continue;
    const auto nm = sp::NMSparse::from_dense(w, sp::nm_magnitude_mask(w, nn, mm), nn, mm);
    report(
        c, threads, name, shape, fixed2(1.0 - double(nn) / mm), flops, dense,
        [&] { return sp::spmm(nm, x, o); }, sp::spmm_kernel(nm, o));
  }
}

// A fmnist-mlp training step (forward, loss, backward, SGD): dense against 2:8 sparse
// training (every step re-pruned and dense dW, then --train-mask-every and
// --train-dense-grad-every), on random data of the real shapes (the speed does not depend
// on the values).
void run_training(const Config& c, int threads) {
  torch::manual_seed(0);
  const at::Tensor x = at::randn({c.train_batch, 1, 28, 28});
  const at::Tensor y = at::randint(0, 10, {c.train_batch});
  auto step_of = [&](torch::nn::Sequential model) {
    auto opt = std::make_shared<torch::optim::SGD>(model->parameters(),
                                                   torch::optim::SGDOptions(1e-3).momentum(0.9));
    return [model, opt, &x, &y]() mutable {
      opt->zero_grad();
      torch::nn::functional::cross_entropy(model->forward(x), y).backward();
      opt->step();
      return 0;
    };
  };
  auto dense = step_of(strata::core::make_fmnist_mlp());
  struct Variant {
    sp::NMTraining method;
    int64_t mask_every, dense_grad_every;
  };
  std::vector<Variant> variants{{sp::NMTraining::Bdwp, 1, 1}, {sp::NMTraining::SrSte, 1, 1}};
  for (auto method : {sp::NMTraining::Bdwp, sp::NMTraining::SrSte})
    if (c.train_mask_every != 1 || c.train_dense_grad_every != 1)
      variants.push_back({method, c.train_mask_every, c.train_dense_grad_every});
  for (const Variant& v : variants) {
    auto sparse = step_of(sp::with_nm_sparse_training(strata::core::make_fmnist_mlp(),
                                                      sp::NMSparseLinearOptions(1, 1)
                                                          .n(2)
                                                          .m(8)
                                                          .method(v.method)
                                                          .mask_every(v.mask_every)
                                                          .dense_grad_every(v.dense_grad_every)));
    const Timing t = time_paired(c, dense, sparse);
    std::string name = std::string("train-") + sp::to_string(v.method) + "-2:8";
    if (v.mask_every != 1 || v.dense_grad_every != 1)
      name += "-k" + std::to_string(v.mask_every) + "-d" + std::to_string(v.dense_grad_every);
    std::printf("%-24s fmnist-mlp/%-5lld %8.1f ms/step  dense %8.1f  %6.2fx\n", name.c_str(),
                static_cast<long long>(c.train_batch), t.seconds * 1e3, t.dense_seconds * 1e3,
                t.ratio);
    json line = strata::bench::json_line(
        "sparse", name + "/fmnist-mlp/" + std::to_string(c.train_batch), t.seconds * 1e3, "ms/step",
        t.dense_seconds * 1e3, t.ratio, c.runs);
    line["threads"] = threads;
    line["mask_every"] = v.mask_every;
    line["dense_grad_every"] = v.dense_grad_every;
    std::cout << line.dump() << std::endl;
  }
}

// SpGEMM C = A B (CSR x CSR) against torch::sparse's COO x COO product on the same
// matrices; MFLOP/s counts 2 per multiply-add.
void run_spgemm(const Config& c, int threads) {
  struct Case {
    std::string name;
    at::Tensor a;
  };
  torch::manual_seed(0);
  std::vector<Case> cases;
  // Uniform random rows of 8 and 32 non-zeros (A A has about 64 and 1,000 per row).
  for (auto [n, per_row] : {std::pair<int64_t, int64_t>{16384, 8}, {8192, 32}}) {
    const at::Tensor keep = at::rand({n, n}) < double(per_row) / double(n);
    cases.push_back({"random-" + std::to_string(n) + "-" + std::to_string(per_row) + "perrow",
                     keep.to(at::kFloat) * at::randn({n, n})});
  }
  {
    // Power law: row i holds about 2000 (i + 1)^-0.8 entries, rows shuffled.
    const int64_t n = 8192;
    const at::Tensor density =
        (2000.0 / double(n)) *
        at::pow(at::arange(1, n + 1, at::kDouble), -0.8).index_select(0, at::randperm(n));
    const at::Tensor keep = at::rand({n, n}, at::kDouble) < density.unsqueeze(1);
    cases.push_back({"powerlaw-" + std::to_string(n), keep.to(at::kFloat) * at::randn({n, n})});
  }
  for (const Case& k : cases) {
    const sp::CsrSparse a = sp::csr_from_dense(k.a);
    const at::Tensor coo = k.a.to_sparse();
    const double flops = 2.0 * double(sp::spgemm_multiply_adds(a, a));
    const auto baseline = [&] { return at::mm(coo, coo); };
    for (auto [acc, acc_name] : {std::pair{sp::SpgemmAccumulator::Auto, "auto"},
                                 {sp::SpgemmAccumulator::Hash, "hash"},
                                 {sp::SpgemmAccumulator::Dense, "dense"}}) {
      const sp::SpgemmOptions o = sp::SpgemmOptions().accumulator(acc);
      const Timing t = time_paired(c, baseline, [&] { return sp::spgemm(a, a, o); });
      const double mflops = flops / t.seconds * 1e-6, base = flops / t.dense_seconds * 1e-6;
      std::printf("spgemm-%-6s %-22s nnz %9lld %9.1f MFLOP/s  torch.sparse %8.1f  %6.2fx\n",
                  acc_name, k.name.c_str(), static_cast<long long>(a.nnz()), mflops, base, t.ratio);
      json line =
          strata::bench::json_line("sparse", std::string("spgemm-") + acc_name + "/" + k.name,
                                   mflops, "MFLOP/s", base, t.ratio, c.runs);
      line["threads"] = threads;
      line["nnz"] = a.nnz();
      std::cout << line.dump() << std::endl;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  strata::bench::exec_with_sleeping_thread_pools(argv);
  return strata::programs::run_main([&] {
    CLI::App app("Sparse kernels vs torch::matmul fp32 on the bert-gemm shapes");
    strata::programs::configure_cli(app);
    Config c;
    app.add_option("--threads", c.threads, "intra-op (and OpenBLAS) thread counts, one table each");
    app.add_option("--tokens", c.tokens, "token counts M");
    app.add_option("--shapes", c.shapes, "KxN weight shapes");
    app.add_option("--sparsities", c.sparsities, "sparsities of the block and CSR kernels");
    app.add_option("--runs", c.runs, "runs per figure (median)")->check(CLI::PositiveNumber);
    app.add_option("--min-ms", c.min_ms, "minimum milliseconds per run");
    app.add_option("--kernels", c.kernels,
                   "kernels to time: int8-4x1 fp32-1x16 bf16-1x16 bf16-2x16 csr 2:4 2:8");
    app.add_flag("--portable", c.portable, "force the portable kernels");
    app.add_option("--sections", c.sections, "what to time: kernels training spgemm")
        ->check(CLI::IsMember({"kernels", "training", "spgemm"}));
    app.add_option("--train-batch", c.train_batch, "batch of the training section")
        ->check(CLI::PositiveNumber);
    app.add_option("--train-mask-every", c.train_mask_every,
                   "training section: steps between mask updates of the extra variant")
        ->check(CLI::PositiveNumber);
    app.add_option("--train-dense-grad-every", c.train_dense_grad_every,
                   "training section: steps between dense weight gradients (0: never)")
        ->check(CLI::NonNegativeNumber);
    if (auto code = strata::programs::parse_cli(app, argc, argv)) return *code;
    const strata::core::CpuCapability cpu = strata::core::cpu_capability();
    std::printf("# kernels: avx512 %s, vnni %s, bf16 %s%s\n", cpu.avx512 ? "yes" : "no",
                cpu.avx512_vnni ? "yes" : "no", cpu.avx512_bf16 ? "yes" : "no",
                c.portable ? " (portable forced)" : "");
    for (int t : c.threads) {
      strata::core::set_num_threads(t);
      std::printf("# threads %d\n", t);
      if (c.wants_section("training")) run_training(c, t);
      if (c.wants_section("spgemm")) run_spgemm(c, t);
      if (!c.wants_section("kernels")) continue;
      for (int64_t m : c.tokens)
        for (const std::string& s : c.shapes) {
          const auto [k, n] = strata::bench::parse_shape(s);
          run_shape(c, t, m, k, n);
        }
    }
    return 0;
  });
}
