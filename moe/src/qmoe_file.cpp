#include "strata/moe/qmoe_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <torch/torch.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "strata/core/error.h"
#include "strata/core/input_files.h"
#include "strata/core/json_fields.h"
#include "strata/moe/ternary_dictionary.h"

namespace strata::moe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr char kMagic[8] = {'S', 'T', 'R', 'Q', 'M', 'O', 'E', '\n'};
constexpr const char* kFormat = "strata-qmoe";
constexpr int kVersion = 1;

// The dtypes the format uses, by the names the header gives them.
const std::map<std::string, at::ScalarType>& dtypes() {
  static const std::map<std::string, at::ScalarType> names{{"int16", at::kShort},
                                                           {"int32", at::kInt},
                                                           {"bfloat16", at::kBFloat16},
                                                           {"float32", at::kFloat},
                                                           {"float64", at::kDouble}};
  return names;
}

std::string dtype_name(at::ScalarType type) {
  for (const auto& [name, t] : dtypes())
    if (t == type) return name;
  STRATA_FAIL("qmoe file: no dtype name for ", type);
}

std::string hex64(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
  return text;
}

uint64_t checksum(const void* data, size_t size) { return XXH3_64bits(data, size); }

void put_u64(std::string& out, uint64_t v) {
  for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>((v >> (8 * b)) & 0xFF));
}

uint64_t get_u64(const char* in) {
  uint64_t v = 0;
  for (int b = 0; b < 8; ++b) v |= uint64_t(static_cast<unsigned char>(in[b])) << (8 * b);
  return v;
}

// The named tensors of a model in file order. A layer with a fitted dictionary stores its
// pair probabilities ("L/dictionary", float64 [9], checksummed as every tensor) and no
// row offsets (read_qmoe derives them from the codes).
std::vector<std::pair<std::string, at::Tensor>> tensors_of(const QmoeModel& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const QmoeLayer& layer : model.layers) {
    if (const auto& fitted = layer.fitted()) {
      out.emplace_back(
          layer.name + "/dictionary",
          at::tensor(at::ArrayRef<double>(fitted->pair_probability.data(), 9), at::kDouble));
    }
    for (int64_t e = 0; e < layer.experts(); ++e) {
      for (const auto& [which, m] :
           {std::pair{"w_in", &layer.w_in[e]}, std::pair{"w_out", &layer.w_out[e]}}) {
        const std::string prefix = layer.name + "/" + std::to_string(e) + "/" + which + "/";
        out.emplace_back(prefix + "codes", m->codes);
        if (!m->fitted) out.emplace_back(prefix + "row_offsets", m->row_offsets);
        out.emplace_back(prefix + "levels", m->levels);
      }
    }
    out.emplace_back(layer.name + "/b_in", layer.b_in);
    out.emplace_back(layer.name + "/b_out", layer.b_out);
  }
  return out;
}

// A level or bias of NaN or infinity makes every output NaN: the loss of a model read
// from such a file is NaN, and a run would report it as a result.
void check_finite(const at::Tensor& tensor, const std::string& name, const std::string& what) {
  const at::Tensor values = tensor.to(at::kFloat).contiguous().view(-1);
  const float* data = values.data_ptr<float>();
  for (int64_t i = 0; i < values.numel(); ++i) {
    STRATA_CHECK(std::isfinite(data[i]), what, ": tensor '", name, "' holds ", data[i],
                 " at element ", i, ", expected finite values");
  }
}

