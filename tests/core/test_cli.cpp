#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "strata/core/error.h"
#include "strata/programs/cli.h"

using strata::programs::configure_cli;
using strata::programs::parse_cli;
using strata::programs::run_main;
using testing::HasSubstr;
using testing::StartsWith;

namespace {

struct Args {
  std::vector<std::string> words;
  std::vector<char*> argv;
  explicit Args(std::vector<std::string> w) : words(std::move(w)) {
    for (auto& word : words) argv.push_back(word.data());
  }
  int argc() const { return static_cast<int>(argv.size()); }
};

int count_lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

TEST(Cli, ParsesFlags) {
  CLI::App app("test");
  configure_cli(app);
  int epochs = 3;
  std::string model = "mlp";
  app.add_option("--epochs", epochs, "epochs to train");
  app.add_option("--model", model, "mlp or cnn");
  Args args({"prog", "--epochs", "7"});
  EXPECT_EQ(parse_cli(app, args.argc(), args.argv.data()), std::nullopt);
  EXPECT_EQ(epochs, 7);
  EXPECT_EQ(model, "mlp");
}

TEST(Cli, UnknownFlagIsOneErrorLine) {
  CLI::App app("test");
  configure_cli(app);
  int epochs = 3;
  app.add_option("--epochs", epochs, "epochs to train");
  Args args({"prog", "--bogus"});
  testing::internal::CaptureStderr();
  const auto code = parse_cli(app, args.argc(), args.argv.data());
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_THAT(err, StartsWith("error: "));
  EXPECT_THAT(err, HasSubstr("--bogus"));
  EXPECT_EQ(count_lines(err), 1);
}

TEST(Cli, BadValueIsAnError) {
  CLI::App app("test");
  configure_cli(app);
  int epochs = 3;
  app.add_option("--epochs", epochs, "epochs to train");
  Args args({"prog", "--epochs", "many"});
  testing::internal::CaptureStderr();
  EXPECT_EQ(parse_cli(app, args.argc(), args.argv.data()), 1);
  EXPECT_THAT(testing::internal::GetCapturedStderr(), StartsWith("error: "));
}

TEST(Cli, HelpShowsDefaults) {
  CLI::App app("test");
  configure_cli(app);
  int epochs = 3;
  double lr = 0.05;
  app.add_option("--epochs", epochs, "epochs to train");
  app.add_option("--lr", lr, "learning rate");
  Args args({"prog", "--help"});
  testing::internal::CaptureStdout();
  const auto code = parse_cli(app, args.argc(), args.argv.data());
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(code, 0);
  EXPECT_THAT(out, HasSubstr("--epochs INT=3"));
  EXPECT_THAT(out, HasSubstr("--lr FLOAT=0.05"));
}

TEST(Cli, HelpShowsDefaultsWithoutConfigure) {
  CLI::App app("test");
  int epochs = 4;
  app.add_option("--epochs", epochs, "epochs to train");
  Args args({"prog", "--help"});
  testing::internal::CaptureStdout();
  EXPECT_EQ(parse_cli(app, args.argc(), args.argv.data()), 0);
  EXPECT_THAT(testing::internal::GetCapturedStdout(), HasSubstr("=4"));
}

TEST(RunMain, TurnsErrorsIntoExitCodes) {
  EXPECT_EQ(run_main([] { return 0; }), 0);
  EXPECT_EQ(run_main([] { return 3; }), 3);

  testing::internal::CaptureStderr();
  EXPECT_EQ(run_main([]() -> int { STRATA_FAIL("epochs: got -1, expected at least 1"); }), 1);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "error: epochs: got -1, expected at least 1\n");

  testing::internal::CaptureStderr();
  EXPECT_EQ(run_main([]() -> int {
              TORCH_CHECK(false, "shapes differ");
              return 0;
            }),
            1);
  const std::string torch_err = testing::internal::GetCapturedStderr();
  EXPECT_THAT(torch_err, StartsWith("error: shapes differ"));
  EXPECT_EQ(count_lines(torch_err), 1);

  testing::internal::CaptureStderr();
  EXPECT_EQ(run_main([]() -> int { throw std::runtime_error("disk\nfull"); }), 1);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "error: disk full\n");
}
