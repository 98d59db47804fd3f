// The compressed expert kernels against the dense product of the decoded weights, for
// shapes that are multiples of nothing, one token and batches, every kernel.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/scoped_env.h"
#include "core/test_util.h"
#include "strata/core/cpu_capability.h"
#include "strata/core/error.h"
#include "strata/moe/compressed_expert.h"

namespace strata::moe {
namespace {

TernaryMatrix random_ternary(int64_t rows, int64_t cols, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor u = at::rand({rows, cols}, gen);
  const at::Tensor codes = (u > 0.85).to(at::kByte) + (u > 0.93).to(at::kByte);
  const at::Tensor levels =
      at::stack({-at::rand({rows}, gen) - 0.1, at::rand({rows}, gen) + 0.1}, 1);
  return ternary_encode(codes, levels);
}

std::vector<TernaryKernel> kernels() {
  std::vector<TernaryKernel> out{TernaryKernel::Reference, TernaryKernel::Portable,
                                 TernaryKernel::Auto};
  if (core::cpu_capability().avx512) out.push_back(TernaryKernel::Avx512);
  return out;
}

// Sums of up to `cols` float products in a different order than at::mm: the tolerance
// is relative to the sum of |w x|, a few float epsilons per added term.
void expect_close(const at::Tensor& got, const at::Tensor& dense_w, const at::Tensor& x,
                  const std::string& what) {
  const at::Tensor expected = at::mm(x.to(at::kDouble), dense_w.to(at::kDouble).t());
  const at::Tensor scale = at::mm(x.abs().to(at::kDouble), dense_w.abs().to(at::kDouble).t());
  const double worst =
      ((got.to(at::kDouble) - expected).abs() / (scale + 1e-30)).max().item<double>();
  EXPECT_LT(worst, 1e-5) << what;
}

TEST(CompressedExpert, MatvecAndBatchEqualTheDecodedDenseProduct) {
  uint64_t seed = 11;
  for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{
           {1, 1}, {3, 5}, {7, 29}, {33, 47}, {100, 257}, {512, 256}, {70, 1001}}) {
    const TernaryMatrix w = random_ternary(rows, cols, seed++);
    const at::Tensor dense = ternary_decode(w);
    const at::Tensor levels = w.levels.to(at::kFloat).contiguous();
    const at::Tensor masks = ternary_masks(w);
    for (const int64_t tokens : {1, 2, 5, 32, 70}) {
      const at::Tensor x =
          at::randn({tokens, cols}, at::make_generator<at::CPUGeneratorImpl>(seed++));
      for (const TernaryKernel k : kernels()) {
        const std::string what = to_string(k) + " " + std::to_string(rows) + "x" +
                                 std::to_string(cols) + " tokens " + std::to_string(tokens);
        expect_close(ternary_linear(w, levels, x, k), dense, x, what);
        expect_close(ternary_linear(w, levels, x, k, masks), dense, x, what + " masks");
      }
    }
  }
}

TEST(CompressedExpert, FittedDictionaryKernelsEqualTheDenseProduct) {
  uint64_t seed = 41;
  for (const auto& [rows, cols] :
       std::vector<std::pair<int64_t, int64_t>>{{7, 29}, {100, 257}, {512, 256}, {256, 512}}) {
    const TernaryMatrix reference = random_ternary(rows, cols, seed++);
    const at::Tensor codes = ternary_decode_codes(reference);
    const TernaryMatrix w =
        ternary_encode(codes, reference.levels.to(at::kFloat),
                       make_ternary_dictionary(fit_pair_probabilities({codes})));
    const at::Tensor dense = ternary_decode(w);
    ASSERT_TRUE(at::equal(dense, ternary_decode(reference)));
    const at::Tensor levels = w.levels.to(at::kFloat).contiguous();
    const at::Tensor masks = ternary_masks(w);
    for (const int64_t tokens : {1, 3, 32, 40}) {
      const at::Tensor x =
          at::randn({tokens, cols}, at::make_generator<at::CPUGeneratorImpl>(seed++));
      for (const TernaryKernel k : kernels()) {
        const std::string what = "fitted " + to_string(k) + " " + std::to_string(rows) + "x" +
                                 std::to_string(cols) + " tokens " + std::to_string(tokens);
        expect_close(ternary_linear(w, levels, x, k), dense, x, what);
        expect_close(ternary_linear(w, levels, x, k, masks), dense, x, what + " masks");
      }
    }
  }
}

TEST(CompressedExpert, CpuCapabilityChoosesTheKernel) {
  test::ScopedEnv env(core::kCpuCapabilityEnv, std::nullopt);
  EXPECT_EQ(resolve_kernel(TernaryKernel::Auto),
            core::cpu_detected().avx512 ? TernaryKernel::Avx512 : TernaryKernel::Portable);
  // STRATA_CPU_CAPABILITY=portable: Auto runs the portable kernel, and asking for the
  // AVX-512 one is an error that names the variable.
  env.set("portable");
  EXPECT_EQ(resolve_kernel(TernaryKernel::Auto), TernaryKernel::Portable);
  EXPECT_EQ(resolve_kernel(TernaryKernel::Reference), TernaryKernel::Reference);
  const std::string message = test::error_of([] { resolve_kernel(TernaryKernel::Avx512); });
  EXPECT_NE(message.find("STRATA_CPU_CAPABILITY"), std::string::npos) << message;
  const TernaryMatrix w = random_ternary(33, 47, 5);
  const at::Tensor x = at::randn({5, 47}, at::make_generator<at::CPUGeneratorImpl>(6));
  expect_close(ternary_linear(w, w.levels.to(at::kFloat).contiguous(), x), ternary_decode(w), x,
               "auto under STRATA_CPU_CAPABILITY=portable");
}

TEST(CompressedExpert, RunsOnThreads) {
  // Large enough that the rows are split over 2 threads (compressed_expert.cpp splits
  // only products of more than ~8k codewords x tokens per task).
  const TernaryMatrix w = random_ternary(2000, 500, 5);
  const at::Tensor levels = w.levels.to(at::kFloat);
  const at::Tensor x = at::randn({9, 500});
  const at::Tensor masks = ternary_masks(w);
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  const at::Tensor two = ternary_linear(w, levels, x),
                   two_one = ternary_linear(w, levels, x.narrow(0, 0, 1)),
                   two_masks = ternary_linear(w, levels, x.narrow(0, 0, 1), {}, masks);
  at::set_num_threads(1);
  const at::Tensor one = ternary_linear(w, levels, x),
                   one_one = ternary_linear(w, levels, x.narrow(0, 0, 1)),
                   one_masks = ternary_linear(w, levels, x.narrow(0, 0, 1), {}, masks);
  at::set_num_threads(threads);
  EXPECT_TRUE(at::equal(one, two)) << "rows are split, not sums";
  EXPECT_TRUE(at::equal(one_one, two_one));
  EXPECT_TRUE(at::equal(one_masks, two_masks));
  expect_close(two, ternary_decode(w), x, "2 threads");
}

TEST(CompressedExpert, FfnEqualsTheDenseFfnOfTheDecodedWeights) {
  const int64_t d = 37, hidden = 71;
  const TernaryMatrix w_in = random_ternary(hidden, d, 1), w_out = random_ternary(d, hidden, 2);
  const at::Tensor b_in = at::randn({hidden}), b_out = at::randn({d});
  CompressedExpertFfn ffn(w_in, b_in, w_out, b_out);
  const at::Tensor x = at::randn({6, d});
  const at::Tensor dense =
      at::linear(at::gelu(at::linear(x, ternary_decode(w_in), b_in)), ternary_decode(w_out), b_out);
  EXPECT_TRUE(at::allclose(ffn->forward(x), dense, 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(ffn->forward(x[2]), dense[2], 1e-4, 1e-4)) << "one token, 1-D";
  CompressedExperts experts(std::vector<CompressedExpertFfn>{ffn});
  EXPECT_TRUE(at::allclose(experts->forward(0, x), dense, 1e-4, 1e-4));
  EXPECT_THROW(experts->forward(1, x), strata::Error);
  EXPECT_THROW(ffn->forward(at::randn({2, d + 1})), strata::Error);
  EXPECT_THROW(CompressedExpertFfn(w_in, b_in, w_in, b_in), strata::Error);
}

}  // namespace
}  // namespace strata::moe
