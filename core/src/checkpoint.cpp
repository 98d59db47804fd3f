#include "strata/core/checkpoint.h"
#include "strata/core/checkpoint_restore.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <unordered_map>

#include "checkpoint_detail.h"
#include "strata/core/error.h"
#include "strata/core/fault_injection.h"
#include "strata/core/flight_recorder.h"
#include "strata/core/input_files.h"
#include "strata/core/json_fields.h"
#include "strata/core/version.h"

namespace strata::core {
namespace fs = std::filesystem;
using detail::OptimizerKind;
using detail::StateFields;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "strata-checkpoint";
constexpr const char* kManifest = "manifest.json";
constexpr const char* kTensors = "tensors.bin";
constexpr const char* kOptimizerPrefix = "optimizer/";
// Far above any run (10^15 steps), far below where step + 1 or a step count overflows.
constexpr int64_t kMaxCheckpointStep = 1'000'000'000'000'000;
// LibTorch's own limit on a tensor's dimensions is higher; no model strata saves comes near.
constexpr size_t kMaxCheckpointDims = 64;

// ---------------------------------------------------------------- helpers

std::string hex64(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

uint64_t checksum(const at::Tensor& contiguous) {
  return XXH3_64bits(contiguous.data_ptr(), contiguous.nbytes());
}

// "ckpt/step-1/" and "ckpt/step-1" are the same checkpoint; the sibling temp directory
// must not end up inside it.
std::string strip_slashes(const std::string& path) {
  std::string out = path;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string errno_text() { return std::strerror(errno); }

// Writes `size` bytes to a new file and fsyncs it, so that after the rename the data is
// on disk even if the machine goes down.
class SyncedFile {
 public:
  explicit SyncedFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    STRATA_CHECK(fd_ >= 0, path_, ": cannot create (", errno_text(), ")");
  }
  ~SyncedFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  SyncedFile(const SyncedFile&) = delete;
  SyncedFile& operator=(const SyncedFile&) = delete;

  void write(const void* data, size_t size) {
    const char* bytes = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t done = ::write(fd_, bytes, size);
      if (done < 0 && errno == EINTR) continue;
      STRATA_CHECK(done > 0, path_, ": write failed (", errno_text(), ")");
      bytes += done;
      size -= static_cast<size_t>(done);
    }
  }
  void close() {
    STRATA_CHECK(::fsync(fd_) == 0, path_, ": fsync failed (", errno_text(), ")");
    const int fd = fd_;
    fd_ = -1;
    STRATA_CHECK(::close(fd) == 0, path_, ": close failed (", errno_text(), ")");
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// A rename is durable only once the directory holding the entry is synced.
void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some file systems refuse to open directories
  ::fsync(fd);
  ::close(fd);
}

void rename_or_throw(const std::string& from, const std::string& to) {
  STRATA_CHECK(std::rename(from.c_str(), to.c_str()) == 0, "checkpoint: cannot rename ", from,
               " to ", to, " (", errno_text(), ")");
}

// Every tensor of the model by name, parameters first, skipping undefined buffers
// (a module may register an empty slot).
std::vector<CheckpointTensor> model_tensors(const torch::nn::Module& model) {
  std::vector<CheckpointTensor> out;
  for (const auto& item : model.named_parameters()) {
    if (item.value().defined()) out.push_back({item.key(), "parameter", item.value()});
  }
  for (const auto& item : model.named_buffers()) {
    if (item.value().defined()) out.push_back({item.key(), "buffer", item.value()});
  }
  return out;
}

// The parameters of `optimizer` with their names in `model`; a parameter the model does
// not have cannot be named, so it cannot be saved or restored. A parameter registered
// under several names (a tied embedding and output head) is listed under each, so its
// state is found by whichever name a part of the model (a pipeline stage) knows it by.
std::vector<std::pair<std::string, at::Tensor>> optimizer_parameters(
    const torch::optim::Optimizer& optimizer, const torch::nn::Module& model) {
  std::unordered_map<const void*, std::vector<std::string>> names;
  for (const auto& item : model.named_parameters()) {
    names[item.value().unsafeGetTensorImpl()].push_back(item.key());
  }
  std::vector<std::pair<std::string, at::Tensor>> out;
  std::set<const void*> listed;
  for (const auto& group : optimizer.param_groups()) {
    for (const at::Tensor& param : group.params()) {
      const auto it = names.find(param.unsafeGetTensorImpl());
      STRATA_CHECK(it != names.end(), "checkpoint: the optimizer holds a parameter of shape ",
                   param.sizes(), " that is not a parameter of the model");
      if (!listed.insert(param.unsafeGetTensorImpl()).second) continue;
      for (const std::string& name : it->second) out.emplace_back(name, param);
    }
  }
  return out;
}

// One field per line and one tensor per line: readable with `less`, greppable by name.
std::string manifest_text(const nlohmann::ordered_json& head,
                          const std::vector<nlohmann::ordered_json>& tensors) {
  std::string text = "{";
  for (auto it = head.begin(); it != head.end(); ++it) {
    text += "\n  " + json(it.key()).dump() + ": " + it.value().dump() + ",";
  }
  text += "\n  \"tensors\": [";
  for (size_t i = 0; i < tensors.size(); ++i) {
    text += (i == 0 ? "\n    " : ",\n    ") + tensors[i].dump();
  }
  return text + "\n  ]\n}\n";
}

nlohmann::ordered_json manifest_head(int64_t step, const json& extra, const json& optimizer) {
  STRATA_CHECK(step >= 0 && step <= kMaxCheckpointStep, "checkpoint step ", step,
               ", expected at least 0 and at most ", kMaxCheckpointStep);
  return {{"format", kFormat},
          {"version", kVersion},
          {"step", step},
          {"extra", extra.is_null() ? json::object() : extra},
          {"optimizer", optimizer}};
}

// Writes the manifest into `tmp` (whose data files are complete), then renames `tmp` to
// `path`. An existing checkpoint is moved aside, the new one moved in, then the old one
// deleted: a crash in between leaves either the old or the new one readable.
void install_checkpoint(const std::string& tmp, const std::string& path, const std::string& id,
                        const nlohmann::ordered_json& head,
                        const std::vector<nlohmann::ordered_json>& tensors) {
  SyncedFile manifest_file(tmp + "/" + kManifest);
  const std::string text = manifest_text(head, tensors);
  manifest_file.write(text.data(), text.size());
  manifest_file.close();
  sync_directory(tmp);

  std::error_code ec;
  if (fs::exists(path)) {
    const std::string old = path + ".old-" + id;
    fs::remove_all(old, ec);
    rename_or_throw(path, old);
    try {
      rename_or_throw(tmp, path);
    } catch (...) {
      std::rename(old.c_str(), path.c_str());
      throw;
    }
    fs::remove_all(old, ec);
  } else {
    rename_or_throw(tmp, path);
  }
  const std::string parent = fs::path(path).parent_path().string();
  sync_directory(parent.empty() ? "." : parent);
}

// ---------------------------------------------------------------- reading

// Elements [start, start + numel) of a tensor, at byte `offset` of file `file`.
struct ManifestPiece {
  size_t file = 0;
  uint64_t offset = 0;
  int64_t start = 0;
  int64_t numel = 0;
  uint64_t nbytes = 0;
  std::string xxh64;
};

struct ManifestTensor {
  std::string name;
  std::string kind;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes;
  std::vector<ManifestPiece> pieces;  // one (the whole tensor in tensors.bin) unless sharded
};

// A data file: tensors.bin, or one shard file (whose checksum is known).
struct ManifestFile {
  std::string name;
  uint64_t nbytes = 0;
  std::optional<std::string> xxh64;
};

struct Manifest {
  int64_t step = 0;
  json extra;
  json optimizer;                             // as saved: null or {"type", "lr"}
  std::optional<std::string> optimizer_type;  // none when saved without an optimizer
  std::vector<double> lrs;                    // the learning rate of each param group
  std::vector<ManifestFile> files;
  bool sharded = false;
  std::vector<ManifestTensor> tensors;
};

constexpr const char* kSharded = "sharded";

std::string shard_file_name(int shard, int shards) {
  char name[64];
  std::snprintf(name, sizeof name, "shard-%05d-of-%05d.bin", shard, shards);
  return name;
}

// The layout of a sharded manifest: the shard files, each tensor's pieces covering it
// exactly once, each file's pieces back to back from its start to its end.
void read_sharded_layout(const JsonField& root, const std::string& manifest_path,
                         Manifest& manifest) {
  manifest.sharded = true;
  const std::vector<JsonField> shards = root["shards"].elements();
  STRATA_CHECK(!shards.empty(), root["shards"].name(), ": empty, expected one entry per shard");
  for (size_t i = 0; i < shards.size(); ++i) {
    ManifestFile file;
    file.name = shards[i]["file"].string();
    const std::string expected =
        shard_file_name(static_cast<int>(i), static_cast<int>(shards.size()));
    if (file.name != expected) shards[i]["file"].fail(json(expected).dump());
    file.nbytes = static_cast<uint64_t>(shards[i]["nbytes"].integer(0));
    file.xxh64 = shards[i]["xxh64"].string();
    manifest.files.push_back(std::move(file));
  }
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> extents(manifest.files.size());
  for (ManifestTensor& t : manifest.tensors) {
    const int64_t numel = c10::multiply_integers(t.shape);
    const uint64_t element = c10::elementSize(t.dtype);
    std::sort(t.pieces.begin(), t.pieces.end(),
              [](const ManifestPiece& a, const ManifestPiece& b) { return a.start < b.start; });
    int64_t covered = 0;
    for (ManifestPiece& piece : t.pieces) {
      STRATA_CHECK(piece.file < manifest.files.size(), manifest_path, ": tensor '", t.name,
                   "' has a piece in shard ", piece.file, ", expected a shard below ",
                   manifest.files.size());
      STRATA_CHECK(piece.start == covered, manifest_path, ": tensor '", t.name,
                   "': the shards' pieces start at element ", piece.start, ", expected ", covered,
                   " (shards that disagree on the sharding layout)");
      STRATA_CHECK(piece.numel <= numel - covered, manifest_path, ": tensor '", t.name,
                   "': a piece ends at element ", piece.start + piece.numel, ", past its ", numel,
                   " elements");
      covered += piece.numel;
      piece.nbytes = static_cast<uint64_t>(piece.numel) * element;
      extents[piece.file].emplace_back(piece.offset, piece.nbytes);
    }
    STRATA_CHECK(covered == numel, manifest_path, ": tensor '", t.name, "': the shards hold ",
                 covered, " of its ", numel, " elements (shards that disagree on the layout)");
  }
  for (size_t f = 0; f < extents.size(); ++f) {
    std::sort(extents[f].begin(), extents[f].end());
    uint64_t end = 0;
    for (const auto& [offset, nbytes] : extents[f]) {
      STRATA_CHECK(offset == end, manifest_path, ": ", manifest.files[f].name,
                   " has a piece at byte ", offset, ", expected ", end);
      end += nbytes;
    }
    STRATA_CHECK(end == manifest.files[f].nbytes, manifest_path, ": ", manifest.files[f].name,
                 " has nbytes ", manifest.files[f].nbytes, ", its pieces hold ", end);
  }
}

// A version this reader knows: "MAJOR.MINOR.PATCH" no newer in MAJOR.MINOR than this
// strata (a newer one may have changed the format).
bool known_version(const std::string& version) {
  int major = 0, minor = 0, patch = 0, ours_major = 0, ours_minor = 0, ours_patch = 0;
  char end = 0;
  if (std::sscanf(version.c_str(), "%d.%d.%d%c", &major, &minor, &patch, &end) != 3) return false;
  std::sscanf(kVersion, "%d.%d.%d", &ours_major, &ours_minor, &ours_patch);
  return major >= 0 && minor >= 0 && patch >= 0 &&
         std::pair(major, minor) <= std::pair(ours_major, ours_minor);
}

Manifest read_manifest(const std::string& path) {
  STRATA_CHECK(fs::exists(path), "checkpoint ", path, " does not exist");
  STRATA_CHECK(fs::is_directory(path), path, ": not a strata checkpoint (not a directory)");
  const std::string manifest_path = path + "/" + kManifest;
  STRATA_CHECK(fs::exists(manifest_path), path,
               ": not a strata checkpoint (manifest.json missing)");
  const json doc = read_json_file(manifest_path);
  const JsonField root(doc, manifest_path);
  root.object();
  const JsonField format = root["format"];
  if (format.missing() || format.json() != kFormat) format.fail(json(kFormat).dump());
  // Written by every strata since the first; a newer MAJOR.MINOR may mean another format.
  if (root.has("version") && !known_version(root["version"].string())) {
    root["version"].fail(std::string("a strata version up to ") + kVersion +
                         " (written by a newer strata?)");
  }

  Manifest manifest;
  manifest.step = root["step"].integer(0, kMaxCheckpointStep);
  if (root.has("extra") && !root["extra"].json().is_null())
    manifest.extra = root["extra"].object().json();
  else
    manifest.extra = json::object();
  if (root.has("optimizer") && !root["optimizer"].json().is_null()) {
    const JsonField optimizer = root["optimizer"].object();
    manifest.optimizer = optimizer.json();
    const std::string type = optimizer["type"].string();
    if (type != "SGD" && type != "Adam" && type != "AdamW")
      optimizer["type"].fail("\"SGD\", \"Adam\" or \"AdamW\"");
    manifest.optimizer_type = type;
    // A learning rate below 0 climbs the loss; NaN or infinity ends in NaN weights.
    manifest.lrs = optimizer["lr"].numbers(0.0);
  }
  const bool sharded = root.has("layout");
  if (sharded && root["layout"].string() != kSharded)
    root["layout"].fail(json(kSharded).dump() + " (or no layout: one tensors.bin)");
  std::set<std::string> seen;
  uint64_t next_offset = 0;
  for (const JsonField& entry : root["tensors"].elements()) {
    ManifestTensor t;
    t.name = entry["name"].string();
    STRATA_CHECK(!t.name.empty(), entry["name"].name(), ": empty, expected a tensor name");
    t.kind = entry["kind"].string();
    const std::string dtype = entry["dtype"].string();
    if (entry["shape"].json().size() > kMaxCheckpointDims)
      entry["shape"].fail(strata::detail::concat("at most ", kMaxCheckpointDims, " sizes"));
    t.shape = entry["shape"].integers(0);
    STRATA_CHECK(seen.insert(t.name).second, manifest_path, ": tensor '", t.name,
                 "' appears twice");
    STRATA_CHECK(t.kind == "parameter" || t.kind == "buffer" || t.kind == "optimizer",
                 manifest_path, ": tensor '", t.name, "' has kind '", t.kind,
                 "', expected parameter, buffer or optimizer");
    const auto type = detail::dtype_from_name(dtype);
    STRATA_CHECK(type.has_value(), manifest_path, ": tensor '", t.name, "' has dtype '", dtype,
                 "', expected float32, float64, float16, bfloat16, int64, int32, int16, int8, "
                 "uint8 or bool");
    t.dtype = *type;
    // Sizes multiply without overflow into a byte count an int64 holds, or the nbytes and
    // offset checks below could pass on a wrapped product.
    const uint64_t limit = static_cast<uint64_t>(JsonField::kMaxInt);
    uint64_t expected = c10::elementSize(t.dtype);
    for (const int64_t size : t.shape) {
      STRATA_CHECK(size == 0 || expected <= limit / static_cast<uint64_t>(size),
                   entry["shape"].name(), ": ", c10::IntArrayRef(t.shape),
                   " holds more than 2^63 bytes of ", dtype, ", expected a size that fits");
      expected *= static_cast<uint64_t>(size);
    }
    t.nbytes = expected;
    if (sharded) {
      for (const JsonField& p : entry["pieces"].elements()) {
        ManifestPiece piece;
        piece.file = static_cast<size_t>(p["shard"].integer(0));
        piece.offset = static_cast<uint64_t>(p["offset"].integer(0));
        piece.start = p["start"].integer(0);
        piece.numel = p["numel"].integer(0);
        piece.xxh64 = p["xxh64"].string();
        t.pieces.push_back(std::move(piece));
      }
      manifest.tensors.push_back(std::move(t));
      continue;
    }
    ManifestPiece whole;
    whole.offset = static_cast<uint64_t>(entry["offset"].integer(0));
    whole.nbytes = static_cast<uint64_t>(entry["nbytes"].integer(0));
    whole.numel = static_cast<int64_t>(expected / c10::elementSize(t.dtype));
    whole.xxh64 = entry["xxh64"].string();
    STRATA_CHECK(whole.nbytes == expected, manifest_path, ": tensor '", t.name, "' has nbytes ",
                 whole.nbytes, ", expected ", expected, " for shape ", c10::IntArrayRef(t.shape),
                 " ", dtype);
    STRATA_CHECK(whole.offset == next_offset, manifest_path, ": tensor '", t.name, "' has offset ",
                 whole.offset, ", expected ", next_offset);
    STRATA_CHECK(whole.nbytes <= limit - next_offset, manifest_path, ": tensor '", t.name,
                 "' ends past 2^63 bytes");
    next_offset += whole.nbytes;
    t.pieces.push_back(std::move(whole));
    manifest.tensors.push_back(std::move(t));
  }
  if (sharded) {
    read_sharded_layout(root, manifest_path, manifest);
  } else {
    manifest.files.push_back({kTensors, next_offset, std::nullopt});
  }
  return manifest;
}

// The XXH3 checksum of a whole file, read in blocks.
std::string file_checksum(std::ifstream& in, const std::string& file_path) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<char> block(1 << 20);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    XXH3_64bits_update(state, block.data(), static_cast<size_t>(in.gcount()));
  }
  const uint64_t sum = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  STRATA_CHECK(in.eof(), file_path, ": read failed (", errno_text(), ")");
  in.clear();
  return hex64(sum);
}

