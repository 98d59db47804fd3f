#include "run/rendezvous.h"

#include <arpa/inet.h>

#include <algorithm>
#include <thread>

#include <nlohmann/json.hpp>

#include "strata/core/error.h"

namespace strata::run {
namespace {

std::chrono::milliseconds milliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

std::string joined(const std::vector<std::string>& words) {
  std::string text;
  for (const auto& word : words) text += (text.empty() ? "" : " ") + word;
  return text;
}

}  // namespace

Rendezvous::Rendezvous(const LaunchOptions& options) : options_(options) {
  const size_t colon = options.rdzv.rfind(':');
  STRATA_CHECK(colon != std::string::npos && colon > 0, "--rdzv ", options.rdzv,
               ": expected HOST:PORT");
  host_ = options.rdzv.substr(0, colon);
  int port = -1;
  try {
    size_t used = 0;
    port = std::stoi(options.rdzv.substr(colon + 1), &used);
    if (used != options.rdzv.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
  }
  STRATA_CHECK(port >= 1 && port <= 65535, "--rdzv ", options.rdzv,
               ": the port must be a number in 1..65535");
  unsigned char address[16];
  STRATA_CHECK(inet_pton(AF_INET, host_.c_str(), address) == 1 ||
                   inet_pton(AF_INET6, host_.c_str(), address) == 1,
               "--rdzv ", options.rdzv,
               ": HOST must be node 0's IP address (e.g. 10.0.0.1), got \"", host_, "\"");
  if (options.node_rank == 0) {
    try {
      server_ = std::make_unique<parallel::ControlStoreServer>(
          parallel::ControlStoreServerOptions().host(host_).port(port));
    } catch (const std::exception& e) {
      STRATA_FAIL("--rdzv ", options.rdzv, ": node 0 cannot host the rendezvous there (", e.what(),
                  ")");
    }
  }
  try {
    store_ = std::make_unique<parallel::ControlStoreClient>(
        options.rdzv, parallel::ControlStoreClientOptions()
                          .connect_timeout(milliseconds(options.rdzv_timeout))
                          .timeout(milliseconds(options.rdzv_timeout)));
  } catch (const std::exception&) {
    STRATA_FAIL("--rdzv ", options.rdzv, ": no rendezvous there within ", options.rdzv_timeout,
                " s (--rdzv-timeout); start node 0's agent (--node-rank 0) on that host");
  }
}

Rendezvous::~Rendezvous() = default;

std::string Rendezvous::node_key(const std::string& what, int node) const {
  return what + "/" + std::to_string(node);
}

std::vector<std::string> Rendezvous::node_keys(const std::string& what) const {
  std::vector<std::string> keys;
  for (int node = 0; node < options_.nnodes; ++node) keys.push_back(node_key(what, node));
  return keys;
}

std::string Rendezvous::missing_nodes(const std::string& what) {
  std::string missing;
  for (int node = 0; node < options_.nnodes; ++node) {
    if (!store_->check({node_key(what, node)})) {
      missing += (missing.empty() ? "" : ", ") + std::to_string(node);
    }
  }
  return missing;
}

void Rendezvous::claim() {
  const int me = options_.node_rank;
  if (store_->add(node_key("rdzv/claim", me), 1) == 1) return;
  // Another agent had this node rank: take its place only when it is lost.
  const auto deadline =
      std::chrono::steady_clock::now() + kLostAfter + std::chrono::milliseconds(500);
  lost_nodes({me});  // the first look starts the clock
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!lost_nodes({me}).empty()) return;
  }
  STRATA_FAIL("--node-rank ", me, ": another agent of the job at ", options_.rdzv,
              " already has node rank ", me, "; give each node its own");
}

