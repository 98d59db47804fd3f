#include "strata/parallel/control/control_store.h"

#include <boost/asio.hpp>

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <unordered_map>

#include "strata/core/error.h"

namespace strata::parallel {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

enum class Op : uint8_t { Set = 1, Get, TryGet, Wait, Add, CompareSet, Check, Remove, NumKeys };
enum class Status : uint8_t { Ok = 0, Error = 1, Timeout = 2, Missing = 3 };

// Frames larger than this are not ours: the connection is closed instead of allocating.
constexpr uint32_t kMaxFrame = 64u << 20;

// ---- Encoding --------------------------------------------------------------------------

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_i64(std::string& out, int64_t v) {
  const auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
}
void put_str(std::string& out, const std::string& s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out += s;
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

// Reads fields from a body; a field past the end throws strata::Error (a malformed request).
class Reader {
 public:
  explicit Reader(const std::string& body) : body_(body) {}
  uint8_t u8() {
    need(1);
    return static_cast<uint8_t>(body_[pos_++]);
  }
  uint32_t u32() {
    need(4);
    const uint32_t v = get_u32(body_.data() + pos_);
    pos_ += 4;
    return v;
  }
  int64_t i64() {
    need(8);
    uint64_t u = 0;
    for (int i = 0; i < 8; ++i)
      u |= static_cast<uint64_t>(static_cast<unsigned char>(body_[pos_ + i])) << (8 * i);
    pos_ += 8;
    return static_cast<int64_t>(u);
  }
  std::string str() {
    const uint32_t n = u32();
    need(n);
    std::string s = body_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::vector<std::string> strs() {
    const uint32_t n = u32();
    // Each string takes at least its 4-byte length: bound n before reserving.
    need(static_cast<size_t>(n) * 4);
    std::vector<std::string> out;
    out.reserve(n);
    for (uint32_t i = 0; i < n; ++i) out.push_back(str());
    return out;
  }
  void done() const {
    STRATA_CHECK(pos_ == body_.size(), "control store request: ", body_.size() - pos_,
                 " trailing byte(s) after the fields, expected none");
  }

 private:
  void need(size_t n) const {
    STRATA_CHECK(body_.size() - pos_ >= n, "control store request: truncated: needs ", n,
                 " more byte(s), has ", body_.size() - pos_);
  }
  const std::string& body_;
  size_t pos_ = 0;
};

std::string frame(const std::string& body) {
  std::string out;
  out.reserve(body.size() + 4);
  put_u32(out, static_cast<uint32_t>(body.size()));
  out += body;
  return out;
}

std::string reply(Status status, const std::string& payload = {}) {
  std::string body(1, static_cast<char>(status));
  body += payload;
  return body;
}

std::string encode_i64(int64_t v) {
  std::string s;
  put_i64(s, v);
  return s;
}

std::string quoted_keys(const std::vector<std::string>& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += (i ? ", \"" : "\"") + keys[i] + "\"";
  return out;
}

}  // namespace

// ---- Server ----------------------------------------------------------------------------

struct ControlStoreServer::Impl {
  class Session;
  struct Waiter {
    std::shared_ptr<Session> session;
    std::vector<std::string> keys;
    Op op;  // Get (reply with the value of keys[0]) or Wait
    std::unique_ptr<asio::steady_timer> timer;
  };

  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::string host;
  int port = 0;
  std::unordered_map<std::string, std::string> data;
  std::list<Waiter> waiters;
  std::thread thread;

  class Session : public std::enable_shared_from_this<Session> {
   public:
    Session(Impl& store, tcp::socket socket) : store_(store), socket_(std::move(socket)) {}
    void start() { read_header(); }
    void send(const std::string& body) {
      auto self = shared_from_this();
      auto out = std::make_shared<std::string>(frame(body));
      asio::async_write(socket_, asio::buffer(*out),
                        [self, out](boost::system::error_code ec, size_t) {
                          if (ec) return self->close();
                          self->read_header();
                        });
    }
    void close() {
      boost::system::error_code ignored;
      socket_.close(ignored);
    }
    bool is_open() const { return socket_.is_open(); }

   private:
    void read_header() {
      auto self = shared_from_this();
      asio::async_read(socket_, asio::buffer(header_),
                       [self](boost::system::error_code ec, size_t) {
                         if (ec) return self->close();
                         const uint32_t length = get_u32(self->header_);
                         if (length == 0 || length > kMaxFrame) return self->close();
                         self->body_.assign(length, '\0');
                         asio::async_read(self->socket_, asio::buffer(self->body_),
                                          [self](boost::system::error_code ec2, size_t) {
                                            if (ec2) return self->close();
                                            self->store_.handle(self, self->body_);
                                          });
                       });
    }
    Impl& store_;
    tcp::socket socket_;
    char header_[4] = {};
    std::string body_;
  };

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true));
        std::make_shared<Session>(*this, std::move(socket))->start();
      }
      accept();
    });
  }

  bool has_all(const std::vector<std::string>& keys) const {
    return std::all_of(keys.begin(), keys.end(),
                       [&](const std::string& k) { return data.count(k) > 0; });
  }

  std::string answer_waiter(const Waiter& w) const {
    if (w.op == Op::Get) return reply(Status::Ok, data.at(w.keys[0]));
    return reply(Status::Ok);
  }

  // After a key changed: answer the blocked requests whose keys all exist now.
  void wake_waiters() {
    for (auto it = waiters.begin(); it != waiters.end();) {
      if (has_all(it->keys)) {
        it->timer->cancel();
        it->session->send(answer_waiter(*it));
        it = waiters.erase(it);
      } else {
        ++it;
      }
    }
  }

  void block(const std::shared_ptr<Session>& session, Op op, std::vector<std::string> keys,
             int64_t timeout_ms) {
    if (has_all(keys)) {
      session->send(answer_waiter(Waiter{session, keys, op, nullptr}));
      return;
    }
    waiters.push_back(
        Waiter{session, std::move(keys), op, std::make_unique<asio::steady_timer>(io)});
    auto it = std::prev(waiters.end());
    it->timer->expires_after(std::chrono::milliseconds(std::max<int64_t>(0, timeout_ms)));
    it->timer->async_wait([this, it](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted) return;  // answered (and erased) already
      std::string missing;
      for (const auto& k : it->keys) {
        if (!data.count(k)) {
          missing = k;
          break;
        }
      }
      it->session->send(reply(Status::Timeout, missing));
      waiters.erase(it);
    });
  }

  void handle(const std::shared_ptr<Session>& session, const std::string& body) {
    try {
      Reader in(body);
      const auto op = static_cast<Op>(in.u8());
      switch (op) {
        case Op::Set: {
          std::string key = in.str();
          std::string value = in.str();
          in.done();
          data[std::move(key)] = std::move(value);
          session->send(reply(Status::Ok));
          wake_waiters();
          return;
        }
        case Op::Get: {
          std::string key = in.str();
          const int64_t timeout_ms = in.i64();
          in.done();
          return block(session, Op::Get, {std::move(key)}, timeout_ms);
        }
        case Op::TryGet: {
          const std::string key = in.str();
          in.done();
          auto it = data.find(key);
          return session->send(it == data.end() ? reply(Status::Missing)
                                                : reply(Status::Ok, it->second));
        }
        case Op::Wait: {
          std::vector<std::string> keys = in.strs();
          const int64_t timeout_ms = in.i64();
          in.done();
          return block(session, Op::Wait, std::move(keys), timeout_ms);
        }
        case Op::Add: {
          const std::string key = in.str();
          const int64_t delta = in.i64();
          in.done();
          int64_t value = 0;
          auto it = data.find(key);
          if (it != data.end()) {
            try {
              size_t used = 0;
              value = std::stoll(it->second, &used);
              STRATA_CHECK(used == it->second.size(), "");
            } catch (const std::exception&) {
              STRATA_FAIL("add(\"", key, "\"): the key holds ", it->second.size(),
                          " byte(s) that are not a decimal integer, expected one");
            }
          }
          value += delta;
          data[key] = std::to_string(value);
          session->send(reply(Status::Ok, encode_i64(value)));
          wake_waiters();
          return;
        }
        case Op::CompareSet: {
          const std::string key = in.str();
          const std::string expected = in.str();
          std::string desired = in.str();
          in.done();
          auto it = data.find(key);
          if (it == data.end()) {
            if (!expected.empty()) return session->send(reply(Status::Ok, expected));
            data[key] = desired;
            session->send(reply(Status::Ok, desired));
            wake_waiters();
            return;
          }
          if (it->second == expected) {
            it->second = desired;
            session->send(reply(Status::Ok, desired));
            wake_waiters();
            return;
          }
          return session->send(reply(Status::Ok, it->second));
        }
        case Op::Check: {
          const std::vector<std::string> keys = in.strs();
          in.done();
          return session->send(reply(Status::Ok, std::string(1, has_all(keys) ? 1 : 0)));
        }
        case Op::Remove: {
          const std::string key = in.str();
          in.done();
          const bool existed = data.erase(key) > 0;
          return session->send(reply(Status::Ok, std::string(1, existed ? 1 : 0)));
        }
        case Op::NumKeys: {
          in.done();
          return session->send(reply(Status::Ok, encode_i64(static_cast<int64_t>(data.size()))));
        }
      }
      STRATA_FAIL("control store request: unknown op ", static_cast<int>(static_cast<uint8_t>(op)),
                  ", expected 1..9");
    } catch (const std::exception& e) {
      session->send(reply(Status::Error, e.what()));
    }
  }
};

