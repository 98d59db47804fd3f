#include "run/rendezvous.h"

#include <arpa/inet.h>

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

void Rendezvous::join() {
  const int me = options_.node_rank;
  STRATA_CHECK(store_->add(node_key("rdzv/claim", me), 1) == 1, "--node-rank ", me,
               ": another agent of the job at ", options_.rdzv, " already has node rank ", me,
               "; give each node its own");
  const nlohmann::json said = {{"nproc_per_node", options_.nproc_per_node},
                               {"command", joined(options_.command)},
                               {"host", host_name()}};
  store_->set(node_key("rdzv/node", me), said.dump());
  try {
    store_->wait(node_keys("rdzv/node"), milliseconds(options_.rdzv_timeout));
  } catch (const std::exception&) {
    STRATA_FAIL("rendezvous at ", options_.rdzv, ": node(s) ", missing_nodes("rdzv/node"), " of ",
                options_.nnodes, " did not join within ", options_.rdzv_timeout,
                " s (--rdzv-timeout)");
  }
  for (int node = 0; node < options_.nnodes; ++node) {
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

void Rendezvous::finish_attempt(int attempt) {
  const std::string exited = "attempt/" + std::to_string(attempt) + "/exited";
  store_->set(node_key(exited, options_.node_rank), "1");
  try {
    store_->wait(node_keys(exited), milliseconds(options_.rdzv_timeout + options_.grace));
  } catch (const std::exception&) {
    post_failure(
        attempt,
        {Failure::Kind::Crash, 1,
         "node(s) " + missing_nodes(exited) + " did not report the end of their ranks within " +
             std::to_string(static_cast<int>(options_.rdzv_timeout)) + " s (--rdzv-timeout)"});
  }
}

void Rendezvous::leave() {
  try {
    store_->set(node_key("left", options_.node_rank), "1");
    if (server_) store_->wait(node_keys("left"), milliseconds(options_.grace + 5));
  } catch (const std::exception&) {
    // An agent that is gone has nothing left to read.
  }
}

}  // namespace strata::run
