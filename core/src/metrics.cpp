#include "strata/core/metrics.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "strata/core/error.h"

namespace strata::core {

MetricsWriter::MetricsWriter(std::string path) : path_(std::move(path)) {
  if (path_.empty()) return;
  tmp_path_ = path_ + ".tmp";
  const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  out_.open(tmp_path_, std::ios::out | std::ios::trunc);
  STRATA_CHECK(out_.is_open(), "metrics file ", tmp_path_, ": cannot create (",
               std::strerror(errno), ")");
}

MetricsWriter::~MetricsWriter() {
  try {
    finish();
  } catch (...) {
    // A destructor must not throw; the data stays in <path>.tmp.
  }
}

void MetricsWriter::write(const nlohmann::json& record) {
  if (!enabled()) return;
  STRATA_CHECK(!finished_, "metrics file ", path_, ": write after write_final");
  STRATA_CHECK(record.is_object(), "metrics record ", record.dump(), ": expected a JSON object");
  out_ << record.dump() << '\n';
  out_.flush();
  STRATA_CHECK(out_.good(), "metrics file ", tmp_path_, ": write failed (", std::strerror(errno),
               ")");
}

void MetricsWriter::write_final(nlohmann::json record) {
  if (!enabled()) return;
  record["event"] = "final";
  write(record);
  finish();
}

void MetricsWriter::finish() {
  if (!enabled() || finished_) return;
  finished_ = true;
  out_.close();
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    // No <path>.tmp is left behind: the run says why its metrics are missing instead.
    const int error = errno;
    std::remove(tmp_path_.c_str());
    STRATA_FAIL("metrics file ", path_, ": cannot rename ", tmp_path_, " to it (",
                std::strerror(error), ")");
  }
}

}  // namespace strata::core