// Opens the data files (tensors.bin, or every shard file), checking each one's size against
// the manifest and a shard's checksum.
std::vector<std::ifstream> open_tensors(const std::string& path, const Manifest& manifest) {
  std::vector<std::ifstream> files;
  for (const ManifestFile& file : manifest.files) {
    const std::string bin_path = path + "/" + file.name;
    std::error_code ec;
    STRATA_CHECK(!manifest.sharded || fs::exists(bin_path, ec), "checkpoint ", path,
                 ": shard file ", file.name, " is missing (", manifest.files.size(),
                 " shards in its manifest)");
    check_input_file(bin_path);
    const uint64_t size = fs::file_size(bin_path, ec);
    STRATA_CHECK(!ec, bin_path, ": cannot read (", ec.message(), ")");
    const uint64_t expected = file.nbytes;
    STRATA_CHECK(size >= expected, path, ": ", file.name, " is truncated: ", size,
                 " bytes, expected ", expected);
    STRATA_CHECK(size == expected, path, ": ", file.name, " has ", size, " bytes, expected ",
                 expected, " (trailing data)");
    std::ifstream in(bin_path, std::ios::binary);
    STRATA_CHECK(in.good(), bin_path, ": cannot open (", errno_text(), ")");
    if (file.xxh64) {
      const std::string sum = file_checksum(in, bin_path);
      STRATA_CHECK(sum == *file.xxh64, "checkpoint ", path, ": ", file.name, " has checksum ", sum,
                   ", the manifest says ", *file.xxh64,
                   " (a shard of another checkpoint, or corrupt)");
    }
    files.push_back(std::move(in));
  }
  return files;
}

