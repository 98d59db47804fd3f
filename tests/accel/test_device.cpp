// The simulated device: results equal the CPU's bit for bit (forward, backward, SGD
// steps), views alias, copies are reported once as transfers, the recorder sees the ops
// with their shapes and layers.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <sstream>

#include "strata/accel/device.h"
#include "strata/accel/device_allocator.h"
#include "strata/accel/op_recorder.h"
#include "strata/accel/to_device.h"
#include "strata/core/error.h"

namespace strata::accel {
namespace {

// Linear, Conv2d, BatchNorm2d, LayerNorm, softmax attention, max and average pooling,
// dropout.
struct TestNetImpl : torch::nn::Module {
  TestNetImpl()
      : conv1(torch::nn::Conv2dOptions(3, 8, 3).padding(1)),
        bn(8),
        conv2(torch::nn::Conv2dOptions(8, 16, 3).padding(1)),
        pool1(2),
        pool2(2),
        proj(16, 32),
        ln(torch::nn::LayerNormOptions({32})),
        attn(32, 4),
        drop(0.25),
        head(32, 5) {
    register_module("conv1", conv1);
    register_module("bn", bn);
    register_module("conv2", conv2);
    register_module("pool1", pool1);
    register_module("pool2", pool2);
    register_module("proj", proj);
    register_module("ln", ln);
    register_module("attn", attn);
    register_module("drop", drop);
    register_module("head", head);
  }
  torch::Tensor forward(torch::Tensor x) {
    x = pool1(torch::relu(bn(conv1(x))));        // [B, 8, 4, 4]
    x = pool2(torch::relu(conv2(x)));            // [B, 16, 2, 2]
    x = ln(proj(x.flatten(2).transpose(1, 2)));  // [B, 4, 32]
    x = x.transpose(0, 1);                       // [4, B, 32]
    x = drop(std::get<0>(attn(x, x, x)));
    return head(x.mean(0));  // [B, 5]
  }
  torch::nn::Conv2d conv1;
  torch::nn::BatchNorm2d bn;
  torch::nn::Conv2d conv2;
  torch::nn::MaxPool2d pool1;
  torch::nn::AvgPool2d pool2;
  torch::nn::Linear proj;
  torch::nn::LayerNorm ln;
  torch::nn::MultiheadAttention attn;
  torch::nn::Dropout drop;
  torch::nn::Linear head;
};
TORCH_MODULE(TestNet);

TestNet make_net() {
  torch::manual_seed(7);
  return TestNet();
}

at::Tensor on_cpu(const at::Tensor& t) { return t.to(torch::kCPU); }

void expect_same_parameters(TestNet& cpu, TestNet& dev, bool grads) {
  auto a = cpu->named_parameters(), b = dev->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].key());
    ASSERT_EQ(b[i].value().device(), device(0));
    EXPECT_TRUE(torch::equal(a[i].value(), on_cpu(b[i].value())));
    if (!grads) continue;
    ASSERT_TRUE(b[i].value().grad().defined());
    EXPECT_EQ(b[i].value().grad().device(), device(0));
    EXPECT_TRUE(torch::equal(a[i].value().grad(), on_cpu(b[i].value().grad())));
  }
  auto ab = cpu->named_buffers(), bb = dev->named_buffers();
  ASSERT_EQ(ab.size(), bb.size());
  for (size_t i = 0; i < ab.size(); ++i) {
    SCOPED_TRACE(ab[i].key());
    EXPECT_TRUE(torch::equal(ab[i].value(), on_cpu(bb[i].value())));
  }
}

