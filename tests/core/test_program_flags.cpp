// The training programs' flags bind to the libraries' Options: a flag sets the Options field
// itself, enum flags take names, and help, defaults and errors read as before.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/test_util.h"
#include "strata/programs/cli.h"
#include "strata/programs/moe_flags.h"
#include "strata/programs/pipeline_flags.h"
#include "strata/programs/reliability_flags.h"
#include "strata/programs/stage_devices.h"
#include "strata/programs/training_run.h"

#include <ATen/Context.h>

namespace strata::programs {
namespace {

using strata::test::error_of;
using testing::HasSubstr;

struct Parsed {
  std::optional<int> code;
  std::string out, err;
};

// A program with one group of flags, configured as every strata program is.
template <typename Flags>
struct Program {
  CLI::App app{"test"};
  Flags flags;
  explicit Program(void (*add_flags)(CLI::App&, Flags&)) {
    configure_cli(app);
    add_flags(app, flags);
  }
  // Parses `words` (after the program name), capturing what it prints.
  Parsed parse(std::vector<std::string> words) {
    words.insert(words.begin(), "prog");
    std::vector<char*> argv;
    for (auto& word : words) argv.push_back(word.data());
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    Parsed parsed;
    parsed.code = parse_cli(app, static_cast<int>(argv.size()), argv.data());
    parsed.out = testing::internal::GetCapturedStdout();
    parsed.err = testing::internal::GetCapturedStderr();
    return parsed;
  }
};

TEST(PipelineFlags, BindToTheHybridParallelOptions) {
  Program<PipelineFlags> program(add_pipeline_flags);
  PipelineFlags& flags = program.flags;
  const Parsed parsed =
      program.parse({"--pp", "2", "--micro-batches", "8", "--schedule", "zb-h1", "--virtual-stages",
                     "2", "--recompute", "except_last", "--balance", "3,5", "--bucket-cap-mb",
                     "0.5", "--trace-out", "t.json", "--trace-steps", "5"});
  ASSERT_EQ(parsed.code, std::nullopt) << parsed.err;
  const parallel::PipelineParallelOptions& pipeline = flags.options.pipeline();
  EXPECT_EQ(flags.options.pipeline_parallel(), 2);
  EXPECT_EQ(pipeline.micro_batches(), 8);
  EXPECT_EQ(pipeline.schedule(), "zb-h1");
  EXPECT_EQ(pipeline.virtual_stages(), 2);
  EXPECT_EQ(pipeline.recompute(), parallel::Recompute::ExceptLast);
  EXPECT_EQ(pipeline.balance(), "3,5");
  EXPECT_EQ(pipeline.bucket_cap_bytes(), 512 * 1024);
  EXPECT_EQ(flags.trace_out, "t.json");
  EXPECT_EQ(flags.trace_steps, 5);
}

TEST(PipelineFlags, DefaultsAreTheOptionsDefaults) {
  Program<PipelineFlags> program(add_pipeline_flags);
  PipelineFlags& flags = program.flags;
  const Parsed parsed = program.parse({"--help"});
  EXPECT_EQ(parsed.code, 0);
  const parallel::PipelineParallelOptions defaults;
  EXPECT_EQ(flags.options.pipeline().bucket_cap_bytes(), defaults.bucket_cap_bytes());
  EXPECT_EQ(flags.options.pipeline().recompute(), parallel::Recompute::Never);
  EXPECT_THAT(parsed.out, HasSubstr("--pp INT:in [1, 1024]=1"));
  EXPECT_THAT(parsed.out, HasSubstr("--micro-batches INT:in [1, 1000000]=4"));
  EXPECT_THAT(parsed.out, HasSubstr("--recompute TEXT:{never,always,except_last}=never"));
  EXPECT_THAT(parsed.out, HasSubstr("--bucket-cap-mb FLOAT:in (0, 1000000]=25"));
}

TEST(PipelineFlags, AnEnumTakesOnlyItsNames) {
  for (const std::string bad : {"sometimes", "1"}) {
    Program<PipelineFlags> program(add_pipeline_flags);
    const Parsed parsed = program.parse({"--recompute", bad});
    EXPECT_EQ(parsed.code, 1) << bad;
    EXPECT_EQ(parsed.err, "error: --recompute: " + bad + " not in {never,always,except_last}\n");
  }
}

// --devices gives one device per stage (each accel entry its own index) and the mover;
// --threads, when given, is each in-process worker's thread count.
TEST(PipelineFlags, DevicesBindOnePerStage) {
  Program<PipelineFlags> program(add_pipeline_flags);
  PipelineFlags& flags = program.flags;
  EXPECT_EQ(flags.device_names(), (std::vector<std::string>{"cpu"}));
  int threads = 4;
  program.app.add_option("--threads", threads);
  const Parsed parsed = program.parse(
      {"--pp", "3", "--devices", "accel:nvdla,cpu,accel:shidiannao", "--threads", "2"});
  ASSERT_EQ(parsed.code, std::nullopt) << parsed.err;
  check_pipeline_flags(program.app, flags);
  const auto& devices = flags.options.pipeline().devices();
  ASSERT_EQ(devices.size(), 3u);
  EXPECT_EQ(devices[0], c10::Device(c10::DeviceType::PrivateUse1, 0));
  EXPECT_EQ(devices[1], c10::Device(c10::kCPU));
  EXPECT_EQ(devices[2], c10::Device(c10::DeviceType::PrivateUse1, 1));
  EXPECT_TRUE(static_cast<bool>(flags.options.pipeline().move_module()));
  EXPECT_EQ(flags.device_names(),
            (std::vector<std::string>{"accel:nvdla", "cpu", "accel:shidiannao"}));
  EXPECT_EQ(flags.worker_threads, 2);
}

TEST(StageDevices, OneForAllGivesEachStageItsOwnDevice) {
  const auto devices = parse_stage_devices("accel:eyeriss", 2);
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].device, c10::Device(c10::DeviceType::PrivateUse1, 0));
  EXPECT_EQ(devices[1].device, c10::Device(c10::DeviceType::PrivateUse1, 1));
  ASSERT_TRUE(devices[1].spec.has_value());
  EXPECT_EQ(parse_stage_devices("cpu", 4).size(), 4u);
}