// Tensor `t` of the checkpoint at `path` as a fresh CPU tensor, each piece's checksum
// verified.
at::Tensor read_tensor(std::vector<std::ifstream>& files, const std::string& path,
                       const Manifest& manifest, const ManifestTensor& t) {
  at::Tensor tensor = at::empty(t.shape, at::TensorOptions().dtype(t.dtype));
  const at::Tensor flat = tensor.view({-1});
  for (const ManifestPiece& piece : t.pieces) {
    const at::Tensor part = flat.narrow(0, piece.start, piece.numel);
    std::ifstream& in = files[piece.file];
    in.seekg(static_cast<std::streamoff>(piece.offset));
    in.read(static_cast<char*>(part.data_ptr()), static_cast<std::streamsize>(piece.nbytes));
    STRATA_CHECK(in.good(), path, "/", manifest.files[piece.file].name, ": read failed at tensor '",
                 t.name, "'");
    STRATA_CHECK(hex64(checksum(part)) == piece.xxh64, "tensor '", t.name,
                 "': checksum mismatch (corrupt checkpoint ", path, ")");
  }
  return tensor;
}

void check_same(const std::string& kind, const ManifestTensor& saved, const at::Tensor& live) {
  STRATA_CHECK(live.sizes() == c10::IntArrayRef(saved.shape), kind, " '", saved.name, "': shape ",
               c10::IntArrayRef(saved.shape), " in checkpoint, ", live.sizes(), " in the model");
  STRATA_CHECK(saved.dtype == live.scalar_type(), kind, " '", saved.name, "': dtype ",
               detail::dtype_name(saved.dtype), " in checkpoint, ",
               detail::dtype_name(live.scalar_type()), " in the model");
}

}  // namespace

