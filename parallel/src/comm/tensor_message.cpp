#include "strata/parallel/comm/tensor_message.h"

#include <ATen/ATen.h>

#include "strata/core/error.h"
#include "strata/parallel/comm/inprocess_communicator.h"

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

at::Tensor tensor_list_header(const std::vector<at::Tensor>& tensors) {
  const auto count = static_cast<int64_t>(tensors.size());
  STRATA_CHECK(count <= kTensorListMaxTensors, "tensor message: a list of ", count,
               " tensors, expected at most ", kTensorListMaxTensors);
  at::Tensor header = at::zeros({kTensorMessageHeaderLength}, at::kLong);
  auto h = header.accessor<int64_t, 1>();
  h[0] = kTensorListMarker;
  h[1] = count;
  for (int64_t i = 0; i < count; ++i) h[2 + i] = static_cast<int64_t>(tensors[i].scalar_type());
  return header;
}

namespace {

// A header, then (once the header is in) the data into a CPU tensor the header describes,
// then a copy onto the asked device. After a list header, that for each listed tensor in
// turn: a tensor's header may be posted only once the previous data receive is, or it
// would match that data (messages with one tag match receives in the order posted).
class HeaderDataWork final : public TensorListWork {
 public:
  HeaderDataWork(Communicator& comm, int src, int tag, const c10::Device& device)
      : comm_(comm),
        src_(src),
        tag_(tag),
        device_(device),
        header_(at::empty({kTensorMessageHeaderLength}, at::kLong)),
        work_(comm.irecv(header_, src, tag)) {}

  void wait() override {
    while (!done_) {
      work_->wait();
      advance();
    }
  }
  bool is_completed() override {
    while (!done_ && work_->is_completed()) advance();
    return done_;
  }
  at::Tensor tensor() override {
    STRATA_CHECK(tensors_.size() == 1, "tensor message from rank ", src_, " (tag ", tag_,
                 "): a list of ", tensors_.size(), " tensors, expected one tensor");
    return tensors_[0];
  }
  std::vector<at::Tensor> tensors() override { return tensors_; }
  bool is_list() override { return list_; }

 private:
  // The message work_ waited for is in: post the next one, or finish.
  void advance() {
    if (data_.defined()) {
      tensors_.push_back(data_.device().is_cpu() && !device_.is_cpu() ? data_.to(device_) : data_);
      data_ = at::Tensor();
      return next_header();
    }
    const int64_t* h = header_.data_ptr<int64_t>();
    if (h[0] == kTensorListMarker && !list_) {
      list_ = true;
      const int64_t count = h[1];
      STRATA_CHECK(count >= 0 && count <= kTensorListMaxTensors, "tensor message from rank ", src_,
                   " (tag ", tag_, "): malformed list header (", count, " tensors)");
      dtypes_.assign(h + 2, h + 2 + count);
      return next_header();
    }
    data_ = allocate_from_header(header_);
    if (list_) {
      const int64_t expected = dtypes_[tensors_.size()];
      STRATA_CHECK(static_cast<int64_t>(data_.scalar_type()) == expected,
                   "tensor message from rank ", src_, " (tag ", tag_, "): tensor ", tensors_.size(),
                   " of the list is ", data_.scalar_type(), ", expected ",
                   static_cast<at::ScalarType>(expected), " (the list header's)");
    }
    work_ = comm_.irecv(data_, src_, tag_);
  }
  void next_header() {
    if (!list_ || tensors_.size() == dtypes_.size()) {
      done_ = true;
      return;
    }
    work_ = comm_.irecv(header_, src_, tag_);
  }

  Communicator& comm_;
  const int src_, tag_;
  const c10::Device device_;
  at::Tensor header_, data_;  // data_: defined while its receive is in flight
  WorkPtr work_;
  bool list_ = false, done_ = false;
  std::vector<int64_t> dtypes_;  // of a list, from its header
  std::vector<at::Tensor> tensors_;
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

std::vector<WorkPtr> isend_tensors(Communicator& comm, const std::vector<at::Tensor>& tensors,
                                   int dst, int tag) {
  if (auto* in_process = dynamic_cast<InProcessCommunicator*>(&comm))
    return in_process->isend_tensors(tensors, dst, tag);
  std::vector<WorkPtr> works{comm.isend(tensor_list_header(tensors), dst, tag)};
  // The default's header and data, which the default irecv_tensor takes apart, also where
  // a backend overrides isend_tensor.
  for (const auto& tensor : tensors)
    for (auto& work : comm.Communicator::isend_tensor(tensor, dst, tag))
      works.push_back(std::move(work));
  return works;
}

std::vector<at::Tensor> received_tensors(TensorWork& work) {
  if (auto* list = dynamic_cast<TensorListWork*>(&work)) return list->tensors();
  return {work.tensor()};
}

bool received_list(TensorWork& work) {
  auto* list = dynamic_cast<TensorListWork*>(&work);
  return list != nullptr && list->is_list();
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
