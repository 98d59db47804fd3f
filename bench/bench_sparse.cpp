// Sparse weight x dense activation kernels against torch::matmul fp32 on the bert-gemm
// shapes (BENCHMARKS.md): activations M x K times weights K x N, M in {128, 384},
// (K, N) in {(768,768), (768,3072), (3072,768), (1024,4096)}.
//
//   build/bench/bench_sparse                       # threads 1 and 2, 70/80/90%, 5 runs
//   build/bench/bench_sparse --threads 1 --tokens 128 --shapes 768x3072 --runs 3
//
// For every thread count, shape and sparsity it times int8-4x1 (VNNI), fp32-1x16 and CSR
// at that sparsity, 2:4 and 2:8 (whose sparsity N:M fixes) once per shape, and the dense
// product in the same run; each figure is the median of --runs runs, each run long enough
// (>= --min-ms) to average many calls, after a warm-up. It prints a table and one JSON line
// per figure: dense-equivalent GFLOP/s (2 M K N / time) with the dense figure as baseline.
// docs/sparse.md, "Benchmark".
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "strata/core/cli.h"
#include "strata/core/error.h"
#include "strata/core/threads.h"
#include "strata/core/timer.h"
#include "strata/sparse/pruning.h"
#include "strata/sparse/spmm.h"

namespace {

namespace sp = strata::sparse;
using nlohmann::json;

struct Config {
  std::vector<int> threads{1, 2};
  std::vector<int64_t> tokens{128, 384};
  std::vector<std::string> shapes{"768x768", "768x3072", "3072x768", "1024x4096"};
  std::vector<double> sparsities{0.7, 0.8, 0.9};
  int runs = 5;
  double min_ms = 20;
  bool portable = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median seconds per call of f: a warm-up sizes each run to at least min_ms.
template <typename F>
double time_call(const Config& c, F&& f) {
  strata::core::Stopwatch warm;
  f();
  const int calls = std::max(1, int(c.min_ms * 1e-3 / std::max(warm.seconds(), 1e-7)));
  std::vector<double> per_call;
  for (int r = 0; r < c.runs; ++r) {
    strata::core::Stopwatch clock;
    for (int i = 0; i < calls; ++i) f();
    per_call.push_back(clock.seconds() / calls);
  }
  return median(per_call);
}

std::string fixed2(double v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

void report(const Config& c, int threads, const std::string& kernel, const std::string& shape,
            const std::string& sparsity, double flops, double seconds, double dense_gflops,
            const std::string& impl) {
  const double gflops = flops / seconds * 1e-9;
  std::printf("%-10s %-16s %-5s %9.1f GFLOP/s %7.2fx  %8.1f us  %s\n", kernel.c_str(), shape.c_str(),
              sparsity.c_str(), gflops, gflops / dense_gflops, seconds * 1e6, impl.c_str());
  const json line = {{"bench", "sparse"},
                     {"case", kernel + "/" + shape + (sparsity.empty() ? "" : "/" + sparsity)},
                     {"threads", threads},
                     {"value", gflops},
                     {"unit", "GFLOP/s"},
                     {"baseline", dense_gflops},
                     {"ratio", gflops / dense_gflops},
                     {"runs", c.runs},
                     {"kernel", impl}};
  std::cout << line.dump() << std::endl;
}

void run_shape(const Config& c, int threads, int64_t m, int64_t k, int64_t n) {
  torch::manual_seed(0);
  const at::Tensor x = at::randn({m, k});
  const at::Tensor w = at::randn({n, k}) / std::sqrt(double(k));  // [out, in], a Linear's weight
  const at::Tensor wt = w.t().contiguous();                        // K x N for the dense product
  const double flops = 2.0 * double(m) * double(k) * double(n);
  const std::string shape = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
  const sp::SpmmOptions o = sp::SpmmOptions().portable(c.portable);

  const double dense_s = time_call(c, [&] { return torch::matmul(x, wt); });
  const double dense = flops / dense_s * 1e-9;
  report(c, threads, "dense-fp32", shape, "", flops, dense_s, dense, "torch::matmul");

  for (double s : c.sparsities) {
    const std::string sp_name = fixed2(s);
    const auto b4 = sp::Int8BlockSparse::quantize(
        sp::BlockSparse::from_dense(w, sp::block_magnitude_mask(w, s, {4, 1}), {4, 1}));
    report(c, threads, "int8-4x1", shape, sp_name, flops, time_call(c, [&] { return sp::spmm(b4, x, o); }),
           dense, sp::spmm_kernel(b4, o));
    const auto b16 = sp::BlockSparse::from_dense(w, sp::block_magnitude_mask(w, s, {1, 16}), {1, 16});
    report(c, threads, "fp32-1x16", shape, sp_name, flops, time_call(c, [&] { return sp::spmm(b16, x, o); }),
           dense, sp::spmm_kernel(b16, o));
    const auto csr = sp::CsrSparse::from_dense(w, sp::magnitude_mask(w, s));
    report(c, threads, "csr", shape, sp_name, flops, time_call(c, [&] { return sp::spmm(csr, x, o); }),
           dense, sp::spmm_kernel(csr, o));
  }
  for (auto [nn, mm] : {std::pair<int64_t, int64_t>{2, 4}, {2, 8}}) {
    const auto nm = sp::NMSparse::from_dense(w, sp::nm_magnitude_mask(w, nn, mm), nn, mm);
    report(c, threads, std::to_string(nn) + ":" + std::to_string(mm), shape, fixed2(1.0 - double(nn) / mm),
           flops, time_call(c, [&] { return sp::spmm(nm, x, o); }), dense, sp::spmm_kernel(nm, o));
  }
}

}  // namespace

int main(int argc, char** argv) {
  return strata::core::run_main([&] {
    CLI::App app("Sparse kernels vs torch::matmul fp32 on the bert-gemm shapes");
    strata::core::configure_cli(app);
    Config c;
    app.add_option("--threads", c.threads, "intra-op (and OpenBLAS) thread counts, one table each");
    app.add_option("--tokens", c.tokens, "token counts M");
    app.add_option("--shapes", c.shapes, "KxN weight shapes");
    app.add_option("--sparsities", c.sparsities, "sparsities of the block and CSR kernels");
    app.add_option("--runs", c.runs, "runs per figure (median)")->check(CLI::PositiveNumber);
    app.add_option("--min-ms", c.min_ms, "minimum milliseconds per run");
    app.add_flag("--portable", c.portable, "force the portable kernels");
    if (auto code = strata::core::parse_cli(app, argc, argv)) return *code;
    std::printf("# kernels: avx512 %s, vnni %s%s\n", sp::cpu_has_avx512() ? "yes" : "no",
                sp::cpu_has_avx512_vnni() ? "yes" : "no", c.portable ? " (portable forced)" : "");
    for (int t : c.threads) {
      strata::core::set_num_threads(t);
      std::printf("# threads %d\n", t);
      for (int64_t m : c.tokens)
        for (const std::string& s : c.shapes) {
          int64_t k = 0, n = 0;
          char sep = 0;
          std::istringstream in(s);
          STRATA_CHECK((in >> k >> sep >> n) && sep == 'x' && k > 0 && n > 0, "--shapes ", s,
                       ": expected KxN, e.g. 768x3072");
          run_shape(c, t, m, k, n);
        }
    }
    return 0;
  });
}