void check_layer(const QmoeLayer& layer, const std::string& what) {
  STRATA_CHECK(!layer.name.empty() && layer.name.find('/') == std::string::npos, what,
               ": layer name '", layer.name, "', expected a non-empty name without '/'");
  STRATA_CHECK(layer.experts() >= 1 && layer.w_out.size() == layer.w_in.size(), what, ": layer '",
               layer.name, "' has ", layer.w_in.size(), " w_in and ", layer.w_out.size(),
               " w_out, expected the same number >= 1");
  const int64_t d = layer.model_dim(), hidden = layer.hidden_dim();
  for (int64_t e = 0; e < layer.experts(); ++e) {
    const std::string expert = what + ": layer '" + layer.name + "' expert " + std::to_string(e);
    // The file stores one dictionary per layer.
    STRATA_CHECK(layer.w_in[e].fitted == layer.fitted() && layer.w_out[e].fitted == layer.fitted(),
                 expert,
                 ": not in the dictionary of the layer's first w_in, expected one "
                 "dictionary per layer");
    check_ternary_matrix(layer.w_in[e], expert + " w_in");
    check_ternary_matrix(layer.w_out[e], expert + " w_out");
    STRATA_CHECK(layer.w_in[e].rows == hidden && layer.w_in[e].cols == d &&
                     layer.w_out[e].rows == d && layer.w_out[e].cols == hidden,
                 expert, ": w_in [", layer.w_in[e].rows, ", ", layer.w_in[e].cols, "] and w_out [",
                 layer.w_out[e].rows, ", ", layer.w_out[e].cols, "], expected [", hidden, ", ", d,
                 "] and [", d, ", ", hidden, "]");
    const std::string prefix = layer.name + "/" + std::to_string(e) + "/";
    check_finite(layer.w_in[e].levels, prefix + "w_in/levels", what);
    check_finite(layer.w_out[e].levels, prefix + "w_out/levels", what);
  }
  STRATA_CHECK(layer.b_in.defined() && layer.b_in.scalar_type() == at::kFloat &&
                   layer.b_in.sizes() == at::IntArrayRef({layer.experts(), hidden}),
               what, ": layer '", layer.name, "' b_in must be float32 [", layer.experts(), ", ",
               hidden, "]");
  STRATA_CHECK(layer.b_out.defined() && layer.b_out.scalar_type() == at::kFloat &&
                   layer.b_out.sizes() == at::IntArrayRef({layer.experts(), d}),
               what, ": layer '", layer.name, "' b_out must be float32 [", layer.experts(), ", ", d,
               "]");
  check_finite(layer.b_in, layer.name + "/b_in", what);
  check_finite(layer.b_out, layer.name + "/b_out", what);
}

void write_all(int fd, const char* data, size_t size, const std::string& path) {
  while (size > 0) {
    const ssize_t done = ::write(fd, data, size);
    if (done < 0 && errno == EINTR) continue;
    STRATA_CHECK(done > 0, path, ": write failed (", std::strerror(errno), ")");
    data += done;
    size -= static_cast<size_t>(done);
  }
}

}  // namespace

int64_t QmoeLayer::weight_bytes() const {
  int64_t bytes = 0;
  for (int64_t e = 0; e < experts(); ++e) bytes += w_in[e].nbytes() + w_out[e].nbytes();
  return bytes;
}

double QmoeLayer::bits_per_weight() const {
  return 8.0 * double(weight_bytes()) / double(2 * experts() * model_dim() * hidden_dim());
}

void write_qmoe(const std::string& path, const QmoeModel& model) {
  STRATA_CHECK(!model.layers.empty(), path, ": no layers to write");
  std::set<std::string> names;
  json layers = json::array();
  for (const QmoeLayer& layer : model.layers) {
    check_layer(layer, path);
    STRATA_CHECK(names.insert(layer.name).second, path, ": layer '", layer.name, "' appears twice");
    layers.push_back({{"name", layer.name},
                      {"experts", layer.experts()},
                      {"d", layer.model_dim()},
                      {"hidden", layer.hidden_dim()},
                      {"dictionary", layer.fitted() ? "fitted" : "reference"}});
  }
  const auto tensors = tensors_of(model);
  std::vector<at::Tensor> contiguous;
  json entries = json::array();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    contiguous.push_back(tensor.contiguous());
    const at::Tensor& t = contiguous.back();
    entries.push_back({{"name", name},
                       {"dtype", dtype_name(t.scalar_type())},
                       {"shape", t.sizes().vec()},
                       {"offset", offset},
                       {"nbytes", t.nbytes()},
                       {"xxh64", hex64(checksum(t.data_ptr(), t.nbytes()))}});
    offset += t.nbytes();
  }
  const json header{{"format", kFormat},
                    {"version", kVersion},
                    {"dictionary",
                     {{"codewords", kTernaryCodewords},
                      {"max_pairs", kMaxPairsPerCodeword},
                      {"zero_probability", 0.885},
                      {"built_as", "IST-DASLab/qmoe sub1.py setup()"}}},
                    {"layers", layers},
                    {"extra", model.extra},
                    {"tensors", entries}};
  const std::string header_text = header.dump();
  std::string head(kMagic, sizeof kMagic);
  put_u64(head, header_text.size());
  head += header_text;
  put_u64(head, checksum(header_text.data(), header_text.size()));

  // Write beside the target and rename: a reader sees the old file or the new one.
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  STRATA_CHECK(fd >= 0, tmp, ": cannot create (", std::strerror(errno), ")");
  try {
    write_all(fd, head.data(), head.size(), tmp);
    for (const at::Tensor& t : contiguous)
      write_all(fd, static_cast<const char*>(t.data_ptr()), t.nbytes(), tmp);
    STRATA_CHECK(::fsync(fd) == 0, tmp, ": fsync failed (", std::strerror(errno), ")");
  } catch (...) {
    ::close(fd);
    std::remove(tmp.c_str());
    throw;
  }
  const bool closed = ::close(fd) == 0;
  if (!closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    STRATA_FAIL(path, ": cannot write (", reason, ")");
  }
}

