#pragma once
// Tensors of any dtype and shape between ranks when the receiver does not know them in
// advance: a small header (dtype, number of dims, sizes) goes first, then the data, both
// with the same tag (messages with one source, destination and tag arrive in order). This
// is Communicator::isend_tensor's and irecv_tensor's default; the in-process backend hands
// the tensor itself over instead.

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "strata/parallel/comm/communicator.h"

namespace strata::parallel {

// Tensors with more dims than this cannot travel with a header.
inline constexpr int64_t kTensorMessageMaxDims = 8;
inline constexpr int64_t kTensorMessageHeaderLength = 2 + kTensorMessageMaxDims;

// The header of `tensor`: int64 [dtype, dims, size 0, ..., size dims-1, 0...].
at::Tensor tensor_message_header(const at::Tensor& tensor);
// An uninitialized CPU tensor with the dtype and shape a header describes.
at::Tensor allocate_from_header(const at::Tensor& header);

// Starts sending `tensor` to `dst` (comm.isend_tensor: header, then data, unless the backend
// hands tensors over directly); the returned Works keep what they send alive until they
// complete.
std::vector<WorkPtr> isend_tensor(Communicator& comm, const at::Tensor& tensor, int dst, int tag);
// Receives a tensor sent by isend_tensor onto the CPU, blocking.
at::Tensor recv_tensor(Communicator& comm, int src, int tag);
// Root's `tensor` on every rank; the other ranks' argument is ignored.
at::Tensor broadcast_tensor(Communicator& comm, const at::Tensor& tensor, int root);

// Text (JSON, names) as a uint8 tensor and back.
at::Tensor string_to_tensor(const std::string& text);
std::string tensor_to_string(const at::Tensor& bytes);

}  // namespace strata::parallel
