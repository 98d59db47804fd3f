// STRATA_CPU_CAPABILITY: each level keeps what it names and what comes before it, never
// adds what the CPU lacks, and a bad value is an error naming the variable and the levels.
#include <gtest/gtest.h>

#include "core/scoped_env.h"
#include "core/test_util.h"
#include "strata/core/cpu_capability.h"

namespace strata::core {
namespace {

const CpuCapability kAll{true, true, true, true};

CpuCapability make(bool avx512, bool vnni, bool bf16, bool amx) {
  CpuCapability c;
  c.avx512 = avx512;
  c.avx512_vnni = vnni;
  c.avx512_bf16 = bf16;
  c.amx = amx;
  return c;
}

TEST(CpuCapability, EachLevelKeepsItsFeaturesAndThoseBefore) {
  EXPECT_EQ(limit_cpu_capability(kAll, ""), kAll);
  EXPECT_EQ(limit_cpu_capability(kAll, "default"), kAll);
  EXPECT_EQ(limit_cpu_capability(kAll, "amx"), kAll);
  EXPECT_EQ(limit_cpu_capability(kAll, "avx512_bf16"), make(true, true, true, false));
  EXPECT_EQ(limit_cpu_capability(kAll, "avx512_vnni"), make(true, true, false, false));
  EXPECT_EQ(limit_cpu_capability(kAll, "avx512"), make(true, false, false, false));
  EXPECT_EQ(limit_cpu_capability(kAll, "portable"), CpuCapability{});
  for (const char* level : {"portable", "avx512", "avx512_vnni", "avx512_bf16", "amx"})
    EXPECT_EQ(to_string(limit_cpu_capability(kAll, level)), level);
}

TEST(CpuCapability, ALevelNeverAddsWhatTheCpuLacks) {
  const CpuCapability skylake = make(true, false, false, false);
  EXPECT_EQ(limit_cpu_capability(skylake, "amx"), skylake);
  EXPECT_EQ(limit_cpu_capability(skylake, "avx512_vnni"), skylake);
  EXPECT_EQ(limit_cpu_capability(CpuCapability{}, "avx512"), CpuCapability{});
  EXPECT_EQ(to_string(limit_cpu_capability(CpuCapability{}, "amx")), "portable");
}

TEST(CpuCapability, BadLevelNamesTheVariableAndTheLevels) {
  for (const char* bad : {"AVX512", "avx2", "1", "portable "}) {
    const std::string message = test::error_of([&] { limit_cpu_capability(kAll, bad); });
    EXPECT_NE(message.find("STRATA_CPU_CAPABILITY"), std::string::npos) << message;
    EXPECT_NE(message.find(std::string("'") + bad + "'"), std::string::npos) << message;
    EXPECT_NE(message.find("default, portable, avx512, avx512_vnni, avx512_bf16 or amx"),
              std::string::npos)
        << message;
  }
}

TEST(CpuCapability, EnvironmentVariableLimitsTheDetectedFeatures) {
  test::ScopedEnv env(kCpuCapabilityEnv, std::nullopt);
  EXPECT_EQ(cpu_capability(), cpu_detected());
  env.set("portable");
  EXPECT_EQ(cpu_capability(), CpuCapability{});
  env.set("avx512");
  EXPECT_EQ(cpu_capability(), limit_cpu_capability(cpu_detected(), "avx512"));
  env.set("default");
  EXPECT_EQ(cpu_capability(), cpu_detected());
  env.set("sse");
  EXPECT_THROW(cpu_capability(), strata::Error);
}

TEST(CpuCapability, DetectedFeaturesNeedAvx512) {
  // VNNI, BF16 and AMX count only with AVX-512 F/BW/VL/DQ: every kernel needs those too.
  const CpuCapability c = cpu_detected();
  if (!c.avx512) {
    EXPECT_EQ(c, CpuCapability{});
  }
#if defined(__x86_64__)
  EXPECT_EQ(c.avx512, __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"));
  if (c.avx512) {
    EXPECT_EQ(c.avx512_vnni, bool(__builtin_cpu_supports("avx512vnni")));
  }
#endif
}

}  // namespace
}  // namespace strata::core
