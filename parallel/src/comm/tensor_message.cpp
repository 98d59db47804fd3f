#include "strata/parallel/comm/tensor_message.h"

#include <ATen/ATen.h>

#include "strata/core/error.h"

namespace strata::parallel {

at::Tensor tensor_message_header(const at::Tensor& tensor) {
  STRATA_CHECK(tensor.dim() <= kTensorMessageMaxDims, "tensor message: a tensor with ",
               tensor.dim(), " dims, expected at most ", kTensorMessageMaxDims);
  at::Tensor header = at::zeros({kTensorMessageHeaderLength}, at::kLong);
  auto h = header.accessor<int64_t, 1>();
  h[0] = static_cast<int64_t>(tensor.scalar_type());
  h[1] = tensor.dim();
  for (int64_t d = 0; d < tensor.dim(); ++d) h[2 + d] = tensor.size(d);
  return header;
}

at::Tensor allocate_from_header(const at::Tensor& header) {
  auto h = header.accessor<int64_t, 1>();
  STRATA_CHECK(h[0] >= 0 && h[0] < static_cast<int64_t>(at::ScalarType::NumOptions) && h[1] >= 0 &&
                   h[1] <= kTensorMessageMaxDims,
               "tensor message: malformed header (dtype ", h[0], ", dims ", h[1], ")");
  std::vector<int64_t> sizes(h[1]);
  for (int64_t d = 0; d < h[1]; ++d) sizes[d] = h[2 + d];
  return at::empty(sizes, at::TensorOptions().dtype(static_cast<at::ScalarType>(h[0])));
}

namespace {

// The header, then (once the header is in) the data into a CPU tensor the header
// describes, then a copy onto the asked device.
class HeaderDataWork final : public TensorWork {
 public:
  HeaderDataWork(Communicator& comm, int src, int tag, const c10::Device& device)
      : comm_(comm),
        src_(src),
        tag_(tag),
        device_(device),
        header_(at::empty({kTensorMessageHeaderLength}, at::kLong)),
        header_work_(comm.irecv(header_, src, tag)) {}

  void wait() override {
    if (!data_work_) {
      header_work_->wait();
      post_data();
    }
    data_work_->wait();
    finish();
  }
  bool is_completed() override {
    if (!data_work_) {
      if (!header_work_->is_completed()) return false;
      post_data();
    }
    if (!data_work_->is_completed()) return false;
    finish();
    return true;
  }
  at::Tensor tensor() override { return data_; }

 private:
  void post_data() {
    data_ = allocate_from_header(header_);
    data_work_ = comm_.irecv(data_, src_, tag_);
  }
  void finish() {
    if (!data_.device().is_cpu() || device_.is_cpu()) return;
    data_ = data_.to(device_);
  }

  Communicator& comm_;
  const int src_, tag_;
  const c10::Device device_;
  at::Tensor header_, data_;
  WorkPtr header_work_, data_work_;
};

}  // namespace

std::vector<WorkPtr> Communicator::isend_tensor(const at::Tensor& tensor, int dst, int tag) {
  at::Tensor data = tensor.contiguous();
  if (!supports_device(data.device())) data = data.cpu();
  return {isend(tensor_message_header(data), dst, tag), isend(data, dst, tag)};
}

TensorWorkPtr Communicator::irecv_tensor(int src, int tag, const c10::Device& device) {
  return std::make_shared<HeaderDataWork>(*this, src, tag, device);
}

std::vector<WorkPtr> isend_tensor(Communicator& comm, const at::Tensor& tensor, int dst, int tag) {
  return comm.isend_tensor(tensor, dst, tag);
}

at::Tensor recv_tensor(Communicator& comm, int src, int tag) {
  TensorWorkPtr work = comm.irecv_tensor(src, tag);
  work->wait();
  return work->tensor();
}

at::Tensor broadcast_tensor(Communicator& comm, const at::Tensor& tensor, int root) {
  const bool is_root = comm.rank() == root;
  at::Tensor header =
      is_root ? tensor_message_header(tensor) : at::empty({kTensorMessageHeaderLength}, at::kLong);
  comm.broadcast(header, root)->wait();
  at::Tensor data = is_root ? tensor.contiguous().clone() : allocate_from_header(header);
  comm.broadcast(data, root)->wait();
  return data;
}

at::Tensor string_to_tensor(const std::string& text) {
  at::Tensor bytes = at::empty({static_cast<int64_t>(text.size())}, at::kByte);
  std::copy(text.begin(), text.end(), bytes.data_ptr<uint8_t>());
  return bytes;
}

std::string tensor_to_string(const at::Tensor& bytes) {
  const at::Tensor b = bytes.contiguous();
  const auto* p = b.data_ptr<uint8_t>();
  return std::string(p, p + b.numel());
}

}  // namespace strata::parallel