TEST(StageDevices, BadEntriesNameTheEntry) {
  const std::vector<std::pair<std::pair<std::string, int>, std::string>> cases = {
      {{"cpu,gpu", 2}, "--devices 'cpu,gpu': entry 2 'gpu' is not a device, expected cpu"},
      {{"cpu,", 2}, "--devices 'cpu,': entry 2 is empty"},
      {{"accel:nosuch,cpu", 2}, "--devices 'accel:nosuch,cpu': entry 1 'accel:nosuch': "},
      {{"accel:,cpu", 2}, "entry 1 'accel:' names no accelerator"},
      {{"cpu,cpu,cpu", 2},
       "--devices 'cpu,cpu,cpu' has 3 entries for --pp 2, expected 2 (one "
       "per stage) or 1 (for all)"},
      {{"cpu,cpu", 3}, "has 2 entries for --pp 3"},
  };
  for (const auto& [input, message] : cases)
    EXPECT_THAT(error_of([&] { parse_stage_devices(input.first, input.second); }),
                HasSubstr(message))
        << input.first;
  if (!at::hasCUDA())
    EXPECT_THAT(error_of([] { parse_stage_devices("cpu,cuda:0", 2); }),
                HasSubstr("entry 2 'cuda:0': this build has no CUDA"));
}

TEST(MoEFlags, BindToTheLayerOptions) {
  Program<MoEFlags> program(add_moe_flags);
  MoEFlags& flags = program.flags;
  const Parsed parsed =
      program.parse({"--moe", "--experts", "4", "--top-k", "1", "--expert-ffn", "64",
                     "--capacity-factor", "1.25", "--drop-priority", "score", "--balance-loss",
                     "0.1", "--z-loss", "0.2", "--router-jitter", "0.3", "--ep", "2"});
  ASSERT_EQ(parsed.code, std::nullopt) << parsed.err;
  EXPECT_TRUE(flags.enabled);
  EXPECT_EQ(flags.ep, 2);
  const moe::MoELayerOptions& layer = flags.layer;
  EXPECT_EQ(layer.experts(), 4);
  EXPECT_EQ(layer.top_k(), 1);
  EXPECT_EQ(layer.hidden(), 64);
  EXPECT_EQ(layer.capacity_factor(), 1.25);
  EXPECT_EQ(layer.drop_priority(), moe::DropPriority::Score);
  EXPECT_EQ(layer.balance_loss_coef(), 0.1);
  EXPECT_EQ(layer.z_loss_coef(), 0.2);
  EXPECT_EQ(layer.jitter(), 0.3);
  EXPECT_EQ(error_of([&] { check_moe_flags(program.app, flags); }), "<no error>");
}

