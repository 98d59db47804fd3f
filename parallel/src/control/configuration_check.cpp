#include "strata/parallel/control/configuration_check.h"

#include <torch/torch.h>

#include <xxhash.h>

#include <map>
#include <sstream>
#include <vector>

#include "strata/core/error.h"
#include "strata/parallel/comm/tensor_message.h"

namespace strata::parallel {
namespace {

// "key=value" lines in order; a line without '=' is its own key.
std::vector<std::pair<std::string, std::string>> parse_lines(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    lines.emplace_back(line.substr(0, eq), eq == std::string::npos ? "" : line.substr(eq + 1));
  }
  return lines;
}

std::string show(const std::string& key, const std::string* value) {
  return value == nullptr ? "no " + key : key + "=" + *value;
}

// The first difference between this rank's configuration and rank 0's, as words.
std::string first_difference(const std::string& mine, const std::string& reference, int rank) {
  const auto my_lines = parse_lines(mine), reference_lines = parse_lines(reference);
  std::map<std::string, std::string> my_map(my_lines.begin(), my_lines.end());
  std::map<std::string, std::string> reference_map(reference_lines.begin(), reference_lines.end());
  auto find = [](const std::map<std::string, std::string>& m, const std::string& key) {
    const auto it = m.find(key);
    return it == m.end() ? nullptr : &it->second;
  };
  auto describe = [&](const std::string& key) {
    return "rank " + std::to_string(rank) + " has " + show(key, find(my_map, key)) +
           " where rank 0 has " + show(key, find(reference_map, key));
  };
  for (const auto& [key, value] : reference_lines) {
    const std::string* other = find(my_map, key);
    if (other == nullptr || *other != value) return describe(key);
  }
  for (const auto& [key, value] : my_lines) {
    if (find(reference_map, key) == nullptr) return describe(key);
  }
  return "rank " + std::to_string(rank) + "'s configuration differs from rank 0's";
}

}  // namespace

void check_same_configuration(Communicator& world, const std::string& configuration) {
  if (world.size() == 1) return;
  const uint64_t hash = XXH64(configuration.data(), configuration.size(), 0);
  at::Tensor hashes = at::empty({world.size()}, at::kLong);
  world.allgather(at::full({}, static_cast<int64_t>(hash), at::kLong), hashes)->wait();
  const at::Tensor same = hashes.eq(hashes[0]);
  if (same.all().item<bool>()) return;

  // Everyone learns rank 0's configuration; the first rank that differs says how.
  const std::string reference =
      tensor_to_string(broadcast_tensor(world, string_to_tensor(configuration), 0));
  const int first = static_cast<int>(same.logical_not().nonzero()[0].item<int64_t>());
  std::string message =
      world.rank() == first ? first_difference(configuration, reference, first) : std::string();
  message = tensor_to_string(broadcast_tensor(world, string_to_tensor(message), first));
  STRATA_FAIL("configuration differs across ranks: ", message);
}

}  // namespace strata::parallel