void Rendezvous::join() {
  const int me = options_.node_rank;
  claim();
  beat();
  const nlohmann::json said = {{"nproc_per_node", options_.nproc_per_node},
                               {"command", joined(options_.command)},
                               {"host", host_name()}};
  store_->set(node_key("rdzv/node", me), said.dump());
  std::vector<int> present;
  if (const auto current = store_->try_get("job/attempt")) {
    // The job runs already (this agent takes a lost node's place): it joins at the next
    // attempt, checked against node 0.
    first_attempt_ = std::stoi(*current) + 1;
    present = {0, me};
  } else {
    // Every node, or --rdzv-timeout; beating meanwhile, so that a second agent claiming
    // this node rank does not take this one for lost.
    const auto deadline = std::chrono::steady_clock::now() + milliseconds(options_.rdzv_timeout);
    while (!store_->check(node_keys("rdzv/node"))) {
      if (std::chrono::steady_clock::now() >= deadline) {
        for (int node = 0; node < options_.nnodes; ++node) {
          if (store_->check({node_key("rdzv/node", node)})) present.push_back(node);
        }
        STRATA_CHECK(options_.elastic() && static_cast<int>(present.size()) >= options_.min_nodes,
                     "rendezvous at ", options_.rdzv, ": node(s) ", missing_nodes("rdzv/node"),
                     " of ", options_.nnodes, " did not join within ", options_.rdzv_timeout,
                     " s (--rdzv-timeout)",
                     options_.elastic() ? "; fewer than the --nnodes minimum of " +
                                              std::to_string(options_.min_nodes) + " joined"
                                        : "");
        break;
      }
      beat();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (present.empty()) {
      for (int node = 0; node < options_.nnodes; ++node) present.push_back(node);
    }
  }
  for (int node : present) {
    const auto other = nlohmann::json::parse(store_->get(node_key("rdzv/node", node)));
    STRATA_CHECK(other["nproc_per_node"] == said["nproc_per_node"], "--nproc-per-node: node ", node,
                 " (", other["host"].get<std::string>(), ") has ", other["nproc_per_node"].dump(),
                 " and node ", me, " has ", options_.nproc_per_node,
                 "; every node must give the same");
    STRATA_CHECK(other["command"] == said["command"], "node ", node, " (",
                 other["host"].get<std::string>(), ") runs '", other["command"].get<std::string>(),
                 "' and node ", me, " runs '", said["command"].get<std::string>(),
                 "'; every node must run the same command");
  }
}

void Rendezvous::beat() {
  store_->set(node_key("alive", options_.node_rank), std::to_string(++beats_));
}

std::vector<int> Rendezvous::lost_nodes(const std::vector<int>& nodes) {
  const auto now = std::chrono::steady_clock::now();
  std::vector<int> lost;
  for (int node : nodes) {
    if (node == options_.node_rank && beats_ > 0) continue;  // this agent is alive
    const std::string value = store_->try_get(node_key("alive", node)).value_or("");
    auto it = seen_alive_.find(node);
    if (it == seen_alive_.end() || it->second.first != value) {
      seen_alive_[node] = {value, now};
      continue;
    }
    if (now - it->second.second > kLostAfter) lost.push_back(node);
  }
  return lost;
}

std::vector<int> Rendezvous::ready_nodes(int attempt) {
  std::vector<int> ready;
  const std::string prefix = "attempt/" + std::to_string(attempt) + "/ready";
  for (int node = 0; node < options_.nnodes; ++node) {
    if (store_->check({node_key(prefix, node)})) ready.push_back(node);
  }
  return ready;
}

std::vector<int> Rendezvous::members(int attempt) {
  const std::string prefix = "attempt/" + std::to_string(attempt);
  const int me = options_.node_rank;
  store_->set(node_key(prefix + "/ready", me), "1");
  if (me == 0) {
    std::vector<int> ready = ready_nodes(attempt);
    if (attempt == 0) {
      ready.clear();
      for (int node = 0; node < options_.nnodes; ++node) {
        if (store_->check({node_key("rdzv/node", node)})) ready.push_back(node);
      }
    } else {
      // Every node ready, or --rejoin-timeout.
      const auto deadline =
          std::chrono::steady_clock::now() + milliseconds(options_.rejoin_timeout);
      while (static_cast<int>(ready.size()) < options_.nnodes &&
             std::chrono::steady_clock::now() < deadline) {
        beat();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        ready = ready_nodes(attempt);
      }
    }
    nlohmann::json published = ready;
    if (static_cast<int>(ready.size()) < options_.min_nodes) {
      std::string missing;
      for (int node = 0; node < options_.nnodes; ++node) {
        if (std::find(ready.begin(), ready.end(), node) == ready.end())
          missing += (missing.empty() ? "" : ", ") + std::to_string(node);
      }
      const std::string error = "node(s) " + missing + " did not come back within " +
                                std::to_string(static_cast<int>(options_.rejoin_timeout)) +
                                " s (--rejoin-timeout); " + std::to_string(ready.size()) +
                                " node(s) left, the job needs at least " +
                                std::to_string(options_.min_nodes) + " (--nnodes)";
      store_->set(prefix + "/members", nlohmann::json{{"error", error}}.dump());
      STRATA_FAIL(error);
    }
    store_->set(prefix + "/members", published.dump());
    store_->set("job/attempt", std::to_string(attempt));
    return ready;
  }
  const auto deadline = std::chrono::steady_clock::now() +
                        milliseconds(options_.rejoin_timeout + options_.rdzv_timeout);
  while (true) {
    beat();
    if (const auto text = store_->try_get(prefix + "/members")) {
      const auto json = nlohmann::json::parse(*text);
      STRATA_CHECK(!json.is_object(), json["error"].get<std::string>());
      const auto nodes = json.get<std::vector<int>>();
      if (std::find(nodes.begin(), nodes.end(), me) == nodes.end()) return {};
      return nodes;
    }
    if (job_ended()) return {};
    STRATA_CHECK(std::chrono::steady_clock::now() < deadline, "rendezvous at ", options_.rdzv,
                 ": node 0 did not start attempt ", attempt, " within ",
                 options_.rejoin_timeout + options_.rdzv_timeout,
                 " s (--rejoin-timeout + --rdzv-timeout)");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::vector<int> Rendezvous::waiting_nodes(int attempt, const std::vector<int>& members) {
  std::vector<int> waiting;
  for (int node : ready_nodes(attempt + 1)) {
    if (std::find(members.begin(), members.end(), node) == members.end()) waiting.push_back(node);
  }
  return waiting;
}

bool Rendezvous::job_ended() { return store_->check({"job/ended"}); }

void Rendezvous::publish_store(int attempt, const std::string& address) {
  store_->set("attempt/" + std::to_string(attempt) + "/store", address);
}

std::string Rendezvous::store_address(int attempt) {
  const std::string key = "attempt/" + std::to_string(attempt) + "/store";
  try {
    return store_->get(key, milliseconds(options_.rdzv_timeout));
  } catch (const std::exception&) {
    STRATA_FAIL("rendezvous at ", options_.rdzv, ": node 0 did not start attempt ", attempt,
                " within ", options_.rdzv_timeout, " s (--rdzv-timeout)");
  }
}

void Rendezvous::post_failure(int attempt, const Failure& failure) {
  const std::string prefix = "attempt/" + std::to_string(attempt);
  if (store_->add(prefix + "/failures", 1) != 1) return;  // another node's came first
  store_->set(prefix + "/failure", nlohmann::json{{"kind", static_cast<int>(failure.kind)},
                                                  {"exit_code", failure.exit_code},
                                                  {"reason", failure.reason}}
                                       .dump());
}

std::optional<Failure> Rendezvous::failure(int attempt) {
  const auto text = store_->try_get("attempt/" + std::to_string(attempt) + "/failure");
  if (!text) return std::nullopt;
  const auto json = nlohmann::json::parse(*text);
  return Failure{static_cast<Failure::Kind>(json["kind"].get<int>()), json["exit_code"].get<int>(),
                 json["reason"].get<std::string>()};
}

void Rendezvous::finish_attempt(int attempt, const std::vector<int>& members) {
  const std::string exited = "attempt/" + std::to_string(attempt) + "/exited";
  store_->set(node_key(exited, options_.node_rank), "1");
  const auto deadline =
      std::chrono::steady_clock::now() + milliseconds(options_.rdzv_timeout + options_.grace);
  std::string missing;
  while (true) {
    beat();
    const auto lost = lost_nodes(members);
    missing.clear();
    for (int node : members) {
      if (!store_->check({node_key(exited, node)}) &&
          std::find(lost.begin(), lost.end(), node) == lost.end())
        missing += (missing.empty() ? "" : ", ") + std::to_string(node);
    }
    if (missing.empty()) return;
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  post_failure(attempt, {Failure::Kind::Crash, 1,
                         "node(s) " + missing + " did not report the end of their ranks within " +
                             std::to_string(static_cast<int>(options_.rdzv_timeout)) +
                             " s (--rdzv-timeout)"});
}

void Rendezvous::leave(const std::vector<int>& members) {
  try {
    store_->set(node_key("left", options_.node_rank), "1");
    if (!server_) return;
    store_->set("job/ended", "1");
    const auto deadline = std::chrono::steady_clock::now() + milliseconds(options_.grace + 5);
    while (std::chrono::steady_clock::now() < deadline) {
      const auto lost = lost_nodes(members);
      bool all = true;
      for (int node : members) {
        all = all && (store_->check({node_key("left", node)}) ||
                      std::find(lost.begin(), lost.end(), node) != lost.end());
      }
      if (all) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  } catch (const std::exception&) {
    // An agent that is gone has nothing left to read.
  }
}

}  // namespace strata::run
