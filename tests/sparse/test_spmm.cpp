// Every kernel against the dense product of the masked weight, on odd shapes, empty rows
// and columns, 0% and 100% sparsity, 1 and 2 threads, vector and portable paths.
#include "strata/core/cpu_capability.h"
#include "strata/sparse/pruning.h"
#include "strata/sparse/spmm.h"

#include "core/scoped_env.h"
#include "sparse_test_util.h"

namespace strata::sparse {
namespace {

using testing::expect_close;
using testing::expect_error;
using testing::random_mask;
using testing::random_weight;
using testing::reference;

struct Shape {
  int64_t tokens, in, out;
};
// Odd shapes (no multiple of 16 or 4 in some), one token, and more than 64 tokens.
const Shape kShapes[] = {{1, 7, 5}, {17, 33, 45}, {70, 130, 77}, {128, 64, 48}, {3, 260, 19}};
const double kSparsities[] = {0.0, 0.5, 0.9, 1.0};

// Runs check(portable) for 1 and 2 threads, on the portable path and, when the CPU has
// AVX-512, the vector path.
// (the vector path of the bf16 kernel: when the CPU has AVX512-BF16).
template <typename F>
void for_paths(F&& check, bool vector = core::cpu_capability().avx512) {
  testing::ThreadsGuard guard;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    check(true);
    if (vector) check(false);
  }
}

std::string label(const Shape& s, double sparsity, bool portable, const std::string& kind) {
  return kind + " " + std::to_string(s.tokens) + "x" + std::to_string(s.in) + "x" +
         std::to_string(s.out) + " sparsity " + std::to_string(sparsity) +
         (portable ? " portable" : " vector") + " threads " + std::to_string(at::get_num_threads());
}

// The mask: the format's own magnitude mask, with output row 1 and input column 2 emptied.
at::Tensor with_empty_lines(at::Tensor mask) {
  if (mask.size(0) > 1) mask.select(0, 1).fill_(false);
  if (mask.size(1) > 2) mask.select(1, 2).fill_(false);
  return mask;
}

TEST(SparseSpmm, BlockFp32EqualsDenseMaskedProduct) {
  for (BlockShape shape :
       {BlockShape{1, 16}, BlockShape{3, 16}, BlockShape{4, 1}, BlockShape{2, 3}}) {
    for (const Shape& s : kShapes)
      for (double sp : kSparsities) {
        const at::Tensor w = random_weight(s.out, s.in, 1);
        const BlockSparse b =
            BlockSparse::from_dense(w, with_empty_lines(block_magnitude_mask(w, sp, shape)), shape);
        const at::Tensor x = at::randn({s.tokens, s.in});
        const at::Tensor ref = reference(x, b.to_dense());
        for_paths([&](bool portable) {
          const at::Tensor y = spmm(b, x, SpmmOptions().portable(portable));
          expect_close(y, ref, 1e-5, label(s, sp, portable, "block " + shape.str()));
        });
      }
  }
}

// The bf16 kernel against the dense product of the bf16-rounded operands: bf16 x bf16
// products are exact in fp32, so only the fp32 sums' order differs (1e-5); and against
// LibTorch's dense bf16 matmul (oneDNN, output rounded to bf16) within bf16's precision.
TEST(SparseSpmm, Bf16BlockEqualsDenseBf16Product) {
  for (BlockShape shape :
       {BlockShape{1, 16}, BlockShape{2, 16}, BlockShape{3, 16}, BlockShape{2, 3}})
    for (const Shape& s : kShapes)
      for (double sp : kSparsities) {
        const at::Tensor w = random_weight(s.out, s.in, 5);
        const BlockSparse fp32 =
            BlockSparse::from_dense(w, with_empty_lines(block_magnitude_mask(w, sp, shape)), shape);
        const Bf16BlockSparse b = Bf16BlockSparse::from(fp32);
        const at::Tensor wb = b.to_dense();
        const at::Tensor x = at::randn({s.tokens, s.in});
        const at::Tensor xb = x.to(at::kBFloat16);
        EXPECT_TRUE(at::equal(wb, fp32.to_dense().to(at::kBFloat16).to(at::kFloat)));
        const at::Tensor ref = reference(xb.to(at::kFloat), wb);
        // oneDNN compiles a kernel per shape (slow): one sparsity and block shape per shape.
        const bool against_dense = sp == 0.5 && shape.in == 2;
        const at::Tensor dense_bf16 =
            against_dense ? at::matmul(xb, wb.to(at::kBFloat16).t()).to(at::kFloat) : at::Tensor();
        for_paths(
            [&](bool portable) {
              const std::string what = label(s, sp, portable, "bf16 block " + shape.str());
              for (const at::Tensor& input : {x, xb}) {
                const at::Tensor y = spmm(b, input, SpmmOptions().portable(portable));
                expect_close(y, ref, 1e-5, what);
                if (against_dense)
                  expect_close(y, dense_bf16, 1.0 / 128, what + " against dense bf16");
              }
            },
            core::cpu_capability().avx512_bf16);
      }
  if (core::cpu_capability().avx512_bf16) {
    const at::Tensor w = random_weight(32, 8, 6);
    const Bf16BlockSparse b = Bf16BlockSparse::from(
        BlockSparse::from_dense(w, at::ones_like(w, at::kBool), BlockShape{1, 16}));
    EXPECT_EQ(spmm_kernel(b), "avx512bf16-block-bf16");
    EXPECT_EQ(spmm_kernel(b, SpmmOptions().portable(true)), "portable");
  }
}

TEST(SparseSpmm, NMEqualsDenseMaskedProduct) {
  for (auto nm_shape : {std::pair<int64_t, int64_t>{2, 4}, {2, 8}, {3, 7}, {1, 32}})
    for (const Shape& s : kShapes) {
      const int64_t n = nm_shape.first, m = nm_shape.second;
      const at::Tensor w = random_weight(s.out, s.in, 2);
      const NMSparse nm =
          NMSparse::from_dense(w, with_empty_lines(nm_magnitude_mask(w, n, m)), n, m);
      const at::Tensor x = at::randn({s.tokens, s.in});
      const at::Tensor ref = reference(x, nm.to_dense());
      for_paths([&](bool portable) {
        expect_close(spmm(nm, x, SpmmOptions().portable(portable)), ref, 1e-5,
                     label(s, 0, portable, std::to_string(n) + ":" + std::to_string(m)));
      });
    }
}

TEST(SparseSpmm, CsrEqualsDenseMaskedProduct) {
  for (const Shape& s : kShapes)
    for (double sp : kSparsities) {
      const at::Tensor w = random_weight(s.out, s.in, 3);
      const CsrSparse c = CsrSparse::from_dense(w, random_mask(s.out, s.in, sp, 3));
      const at::Tensor x = at::randn({s.tokens, s.in});
      const at::Tensor ref = reference(x, c.to_dense());
      for_paths([&](bool portable) {
        expect_close(spmm(c, x, SpmmOptions().portable(portable)), ref, 1e-5,
                     label(s, sp, portable, "csr"));
      });
    }
}

// acc[t, o] = sum_k q_x[t, k] * q_w[o, k] in int64.
at::Tensor int_reference(const QuantizedActivations& q, const Int8BlockSparse& w) {
  return q.data.to(at::kLong).matmul(w.to_dense_int8().to(at::kLong).t());
}

TEST(SparseSpmm, Int8EqualsIntegerReference) {
  for (BlockShape shape : {BlockShape{4, 1}, BlockShape{8, 1}, BlockShape{4, 4}})
    for (ActivationQuant aq : {ActivationQuant::PerToken, ActivationQuant::PerTensor})
      for (const Shape& s : kShapes)
        for (double sp : kSparsities) {
          const at::Tensor w = random_weight(s.out, s.in, 4);
          const Int8BlockSparse q = Int8BlockSparse::quantize(BlockSparse::from_dense(
              w, with_empty_lines(block_magnitude_mask(w, sp, shape)), shape));
          const at::Tensor x = at::randn({s.tokens, s.in}) + 0.3;
          const QuantizedActivations qx =
              quantize_activations(x, SpmmOptions().act_quant(aq).portable(true));
          const at::Tensor ref = int_reference(qx, q);
          // Dequantized in double from the exact accumulators.
          const at::Tensor yref =
              (ref.to(at::kDouble) - qx.zero.to(at::kDouble).unsqueeze(1) *
                                         q.row_sum.slice(0, 0, s.out).to(at::kDouble)) *
              qx.scale.to(at::kDouble).unsqueeze(1) * q.scale.slice(0, 0, s.out).to(at::kDouble);
          const at::Tensor yexact = dequantize_accumulators(q, qx, ref.to(at::kInt));
          for_paths([&](bool portable) {
            const SpmmOptions o = SpmmOptions().act_quant(aq).portable(portable);
            const std::string what = label(s, sp, portable, "int8 " + shape.str());
            const QuantizedActivations qv = quantize_activations(x, o);
            ASSERT_TRUE(at::equal(qv.data, qx.data)) << what;
            ASSERT_TRUE(at::equal(qv.zero, qx.zero) && at::equal(qv.scale, qx.scale)) << what;
            EXPECT_TRUE(at::equal(spmm_int8_accumulate(q, qx, o).to(at::kLong), ref)) << what;
            const at::Tensor y = spmm(q, x, o);
            EXPECT_TRUE(at::equal(y, yexact)) << what;
            expect_close(y, yref, 1e-5, what);
          });
        }
}

TEST(SparseSpmm, PortableEqualsVectorPaths) {
  if (!core::cpu_capability().avx512)
    GTEST_SKIP() << "no AVX-512 on this CPU: only the portable path runs";
  const at::Tensor w = random_weight(77, 130, 8);
  const at::Tensor x = at::randn({70, 130});
  const BlockSparse b = BlockSparse::from_dense(w, block_magnitude_mask(w, 0.8, {1, 16}), {1, 16});
  const NMSparse nm = NMSparse::from_dense(w, nm_magnitude_mask(w, 2, 8), 2, 8);
  const CsrSparse c = CsrSparse::from_dense(w, magnitude_mask(w, 0.8));
  const Int8BlockSparse q = Int8BlockSparse::quantize(
      BlockSparse::from_dense(w, block_magnitude_mask(w, 0.8, {4, 1}), {4, 1}));
  const SpmmOptions portable = SpmmOptions().portable(true);
  expect_close(spmm(b, x), spmm(b, x, portable), 1e-5, "block");
  expect_close(spmm(nm, x), spmm(nm, x, portable), 1e-5, "2:8");
  expect_close(spmm(c, x), spmm(c, x, portable), 1e-5, "csr");
  EXPECT_TRUE(at::equal(spmm(q, x), spmm(q, x, portable))) << "int8: bit for bit";
}

TEST(SparseSpmm, ActivationQuantizationRoundTrips) {
  const at::Tensor x = at::randn({9, 70}) * 3;
  for (ActivationQuant aq : {ActivationQuant::PerToken, ActivationQuant::PerTensor}) {
    const QuantizedActivations q = quantize_activations(x, SpmmOptions().act_quant(aq));
    const at::Tensor back = (q.data.to(at::kFloat) - q.zero.unsqueeze(1)) * q.scale.unsqueeze(1);
    EXPECT_TRUE(((back - x).abs() <= q.scale.unsqueeze(1) * 0.5001).all().item<bool>());
    if (aq == ActivationQuant::PerTensor) {
      EXPECT_TRUE((q.scale == q.scale[0]).all().item<bool>());
    }
  }
}

TEST(SparseSpmm, KernelChoiceFollowsCpuOptionAndEnvironment) {
  const at::Tensor w = random_weight(32, 32, 5);
  const BlockSparse b = BlockSparse::from_dense(w, block_magnitude_mask(w, 0.5, {1, 16}), {1, 16});
  const Int8BlockSparse q = Int8BlockSparse::quantize(
      BlockSparse::from_dense(w, block_magnitude_mask(w, 0.5, {4, 1}), {4, 1}));
  const NMSparse nm = NMSparse::from_dense(w, nm_magnitude_mask(w, 2, 8), 2, 8);
  const CsrSparse c = CsrSparse::from_dense(w, magnitude_mask(w, 0.5));
  test::ScopedEnv env(core::kCpuCapabilityEnv, std::nullopt);
  const core::CpuCapability cpu = core::cpu_detected();
  EXPECT_EQ(spmm_kernel(b, SpmmOptions().portable(true)), "portable");
  EXPECT_EQ(spmm_kernel(b), cpu.avx512 ? "avx512-block-fp32" : "portable");
  EXPECT_EQ(spmm_kernel(q), cpu.avx512_vnni ? "avx512vnni-block-int8" : "portable");
  EXPECT_EQ(spmm_kernel(nm), cpu.avx512 ? "avx512-nm-fp32" : "portable");
  EXPECT_EQ(spmm_kernel(c), cpu.avx512 ? "avx512-csr-fp32" : "portable");
  env.set("portable");
  EXPECT_EQ(spmm_kernel(b), "portable");
  EXPECT_EQ(spmm_kernel(q), "portable");
  EXPECT_EQ(spmm_kernel(nm), "portable");
  EXPECT_EQ(spmm_kernel(c), "portable");
  const at::Tensor x = at::randn({5, 32});
  expect_close(spmm(b, x), reference(x, b.to_dense()), 1e-5, "forced portable");
  // avx512 without VNNI: the fp32 kernels stay vector, the int8 one turns portable.
  env.set("avx512");
  EXPECT_EQ(spmm_kernel(b), cpu.avx512 ? "avx512-block-fp32" : "portable");
  EXPECT_EQ(spmm_kernel(q), "portable");
  env.set("default");
  EXPECT_EQ(spmm_kernel(q), cpu.avx512_vnni ? "avx512vnni-block-int8" : "portable");
  env.set(std::nullopt);
  // Shapes the vector kernels do not cover run the portable path.
  EXPECT_EQ(spmm_kernel(BlockSparse::from_dense(w, at::ones({32, 32}, at::kBool), {4, 1})),
            "portable");
}

TEST(SparseSpmm, StridedInputAndNoTokens) {
  const at::Tensor w = random_weight(24, 40, 6);
  const BlockSparse b = BlockSparse::from_dense(w, block_magnitude_mask(w, 0.8, {1, 16}), {1, 16});
  const at::Tensor xt = at::randn({40, 11}).t();  // non-contiguous [11, 40]
  expect_close(spmm(b, xt), reference(xt, b.to_dense()), 1e-5, "strided");
  EXPECT_EQ(spmm(b, at::zeros({0, 40})).sizes(), (std::vector<int64_t>{0, 24}));
}

TEST(SparseSpmm, NoTokensForEveryFormat) {
  const at::Tensor w = random_weight(20, 36, 9);
  const at::Tensor x = at::zeros({0, 36});
  const auto q = Int8BlockSparse::quantize(BlockSparse::from_dense(w, w.abs() > 0.5, {4, 1}));
  EXPECT_EQ(spmm(q, x).sizes(), (std::vector<int64_t>{0, 20}));
  EXPECT_EQ(spmm(NMSparse::from_dense(w, nm_magnitude_mask(w, 2, 4), 2, 4), x).size(0), 0);
  EXPECT_EQ(spmm(CsrSparse::from_dense(w, w.abs() > 0.5), x).size(0), 0);
}

TEST(SparseSpmm, BadInputGivesClearErrors) {
  const at::Tensor w = random_weight(24, 40, 7);
  const BlockSparse b = BlockSparse::from_dense(w, block_magnitude_mask(w, 0.5, {1, 16}), {1, 16});
  expect_error(
      [&] {
        spmm(b, at::randn({3, 41}));
      },
      "spmm(BlockSparse): input has 41 features, the weight expects 40");
  expect_error([&] { spmm(b, at::randn({40})); }, "expected input [tokens, in], got [40]");
  expect_error(
      [&] {
        spmm(b, at::randn({3, 40}, at::kDouble));
      },
      "expected a float32 input, got Double");
  const CsrSparse c = CsrSparse::from_dense(w, w.abs() > 0.5);
  expect_error([&] { spmm(c, at::randn({3, 39})); }, "spmm(CsrSparse): input has 39 features");
  // int32 accumulators hold sums of up to 65536 products of u8 x s8.
  const at::Tensor wide = at::ones({1, 65540});
  const auto q = Int8BlockSparse::quantize(BlockSparse::from_dense(wide, wide > 0, {4, 1}));
  expect_error([&] { spmm(q, at::ones({1, 65540})); }, "in_features 65540 exceeds 65536");
}

}  // namespace
}  // namespace strata::sparse