TEST(MoEFlags, ChecksNameTheFlags) {
  {
    Program<MoEFlags> program(add_moe_flags);
    MoEFlags& flags = program.flags;
    ASSERT_EQ(program.parse({"--experts", "4"}).code, std::nullopt);
    EXPECT_EQ(error_of([&] { check_moe_flags(program.app, flags); }), "--experts needs --moe");
  }
  {
    Program<MoEFlags> program(add_moe_flags);
    MoEFlags& flags = program.flags;
    ASSERT_EQ(program.parse({"--moe", "--experts", "6", "--ep", "4"}).code, std::nullopt);
    EXPECT_EQ(error_of([&] { check_moe_flags(program.app, flags); }),
              "--experts 6 is not divisible by --ep 4");
  }
  {
    Program<MoEFlags> program(add_moe_flags);
    const Parsed parsed = program.parse({"--help"});
    EXPECT_THAT(parsed.out, HasSubstr("--drop-priority TEXT:{order,score}=order"));
    EXPECT_THAT(parsed.out, HasSubstr("--experts INT:in [1, 10000]=8"));
  }
}

TEST(ReliabilityFlags, BindToTheControlPlaneOptions) {
  Program<ReliabilityFlags> program(add_reliability_flags);
  ReliabilityFlags& flags = program.flags;
  ASSERT_EQ(
      program.parse({"--timeout", "2.5", "--hang-report", "hang.json", "--backend", "gloo"}).code,
      std::nullopt);
  EXPECT_EQ(flags.backend, "gloo");
  EXPECT_EQ(flags.control_plane.timeout(), 2.5);
  EXPECT_EQ(flags.control_plane.hang_report(), "hang.json");
  EXPECT_EQ(flags.control_plane.heartbeat_interval(), std::chrono::milliseconds(250));
}

TEST(ReliabilityFlags, StrataRunPassesTheTimeoutDown) {
  ::setenv("STRATA_TIMEOUT", "7", 1);
  Program<ReliabilityFlags> program(add_reliability_flags);
  ReliabilityFlags& flags = program.flags;
  ::unsetenv("STRATA_TIMEOUT");
  ASSERT_EQ(program.parse({}).code, std::nullopt);
  EXPECT_EQ(flags.control_plane.timeout(), 7);
}

TEST(TrainingRunFlags, CheckpointEveryTakesANumberOrAuto) {
  Program<TrainingRunFlags> numbered(add_training_run_flags);
  ASSERT_EQ(numbered.parse({"--checkpoint-every", "25"}).code, std::nullopt);
  EXPECT_EQ(numbered.flags.checkpoint_every, 25);
  EXPECT_FALSE(numbered.flags.checkpoint_every_auto);

  Program<TrainingRunFlags> automatic(add_training_run_flags);
  ASSERT_EQ(
      automatic
          .parse({"--checkpoint-every", "auto", "--mtbf-hours", "5000", "--checkpoint-dir", "ckpt"})
          .code,
      std::nullopt);
  EXPECT_TRUE(automatic.flags.checkpoint_every_auto);
  EXPECT_EQ(automatic.flags.mtbf_hours, 5000);
  automatic.flags.check();

  Program<TrainingRunFlags> bad(add_training_run_flags);
  const Parsed parsed = bad.parse({"--checkpoint-every", "often"});
  EXPECT_EQ(parsed.code, 1);
  EXPECT_THAT(parsed.err, HasSubstr("--checkpoint-every: 'often' is not a number (or auto)"));

  Program<TrainingRunFlags> no_mtbf(add_training_run_flags);
  ASSERT_EQ(no_mtbf.parse({"--checkpoint-every", "auto", "--checkpoint-dir", "c"}).code,
            std::nullopt);
  EXPECT_THAT(error_of([&] { no_mtbf.flags.check(); }),
              HasSubstr("--checkpoint-every auto needs --mtbf-hours"));
}

}  // namespace
}  // namespace strata::programs