// ---------------------------------------------------------------- save

CheckpointContents checkpoint_contents(const torch::nn::Module& model,
                                       torch::optim::Optimizer* optimizer) {
  CheckpointContents contents;
  contents.tensors = model_tensors(model);
  if (optimizer != nullptr) {
    const OptimizerKind kind = detail::optimizer_kind(*optimizer);
    json lrs = json::array();
    for (const auto& group : optimizer->param_groups()) lrs.push_back(group.options().get_lr());
    contents.optimizer = {{"type", detail::optimizer_kind_name(kind)}, {"lr", lrs}};
    for (const auto& [name, param] : optimizer_parameters(*optimizer, model)) {
      for (const auto& [field, tensor] : detail::get_param_state(*optimizer, kind, param)) {
        contents.tensors.push_back({kOptimizerPrefix + name + "/" + field, "optimizer", tensor});
      }
    }
  }
  return contents;
}

void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     torch::optim::Optimizer* optimizer, int64_t step, const json& extra) {
  // Gathered first: an unsupported optimizer fails before any file is touched.
  write_checkpoint(path, checkpoint_contents(model, optimizer), step, extra);
}

void write_checkpoint(const std::string& path, const CheckpointContents& contents, int64_t step,
                      const json& extra) {
  FlightRecordScope record("checkpoint write " + path + " (step " + std::to_string(step) + ")");
  CheckpointWriter writer(path);
  for (const CheckpointTensor& item : contents.tensors)
    writer.add(item.name, item.kind, item.tensor);
  writer.commit(step, extra, contents.optimizer);
}

