#pragma once
// Several tensors between pipeline stages: hidden states and an attention mask, or MoE
// auxiliary terms. A layer of a stage (an element of its torch::nn::Sequential) may take
// and return a StageIO instead of one tensor:
//
//   struct MaskedImpl : torch::nn::Module {
//     StageIO forward(const StageIO& in) { return {in[0] * in[1], in[1]}; }  // {h, mask}
//   };
//
// Each layer gets what the layer before it returned (a StageIO or one tensor), the first
// layer of a stage what the previous stage's last layer returned; the last stage must end
// in one tensor, the loss function's input. Tensors of any dtype and shape, changing from
// step to step, travel in one message (isend_tensors, comm/tensor_message.h); a floating
// tensor gets its gradient back, any other (a mask, token ids) none. With bf16 messages
// only fp32 tensors are cast. Plain single-tensor stages are unchanged. See
// docs/pipeline.md, "Several tensors between stages".

#include <ATen/core/Tensor.h>

#include <vector>

namespace strata::parallel {

using StageIO = std::vector<at::Tensor>;

namespace pipeline_detail {

// A value between layers or stages as the executor holds it: one tensor (list false), or
// a StageIO, even of one tensor, so that the receiving layer gets what it takes.
struct StageValue {
  std::vector<at::Tensor> tensors;
  bool list = false;
};

}  // namespace pipeline_detail
}  // namespace strata::parallel
