#pragma once
// Tensors of any dtype and shape between ranks when the receiver does not know them in
// advance: a small header (dtype, number of dims, sizes) goes first, then the data, both
// with the same tag (messages with one source, destination and tag arrive in order). This
// is Communicator::isend_tensor's and irecv_tensor's default; the in-process backend hands
// the tensor itself over instead. Several tensors (isend_tensors) travel as a list header,
// [kTensorListMarker, count, dtype 0, ..., dtype count-1, 0...], then each tensor's header
// and data; the receiver tells the two apart by the first header's first entry.

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

// Tensors with more dims than this cannot travel with a header.
inline constexpr int64_t kTensorMessageMaxDims = 8;
inline constexpr int64_t kTensorMessageHeaderLength = 2 + kTensorMessageMaxDims;

// A list header's first entry (a tensor's header has its dtype there, never negative),
// and the most tensors one list message carries (one dtype per remaining entry).
inline constexpr int64_t kTensorListMarker = -1;
inline constexpr int64_t kTensorListMaxTensors = kTensorMessageHeaderLength - 2;

// The header of `tensor`: int64 [dtype, dims, size 0, ..., size dims-1, 0...].
at::Tensor tensor_message_header(const at::Tensor& tensor);
// The list header of `tensors` (at most kTensorListMaxTensors of them).
at::Tensor tensor_list_header(const std::vector<at::Tensor>& tensors);

// The Work of Communicator::irecv_tensor on the built-in backends: a message of
// isend_tensor or of isend_tensors, and which of the two it was.
class TensorListWork : public TensorWork {
 public:
  // Every tensor of the message, in the order sent: one for isend_tensor's. Only after
  // wait(). tensor() is the only one (a list of more or fewer raises strata::Error).
  virtual std::vector<at::Tensor> tensors() = 0;
  // Whether the message came from isend_tensors (a list, even of one tensor), so that the
  // receiver hands its code what the sender's code produced.
  virtual bool is_list() = 0;
};
// An uninitialized CPU tensor with the dtype and shape a header describes.
at::Tensor allocate_from_header(const at::Tensor& header);

// Starts sending `tensor` to `dst` (comm.isend_tensor: header, then data, unless the backend
// hands tensors over directly); the returned Works keep what they send alive until they
// complete.
std::vector<WorkPtr> isend_tensor(Communicator& comm, const at::Tensor& tensor, int dst, int tag);
// Several tensors of any dtypes and shapes as one message (a pipeline stage's outputs:
// hidden states and a mask), at most kTensorListMaxTensors: a list header, then each as
// the default isend_tensor sends it (header and data), all with `tag`; the in-process
// backend hands the tensors themselves over. The returned Works keep them alive.
std::vector<WorkPtr> isend_tensors(Communicator& comm, const std::vector<at::Tensor>& tensors,
                                   int dst, int tag);
// The tensors of a completed comm.irecv_tensor, and whether they came as a list
// (isend_tensors): from a TensorListWork, or the one tensor of another backend's Work.
std::vector<at::Tensor> received_tensors(TensorWork& work);
bool received_list(TensorWork& work);

// Receives a tensor sent by isend_tensor onto the CPU, blocking.
at::Tensor recv_tensor(Communicator& comm, int src, int tag);
// Root's `tensor` on every rank; the other ranks' argument is ignored.
at::Tensor broadcast_tensor(Communicator& comm, const at::Tensor& tensor, int root);

// Text (JSON, names) as a uint8 tensor and back.
at::Tensor string_to_tensor(const std::string& text);
std::string tensor_to_string(const at::Tensor& bytes);

}  // namespace strata::parallel
