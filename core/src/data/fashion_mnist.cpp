#include "strata/core/data/fashion_mnist.h"

#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "strata/core/error.h"
#include "strata/core/input_files.h"

namespace strata::core {
namespace {

constexpr uint32_t kLabelsMagic = 0x00000801;
constexpr uint32_t kImagesMagic = 0x00000803;
// Far above any IDX file strata reads; guards against allocating a corrupt header's size.
constexpr uint64_t kMaxPayload = uint64_t{1} << 34;
constexpr uint64_t kReadChunk = uint64_t{1} << 24;

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads up to `size` bytes; returns how many were read. A corrupt or cut gzip stream is
// an error, except that a stream ending early only shortens the count (the caller then
// reports the truncation with the byte counts, which says more than zlib's message).
uint64_t read_some(gzFile file, const std::string& path, uint8_t* data, uint64_t size) {
  uint64_t done = 0;
  while (done < size) {
    const unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(size - done, 1u << 30));
    const int got = gzread(file, data + done, chunk);
    if (got < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      if (code == Z_BUF_ERROR) break;  // "unexpected end of file": the gzip was cut short
      STRATA_FAIL(path, ": corrupt gzip data (zlib: ", message, ")");
    }
    if (got == 0) {
      int code = 0;
      gzerror(file, &code);
      if (code != Z_OK && code != Z_BUF_ERROR) STRATA_FAIL(path, ": read error");
      break;
    }
    done += static_cast<uint64_t>(got);
  }
  return done;
}

uint32_t big_endian(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
         uint32_t{bytes[3]};
}

}  // namespace

at::Tensor read_idx_file(const std::string& path) {
  check_input_file(path);
  GzFile file(gzopen(path.c_str(), "rb"));
  STRATA_CHECK(file != nullptr, path, ": cannot read (", std::strerror(errno), ")");

  std::array<uint8_t, 4> magic_bytes{};
  const uint64_t magic_read = read_some(file.get(), path, magic_bytes.data(), 4);
  // zlib reads a file without a gzip header "transparently" as plain bytes; the dataset
  // always ships gzip'ed, so plain bytes mean a wrong or damaged file.
  STRATA_CHECK(!gzdirect(file.get()), path, ": not a gzip file");
  STRATA_CHECK(magic_read == 4, path, ": truncated: ", magic_read,
               " bytes, expected at least 4 for the IDX magic number");
  const uint32_t magic = big_endian(magic_bytes.data());
  STRATA_CHECK(magic == kImagesMagic || magic == kLabelsMagic, path, ": magic number ", magic,
               ", expected ", kImagesMagic, " (images) or ", kLabelsMagic, " (labels)");

  const int64_t dims = magic == kImagesMagic ? 3 : 1;
  std::array<uint8_t, 12> dim_bytes{};
  const uint64_t dims_read = read_some(file.get(), path, dim_bytes.data(), 4 * dims);
  STRATA_CHECK(dims_read == static_cast<uint64_t>(4 * dims), path,
               ": truncated header: ", dims_read, " bytes of dimensions, expected ", 4 * dims);
  std::vector<int64_t> shape;
  uint64_t payload = 1;
  for (int64_t i = 0; i < dims; ++i) {
    const uint32_t size = big_endian(dim_bytes.data() + 4 * i);
    shape.push_back(size);
    payload *= size;
    STRATA_CHECK(payload <= kMaxPayload, path, ": header gives an implausible size (dimension ", i,
                 " is ", size, ")");
  }

  // Read before allocating all of it: a damaged header may promise gigabytes that a small
  // file does not hold (the fuzzer found one), and that must be "truncated", not an
  // out-of-memory. The buffer grows with the data actually read.
  std::vector<uint8_t> bytes;
  bytes.reserve(std::min<uint64_t>(payload, kReadChunk));
  uint64_t got = 0;
  while (got < payload) {
    const uint64_t chunk = std::min<uint64_t>(payload - got, kReadChunk);
    bytes.resize(got + chunk);
    const uint64_t n = read_some(file.get(), path, bytes.data() + got, chunk);
    got += n;
    if (n < chunk) break;
  }
  STRATA_CHECK(got == payload, path, ": truncated: ", got, " bytes of data, expected ", payload,
               " for shape ", c10::IntArrayRef(shape));
  at::Tensor data = at::empty(shape, at::kByte);
  std::copy(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(got),
            data.data_ptr<uint8_t>());
  uint8_t extra = 0;
  STRATA_CHECK(read_some(file.get(), path, &extra, 1) == 0, path, ": trailing bytes after the ",
               payload, " bytes the header promises");
  return data;
}

FashionMnist load_fashion_mnist(const std::string& dir, FashionMnistSplit split) {
  check_input_directory(dir, "fashion-mnist data directory", "install dataset-fashion-mnist");
  const std::string prefix = split == FashionMnistSplit::Train ? "train" : "t10k";
  const std::string images_path = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string labels_path = dir + "/" + prefix + "-labels-idx1-ubyte.gz";

  at::Tensor images = read_idx_file(images_path);
  at::Tensor labels = read_idx_file(labels_path);
  STRATA_CHECK(images.dim() == 3, images_path, ": holds ", images.dim(),
               "-D data (labels?), expected images [N, 28, 28]");
  STRATA_CHECK(labels.dim() == 1, labels_path, ": holds ", labels.dim(),
               "-D data (images?), expected labels [N]");
  STRATA_CHECK(images.size(1) == 28 && images.size(2) == 28, images_path, ": images of ",
               images.size(1), "x", images.size(2), ", expected 28x28");
  STRATA_CHECK(images.size(0) == labels.size(0), images_path, " has ", images.size(0),
               " images but ", labels_path, " has ", labels.size(0), " labels");
  // An empty set would train no step and score accuracy 0/0 = NaN.
  STRATA_CHECK(images.size(0) >= 1, images_path, ": holds 0 images, expected at least 1");
  const int64_t max_label = labels.max().item<int64_t>();
  STRATA_CHECK(max_label < 10, labels_path, ": label ", max_label, ", expected 0 to 9");

  FashionMnist data;
  // The benchmark's normalization: mean and std of the training pixels.
  data.images = images.to(at::kFloat).div_(255.0).sub_(0.2860).div_(0.3530).unsqueeze(1);
  data.labels = labels.to(at::kLong);
  return data;
}

double classification_accuracy(torch::nn::Sequential& model, const FashionMnist& data,
                               int64_t batch) {
  STRATA_CHECK(batch > 0, "classification_accuracy: batch ", batch, ": expected at least 1");
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  double correct = 0;
  for (int64_t begin = 0; begin < data.size(); begin += batch) {
    const int64_t end = std::min(begin + batch, data.size());
    const at::Tensor logits = model->forward(data.images.slice(0, begin, end));
    correct += logits.argmax(1).eq(data.labels.slice(0, begin, end)).sum().item<double>();
  }
  model->train(was_training);
  return data.size() ? correct / static_cast<double>(data.size()) : 0.0;
}

}  // namespace strata::core