// ---------------------------------------------------------------- CheckpointWriter

struct CheckpointWriter::State {
  std::string path, tmp, parent, pid;
  std::optional<SyncedFile> bin;
  std::set<std::string> names;
  std::vector<nlohmann::ordered_json> entries;
  uint64_t offset = 0;
  bool committed = false;
};

CheckpointWriter::CheckpointWriter(const std::string& path_in) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.path = strip_slashes(path_in);
  STRATA_CHECK(!s.path.empty() && s.path != "/", "checkpoint path '", path_in,
               "': expected a directory name");
  s.parent = fs::path(s.path).parent_path().string();
  std::error_code ec;
  if (!s.parent.empty()) {
    fs::create_directories(s.parent, ec);
    STRATA_CHECK(!ec, "checkpoint directory ", s.parent, ": cannot create (", ec.message(), ")");
  }
  s.pid = std::to_string(::getpid());
  s.tmp = s.path + ".tmp-" + s.pid;
  fs::remove_all(s.tmp, ec);
  STRATA_CHECK(fs::create_directory(s.tmp, ec) && !ec, "checkpoint: cannot create ", s.tmp, " (",
               ec.message(), ")");
  try {
    s.bin.emplace(s.tmp + "/" + kTensors);
  } catch (...) {
    fs::remove_all(s.tmp, ec);
    throw;
  }
}

CheckpointWriter::~CheckpointWriter() {
  if (state_->committed) return;
  state_->bin.reset();
  std::error_code ec;
  fs::remove_all(state_->tmp, ec);
}

void CheckpointWriter::add(const std::string& name, const std::string& kind,
                           const at::Tensor& tensor) {
  State& s = *state_;
  STRATA_CHECK(!s.committed, "checkpoint ", s.path, ": add() after commit()");
  STRATA_CHECK(s.names.insert(name).second, "checkpoint ", s.path, ": tensor '", name,
               "' given twice");
  STRATA_CHECK(kind == "parameter" || kind == "buffer" || kind == "optimizer", "checkpoint ",
               s.path, ": tensor '", name, "' of kind '", kind,
               "', expected parameter, buffer or optimizer");
  const at::Tensor cpu = tensor.detach().to(at::kCPU).contiguous();
  s.bin->write(cpu.data_ptr(), cpu.nbytes());
  s.entries.push_back({{"name", name},
                       {"kind", kind},
                       {"dtype", detail::dtype_name(cpu.scalar_type())},
                       {"shape", cpu.sizes().vec()},
                       {"offset", s.offset},
                       {"nbytes", cpu.nbytes()},
                       {"xxh64", hex64(checksum(cpu))}});
  s.offset += cpu.nbytes();
  fault_point("checkpoint-write");
}