ControlStoreServer::ControlStoreServer(ControlStoreServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(options.host(), ec);
  STRATA_CHECK(!ec, "control store server host: got \"", options.host(),
               "\", expected an IP address such as 127.0.0.1 (", ec.message(), ")");
  STRATA_CHECK(options.port() >= 0 && options.port() <= 65535, "control store server port: got ",
               options.port(), ", expected 0..65535");
  const tcp::endpoint endpoint(ip, static_cast<unsigned short>(options.port()));
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(endpoint, ec);
  STRATA_CHECK(!ec, "control store server: cannot listen on ", options.host(), ":", options.port(),
               ": ", ec.message());
  impl_->acceptor.listen();
  impl_->host = options.host();
  impl_->port = impl_->acceptor.local_endpoint().port();
  impl_->accept();
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

ControlStoreServer::~ControlStoreServer() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int ControlStoreServer::port() const { return impl_->port; }
const std::string& ControlStoreServer::host() const { return impl_->host; }
std::string ControlStoreServer::address() const {
  return impl_->host + ":" + std::to_string(impl_->port);
}

// ---- Client ----------------------------------------------------------------------------

struct ControlStoreClient::Impl {
  asio::io_context io;
  tcp::socket socket{io};
  std::string host;
  int port = 0;
  bool broken = false;  // a failed call leaves the stream out of step: no further calls

  std::string address() const { return host + ":" + std::to_string(port); }

  // Runs the io_context until `done` or the deadline; false on the deadline (the socket is
  // then closed, which cancels the pending operations).
  bool run_until(const bool& done, Clock::time_point deadline) {
    io.restart();
    while (!done) {
      if (Clock::now() >= deadline) {
        boost::system::error_code ignored;
        socket.close(ignored);
        io.restart();
        io.run();  // let the cancelled handlers finish
        return false;
      }
      io.run_one_until(deadline);
    }
    return true;
  }
};

std::pair<std::string, int> parse_store_address(const std::string& address) {
  const auto colon = address.rfind(':');
  int port = -1;
  if (colon != std::string::npos && colon > 0) {
    try {
      size_t used = 0;
      port = std::stoi(address.substr(colon + 1), &used);
      if (used != address.size() - colon - 1) port = -1;
    } catch (const std::exception&) {
      port = -1;
    }
  }
  STRATA_CHECK(port >= 1 && port <= 65535, "control store address: got \"", address,
               "\", expected host:port with a port in 1..65535");
  return {address.substr(0, colon), port};
}

ControlStoreClient::ControlStoreClient(const std::string& address,
                                       ControlStoreClientOptions options)
    : ControlStoreClient(parse_store_address(address).first, parse_store_address(address).second,
                         std::move(options)) {}

ControlStoreClient::ControlStoreClient(std::string host, int port,
                                       ControlStoreClientOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(impl_->host, ec);
  STRATA_CHECK(!ec, "control store address: got host \"", impl_->host,
               "\", expected an IP address such as 127.0.0.1");
  const tcp::endpoint endpoint(ip, static_cast<unsigned short>(port));
  const auto deadline = Clock::now() + options_.connect_timeout();
  std::string last_error;
  // The server may not listen yet: retry until the deadline.
  while (true) {
    bool done = false;
    boost::system::error_code result;
    impl_->socket = tcp::socket(impl_->io);
    impl_->socket.async_connect(endpoint, [&](boost::system::error_code e) {
      result = e;
      done = true;
    });
    if (!impl_->run_until(done, deadline)) {
      last_error = "timed out";
      break;
    }
    if (!result) {
      impl_->socket.set_option(tcp::no_delay(true));
      return;
    }
    last_error = result.message();
    if (Clock::now() + std::chrono::milliseconds(50) >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  STRATA_FAIL("control store ", impl_->address(), ": cannot connect within ",
              options_.connect_timeout().count(), " ms (", last_error, ")");
}

ControlStoreClient::~ControlStoreClient() = default;

std::string ControlStoreClient::address() const { return impl_->address(); }

// Sends one request and returns the reply body (status byte first).
std::string ControlStoreClient::request(const std::string& body,
                                        std::chrono::milliseconds reply_within,
                                        const std::string& what) {
  std::lock_guard<std::mutex> lock(mutex_);
  Impl& c = *impl_;
  STRATA_CHECK(!c.broken, "control store ", c.address(), ": ", what,
               ": the connection failed before; expected a working connection");
  const auto deadline = Clock::now() + reply_within;
  const std::string out = frame(body);
  char header[4];
  std::string in;
  boost::system::error_code error;
  bool done = false;
  asio::async_write(c.socket, asio::buffer(out), [&](boost::system::error_code ec, size_t) {
    if (ec) {
      error = ec;
      done = true;
      return;
    }
    asio::async_read(c.socket, asio::buffer(header), [&](boost::system::error_code ec2, size_t) {
      if (ec2) {
        error = ec2;
        done = true;
        return;
      }
      const uint32_t length = get_u32(header);
      if (length == 0 || length > kMaxFrame) {
        error = asio::error::message_size;
        done = true;
        return;
      }
      in.assign(length, '\0');
      asio::async_read(c.socket, asio::buffer(in), [&](boost::system::error_code ec3, size_t) {
        error = ec3;
        done = true;
      });
    });
  });
  if (!c.run_until(done, deadline)) {
    c.broken = true;
    STRATA_FAIL("control store ", c.address(), ": ", what, ": no reply within ",
                reply_within.count(), " ms (is the server stopped or gone?)");
  }
  if (error) {
    c.broken = true;
    STRATA_FAIL("control store ", c.address(), ": ", what, ": connection lost (", error.message(),
                "); the server is gone");
  }
  const auto status = static_cast<Status>(in[0]);
  if (status == Status::Error)
    STRATA_FAIL("control store ", c.address(), ": ", what, ": ", in.substr(1));
  return in;
}

namespace {
// Blocking calls get their own timeout plus the I/O allowance for the reply itself.
std::chrono::milliseconds blocking_deadline(std::chrono::milliseconds timeout,
                                            std::chrono::milliseconds io_timeout) {
  return timeout + io_timeout;
}
}  // namespace

void ControlStoreClient::set(const std::string& key, const std::string& value) {
  std::string body(1, static_cast<char>(Op::Set));
  put_str(body, key);
  put_str(body, value);
  request(body, options_.io_timeout(), "set(\"" + key + "\")");
}

std::string ControlStoreClient::get(const std::string& key) { return get(key, options_.timeout()); }

std::string ControlStoreClient::get(const std::string& key, std::chrono::milliseconds timeout) {
  std::string body(1, static_cast<char>(Op::Get));
  put_str(body, key);
  put_i64(body, timeout.count());
  const std::string what = "get(\"" + key + "\")";
  std::string in = request(body, blocking_deadline(timeout, options_.io_timeout()), what);
  STRATA_CHECK(static_cast<Status>(in[0]) != Status::Timeout, "control store ", address(), ": ",
               what, ": key \"", key, "\" did not appear within ", timeout.count(), " ms");
  return in.substr(1);
}

std::optional<std::string> ControlStoreClient::try_get(const std::string& key) {
  std::string body(1, static_cast<char>(Op::TryGet));
  put_str(body, key);
  std::string in = request(body, options_.io_timeout(), "try_get(\"" + key + "\")");
  if (static_cast<Status>(in[0]) == Status::Missing) return std::nullopt;
  return in.substr(1);
}

void ControlStoreClient::wait(const std::vector<std::string>& keys) {
  wait(keys, options_.timeout());
}

void ControlStoreClient::wait(const std::vector<std::string>& keys,
                              std::chrono::milliseconds timeout) {
  std::string body(1, static_cast<char>(Op::Wait));
  put_u32(body, static_cast<uint32_t>(keys.size()));
  for (const auto& k : keys) put_str(body, k);
  put_i64(body, timeout.count());
  const std::string what = "wait(" + quoted_keys(keys) + ")";
  std::string in = request(body, blocking_deadline(timeout, options_.io_timeout()), what);
  STRATA_CHECK(static_cast<Status>(in[0]) != Status::Timeout, "control store ", address(), ": ",
               what, ": key \"", in.substr(1), "\" did not appear within ", timeout.count(), " ms");
}

int64_t ControlStoreClient::add(const std::string& key, int64_t delta) {
  std::string body(1, static_cast<char>(Op::Add));
  put_str(body, key);
  put_i64(body, delta);
  std::string in = request(body, options_.io_timeout(), "add(\"" + key + "\")");
  STRATA_CHECK(in.size() == 9, "control store ", address(), ": add(\"", key, "\"): reply of ",
               in.size(), " bytes, expected 9");
  return Reader(in.substr(1)).i64();
}

std::string ControlStoreClient::compare_set(const std::string& key, const std::string& expected,
                                            const std::string& desired) {
  std::string body(1, static_cast<char>(Op::CompareSet));
  put_str(body, key);
  put_str(body, expected);
  put_str(body, desired);
  return request(body, options_.io_timeout(), "compare_set(\"" + key + "\")").substr(1);
}

bool ControlStoreClient::check(const std::vector<std::string>& keys) {
  std::string body(1, static_cast<char>(Op::Check));
  put_u32(body, static_cast<uint32_t>(keys.size()));
  for (const auto& k : keys) put_str(body, k);
  const std::string in = request(body, options_.io_timeout(), "check(" + quoted_keys(keys) + ")");
  return in.size() == 2 && in[1] == 1;
}

bool ControlStoreClient::remove(const std::string& key) {
  std::string body(1, static_cast<char>(Op::Remove));
  put_str(body, key);
  const std::string in = request(body, options_.io_timeout(), "remove(\"" + key + "\")");
  return in.size() == 2 && in[1] == 1;
}

int64_t ControlStoreClient::num_keys() {
  const std::string body(1, static_cast<char>(Op::NumKeys));
  std::string in = request(body, options_.io_timeout(), "num_keys()");
  STRATA_CHECK(in.size() == 9, "control store ", address(), ": num_keys(): reply of ", in.size(),
               " bytes, expected 9");
  return Reader(in.substr(1)).i64();
}

}  // namespace strata::parallel
