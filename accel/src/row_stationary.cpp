#include "strata/accel/row_stationary.h"

#include <algorithm>

#include "strata/accel/accelerator_template.h"
#include "strata/core/error.h"

namespace strata::accel {

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
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
  const int64_t R = spec_.rows, C = spec_.cols;
  const int64_t e_out = s.out_height(), f_out = s.out_width();
  const int64_t cin = s.in_channels / s.groups, cout = s.out_channels / s.groups;
  const int64_t kh_chunk = std::min(s.kernel_h, R), chunks = ceil_div(s.kernel_h, R);
  const int64_t e = std::min(e_out, C), strips = ceil_div(e_out, e);
  // PE sets of kh' x e: v stacked vertically on input channels (their partial sums add up
  // down the columns), h side by side on output channels (sharing the input rows).
  const int64_t v = std::min(R / kh_chunk, cin), h = std::min(C / e, cout);
  const int64_t channel_blocks = ceil_div(cin, v), out_blocks = ceil_div(cout, h);
  const int64_t passes = s.batch * strips * chunks * channel_blocks * out_blocks;

  OpCost c;
  c.macs = s.macs();
  c.compute_cycles = s.groups * passes * (s.kernel_w * f_out + kh_chunk * v - 1);

  // Input words one input channel of one image needs, over strips and filter chunks.
  const int64_t in_row_words = (f_out - 1) * s.stride_w + (s.kernel_w - 1) * s.dilation_w + 1;
  auto input_rows = [&](int64_t out_rows, int64_t filter_rows) {
    return (out_rows - 1) * s.stride_h + (filter_rows - 1) * s.dilation_h + 1;
  };
  int64_t in_words = 0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t rows_here = std::min(kh_chunk, s.kernel_h - chunk * kh_chunk);
    const int64_t last = e_out - (strips - 1) * e;
    in_words +=
        ((strips - 1) * input_rows(e, rows_here) + input_rows(last, rows_here)) * in_row_words;
  }
  const int64_t outputs = s.batch * s.out_channels * e_out * f_out;
  const int64_t filter_reads = s.groups * s.batch * cout * cin * s.kernel_h * s.kernel_w;
  const int64_t ifmap_reads = s.groups * s.batch * cin * in_words * out_blocks;
  const int64_t psum_writes = outputs * channel_blocks * chunks;
  const int64_t psum_reads = psum_writes - outputs;
  c.sram_reads = filter_reads + ifmap_reads + psum_reads;
  c.sram_writes = psum_writes;

  const int64_t ifmap_size = s.batch * s.in_channels * s.height * s.width;
  const int64_t filter_size = s.out_channels * cin * s.kernel_h * s.kernel_w;
  const int64_t ifmap_dram = ifmap_size <= spec_.ifmap_words() ? ifmap_size : ifmap_reads;
  const int64_t filter_dram = filter_size <= spec_.filter_words() ? filter_size : filter_reads;
  const bool psums_on_chip = psum_reads == 0 || outputs <= spec_.ofmap_words();
  c.dram_reads = ifmap_dram + filter_dram + (psums_on_chip ? 0 : psum_reads);
  c.dram_writes = psums_on_chip ? outputs : psum_writes;
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