void CheckpointWriter::commit(int64_t step, const json& extra, const json& optimizer) {
  State& s = *state_;
  STRATA_CHECK(!s.committed, "checkpoint ", s.path, ": commit() twice");
  const nlohmann::ordered_json head = manifest_head(step, extra, optimizer);
  s.bin->close();
  install_checkpoint(s.tmp, s.path, s.pid, head, s.entries);
  s.committed = true;
}

// ---------------------------------------------------------------- sharded checkpoints

std::string sharded_checkpoint_tmp(const std::string& path, const std::string& id) {
  return strip_slashes(path) + ".tmp-" + id;
}

void begin_sharded_checkpoint(const std::string& tmp) {
  const std::string parent = fs::path(tmp).parent_path().string();
  std::error_code ec;
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    STRATA_CHECK(!ec, "checkpoint directory ", parent, ": cannot create (", ec.message(), ")");
  }
  fs::remove_all(tmp, ec);
  STRATA_CHECK(fs::create_directory(tmp, ec) && !ec, "checkpoint: cannot create ", tmp, " (",
               ec.message(), ")");
}

json write_checkpoint_shard(const std::string& tmp, int shard, int shards,
                            const std::vector<CheckpointPiece>& pieces) {
  STRATA_CHECK(shards >= 1 && shard >= 0 && shard < shards, "checkpoint shard ", shard, " of ",
               shards, ", expected 0 <= shard < shards");
  const std::string file = shard_file_name(shard, shards);
  SyncedFile out(tmp + "/" + file);
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> whole(XXH3_createState(),
                                                                        XXH3_freeState);
  XXH3_64bits_reset(whole.get());
  json entries = json::array();
  uint64_t offset = 0;
  for (const CheckpointPiece& piece : pieces) {
    const at::Tensor cpu = piece.data.detach().to(at::kCPU).contiguous();
    out.write(cpu.data_ptr(), cpu.nbytes());
    XXH3_64bits_update(whole.get(), cpu.data_ptr(), cpu.nbytes());
    entries.push_back({{"name", piece.name},
                       {"kind", piece.kind},
                       {"dtype", detail::dtype_name(cpu.scalar_type())},
                       {"shape", piece.shape},
                       {"offset", offset},
                       {"start", piece.start},
                       {"numel", cpu.numel()},
                       {"xxh64", hex64(checksum(cpu))}});
    offset += cpu.nbytes();
    fault_point("checkpoint-write");
  }
  out.close();
  return {{"file", file},
          {"nbytes", offset},
          {"xxh64", hex64(XXH3_64bits_digest(whole.get()))},
          {"pieces", entries}};
}

void commit_sharded_checkpoint(const std::string& path_in, const std::string& tmp,
                               const std::vector<json>& shards, int64_t step, const json& extra,
                               const json& optimizer) {
  const std::string path = strip_slashes(path_in);
  nlohmann::ordered_json head = manifest_head(step, extra, optimizer);
  head["layout"] = kSharded;
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  std::vector<nlohmann::ordered_json> tensors;
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < shards.size(); ++i) {
    const json& shard = shards[i];
    files.push_back(
        {{"file", shard.at("file")}, {"nbytes", shard.at("nbytes")}, {"xxh64", shard.at("xxh64")}});
    for (const json& p : shard.at("pieces")) {
      const std::string name = p.at("name");
      const auto [it, fresh] = index.emplace(name, tensors.size());
      if (fresh) {
        tensors.push_back({{"name", name},
                           {"kind", p.at("kind")},
                           {"dtype", p.at("dtype")},
                           {"shape", p.at("shape")},
                           {"pieces", nlohmann::ordered_json::array()}});
      }
      nlohmann::ordered_json& t = tensors[it->second];
      const auto same = [&](const char* key) { return t[key].dump() == p.at(key).dump(); };
      STRATA_CHECK(same("kind") && same("dtype") && same("shape"), "checkpoint ", path, ": shard ",
                   i, " holds tensor '", name, "' as ", p.at("kind").dump(), " ",
                   p.at("dtype").dump(), " ", p.at("shape").dump(), ", an earlier shard as ",
                   t["kind"].dump(), " ", t["dtype"].dump(), " ", t["shape"].dump());
      t["pieces"].push_back({{"shard", i},
                             {"offset", p.at("offset")},
                             {"start", p.at("start")},
                             {"numel", p.at("numel")},
                             {"xxh64", p.at("xxh64")}});
    }
  }
  head["shards"] = files;
  install_checkpoint(tmp, path, std::to_string(::getpid()), head, tensors);
}

void abort_sharded_checkpoint(const std::string& tmp) {
  std::error_code ec;
  fs::remove_all(tmp, ec);
}

// ---------------------------------------------------------------- CheckpointReader

struct CheckpointReader::State {
  std::string path;
  Manifest manifest;
  std::vector<Entry> entries;
  std::unordered_map<std::string, size_t> index;
  std::vector<std::ifstream> files;
};