QmoeModel read_qmoe(const std::string& path) {
  std::ifstream in = core::open_input(path);
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  STRATA_CHECK(!ec, path, ": cannot read (", ec.message(), ")");
  char start[16];
  STRATA_CHECK(size >= sizeof start && in.read(start, sizeof start), path, ": truncated (", size,
               " bytes): not a strata-qmoe file");
  STRATA_CHECK(std::memcmp(start, kMagic, sizeof kMagic) == 0, path,
               ": not a strata-qmoe file (bad magic bytes)");
  const uint64_t header_size = get_u64(start + 8);
  STRATA_CHECK(size >= 24 && header_size <= size - 24, path, ": truncated: header of ", header_size,
               " bytes in a file of ", size);
  std::string header_text(header_size, '\0');
  char sum[8];
  in.read(header_text.data(), static_cast<std::streamsize>(header_size));
  in.read(sum, sizeof sum);
  STRATA_CHECK(in.good(), path, ": read failed in the header");
  STRATA_CHECK(get_u64(sum) == checksum(header_text.data(), header_text.size()), path,
               ": header checksum mismatch (corrupt file)");
  const uint64_t payload_start = 16 + header_size + 8;

  QmoeModel model;
  std::map<std::string, at::Tensor> tensors;
  const json header = core::parse_json(header_text, path + " (header)");
  const core::JsonField root(header, path);
  root.object();
  if (root["format"].string() != kFormat) root["format"].fail(json(kFormat).dump());
  if (root["version"].integer() != kVersion)
    root["version"].fail(std::to_string(kVersion) + ", the format version this strata reads");
  const core::JsonField codewords = root["dictionary"]["codewords"];
  if (codewords.integer() != kTernaryCodewords)
    codewords.fail(std::to_string(kTernaryCodewords) + ", the dictionary this strata decodes");
  if (root.has("extra")) model.extra = root["extra"].object().json();
  uint64_t expected_offset = 0;
  for (const core::JsonField& entry : root["tensors"].elements()) {
    const std::string name = entry["name"].string();
    const std::string dtype = entry["dtype"].string();
    const auto type = dtypes().find(dtype);
    STRATA_CHECK(type != dtypes().end(), path, ": tensor '", name, "' has dtype '", dtype, "'");
    const auto shape = entry["shape"].integers(0);
    uint64_t numel = 1;
    for (const int64_t s : shape) {
      // A tensor cannot hold more elements than the file has bytes (also keeps the
      // product from overflowing on a corrupt header).
      STRATA_CHECK(s == 0 || numel <= size / uint64_t(s), path, ": tensor '", name, "' of shape ",
                   at::IntArrayRef(shape), " is larger than the file (", size, " bytes)");
      numel *= uint64_t(s);
    }
    const uint64_t nbytes = entry["nbytes"].integer(0);
    STRATA_CHECK(nbytes == numel * c10::elementSize(type->second), path, ": tensor '", name,
                 "' has nbytes ", nbytes, ", expected ", numel * c10::elementSize(type->second));
    const uint64_t offset = entry["offset"].integer(0);
    STRATA_CHECK(offset == expected_offset, path, ": tensor '", name, "' has offset ", offset,
                 ", expected ", expected_offset);
    STRATA_CHECK(payload_start + expected_offset + nbytes <= size, path, ": truncated: ", size,
                 " bytes, tensor '", name, "' ends at byte ",
                 payload_start + expected_offset + nbytes);
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(type->second));
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(nbytes));
    STRATA_CHECK(in.good(), path, ": read failed at tensor '", name, "'");
    STRATA_CHECK(hex64(checksum(t.data_ptr(), nbytes)) == entry["xxh64"].string(), path,
                 ": tensor '", name, "': checksum mismatch (corrupt file)");
    STRATA_CHECK(tensors.emplace(name, t).second, path, ": tensor '", name, "' appears twice");
    expected_offset += nbytes;
  }
  STRATA_CHECK(payload_start + expected_offset == size, path, ": ",
               size - payload_start - expected_offset, " bytes of trailing data");

  auto take = [&](const std::string& name) {
    const auto it = tensors.find(name);
    STRATA_CHECK(it != tensors.end(), path, ": tensor '", name, "' missing");
    return it->second;
  };
  for (const core::JsonField& entry : root["layers"].elements()) {
    QmoeLayer layer;
    layer.name = entry["name"].string();
    // Files written before fitted dictionaries have no "dictionary": the reference one.
    const std::string kind = entry.has("dictionary") ? entry["dictionary"].string() : "reference";
    if (kind != "reference" && kind != "fitted")
      entry["dictionary"].fail("\"reference\" or \"fitted\"");
    std::shared_ptr<const TernaryDictionary> fitted;
    if (kind == "fitted") {
      const std::string name = layer.name + "/dictionary";
      const at::Tensor p = take(name);
      STRATA_CHECK(p.scalar_type() == at::kDouble && p.sizes() == at::IntArrayRef({9}), path,
                   ": tensor '", name, "' must be float64 [9] (the pair probabilities)");
      PairProbabilities probability{};
      std::memcpy(probability.data(), p.data_ptr<double>(), sizeof probability);
      fitted = make_ternary_dictionary(probability, path + ": tensor '" + name + "'");
    }
    // Every expert has its own tensors, so no count can exceed the file's bytes.
    const int64_t limit = static_cast<int64_t>(size);
    const int64_t experts = entry["experts"].integer(1, limit);
    const int64_t d = entry["d"].integer(1, limit), hidden = entry["hidden"].integer(1, limit);
    for (int64_t e = 0; e < experts; ++e) {
      for (const auto& [which, rows, cols] :
           {std::tuple{"w_in", hidden, d}, std::tuple{"w_out", d, hidden}}) {
        const std::string prefix = layer.name + "/" + std::to_string(e) + "/" + which + "/";
        TernaryMatrix m;
        m.rows = rows;
        m.cols = cols;
        m.codes = take(prefix + "codes");
        m.row_offsets = fitted ? ternary_row_offsets(m.codes, rows, cols, *fitted,
                                                     path + ": tensor '" + prefix + "codes'")
                               : take(prefix + "row_offsets");
        m.levels = take(prefix + "levels");
        m.fitted = fitted;
        (std::string(which) == "w_in" ? layer.w_in : layer.w_out).push_back(m);
      }
    }
    layer.b_in = take(layer.name + "/b_in");
    layer.b_out = take(layer.name + "/b_out");
    check_layer(layer, path);
    model.layers.push_back(std::move(layer));
  }
  STRATA_CHECK(!model.layers.empty(), path, ": no layers");
  return model;
}

CompressedExperts make_compressed_experts(const QmoeLayer& layer,
                                          const CompressedLinearOptions& options) {
  std::vector<CompressedExpertFfn> experts;
  for (int64_t e = 0; e < layer.experts(); ++e)
    experts.emplace_back(layer.w_in[e], layer.b_in[e], layer.w_out[e], layer.b_out[e], options);
  return CompressedExperts(std::move(experts));
}

}  // namespace strata::moe
