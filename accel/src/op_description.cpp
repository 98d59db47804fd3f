#include "strata/accel/op_description.h"

#include "strata/core/checked_math.h"
#include "strata/core/error.h"

namespace strata::accel {

using I = core::CheckedInt;  // sizes from the user: their products may not fit in 64 bits

std::string to_string(OpKind kind) {
  switch (kind) {
    case OpKind::Gemm: return "gemm";
    case OpKind::Conv: return "conv";
    case OpKind::Attention: return "attention";
    case OpKind::Elementwise: return "elementwise";
    case OpKind::Reduction: return "reduction";
    case OpKind::Copy: return "copy";
    case OpKind::View: return "view";
    case OpKind::Unknown: return "unknown";
  }
  return "?";
}

void GemmShape::check() const {
  STRATA_CHECK(m > 0, "GEMM m: got ", m, ", expected a positive size");
  STRATA_CHECK(k > 0, "GEMM k: got ", k, ", expected a positive size");
  STRATA_CHECK(n > 0, "GEMM n: got ", n, ", expected a positive size");
  STRATA_CHECK(batch > 0, "GEMM batch: got ", batch, ", expected a positive count");
}

int64_t ConvShape::out_height() const {
  return ((I(height) + 2 * I(pad_h) - I(dilation_h) * (I(kernel_h) - 1) - 1) / stride_h + 1).get();
}

int64_t ConvShape::out_width() const {
  return ((I(width) + 2 * I(pad_w) - I(dilation_w) * (I(kernel_w) - 1) - 1) / stride_w + 1).get();
}

int64_t ConvShape::macs() const { return lowered().macs(); }

GemmShape ConvShape::lowered() const {
  return {(I(batch) * out_height() * out_width()).get(),
          (I(in_channels / groups) * kernel_h * kernel_w).get(), out_channels / groups, groups};
}

void ConvShape::check() const {
  const std::pair<const char*, int64_t> positive[] = {{"batch", batch},
                                                      {"in_channels", in_channels},
                                                      {"out_channels", out_channels},
                                                      {"height", height},
                                                      {"width", width},
                                                      {"kernel_h", kernel_h},
                                                      {"kernel_w", kernel_w},
                                                      {"stride_h", stride_h},
                                                      {"stride_w", stride_w},
                                                      {"dilation_h", dilation_h},
                                                      {"dilation_w", dilation_w},
                                                      {"groups", groups}};
  for (const auto& [name, v] : positive)
    STRATA_CHECK(v > 0, "conv ", name, ": got ", v, ", expected a positive size");
  STRATA_CHECK(pad_h >= 0 && pad_w >= 0, "conv padding: got ", pad_h, "x", pad_w,
               ", expected >= 0");
  STRATA_CHECK(in_channels % groups == 0 && out_channels % groups == 0, "conv groups ", groups,
               ": does not divide in_channels ", in_channels, " and out_channels ", out_channels);
  STRATA_CHECK(out_height() > 0 && out_width() > 0, "conv kernel ", kernel_h, "x", kernel_w,
               ": larger than the padded input ", (I(height) + 2 * I(pad_h)).get(), "x",
               (I(width) + 2 * I(pad_w)).get());
}

std::string to_string(AttentionMapping m) {
  switch (m) {
    case AttentionMapping::Unfused: return "unfused";
    case AttentionMapping::Flat: return "flat";
    case AttentionMapping::Fused: return "fused";
  }
  return "?";
}

AttentionMapping parse_attention_mapping(const std::string& text) {
  for (auto m : {AttentionMapping::Unfused, AttentionMapping::Flat, AttentionMapping::Fused})
    if (text == to_string(m)) return m;
  STRATA_FAIL("attention mapping '", text, "': expected unfused, flat or fused");
}

void AttentionShape::check() const {
  const std::pair<const char*, int64_t> positive[] = {{"batch", batch},
                                                      {"heads", heads},
                                                      {"seq_q", seq_q},
                                                      {"seq_kv", seq_kv},
                                                      {"head_dim", head_dim}};
  for (const auto& [name, v] : positive)
    STRATA_CHECK(v > 0, "attention ", name, ": got ", v, ", expected a positive size");
}

OpDescription OpDescription::gemm(std::string name, std::vector<GemmShape> gemms) {
  OpDescription d;
  d.kind = OpKind::Gemm;
  d.name = std::move(name);
  d.gemms = std::move(gemms);
  return d;
}

OpDescription OpDescription::convolution(std::string name, const ConvShape& conv) {
  OpDescription d;
  d.kind = OpKind::Conv;
  d.name = std::move(name);
  d.conv = conv;
  return d;
}

OpDescription OpDescription::attention_op(std::string name, const AttentionShape& a) {
  OpDescription d;
  d.kind = OpKind::Attention;
  d.name = std::move(name);
  d.attention = a;
  return d;
}

namespace {
OpDescription vector_op(OpKind kind, std::string name, int64_t elements, double ops_per_element,
                        int64_t bytes_in, int64_t bytes_out) {
  OpDescription d;
  d.kind = kind;
  d.name = std::move(name);
  d.elements = elements;
  d.ops_per_element = ops_per_element;
  d.bytes_in = bytes_in;
  d.bytes_out = bytes_out;
  return d;
}
}  // namespace

OpDescription OpDescription::elementwise(std::string name, int64_t elements, double ops_per_element,
                                         int64_t bytes_in, int64_t bytes_out) {
  return vector_op(OpKind::Elementwise, std::move(name), elements, ops_per_element, bytes_in,
                   bytes_out);
}

OpDescription OpDescription::reduction(std::string name, int64_t elements, double ops_per_element,
                                       int64_t bytes_in, int64_t bytes_out) {
  return vector_op(OpKind::Reduction, std::move(name), elements, ops_per_element, bytes_in,
                   bytes_out);
}

OpDescription OpDescription::copy(std::string name, int64_t bytes) {
  return vector_op(OpKind::Copy, std::move(name), 0, 0, bytes, bytes);
}

OpDescription OpDescription::view(std::string name) {
  OpDescription d;
  d.kind = OpKind::View;
  d.name = std::move(name);
  return d;
}

OpDescription OpDescription::unknown(std::string name, std::string note) {
  OpDescription d;
  d.kind = OpKind::Unknown;
  d.name = std::move(name);
  d.note = std::move(note);
  return d;
}

nlohmann::json OpDescription::to_json() const {
  nlohmann::json j = {{"kind", to_string(kind)}, {"name", name}};
  switch (kind) {
    case OpKind::Gemm: {
      nlohmann::json list = nlohmann::json::array();
      for (const auto& g : gemms)
        list.push_back({{"m", g.m}, {"k", g.k}, {"n", g.n}, {"batch", g.batch}});
      j["gemms"] = list;
      break;
    }
    case OpKind::Conv:
      j["conv"] = {{"batch", conv.batch},
                   {"in_channels", conv.in_channels},
                   {"out_channels", conv.out_channels},
                   {"height", conv.height},
                   {"width", conv.width},
                   {"kernel", {conv.kernel_h, conv.kernel_w}},
                   {"stride", {conv.stride_h, conv.stride_w}},
                   {"padding", {conv.pad_h, conv.pad_w}},
                   {"dilation", {conv.dilation_h, conv.dilation_w}},
                   {"groups", conv.groups}};
      break;
    case OpKind::Attention:
      j["attention"] = {
          {"batch", attention.batch},       {"heads", attention.heads},
          {"seq_q", attention.seq_q},       {"seq_kv", attention.seq_kv},
          {"head_dim", attention.head_dim}, {"mapping", to_string(attention.mapping)}};
      break;
    case OpKind::Elementwise:
    case OpKind::Reduction:
    case OpKind::Copy:
      j["elements"] = elements;
      j["ops_per_element"] = ops_per_element;
      j["bytes_in"] = bytes_in;
      j["bytes_out"] = bytes_out;
      break;
    default: break;
  }
  if (!note.empty()) j["note"] = note;
  return j;
}

}  // namespace strata::accel