CheckpointReader::CheckpointReader(const std::string& path_in) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.path = strip_slashes(path_in);
  s.manifest = read_manifest(s.path);
  for (const ManifestTensor& t : s.manifest.tensors) {
    s.index.emplace(t.name, s.entries.size());
    s.entries.push_back({t.name, t.kind, t.dtype, t.shape});
  }
  s.files = open_tensors(s.path, s.manifest);
}

CheckpointReader::~CheckpointReader() = default;

const std::string& CheckpointReader::path() const { return state_->path; }
int64_t CheckpointReader::step() const { return state_->manifest.step; }
const json& CheckpointReader::extra() const { return state_->manifest.extra; }
const json& CheckpointReader::optimizer() const { return state_->manifest.optimizer; }
const std::vector<CheckpointReader::Entry>& CheckpointReader::entries() const {
  return state_->entries;
}

const CheckpointReader::Entry* CheckpointReader::find(const std::string& name) const {
  const auto it = state_->index.find(name);
  return it == state_->index.end() ? nullptr : &state_->entries[it->second];
}

at::Tensor CheckpointReader::read(const std::string& name) {
  State& s = *state_;
  const auto it = s.index.find(name);
  STRATA_CHECK(it != s.index.end(), "checkpoint ", s.path, " has no tensor '", name, "'");
  return read_tensor(s.files, s.path, s.manifest, s.manifest.tensors[it->second]);
}

// ---------------------------------------------------------------- load

int64_t load_checkpoint(const std::string& path_in, torch::nn::Module& model,
                        torch::optim::Optimizer* optimizer, json* extra, CheckpointMatch match) {
  const std::string path = strip_slashes(path_in);
  const Manifest manifest = read_manifest(path);

  // 1. Names: every model tensor is in the checkpoint and (unless the model is a part of
  // the checkpoint's model) nothing else is.
  const bool subset = match == CheckpointMatch::Subset;
  std::unordered_map<std::string, const ManifestTensor*> saved;
  for (const ManifestTensor& t : manifest.tensors) saved.emplace(t.name, &t);
  const std::vector<CheckpointTensor> live = model_tensors(model);
  std::set<std::string> live_names;
  for (const CheckpointTensor& item : live) {
    live_names.insert(item.name);
    const auto it = saved.find(item.name);
    STRATA_CHECK(it != saved.end(), "checkpoint ", path, " has no tensor for ", item.kind, " '",
                 item.name, "' — was it saved from another model?");
    STRATA_CHECK(it->second->kind == item.kind, "checkpoint ", path, ": tensor '", item.name,
                 "' is a ", it->second->kind, " in checkpoint, a ", item.kind, " in the model");
  }
  for (const ManifestTensor& t : manifest.tensors) {
    STRATA_CHECK(subset || t.kind == "optimizer" || live_names.count(t.name), "checkpoint ", path,
                 " has tensor '", t.name, "' the model lacks — was it saved from another model?");
  }

  // 2. Shapes and dtypes, checked on the manifest before reading any data.
  for (const CheckpointTensor& item : live)
    check_same(item.kind, *saved.at(item.name), item.tensor);

  // 3. Optimizer: same type and param groups, state for the optimizer's own parameters.
  std::optional<OptimizerKind> kind;
  std::vector<std::pair<std::string, at::Tensor>> opt_params;
  if (optimizer != nullptr) {
    kind = detail::optimizer_kind(*optimizer);
    opt_params = optimizer_parameters(*optimizer, model);
    if (manifest.optimizer_type) {
      STRATA_CHECK(*manifest.optimizer_type == detail::optimizer_kind_name(*kind), "checkpoint ",
                   path, " holds ", *manifest.optimizer_type, " optimizer state, the optimizer is ",
                   detail::optimizer_kind_name(*kind));
      STRATA_CHECK(manifest.lrs.size() == optimizer->param_groups().size(), "checkpoint ", path,
                   " has ", manifest.lrs.size(), " optimizer param groups, the optimizer has ",
                   optimizer->param_groups().size());
    }
  }

  // 4. Data: file size and checksums.
  std::vector<std::ifstream> files = open_tensors(path, manifest);
  std::unordered_map<std::string, at::Tensor> data;
  for (const ManifestTensor& t : manifest.tensors)
    data.emplace(t.name, read_tensor(files, path, manifest, t));

  // 5. Optimizer state fields, grouped by parameter and checked against it.
  std::map<std::string, StateFields> state;
  if (optimizer != nullptr) {
    std::map<std::string, at::Tensor> opt_param_by_name(opt_params.begin(), opt_params.end());
    const std::string prefix = kOptimizerPrefix;
    for (const ManifestTensor& t : manifest.tensors) {
      if (t.kind != "optimizer") continue;
      const size_t slash = t.name.rfind('/');
      STRATA_CHECK(t.name.compare(0, prefix.size(), prefix) == 0 && slash > prefix.size(),
                   "checkpoint ", path, ": optimizer tensor '", t.name,
                   "', expected a name optimizer/<parameter>/<field>");
      const std::string param = t.name.substr(prefix.size(), slash - prefix.size());
      if (subset && !live_names.count(param)) continue;  // another part's parameter
      STRATA_CHECK(opt_param_by_name.count(param), "checkpoint ", path,
                   " has optimizer state for '", param, "', which the optimizer does not hold");
      state[param][t.name.substr(slash + 1)] = data.at(t.name);
    }
    for (const auto& [param, fields] : state) {
      detail::check_param_state(*kind, param, opt_param_by_name.at(param), fields);
    }
  }

  // Everything is verified; from here on nothing can fail on the checkpoint's account.
  {
    torch::NoGradGuard no_grad;
    for (const CheckpointTensor& item : live) item.tensor.copy_(data.at(item.name));
  }
  if (optimizer != nullptr) {
    optimizer->state().clear();
    for (const auto& [name, param] : opt_params) {
      const auto it = state.find(name);
      if (it != state.end()) detail::set_param_state(*optimizer, *kind, param, it->second);
    }
    if (manifest.optimizer_type) {
      for (size_t i = 0; i < manifest.lrs.size(); ++i) {
        optimizer->param_groups()[i].options().set_lr(manifest.lrs[i]);
      }
    }
  }
  if (extra != nullptr) *extra = manifest.extra;
  return manifest.step;
}