TEST(AccelDevice, TensorsReportTheirDevice) {
  const auto d = device(3);
  EXPECT_EQ(d.type(), c10::DeviceType::PrivateUse1);
  EXPECT_EQ(d.index(), 3);
  auto x = torch::arange(12, torch::kFloat).to(d);
  EXPECT_EQ(x.device(), d);
  auto y = x * 2 + 1;
  EXPECT_EQ(y.device(), d);
  EXPECT_TRUE(torch::equal(on_cpu(y), torch::arange(12, torch::kFloat) * 2 + 1));
  auto z = torch::zeros({2, 3}, torch::TensorOptions().device(device(2)));
  EXPECT_EQ(z.device(), device(2));
  EXPECT_EQ(z.sum().item<float>(), 0.0f);
  EXPECT_THROW(device(device_count()), strata::Error);
  EXPECT_THROW(device(-1), strata::Error);
}

TEST(AccelDevice, ViewsAliasTheirBase) {
  auto x = torch::zeros({4, 6}).to(device(0));
  x.view({24})[5].fill_(1);           // view, select
  x.t()[2][1].fill_(2);               // transpose: x[1][2]
  x[3].narrow(0, 1, 2).fill_(3);      // x[3][1..2]
  x.reshape({2, 12})[1][0].fill_(4);  // reshape of a contiguous tensor is a view: x[2][0]
  auto expected = torch::zeros({4, 6});
  expected[0][5] = 1;
  expected[1][2] = 2;
  expected[3][1] = 3;
  expected[3][2] = 3;
  expected[2][0] = 4;
  EXPECT_TRUE(torch::equal(on_cpu(x), expected));
  auto v = x.view({24});
  EXPECT_EQ(v.data_ptr(), x.data_ptr());
  EXPECT_EQ(v.device(), x.device());
  // In-place ops through the fallback write into the same memory.
  x.add_(1);
  EXPECT_EQ(v[0].item<float>(), 1.0f);
}

TEST(AccelDevice, CopiesAreReportedOnceAsTransfers) {
  auto rec = std::make_shared<CountingRecorder>();
  RecorderScope scope(rec);
  auto cpu = torch::randn({5, 7});
  auto a = cpu.to(device(0));
  auto b = a.to(device(1));
  auto c = b.to(torch::kCPU);
  auto d = b.to(device(1), torch::kDouble);  // same device: an op, not a transfer
  EXPECT_EQ(a.device(), device(0));
  EXPECT_EQ(b.device(), device(1));
  EXPECT_EQ(c.device(), torch::Device(torch::kCPU));
  EXPECT_TRUE(torch::equal(c, cpu));
  const auto t = rec->transfers();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].src_device, -1);
  EXPECT_EQ(t[0].dst_device, 0);
  EXPECT_EQ(t[1].src_device, 0);
  EXPECT_EQ(t[1].dst_device, 1);
  EXPECT_EQ(t[2].src_device, 1);
  EXPECT_EQ(t[2].dst_device, -1);
  for (const auto& x : t) EXPECT_EQ(x.bytes, 5 * 7 * 4);
  EXPECT_EQ(rec->count("aten::copy_"), 1);
  EXPECT_EQ(b[1][2].item<float>(), cpu[1][2].item<float>());  // one element read back
  ASSERT_EQ(rec->transfers().size(), 4u);
  EXPECT_EQ(rec->transfers()[3].src_device, 1);
  EXPECT_EQ(rec->transfers()[3].dst_device, -1);
  EXPECT_EQ(rec->transfers()[3].bytes, 4);
  EXPECT_EQ(rec->count("aten::_local_scalar_dense"), 0);
  EXPECT_TRUE(torch::equal(on_cpu(d), cpu.to(torch::kDouble)));
}

