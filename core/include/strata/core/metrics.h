#pragma once
// Metrics as JSON lines (one object per line) for plot scripts.

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

namespace strata::core {

class MetricsWriter {
 public:
  // Writes to `<path>.tmp` and renames it to `path` on write_final() or destruction, so a
  // crashed run never leaves a partial file under the real name. An empty path disables
  // the writer (every call is a no-op). Throws strata::Error if the file cannot be created;
  // when the final rename fails, removes `<path>.tmp` and throws.
  explicit MetricsWriter(std::string path);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Appends one line and flushes it, so `tail -f <path>.tmp` follows a live run.
  void write(const nlohmann::json& record);
  // Appends `record` with "event": "final", closes the file and renames it to `path`.
  void write_final(nlohmann::json record);

  bool enabled() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

 private:
  void finish();

  std::string path_;
  std::string tmp_path_;
  std::ofstream out_;
  bool finished_ = false;
};

}  // namespace strata::core
