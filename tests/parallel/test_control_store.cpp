// The control store: semantics of set/get/wait/add/compare_set/check, consistent totals
// under many concurrent clients, timeouts that name the key, a server that survives bad
// messages, and clients that fail clearly (not hang) when the server goes away.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <thread>

#include "strata/core/error.h"
#include "strata/parallel/control/control_store.h"

namespace {

using namespace std::chrono_literals;
using strata::parallel::ControlStoreClient;
using strata::parallel::ControlStoreClientOptions;
using strata::parallel::ControlStoreServer;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The message of the strata::Error `body` raises ("" when it raises none).
std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const strata::Error& e) {
    return e.what();
  }
  return "";
}

TEST(ControlStore, SetGetCheckRemoveWithBinaryValues) {
  ControlStoreServer server;
  ASSERT_GT(server.port(), 0);
  ControlStoreClient store("127.0.0.1", server.port());
  const std::string binary("a\0b\xff\x01", 5);
  store.set("k/binary", binary);
  EXPECT_EQ(store.get("k/binary"), binary);
  store.set("k/empty", "");
  EXPECT_EQ(store.get("k/empty"), "");
  EXPECT_EQ(store.try_get("k/missing"), std::nullopt);
  EXPECT_EQ(store.try_get("k/binary"), binary);
  EXPECT_TRUE(store.check({"k/binary", "k/empty"}));
  EXPECT_FALSE(store.check({"k/binary", "k/missing"}));
  EXPECT_EQ(store.num_keys(), 2);
  EXPECT_TRUE(store.remove("k/empty"));
  EXPECT_FALSE(store.remove("k/empty"));
  EXPECT_EQ(store.num_keys(), 1);
  // A large value travels whole.
  std::string big(3 << 20, 'x');
  big[12345] = 'y';
  store.set("k/big", big);
  EXPECT_EQ(store.get("k/big"), big);
}

TEST(ControlStore, AddAndCompareSetSemantics) {
  ControlStoreServer server;
  ControlStoreClient store(server.address());
  EXPECT_EQ(store.add("n", 5), 5);
  EXPECT_EQ(store.add("n", -2), 3);
  EXPECT_EQ(store.get("n"), "3");
  // Missing key, empty expected: set. Missing key, other expected: returns it, sets nothing.
  EXPECT_EQ(store.compare_set("c", "", "one"), "one");
  EXPECT_EQ(store.compare_set("d", "zzz", "two"), "zzz");
  EXPECT_FALSE(store.check({"d"}));
  // Present: swaps on a match, returns the current value otherwise.
  EXPECT_EQ(store.compare_set("c", "nope", "two"), "one");
  EXPECT_EQ(store.compare_set("c", "one", "two"), "two");
  EXPECT_EQ(store.get("c"), "two");
  store.set("text", "abc");
  const std::string message = error_of([&] { store.add("text", 1); });
  EXPECT_NE(message.find("add(\"text\")"), std::string::npos) << message;
  EXPECT_NE(message.find("not a decimal integer"), std::string::npos) << message;
  // The connection still works after an error reply.
  EXPECT_EQ(store.add("n", 1), 4);
}