TEST(AccelDevice, FallbackHandlesListsTuplesScalarsAndOutArguments) {
  const auto dev = device(0);
  auto x = torch::randn({4, 5});
  auto xd = x.to(dev);
  EXPECT_TRUE(torch::equal(on_cpu(torch::cat({xd, xd * 2}, 1)), torch::cat({x, x * 2}, 1)));
  auto [values, indices] = torch::max(xd, 1);
  auto [cv, ci] = torch::max(x, 1);
  EXPECT_EQ(indices.device(), dev);
  EXPECT_TRUE(torch::equal(on_cpu(values), cv));
  EXPECT_TRUE(torch::equal(on_cpu(indices), ci));
  auto parts = torch::split(xd, 2, 0);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1].data_ptr(), xd[2].data_ptr());
  EXPECT_EQ(xd.sum().item<float>(), x.sum().item<float>());
  auto idx = torch::tensor({3, 0}, torch::kLong);
  EXPECT_TRUE(torch::equal(on_cpu(xd.index({idx.to(dev)})), x.index({idx})));
  // out= with an output of the wrong size: the kernel resizes it on the device.
  auto out = torch::empty({0}, torch::TensorOptions().device(dev));
  torch::mm_out(out, xd, xd.t());
  EXPECT_EQ(out.device(), dev);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{4, 4}));
  EXPECT_TRUE(torch::equal(on_cpu(out), torch::mm(x, x.t())));
  // resize_ and set_ on the device.
  auto r = torch::ones({2}, torch::TensorOptions().device(dev));
  r.resize_({3, 3});
  EXPECT_EQ(r.device(), dev);
  EXPECT_EQ(r.numel(), 9);
  auto s = torch::empty({0}, torch::TensorOptions().device(dev));
  s.set_(xd.storage(), 5, {5}, {1});
  EXPECT_TRUE(torch::equal(on_cpu(s), x[1]));
  auto whole = torch::empty({0}, torch::TensorOptions().device(dev));
  whole.set_(xd.storage());
  EXPECT_EQ(whole.numel(), 20);
  EXPECT_EQ(whole.data_ptr(), xd.data_ptr());
  auto resized = torch::empty({1}, torch::TensorOptions().device(dev));
  at::_copy_from_and_resize(x, resized);
  EXPECT_TRUE(torch::equal(on_cpu(resized), x));
}

TEST(AccelDevice, CommonTensorOperations) {
  const auto dev = device(0);
  torch::manual_seed(1);
  const auto cpu_r = torch::randn({3, 4});
  torch::manual_seed(1);
  const auto dev_r = torch::randn({3, 4}, torch::TensorOptions().device(dev));
  EXPECT_EQ(dev_r.device(), dev);
  EXPECT_TRUE(torch::equal(cpu_r, on_cpu(dev_r)));  // same generator, same numbers
  // Non-contiguous sources and destinations, clone, contiguous, empty tensors.
  const auto nhwc = torch::randn({2, 3, 4, 5}).contiguous(torch::MemoryFormat::ChannelsLast);
  const auto moved = nhwc.to(dev);
  EXPECT_TRUE(torch::equal(on_cpu(moved), nhwc));
  EXPECT_TRUE(torch::equal(on_cpu(moved.permute({0, 2, 3, 1}).contiguous()),
                           nhwc.permute({0, 2, 3, 1}).contiguous()));
  auto c = moved.clone();
  EXPECT_NE(c.data_ptr(), moved.data_ptr());
  EXPECT_EQ(torch::zeros({0, 3}, torch::TensorOptions().device(dev)).sum(0).numel(), 3);
  // Inference mode and no-grad.
  {
    torch::InferenceMode guard;
    auto y = torch::relu(moved) * 2;
    EXPECT_EQ(y.device(), dev);
    EXPECT_TRUE(torch::equal(on_cpu(y), torch::relu(nhwc) * 2));
  }
  // Autograd through in-place ops on views.
  auto leaf = torch::ones({4}, torch::TensorOptions().device(dev).requires_grad(true));
  auto w = leaf * 3;
  w.narrow(0, 1, 2).mul_(2);
  w.sum().backward();
  EXPECT_TRUE(torch::equal(on_cpu(leaf.grad()), torch::tensor({3.f, 6.f, 6.f, 3.f})));
  std::ostringstream printed;
  printed << dev_r;
  EXPECT_NE(printed.str().find("PrivateUse1"), std::string::npos) << printed.str();
  // Tensors on two devices in one op: an error, as on a real accelerator.
  EXPECT_THROW(dev_r + dev_r.to(device(1)), c10::Error);
}

