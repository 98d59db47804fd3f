#include "strata/parallel/comm/allgather_strings.h"

#include <cstring>

namespace strata::parallel {

std::vector<std::string> allgather_strings(Communicator& comm, const std::string& mine) {
  at::Tensor length = at::full({1}, static_cast<int64_t>(mine.size()), at::kLong);
  at::Tensor lengths = at::empty({comm.size(), 1}, at::kLong);
  comm.allgather(length, lengths)->wait();
  const int64_t longest = lengths.max().item<int64_t>();
  at::Tensor bytes = at::zeros({longest}, at::kByte);
  std::memcpy(bytes.data_ptr(), mine.data(), mine.size());
  at::Tensor all = at::empty({comm.size(), longest}, at::kByte);
  comm.allgather(bytes, all)->wait();
  std::vector<std::string> result;
  for (int r = 0; r < comm.size(); ++r)
    result.emplace_back(reinterpret_cast<const char*>(all[r].data_ptr()),
                        static_cast<size_t>(lengths[r][0].item<int64_t>()));
  return result;
}

}  // namespace strata::parallel