TEST(ControlStore, ConcurrentClientsGiveConsistentTotals) {
  ControlStoreServer server;
  constexpr int kThreads = 8, kAdds = 150, kSwaps = 40;
  std::vector<std::vector<int64_t>> seen(kThreads);
  std::vector<std::vector<int64_t>> swapped(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ControlStoreClient store("127.0.0.1", server.port());
      for (int i = 0; i < kAdds; ++i) seen[t].push_back(store.add("total", 1));
      // A counter advanced only by compare_set, holding "<count>/<thread>": the thread in
      // the value tells whose swap won, so each success is one unique transition.
      for (int done = 0; done < kSwaps;) {
        const std::string current = store.compare_set("cas", "", "0/-");
        const int64_t count = std::stoll(current.substr(0, current.find('/')));
        const std::string next = std::to_string(count + 1) + "/" + std::to_string(t);
        if (store.compare_set("cas", current, next) == next) {
          swapped[t].push_back(count + 1);
          ++done;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ControlStoreClient store("127.0.0.1", server.port());
  EXPECT_EQ(store.get("total"), std::to_string(kThreads * kAdds));
  const std::string cas = store.get("cas");
  EXPECT_EQ(cas.substr(0, cas.find('/')), std::to_string(kThreads * kSwaps));
  // Every add returned a distinct value: 1..N, each once.
  std::vector<int64_t> all, transitions;
  for (const auto& v : seen) all.insert(all.end(), v.begin(), v.end());
  for (const auto& v : swapped) transitions.insert(transitions.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  std::sort(transitions.begin(), transitions.end());
  std::vector<int64_t> expected_adds(kThreads * kAdds), expected_swaps(kThreads * kSwaps);
  std::iota(expected_adds.begin(), expected_adds.end(), 1);
  std::iota(expected_swaps.begin(), expected_swaps.end(), 1);
  EXPECT_EQ(all, expected_adds);
  EXPECT_EQ(transitions, expected_swaps);
}

TEST(ControlStore, GetAndWaitBlockUntilTheKeyIsSet) {
  ControlStoreServer server;
  ControlStoreClient reader(server.address()), writer(server.address());
  std::thread later([&] {
    std::this_thread::sleep_for(150ms);
    writer.set("late/a", "A");
    std::this_thread::sleep_for(100ms);
    writer.set("late/b", "B");
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(reader.get("late/a", 5000ms), "A");
  EXPECT_GE(seconds_since(start), 0.12);
  reader.wait({"late/a", "late/b"}, 5000ms);
  EXPECT_GE(seconds_since(start), 0.22);
  EXPECT_LT(seconds_since(start), 3.0);
  later.join();
}

TEST(ControlStore, TimeoutsNameTheMissingKey) {
  ControlStoreServer server;
  ControlStoreClient store(server.address());
  auto start = std::chrono::steady_clock::now();
  std::string message = error_of([&] { store.get("rank/7/ready", 200ms); });
  EXPECT_NE(message.find("\"rank/7/ready\" did not appear within 200 ms"), std::string::npos)
      << message;
  EXPECT_NE(message.find(server.address()), std::string::npos) << message;
  EXPECT_GE(seconds_since(start), 0.19);
  EXPECT_LT(seconds_since(start), 2.0);
  store.set("present", "1");
  message = error_of([&] { store.wait({"present", "absent"}, 150ms); });
  EXPECT_NE(message.find("key \"absent\" did not appear"), std::string::npos) << message;
  // The client's default timeout applies when none is given.
  ControlStoreClient quick(server.address(), ControlStoreClientOptions().timeout(100ms));
  message = error_of([&] { quick.get("never"); });
  EXPECT_NE(message.find("within 100 ms"), std::string::npos) << message;
  // Still usable after timeouts.
  EXPECT_EQ(store.get("present"), "1");
}

// A raw TCP connection, to speak malformed protocol to the server.
class RawSocket {
 public:
  explicit RawSocket(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    timeval tv{2, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawSocket() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // Reads one reply frame's body; "" when the server closed the connection.
  std::string reply() {
    char header[4];
    if (!read_exactly(header, 4)) return "";
    uint32_t length = 0;
    for (int i = 0; i < 4; ++i)
      length |= static_cast<uint32_t>(static_cast<unsigned char>(header[i])) << (8 * i);
    std::string body(length, '\0');
    if (!read_exactly(body.data(), length)) return "";
    return body;
  }

 private:
  bool read_exactly(char* out, size_t n) {
    size_t got = 0;
    while (got < n) {
      const ssize_t r = ::recv(fd_, out + got, n - got, 0);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }
  int fd_ = -1;
  bool connected_ = false;
};

std::string frame(const std::string& body) {
  std::string out;
  const auto n = static_cast<uint32_t>(body.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + body;
}

TEST(ControlStore, BadMessagesGetErrorsAndDoNotStopTheServer) {
  ControlStoreServer server;
  {
    RawSocket raw(server.port());
    ASSERT_TRUE(raw.connected());
    raw.send(frame(std::string(1, '\x63')));  // unknown op 99
    std::string reply = raw.reply();
    ASSERT_FALSE(reply.empty());
    EXPECT_EQ(reply[0], 1);  // error status
    EXPECT_NE(reply.find("unknown op 99"), std::string::npos) << reply;
    // A set whose key claims more bytes than the frame has.
    raw.send(
        frame(std::string("\x01\xff\x00\x00\x00"
                          "abc",
                          8)));
    reply = raw.reply();
    ASSERT_FALSE(reply.empty());
    EXPECT_EQ(reply[0], 1);
    EXPECT_NE(reply.find("truncated"), std::string::npos) << reply;
    // A wait listing a billion keys in a tiny frame.
    raw.send(frame(std::string("\x04\x00\xca\x9a\x3b", 5)));
    reply = raw.reply();
    ASSERT_FALSE(reply.empty());
    EXPECT_EQ(reply[0], 1);
    // Trailing bytes after a valid request.
    raw.send(frame(std::string("\x09zz", 3)));
    reply = raw.reply();
    ASSERT_FALSE(reply.empty());
    EXPECT_EQ(reply[0], 1);
    EXPECT_NE(reply.find("trailing"), std::string::npos) << reply;
  }
  {
    // An absurd frame length: the server hangs up rather than allocate 4 GB.
    RawSocket raw(server.port());
    raw.send(std::string("\xff\xff\xff\xff", 4));
    EXPECT_EQ(raw.reply(), "");
  }
  {
    // Half a frame, then the client vanishes.
    RawSocket raw(server.port());
    raw.send(std::string("\x10\x00\x00\x00\x01", 5));
  }
  ControlStoreClient store(server.address());
  store.set("still", "alive");
  EXPECT_EQ(store.get("still"), "alive");
}

TEST(ControlStore, ClientsFailClearlyWhenTheServerGoes) {
  auto server = std::make_unique<ControlStoreServer>();
  const std::string address = server->address();
  ControlStoreClient idle(address), waiting(address);
  idle.set("x", "1");
  std::string blocked_error;
  double blocked_seconds = 0;
  std::thread blocked([&] {
    const auto start = std::chrono::steady_clock::now();
    blocked_error = error_of([&] { waiting.get("never/set", 20000ms); });
    blocked_seconds = seconds_since(start);
  });
  std::this_thread::sleep_for(200ms);
  server.reset();
  blocked.join();
  EXPECT_NE(blocked_error.find("connection lost"), std::string::npos) << blocked_error;
  EXPECT_NE(blocked_error.find(address), std::string::npos) << blocked_error;
  EXPECT_LT(blocked_seconds, 5.0);
  const auto start = std::chrono::steady_clock::now();
  const std::string message = error_of([&] { idle.get("x"); });
  EXPECT_NE(message.find("control store " + address), std::string::npos) << message;
  EXPECT_LT(seconds_since(start), 5.0);
  // Nobody listens any more: connecting fails after the connect timeout.
  const std::string connect_error = error_of([&] {
    ControlStoreClient late(address, ControlStoreClientOptions().connect_timeout(300ms));
  });
  EXPECT_NE(connect_error.find("cannot connect within 300 ms"), std::string::npos) << connect_error;
}

TEST(ControlStore, AddressesAreChecked) {
  EXPECT_EQ(strata::parallel::parse_store_address("127.0.0.1:29500"),
            (std::pair<std::string, int>{"127.0.0.1", 29500}));
  for (const char* bad : {"127.0.0.1", "127.0.0.1:", ":80", "host:99999", "h:12x"}) {
    const std::string message = error_of([&] { strata::parallel::parse_store_address(bad); });
    EXPECT_NE(message.find("expected host:port"), std::string::npos) << bad << ": " << message;
  }
}

}  // namespace
