#include "strata/core/chrome_trace.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "strata/core/error.h"
#include "strata/core/json_fields.h"

namespace strata::core {

namespace {

nlohmann::json metadata(const char* kind, int pid, int tid, const std::string& name) {
  return {{"name", kind}, {"ph", "M"}, {"pid", pid}, {"tid", tid}, {"args", {{"name", name}}}};
}

// Adds `name` for `key` to `names`, refusing a different name already there.
template <typename Key>
void merge_name(std::map<Key, std::string>& names, const Key& key, const std::string& name,
                const std::string& what) {
  const auto [it, inserted] = names.emplace(key, name);
  STRATA_CHECK(inserted || it->second == name, "chrome trace merge: ", what, " is named '",
               it->second, "' in one trace and '", name, "' in another");
}

}  // namespace

void ChromeTrace::add_complete(const std::string& name, const std::string& category, int pid,
                               int tid, double start_us, double duration_us,
                               const nlohmann::json& args) {
  // NaN or infinity would be written as null, which the viewers reject or misplace.
  STRATA_CHECK(std::isfinite(start_us), "chrome trace event '", name, "': start ", start_us,
               " us, expected a finite time");
  STRATA_CHECK(std::isfinite(duration_us) && duration_us >= 0, "chrome trace event '", name,
               "': duration ", duration_us, " us, expected a finite time >= 0");
  STRATA_CHECK(args.is_null() || args.is_object(), "chrome trace event '", name, "': args ",
               args.dump(), ", expected a JSON object");
  events_.push_back(Event{name, category, pid, tid, start_us, duration_us,
                          args.is_null() ? nlohmann::json::object() : args});
}

void ChromeTrace::set_process_name(int pid, const std::string& name) { process_names_[pid] = name; }

void ChromeTrace::set_thread_name(int pid, int tid, const std::string& name) {
  thread_names_[{pid, tid}] = name;
}

nlohmann::json ChromeTrace::to_json() const {
  nlohmann::json events = nlohmann::json::array();
  for (const auto& [pid, name] : process_names_)
    events.push_back(metadata("process_name", pid, 0, name));
  for (const auto& [row, name] : thread_names_)
    events.push_back(metadata("thread_name", row.first, row.second, name));
  for (const Event& e : events_) {
    events.push_back({{"name", e.name},
                      {"cat", e.category},
                      {"ph", "X"},
                      {"pid", e.pid},
                      {"tid", e.tid},
                      {"ts", e.start_us},
                      {"dur", e.duration_us},
                      {"args", e.args}});
  }
  return {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}};
}

ChromeTrace ChromeTrace::from_json(const nlohmann::json& json) {
  STRATA_CHECK(json.is_object() && json.contains("traceEvents") && json["traceEvents"].is_array(),
               "chrome trace: expected an object with a traceEvents array");
  ChromeTrace trace;
  const auto& events = json["traceEvents"];
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& e = events[i];
    try {
      const std::string ph = e.at("ph").get<std::string>();
      const std::string name = e.at("name").get<std::string>();
      const int pid = e.at("pid").get<int>();
      const int tid = e.value("tid", 0);
      if (ph == "M" && name == "process_name") {
        trace.set_process_name(pid, e.at("args").at("name").get<std::string>());
      } else if (ph == "M" && name == "thread_name") {
        trace.set_thread_name(pid, tid, e.at("args").at("name").get<std::string>());
      } else if (ph == "X") {
        trace.add_complete(name, e.value("cat", ""), pid, tid, e.at("ts").get<double>(),
                           e.at("dur").get<double>(), e.value("args", nlohmann::json()));
      }
    } catch (const nlohmann::json::exception& error) {
      STRATA_FAIL("chrome trace: cannot read event ", i, " (", json_error_text(error), ")");
    }
  }
  return trace;
}

void ChromeTrace::write(const std::string& path) const {
  STRATA_CHECK(!path.empty(), "chrome trace: got an empty path, expected a file name");
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  // The pid keeps ranks that share a file system from writing the same temporary file.
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::out | std::ios::trunc);
    STRATA_CHECK(out.is_open(), "chrome trace ", path, ": cannot create ", tmp, " (",
                 std::strerror(errno), ")");
    out << to_json().dump();
    out.flush();
    if (!out.good()) {
      const int error = errno;
      out.close();
      std::remove(tmp.c_str());
      STRATA_FAIL("chrome trace ", path, ": write to ", tmp, " failed (", std::strerror(error),
                  ")");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    std::remove(tmp.c_str());
    STRATA_FAIL("chrome trace ", path, ": cannot rename ", tmp, " to it (", std::strerror(error),
                ")");
  }
}

ChromeTrace ChromeTrace::merge(const std::vector<ChromeTrace>& traces) {
  ChromeTrace merged;
  for (const ChromeTrace& trace : traces) {
    merged.events_.insert(merged.events_.end(), trace.events_.begin(), trace.events_.end());
    for (const auto& [pid, name] : trace.process_names_)
      merge_name(merged.process_names_, pid, name, "process " + std::to_string(pid));
    for (const auto& [row, name] : trace.thread_names_)
      merge_name(
          merged.thread_names_, row, name,
          "thread " + std::to_string(row.second) + " of process " + std::to_string(row.first));
  }
  return merged;
}

}  // namespace strata::core