void restore_checkpoint_contents(const CheckpointContents& contents, torch::nn::Module& model,
                                 torch::optim::Optimizer* optimizer) {
  std::unordered_map<std::string, const CheckpointTensor*> by_name;
  for (const CheckpointTensor& t : contents.tensors) by_name.emplace(t.name, &t);
  const std::vector<CheckpointTensor> live = model_tensors(model);
  for (const CheckpointTensor& item : live) {
    const auto it = by_name.find(item.name);
    STRATA_CHECK(it != by_name.end(), "restoring ", item.kind, " '", item.name,
                 "': no tensor of that name among the ", contents.tensors.size(), " given");
    STRATA_CHECK(it->second->tensor.sizes() == item.tensor.sizes(), "restoring ", item.kind, " '",
                 item.name, "': got shape ", it->second->tensor.sizes(), ", expected ",
                 item.tensor.sizes());
  }
  std::optional<OptimizerKind> kind;
  std::vector<std::pair<std::string, at::Tensor>> opt_params;
  std::map<std::string, StateFields> state;
  if (optimizer != nullptr) {
    kind = detail::optimizer_kind(*optimizer);
    opt_params = optimizer_parameters(*optimizer, model);
    for (const auto& [name, param] : opt_params) {
      const std::string prefix = kOptimizerPrefix + name + "/";
      for (const CheckpointTensor& t : contents.tensors)
        if (t.kind == "optimizer" && t.name.compare(0, prefix.size(), prefix) == 0)
          state[name][t.name.substr(prefix.size())] = t.tensor;
      if (state.count(name)) detail::check_param_state(*kind, name, param, state.at(name));
    }
  }
  {
    torch::NoGradGuard no_grad;
    for (const CheckpointTensor& item : live) item.tensor.copy_(by_name.at(item.name)->tensor);
  }
  if (optimizer != nullptr) {
    optimizer->state().clear();
    for (const auto& [name, param] : opt_params) {
      const auto it = state.find(name);
      if (it != state.end()) detail::set_param_state(*optimizer, *kind, param, it->second);
    }
  }
}

// ---------------------------------------------------------------- paths

std::string checkpoint_path(const std::string& dir, int64_t step) {
  STRATA_CHECK(step >= 0, "checkpoint step ", step, ", expected at least 0");
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

namespace {

// The complete `step-N` checkpoints in `dir` (with a manifest), newest first. Unfinished
// "step-N.tmp-<pid>" and "step-N.old-<pid>" directories are not.
std::vector<std::pair<int64_t, std::string>> checkpoints_newest_first(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= 5 || name.compare(0, 5, "step-") != 0) continue;
    if (name.find_first_not_of("0123456789", 5) != std::string::npos) continue;
    if (name.size() > 5 + 18) continue;  // would overflow int64
    if (!fs::is_regular_file(entry.path() / kManifest, ec)) continue;
    found.emplace_back(std::stoll(name.substr(5)), entry.path().string());
  }
  std::sort(found.begin(), found.end(), std::greater<>());
  return found;
}

}  // namespace

std::optional<std::string> latest_checkpoint(const std::string& dir) {
  const auto found = checkpoints_newest_first(dir);
  if (found.empty()) return std::nullopt;
  return found.front().second;
}

std::optional<std::string> latest_valid_checkpoint(const std::string& dir,
                                                   std::vector<std::string>* rejected) {
  for (const auto& [step, path] : checkpoints_newest_first(dir)) {
    try {
      CheckpointReader reader(path);
      for (const CheckpointReader::Entry& entry : reader.entries()) reader.read(entry.name);
      return path;
    } catch (const Error& e) {
      if (rejected != nullptr) rejected->push_back(e.what());
    }
  }
  return std::nullopt;
}

std::optional<std::string> find_checkpoint(const std::string& path) {
  std::error_code ec;
  if (fs::exists(fs::path(path) / kManifest, ec)) return path;
  return latest_checkpoint(path);
}

}  // namespace strata::core
