// check_same_configuration on both backends: equal configurations pass; a rank with a
// different value, a missing or an extra flag makes every rank fail with one message
// naming the flag and both values.
#include <string>

#include "comm_test_support.h"
#include "core/test_util.h"
#include "strata/parallel/control/configuration_check.h"

namespace strata::parallel::testing {
namespace {

const std::string kConfig = "batch=256\nlr=0.05\nmodel=\"cnn\"\n";

// Every rank must fail with `expected` in its message.
void expect_every_rank_fails(Communicator& comm, const std::string& mine,
                             const std::string& expected) {
  const std::string error = strata::test::error_of([&] { check_same_configuration(comm, mine); });
  EXPECT_NE(error.find(expected), std::string::npos) << "rank " << comm.rank() << ": " << error;
}

void check_configurations(Communicator& comm) {
  EXPECT_NO_THROW(check_same_configuration(comm, kConfig));
  const bool last = comm.rank() == comm.size() - 1;
  const std::string last_rank = "rank " + std::to_string(comm.size() - 1);
  expect_every_rank_fails(
      comm, last ? "batch=256\nlr=0.1\nmodel=\"cnn\"\n" : kConfig,
      "configuration differs across ranks: " + last_rank + " has lr=0.1 where rank 0 has lr=0.05");
  expect_every_rank_fails(comm, last ? "batch=256\nmodel=\"cnn\"\n" : kConfig,
                          last_rank + " has no lr where rank 0 has lr=0.05");
  expect_every_rank_fails(comm, last ? kConfig + "pp=2\n" : kConfig,
                          last_rank + " has pp=2 where rank 0 has no pp");
  // The communicator is still usable: the failed checks completed on every rank.
  EXPECT_NO_THROW(check_same_configuration(comm, kConfig));
}
STRATA_COMM_TEST(ConfigurationCheck, NamesTheFirstDifferingFlag, check_configurations)

}  // namespace
}  // namespace strata::parallel::testing
