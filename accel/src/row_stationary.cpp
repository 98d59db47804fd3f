#include "strata/accel/row_stationary.h"

#include <algorithm>

#include "strata/accel/accelerator_template.h"
#include "strata/core/checked_math.h"
#include "strata/core/error.h"

namespace strata::accel {

namespace {
using I = core::CheckedInt;  // overflow: core::OverflowError, reported with the op
}  // namespace

RowStationary::RowStationary(AcceleratorSpec spec) : CostModel(std::move(spec)) {}

OpCost RowStationary::gemm(const GemmShape& shape) const {
  shape.check();
  ConvShape conv;
  conv.batch = 1;
  conv.in_channels = shape.k;
  conv.out_channels = shape.n;
  conv.height = 1;
  conv.width = shape.m;
  conv.kernel_h = conv.kernel_w = 1;
  return this->conv(conv).repeated(shape.batch);
}

OpCost RowStationary::conv(const ConvShape& s) const {
  s.check();
  const I R = spec_.rows, C = spec_.cols;
  const I e_out = s.out_height(), f_out = s.out_width();
  const I cin = s.in_channels / s.groups, cout = s.out_channels / s.groups;
  const I kernel_h = s.kernel_h, kernel_w = s.kernel_w, batch = s.batch, groups = s.groups;
  const I kh_chunk = std::min(kernel_h, R), chunks = ceil_div(kernel_h, R);
  const I e = std::min(e_out, C), strips = ceil_div(e_out, e);
  // PE sets of kh' x e: v stacked vertically on input channels (their partial sums add up
  // down the columns), h side by side on output channels (sharing the input rows).
  const I v = std::min(R / kh_chunk, cin), h = std::min(C / e, cout);
  const I channel_blocks = ceil_div(cin, v), out_blocks = ceil_div(cout, h);
  const I passes = batch * strips * chunks * channel_blocks * out_blocks;

  OpCost c;
  c.macs = s.macs();
  c.compute_cycles = (groups * passes * (kernel_w * f_out + kh_chunk * v - 1)).get();

  // Input words one input channel of one image needs, over strips and filter chunks.
  const I in_row_words = (f_out - 1) * s.stride_w + (kernel_w - 1) * s.dilation_w + 1;
  auto input_rows = [&](I out_rows, I filter_rows) {
    return (out_rows - 1) * s.stride_h + (filter_rows - 1) * s.dilation_h + 1;
  };
  I in_words = 0;
  for (I chunk = 0; chunk < chunks; chunk += 1) {
    const I rows_here = std::min(kh_chunk, kernel_h - chunk * kh_chunk);
    const I last = e_out - (strips - 1) * e;
    in_words +=
        ((strips - 1) * input_rows(e, rows_here) + input_rows(last, rows_here)) * in_row_words;
  }
  const I outputs = batch * s.out_channels * e_out * f_out;
  const I filter_reads = groups * batch * cout * cin * kernel_h * kernel_w;
  const I ifmap_reads = groups * batch * cin * in_words * out_blocks;
  const I psum_writes = outputs * channel_blocks * chunks;
  const I psum_reads = psum_writes - outputs;
  c.sram_reads = (filter_reads + ifmap_reads + psum_reads).get();
  c.sram_writes = psum_writes.get();

  const I ifmap_size = batch * s.in_channels * s.height * s.width;
  const I filter_size = I(s.out_channels) * cin * kernel_h * kernel_w;
  const I ifmap_dram = ifmap_size <= spec_.ifmap_words() ? ifmap_size : ifmap_reads;
  const I filter_dram = filter_size <= spec_.filter_words() ? filter_size : filter_reads;
  const bool psums_on_chip = psum_reads == 0 || outputs <= spec_.ofmap_words();
  c.dram_reads = (ifmap_dram + filter_dram + (psums_on_chip ? I(0) : psum_reads)).get();
  c.dram_writes = (psums_on_chip ? outputs : psum_writes).get();
  c.add_stalls(spec_);
  c.price(spec_.energy);
  return c;
}

namespace {
class RowStationaryTemplate : public PeArrayTemplate {
 public:
  std::string name() const override { return "row_stationary"; }
  std::string description() const override {
    return "Eyeriss-like row-stationary array of R x C PEs (convolutions by row primitives)";
  }
  std::unique_ptr<CostModel> cost_model(const AcceleratorSpec& spec) const override {
    return std::make_unique<RowStationary>(spec);
  }
};
}  // namespace

std::shared_ptr<const AcceleratorTemplate> row_stationary_template() {
  return std::make_shared<RowStationaryTemplate>();
}

}  // namespace strata::accel