TEST(AccelDevice, MemoryStatsFollowAllocations) {
  const auto before = memory_stats(4).allocated_bytes;
  {
    auto t = torch::empty({1000}, torch::TensorOptions().device(device(4)));
    EXPECT_EQ(memory_stats(4).allocated_bytes, before + 4000);
    auto u = t + 1;  // a CPU result adopted by the device counts too
    EXPECT_EQ(memory_stats(4).allocated_bytes, before + 8000);
    EXPECT_GE(memory_stats(4).peak_bytes, before + 8000);
  }
  EXPECT_EQ(memory_stats(4).allocated_bytes, before);
}

TEST(AccelDevice, ModelTrainsBitExactlyAsOnCpu) {
  TestNet cpu = make_net(), dev = make_net();
  const auto handles = dev->parameters();  // taken before the move
  const at::Tensor weight_field = dev->conv1->weight;
  to_device(dev, device(0));
  for (auto& p : dev->parameters()) EXPECT_TRUE(p.requires_grad());
  // The same TensorImpls, now on the device: what an optimizer or a module field holds.
  for (size_t i = 0; i < handles.size(); ++i) {
    EXPECT_EQ(handles[i].unsafeGetTensorImpl(), dev->parameters()[i].unsafeGetTensorImpl());
    EXPECT_EQ(handles[i].device(), device(0));
  }
  EXPECT_EQ(weight_field.device(), device(0));
  expect_same_parameters(cpu, dev, false);
  // Optimizers made after moving (their state lives where the parameters are).
  torch::optim::SGD cpu_opt(cpu->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  torch::optim::SGD dev_opt(dev->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  torch::manual_seed(11);
  const auto x = torch::randn({6, 3, 8, 8});
  const auto y = torch::randint(0, 5, {6});
  const auto xd = x.to(device(0)), yd = y.to(device(0));
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE(step);
    cpu_opt.zero_grad();
    dev_opt.zero_grad();
    torch::manual_seed(100 + step);  // the same dropout masks
    auto out_cpu = cpu->forward(x);
    auto loss_cpu = torch::nn::functional::cross_entropy(out_cpu, y);
    torch::manual_seed(100 + step);
    auto out_dev = dev->forward(xd);
    auto loss_dev = torch::nn::functional::cross_entropy(out_dev, yd);
    ASSERT_EQ(out_dev.device(), device(0));
    EXPECT_TRUE(torch::equal(out_cpu, on_cpu(out_dev)));
    EXPECT_TRUE(torch::equal(loss_cpu, on_cpu(loss_dev)));
    loss_cpu.backward();
    loss_dev.backward();
    expect_same_parameters(cpu, dev, true);
    cpu_opt.step();
    dev_opt.step();
    expect_same_parameters(cpu, dev, true);
  }
  // And back to the CPU.
  to_device(dev, torch::Device(torch::kCPU));
  for (auto& p : dev->parameters()) EXPECT_TRUE(p.device().is_cpu());
  torch::manual_seed(5);
  auto a = cpu->forward(x);
  torch::manual_seed(5);
  auto b = dev->forward(x);
  EXPECT_TRUE(torch::equal(a, b));
}

TEST(AccelDevice, ToDeviceMovesGradientsAndUsesTheAutogradKeyOfTheDevice) {
  torch::manual_seed(2);
  std::shared_ptr<torch::nn::Module> lin = std::make_shared<torch::nn::LinearImpl>(3, 2);
  torch::nn::LinearImpl& impl = dynamic_cast<torch::nn::LinearImpl&>(*lin);
  impl.forward(torch::randn({4, 3})).sum().backward();
  const auto grad = impl.weight.grad().clone();
  EXPECT_THROW(to_device(lin, c10::Device(c10::DeviceType::PrivateUse1, device_count())),
               strata::Error);
  EXPECT_TRUE(impl.weight.device().is_cpu());
  to_device(lin, device(2));  // the shared_ptr overload
  EXPECT_EQ(impl.weight.device(), device(2));
  ASSERT_EQ(impl.weight.grad().device(), device(2));
  EXPECT_TRUE(torch::equal(on_cpu(impl.weight.grad()), grad));
  EXPECT_TRUE(impl.weight.requires_grad());
  EXPECT_TRUE(impl.weight.key_set().has(c10::DispatchKey::AutogradPrivateUse1));
  EXPECT_FALSE(impl.weight.key_set().has(c10::DispatchKey::AutogradCPU));
  EXPECT_EQ(storage_layer(impl.weight.storage()), "");
  // A second backward accumulates into the moved gradient, on the device.
  impl.forward(torch::randn({4, 3}).to(device(2))).sum().backward();
  EXPECT_EQ(impl.weight.grad().device(), device(2));
  to_device(lin, torch::Device(torch::kCPU));
  EXPECT_TRUE(impl.weight.device().is_cpu());
  EXPECT_TRUE(impl.weight.grad().device().is_cpu());
  EXPECT_TRUE(impl.weight.key_set().has(c10::DispatchKey::AutogradCPU));
}

TEST(AccelDevice, RecorderSeesOpsShapesAndLayers) {
  TestNet net = make_net();
  to_device(net, device(0));
  auto rec = std::make_shared<CountingRecorder>();
  const auto x = torch::randn({2, 3, 8, 8}).to(device(0));
  {
    RecorderScope scope(rec);
    auto loss = net->forward(x).sum();
    loss.backward();
  }
  const auto ops = rec->ops();
  auto find = [&](const std::string& name, const std::string& layer) {
    return std::find_if(ops.begin(), ops.end(),
                        [&](const DeviceOp& op) { return op.name == name && op.layer == layer; });
  };
  auto conv = find("aten::convolution", "conv1");
  ASSERT_NE(conv, ops.end());
  EXPECT_EQ(conv->device, 0);
  EXPECT_EQ(conv->element_size, 4);
  EXPECT_EQ(conv->input_sizes,
            (std::vector<std::vector<int64_t>>{{2, 3, 8, 8}, {8, 3, 3, 3}, {8}}));
  EXPECT_EQ(conv->output_sizes, (std::vector<std::vector<int64_t>>{{2, 8, 8, 8}}));
  EXPECT_EQ(conv->int_args,
            (std::vector<std::vector<int64_t>>{{1, 1}, {1, 1}, {1, 1}, {0, 0}, {1}}));
  EXPECT_NE(find("aten::convolution", "conv2"), ops.end());
  EXPECT_NE(find("aten::convolution_backward", "conv1"), ops.end());
  auto head = find("aten::addmm", "head");
  ASSERT_NE(head, ops.end());
  EXPECT_EQ(head->input_sizes, (std::vector<std::vector<int64_t>>{{5}, {2, 32}, {32, 5}}));
  EXPECT_EQ(head->output_sizes, (std::vector<std::vector<int64_t>>{{2, 5}}));
  EXPECT_TRUE(head->int_args.empty());  // beta and alpha are Scalars, not ints
  auto pool = find("aten::max_pool2d_with_indices", "bn");
  ASSERT_NE(pool, ops.end());
  // kernel_size, stride, padding, dilation (ceil_mode is a bool: left out).
  EXPECT_EQ(pool->int_args, (std::vector<std::vector<int64_t>>{{2, 2}, {2, 2}, {0, 0}, {1, 1}}));
  auto softmax = find("aten::_softmax", "attn");
  ASSERT_NE(softmax, ops.end());
  EXPECT_EQ(softmax->int_args, (std::vector<std::vector<int64_t>>{{-1}}));
  EXPECT_NE(find("aten::native_batch_norm", "bn"), ops.end());
  EXPECT_NE(find("aten::native_layer_norm", "ln"), ops.end());
  // relu reads no parameter: it gets the layer of the op before it (bn).
  EXPECT_NE(find("aten::relu", "bn"), ops.end());
  // Backward ops (on the autograd engine's thread) get the layer of their forward op.
  EXPECT_NE(find("aten::threshold_backward", "bn"), ops.end());
  EXPECT_NE(find("aten::threshold_backward", "conv2"), ops.end());
  EXPECT_NE(find("aten::max_pool2d_with_indices_backward", "bn"), ops.end());
  EXPECT_NE(find("aten::native_layer_norm_backward", "ln"), ops.end());
  EXPECT_NE(find("aten::_softmax_backward_data", "attn"), ops.end());
  EXPECT_EQ(
      std::count_if(ops.begin(), ops.end(),
                    [](const DeviceOp& op) { return op.name == "aten::mm" && op.layer == "head"; }),
      2);  // the input and weight gradients of head
  EXPECT_GE(rec->count("aten::mm") + rec->count("aten::bmm") + rec->count("aten::addmm"), 3);
  EXPECT_GE(rec->count("aten::_softmax"), 1);
  // Views and allocations are not ops.
  EXPECT_EQ(rec->count("aten::view"), 0);
  EXPECT_EQ(rec->count("aten::empty"), 0);
  EXPECT_EQ(rec->count("aten::as_strided"), 0);

  // A LayerScope overrides the attribution.
  rec->clear();
  {
    RecorderScope scope(rec);
    LayerScope layer("custom");
    net->forward(x).sum().backward();  // backward too: its ops follow their forward ops
  }
  for (const auto& op : rec->ops()) EXPECT_EQ(op.layer, "custom") << op.name;
  EXPECT_GT(rec->ops().size(), 10u);
}

TEST(AccelDevice, GradientsFlowAcrossDevicesWithOneTransferEachWay) {
  torch::manual_seed(3);
  torch::nn::Linear a(6, 4), b(4, 3);
  torch::manual_seed(3);
  torch::nn::Linear ca(6, 4), cb(4, 3);
  to_device(a, device(0));
  to_device(b, device(1));
  const auto x = torch::randn({5, 6});
  auto rec = std::make_shared<CountingRecorder>();
  at::Tensor loss;
  {
    RecorderScope scope(rec);
    auto h = a->forward(x.to(device(0)));
    loss = b->forward(h.to(device(1))).pow(2).sum();
    loss.backward();
  }
  auto cpu_loss = cb->forward(ca->forward(x)).pow(2).sum();
  cpu_loss.backward();
  EXPECT_TRUE(torch::equal(cpu_loss, on_cpu(loss)));
  EXPECT_EQ(a->weight.grad().device(), device(0));
  EXPECT_EQ(b->weight.grad().device(), device(1));
  EXPECT_TRUE(torch::equal(ca->weight.grad(), on_cpu(a->weight.grad())));
  EXPECT_TRUE(torch::equal(cb->weight.grad(), on_cpu(b->weight.grad())));
  const auto t = rec->transfers();
  ASSERT_EQ(t.size(), 3u);  // x to device 0, h to device 1, h's gradient back to 0
  EXPECT_EQ(t[0].src_device, -1);
  EXPECT_EQ(t[1].src_device, 0);
  EXPECT_EQ(t[1].dst_device, 1);
  EXPECT_EQ(t[2].src_device, 1);
  EXPECT_EQ(t[2].dst_device, 0);
  EXPECT_EQ(t[2].bytes, 5 * 4 * 4);
  int ops_on[2] = {0, 0};
  for (const auto& op : rec->ops()) ++ops_on[op.device];
  EXPECT_GE(ops_on[0], 2);  // addmm forward, mm backward
  EXPECT_GE(ops_on[1], 2);
}

TEST(AccelDevice, NoRecorderNoReports) {
  auto rec = std::make_shared<CountingRecorder>();
  { RecorderScope scope(rec); }
  auto x = torch::randn({3}).to(device(0));
  (x + 1).to(torch::kCPU);
  EXPECT_TRUE(rec->ops().empty());
  EXPECT_TRUE(rec->transfers().empty());
  EXPECT_EQ(op_recorder(), nullptr);
}

}  // namespace
}  // namespace strata::accel
