#pragma once
// The rendezvous store of the control plane (like c10d's TCPStore): a key-value store of
// binary values served over TCP by one process of the job (strata-run, or rank 0 under
// mpirun) and used by every rank to find each other, to beat its heartbeat and to agree on
// an abort. See docs/reliability.md.
//
//   strata::parallel::ControlStoreServer server;            // 127.0.0.1, any free port
//   strata::parallel::ControlStoreClient store("127.0.0.1", server.port());
//   store.set("ready/0", "yes");
//   int64_t arrived = store.add("arrived", 1);
//   std::string value = store.get("ready/1", std::chrono::seconds(5));  // waits for the key
//
// Protocol: every request and reply is a frame: a 4-byte little-endian length, then the
// body. A request body is an op byte and its fields (strings as 4-byte length + bytes,
// integers as 8 bytes little-endian); a reply body is a status byte and its fields. The
// server runs one Boost.Asio io_context thread; a request that blocks (get, wait) is
// answered when its keys appear or its timeout passes, without holding up other clients.
// A malformed frame gets an error reply (or, if its length is absurd, a closed
// connection); it never stops the server.
//
// Client calls are synchronous, thread-safe (one connection, one call at a time) and have
// deadlines: a server that dies or stops answering makes them throw strata::Error naming
// the store's address, never hang.

#include <torch/arg.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace strata::parallel {

struct ControlStoreServerOptions {
  // The address to listen on; loopback by default, "0.0.0.0" for other hosts.
  TORCH_ARG(std::string, host) = "127.0.0.1";
  // 0: any free port (read it back with port()).
  TORCH_ARG(int, port) = 0;
};

class ControlStoreServer {
 public:
  // Listens at once and serves from a thread of its own until destroyed.
  explicit ControlStoreServer(ControlStoreServerOptions options = {});
  ~ControlStoreServer();
  ControlStoreServer(const ControlStoreServer&) = delete;
  ControlStoreServer& operator=(const ControlStoreServer&) = delete;

  int port() const;
  const std::string& host() const;
  std::string address() const;  // "host:port"

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct ControlStoreClientOptions {
  // How long get and wait wait for their keys unless told otherwise.
  TORCH_ARG(std::chrono::milliseconds, timeout) = std::chrono::seconds(300);
  // How long to keep trying to connect (the server may start after the client).
  TORCH_ARG(std::chrono::milliseconds, connect_timeout) = std::chrono::seconds(30);
  // How long a reply to a request that does not wait for keys may take.
  TORCH_ARG(std::chrono::milliseconds, io_timeout) = std::chrono::seconds(30);
};

class ControlStoreClient {
 public:
  ControlStoreClient(std::string host, int port, ControlStoreClientOptions options = {});
  // `address` is "host:port" (what STRATA_STORE_ADDR holds).
  explicit ControlStoreClient(const std::string& address, ControlStoreClientOptions options = {});
  ~ControlStoreClient();
  ControlStoreClient(const ControlStoreClient&) = delete;
  ControlStoreClient& operator=(const ControlStoreClient&) = delete;

  void set(const std::string& key, const std::string& value);
  // Waits until `key` exists (options().timeout(), or `timeout`), then returns its value;
  // throws strata::Error naming the key on timeout.
  std::string get(const std::string& key);
  std::string get(const std::string& key, std::chrono::milliseconds timeout);
  // The value, or nullopt when the key does not exist; does not wait.
  std::optional<std::string> try_get(const std::string& key);
  // Waits until every key exists; throws strata::Error naming a missing key on timeout.
  void wait(const std::vector<std::string>& keys);
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout);
  // Adds `delta` to the integer stored at `key` (0 when missing; values are decimal text)
  // and returns the new value, atomically.
  int64_t add(const std::string& key, int64_t delta);
  // c10d's semantics: sets `desired` when the key holds `expected` (or is missing and
  // `expected` is empty) and returns the value the key holds afterwards; when the key is
  // missing and `expected` is not empty, returns `expected` and changes nothing.
  std::string compare_set(const std::string& key, const std::string& expected,
                          const std::string& desired);
  // True when every key exists.
  bool check(const std::vector<std::string>& keys);
  // Removes `key`; true when it existed.
  bool remove(const std::string& key);
  int64_t num_keys();

  const ControlStoreClientOptions& options() const { return options_; }
  std::string address() const;

 private:
  struct Impl;
  std::string request(const std::string& body, std::chrono::milliseconds reply_within,
                      const std::string& what);
  ControlStoreClientOptions options_;
  std::unique_ptr<Impl> impl_;
  std::mutex mutex_;
};

// Splits "host:port"; throws strata::Error for anything else.
std::pair<std::string, int> parse_store_address(const std::string& address);

}  // namespace strata::parallel
