// backends/gpu_emu/emu_library.cpp — the emulated target's routes of the GPU executor (declared in
// backends/gpu/gpu_executable.h). The executor plans every node as on CUDA (cuda_decisions's
// routes, half ones included, descriptors, GEMM calls, arena layout); where CUDA would call cuDNN
// or cuBLAS, this checks what that call would be given — a convolution's descriptors against
// cuDNN's output-size rule and its element type against the values' dtypes, each GEMM's types,
// dimensions and leading dimensions against its operands, the optimizer's hyperparameters read
// from the device copy compile made — and then runs the node: f32 nodes and convolutions by their
// native kernel (the simt build, warp 32; a half convolution's f32 accumulation and one rounding
// are cuDNN's PSEUDO_*_CONFIG's), a half linear node by its calls as CUDA makes them (GemmEx
// emulated with f32 accumulation into a half C or the f32 staging region, then the
// round_to_half and channel_sum_f32 epilogues: emu_half_library.h), each as a launch queued on
// the emulated stream. Every launch declares the device bytes it reads and writes, so the
// emulation checks the kernels' ordering, not only the copies'. With PARITY_EMU_LIBRARY_LOG=FILE
// every library call is appended to FILE as one line (tests/test_gpu_emu.cpp counts them);
// PARITY_EMU_MISDESCRIBE=gemm_ex|conv swaps the half type of the first GemmEx operand B or of a
// convolution's descriptors, which the checks must catch.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "backends/gpu/gpu_executable.h"
#include "backends/gpu/native_routes.h"
#include "backends/gpu_emu/emu_half_library.h"
#include "backends/simt/simt_kernels.h"

namespace parity {
namespace gpu {

const native::NativeOps& native_ops() { return native::simt_w32::native_ops(); }

// Half nodes are planned as on CUDA; their library calls are checked and emulated here.
extern const bool kHalfOnLibraryRoutes = true;

}  // namespace gpu
}  // namespace parity

namespace {

// How a queued launch reaches the values: the addresses taken when it was queued (a launch's
// arguments are fixed when it is queued, and a captured graph replays them), no host copies (the
// run-time data were checked on the host before anything was queued).
struct QueuedMemory {
  std::vector<void*> pointers;  // per value, or nullptr when the node does not use it
  void* workspace_bytes = nullptr;
  float* f32(int32_t value) { return static_cast<float*>(pointers[static_cast<size_t>(value)]); }
  int32_t* i32(int32_t value) { return static_cast<int32_t*>(pointers[static_cast<size_t>(value)]); }
  const int32_t* host_i32(int32_t) { return nullptr; }
  float* workspace() { return static_cast<float*>(workspace_bytes); }
  [[noreturn]] void fail(parity_status status, const std::string& message) { parity::gpu::fail(status, message); }
};

// Queues `node` on the compute stream as one launch running its native kernels. `hyperparameters`:
// the device copy of an optimizer's parameters, read into the node when the launch runs, as
// CUDA's optimizer kernels read them on the device.
void queue_native(parity_executable_object& exe, const parity_node_desc& node, const void* hyperparameters = nullptr) {
  std::vector<parity::emu::DeviceRange> reads, writes;
  auto memory = std::make_shared<QueuedMemory>();
  memory->pointers.assign(exe.values.size(), nullptr);
  // The operands' addresses in the slot being launched, as the executor's own dispatcher memory
  // (what CUDA and HIP launch with) resolves them now.
  auto operand = [&](bool output, int32_t i, std::vector<parity::emu::DeviceRange>& ranges) {
    const int32_t value = output ? node.outputs[i] : node.inputs[i];
    void* at = exe.operand(node, output, i);
    memory->pointers[static_cast<size_t>(value)] = at;
    ranges.push_back({at, static_cast<size_t>(exe.values[static_cast<size_t>(value)].bytes)});
  };
  for (int32_t i = 0; i < node.num_inputs; ++i) operand(false, i, reads);
  for (int32_t i = 0; i < node.num_outputs; ++i) operand(true, i, writes);
  const int64_t workspace_bytes = exe.layout.cublas_workspace_offset - exe.layout.native_workspace_offset;
  if (workspace_bytes > 0) {  // the native workspace: [its offset, the cuBLAS workspace's)
    memory->workspace_bytes = exe.memory.workspace();
    writes.push_back({memory->workspace_bytes, static_cast<size_t>(workspace_bytes)});
  }
  if (hyperparameters) reads.push_back({hyperparameters, sizeof(parity_op_params)});
  const std::vector<parity_value_desc>* values = &exe.values;
  parity::gpu::rt::device().launch(
      exe.instance->stream, node.name, std::move(reads), std::move(writes), [memory, node, values, hyperparameters] {
        parity_node_desc run = node;
        if (hyperparameters) std::memcpy(&run.params, hyperparameters, sizeof run.params);
        parity::native::NodeDispatcher<QueuedMemory> dispatcher(parity::gpu::kName, parity::native::op_name,
                                                               parity::gpu::native_ops(), *values, *memory);
        dispatcher.run(run);
      });
}

// Appends one line to the file PARITY_EMU_LIBRARY_LOG names, if set.
void log_call(const std::string& line) {
  const char* path = std::getenv("PARITY_EMU_LIBRARY_LOG");
  if (!path || !*path) return;
  if (std::FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%s\n", line.c_str());
    std::fclose(f);
  }
}

// Whether PARITY_EMU_MISDESCRIBE names `what` (the checks' own test: a wrong descriptor on purpose).
bool misdescribe(const char* what) {
  const char* v = std::getenv("PARITY_EMU_MISDESCRIBE");
  return v && std::strcmp(v, what) == 0;
}
plan::ElementType other_half(plan::ElementType t) {
  return t == plan::ElementType::bf16 ? plan::ElementType::f16 : plan::ElementType::bf16;
}

plan::ElementType element_of(const parity_executable_object& exe, int32_t value, const parity_node_desc& node) {
  const parity_value_desc& v = exe.values[static_cast<size_t>(value)];
  return plan::element_type_of(v.dtype, msg("gpu_emu: node '", node.name, "': value '", value_name(v), "'"));
}

}  // namespace

// The descriptors' element type must be x's, w's and y's dtype (cuDNN reads the operands as its
// tensor and filter descriptors say); a half CONV2D with a bias is never given to cuDNN, which
// would round before the f32 bias (cuda_decisions::route_of), and a half backward filter's db is
// summed in f32 (channel_sum_f32). Then the native kernels, which accumulate in f32 and round a
// half output once, as PSEUDO_HALF_CONFIG / PSEUDO_BFLOAT16_CONFIG do.
void parity_executable_object::enqueue_convolution(const Step& step, const parity_node_desc& node) {
  if (!step.conv) fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "' has no descriptors"));
  const bool bwd_data = node.op == PARITY_OP_CONV2D_BWD_DATA, bwd_weight = node.op == PARITY_OP_CONV2D_BWD_WEIGHT;
  const int32_t x = bwd_data ? node.outputs[0] : node.inputs[0];
  const int32_t w = bwd_weight ? node.outputs[0] : node.inputs[1];
  const int32_t y = node.op == PARITY_OP_CONV2D ? node.outputs[0] : node.inputs[bwd_data ? 0 : 1];
  const plan::ElementType described =
      misdescribe("conv") ? other_half(step.conv->shape.element) : step.conv->shape.element;
  const std::pair<const char*, int32_t> operands[] = {{"x", x}, {"w", w}, {"y", y}};
  for (const auto& [role, value] : operands)
    if (element_of(*this, value, node) != described)
      fail(PARITY_STATUS_INTERNAL,
           msg(parity::gpu::kName, ": node '", node.name, "': cuDNN's ", role, " descriptor is ",
               plan::element_type_name(described), " (", parity::emu_library::conv_config(described), ") but '",
               value_name(values[static_cast<size_t>(value)]), "' holds ",
               plan::element_type_name(element_of(*this, value, node)), " values"));
  const bool half = described != plan::ElementType::f32;
  const bool has_db = bwd_weight && node.num_outputs == 2;
  if (half && node.op == PARITY_OP_CONV2D && node.num_inputs == 3)
    fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name,
                                     "': a half convolution with an f32 bias on cuDNN (it must take the native route)"));
  if (step.conv->shape.db_by_channel_sum != (half && has_db))
    fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "': db is ",
                                     step.conv->shape.db_by_channel_sum ? "" : "not ",
                                     "planned as an f32 channel sum of ", plan::element_type_name(described), " dy"));
  const char* call = node.op == PARITY_OP_CONV2D ? "cudnnConvolutionForward"
                     : bwd_data                  ? "cudnnConvolutionBackwardData"
                                                 : "cudnnConvolutionBackwardFilter";
  const char* name = plan::element_type_name(described);
  log_call(msg(call, " x ", name, " w ", name, " y ", name, " compute f32 ",
               parity::emu_library::conv_config(described), " node '", node.name, "'"));
  if (has_db)
    log_call(msg(half ? "channel_sum_f32 dy " : "cudnnConvolutionBackwardBias dy ", name, " db f32 node '", node.name,
                 "'"));
  queue_native(*this, node);
}

void parity_executable_object::enqueue_pooling(const Step& step, const parity_node_desc& node) {
  if (!step.pool) fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "' has no descriptors"));
  queue_native(*this, node);
}

void parity_executable_object::enqueue_activation(const Step& step, const parity_node_desc& node) {
  const int64_t n = numel_of(values[static_cast<size_t>(node.inputs[0])]);
  if (!step.flat || step.flat->count != n)
    fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "': the activation descriptor's count ",
                                     step.flat ? step.flat->count : 0, " is not the input's ", n));
  queue_native(*this, node);
}

// The descriptors' geometry must be the node's, as cuDNN would read it; then the native kernels.
void parity_executable_object::enqueue_batchnorm(const Step& step, const parity_node_desc& node) {
  const plan::Nchw d = step.batchnorm ? step.batchnorm->shape.x : plan::Nchw{0, 0, 0, 0};
  if (int64_t{d.n} * d.c * d.h * d.w != numel_of(values[static_cast<size_t>(node.inputs[0])]))
    fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name,
                                     "': the batch normalization descriptor does not match its input"));
  queue_native(*this, node);
}

// The descriptors cuDNN would be given must describe the node's operand; then its native kernels.
void parity_executable_object::enqueue_softmax(const Step& step, const parity_node_desc& node) {
  const int64_t n = numel_of(values[static_cast<size_t>(node.inputs[0])]);
  const int64_t described = step.softmax ? int64_t{step.softmax->shape.x.n} * step.softmax->shape.x.c *
                                               step.softmax->shape.x.h * step.softmax->shape.x.w
                                         : 0;
  if (described != n)
    fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "': the softmax descriptor holds ",
                                     described, " elements, the input ", n));
  queue_native(*this, node);
}

// Each cuBLAS call of the step, checked against its operands' types and sizes as cuBLAS would
// read them. f32 nodes then run their native kernel; half nodes their calls as CUDA makes them:
// each GEMM emulated (f32 accumulation, C written in its type), then the epilogues.
void parity_executable_object::enqueue_gemm(const Step& step, const parity_node_desc& node) {
  namespace lib = parity::emu_library;
  plan::LinearCalls calls = step.linear;
  if (misdescribe("gemm_ex"))
    for (plan::GemmCall& g : calls.gemms)
      if (plan::uses_gemm_ex(g)) {
        g.b_type = other_half(g.b_type);
        break;
      }
  // The value an operand names, or -1 for the arena's ones and staging regions.
  auto value_of = [&](plan::Operand o) -> int32_t {
    switch (o) {
      case plan::Operand::x: return node.inputs[0];
      case plan::Operand::w: return node.inputs[1];
      case plan::Operand::bias: return node.inputs[2];
      case plan::Operand::dy: return node.op == PARITY_OP_LINEAR_BWD_DATA ? node.inputs[0] : node.inputs[1];
      case plan::Operand::y: case plan::Operand::dx: case plan::Operand::dw: return node.outputs[0];
      case plan::Operand::db: return node.outputs[1];
      case plan::Operand::ones: case plan::Operand::staging: return -1;
    }
    return -1;
  };
  auto described = [&](plan::Operand o) -> lib::GemmOperand {
    const int32_t v = value_of(o);
    if (v >= 0) return {element_of(*this, v, node), numel_of(values[static_cast<size_t>(v)])};
    if (o == plan::Operand::staging) return {plan::ElementType::f32, layout.gemm_staging_bytes / 4};
    return {plan::ElementType::f32, layout.ones_offset < layout.hyperparameter_offset
                                        ? (layout.hyperparameter_offset - layout.ones_offset) / 4
                                        : 0};
  };
  auto address = [&](plan::Operand o) -> void* {
    const int32_t v = value_of(o);
    if (v >= 0) return pointer(v, launch_slot);
    return region(o == plan::Operand::staging ? layout.gemm_staging_offset : layout.ones_offset);
  };
  auto refuse = [&](const std::string& what) {
    fail(PARITY_STATUS_INTERNAL, msg(parity::gpu::kName, ": node '", node.name, "': ", what));
  };
  // The calls' element type must be the values' (as cuda_library.cpp checks), their staging inside the arena's.
  const int32_t x = node.op == PARITY_OP_LINEAR_BWD_DATA ? node.outputs[0] : node.inputs[0];
  if (element_of(*this, x, node) != calls.element)
    refuse(msg(plan::element_type_name(element_of(*this, x, node)), " values planned as ",
               plan::element_type_name(calls.element), " products"));
  if (calls.staging_bytes > layout.gemm_staging_bytes)
    refuse(msg("needs ", calls.staging_bytes, " bytes of GEMM staging, the arena has ", layout.gemm_staging_bytes));
  for (const plan::GemmCall& g : calls.gemms) {
    const std::string wrong = lib::check_gemm(g, described(g.a), described(g.b), described(g.c));
    if (!wrong.empty()) refuse(wrong);
    log_call(msg(lib::describe_gemm(g), " node '", node.name, "'"));
  }
  for (const plan::GemvCall& g : calls.gemvs) {
    // cublasSgemv: every operand f32, as a 1-column GEMM of the same extents.
    const plan::GemmCall as_gemm{g.transpose_a, false, g.transpose_a ? g.n : g.m, 1, g.transpose_a ? g.m : g.n,
                                 g.a, g.x, g.y, g.lda, g.transpose_a ? g.m : g.n, g.transpose_a ? g.n : g.m, g.beta};
    const std::string wrong = lib::check_gemm(as_gemm, described(g.a), described(g.x), described(g.y));
    if (!wrong.empty()) refuse("cublasSgemv (as " + wrong + ")");
    log_call(msg("cublasSgemv node '", node.name, "'"));
  }
  for (const plan::RoundCall& r : calls.rounds) {
    if (described(r.acc).type != plan::ElementType::f32 || described(r.y).type != calls.element ||
        (r.has_bias && described(r.bias).type != plan::ElementType::f32) ||
        described(r.acc).elements < r.outer * r.channels * r.inner ||
        described(r.y).elements != r.outer * r.channels * r.inner ||
        (r.has_bias && described(r.bias).elements != r.channels))
      refuse("round_to_half: its operands are not f32 acc and bias and a half y of its sizes");
    log_call(msg("round_to_half acc f32 bias f32 y ", plan::element_type_name(calls.element), " node '", node.name, "'"));
  }
  for (const plan::ChannelSumCall& c : calls.sums) {
    if (described(c.dy).type != calls.element || described(c.db).type != plan::ElementType::f32 ||
        described(c.dy).elements != c.outer * c.channels * c.inner || described(c.db).elements != c.channels)
      refuse("channel_sum_f32: its operands are not a half dy and an f32 db of its sizes");
    log_call(msg("channel_sum_f32 dy ", plan::element_type_name(calls.element), " db f32 node '", node.name, "'"));
  }
  if (calls.element == plan::ElementType::f32) return queue_native(*this, node);

  // The half calls, in CUDA's order, as one launch on the compute stream: the addresses taken now.
  std::vector<parity::emu::DeviceRange> reads, writes;
  for (int32_t i = 0; i < node.num_inputs; ++i)
    reads.push_back({operand(node, false, i), static_cast<size_t>(values[static_cast<size_t>(node.inputs[i])].bytes)});
  for (int32_t i = 0; i < node.num_outputs; ++i)
    writes.push_back({operand(node, true, i), static_cast<size_t>(values[static_cast<size_t>(node.outputs[i])].bytes)});
  if (calls.staging_bytes > 0) writes.push_back({address(plan::Operand::staging), static_cast<size_t>(calls.staging_bytes)});
  struct Bound {
    plan::GemmCall call;
    const void *a, *b;
    void* c;
  };
  std::vector<Bound> gemms;
  for (const plan::GemmCall& g : calls.gemms) gemms.push_back({g, address(g.a), address(g.b), address(g.c)});
  struct BoundRound {
    plan::RoundCall call;
    const float *acc, *bias;
    void* y;
  };
  std::vector<BoundRound> rounds;
  for (const plan::RoundCall& r : calls.rounds)
    rounds.push_back({r, static_cast<const float*>(address(r.acc)),
                      r.has_bias ? static_cast<const float*>(address(r.bias)) : nullptr, address(r.y)});
  struct BoundSum {
    plan::ChannelSumCall call;
    const void* dy;
    float* db;
  };
  std::vector<BoundSum> sums;
  for (const plan::ChannelSumCall& c : calls.sums)
    sums.push_back({c, address(c.dy), static_cast<float*>(address(c.db))});
  const plan::ElementType element = calls.element;
  parity::gpu::rt::device().launch(instance->stream, node.name, std::move(reads), std::move(writes),
                                   [gemms, rounds, sums, element] {
                                     for (const Bound& g : gemms) lib::run_gemm(g.call, g.a, g.b, g.c);
                                     for (const BoundRound& r : rounds)
                                       lib::round_to_half(r.acc, r.bias, r.call.outer, r.call.channels, r.call.inner,
                                                          r.y, element);
                                     for (const BoundSum& c : sums)
                                       lib::channel_sum_f32(c.dy, element, c.call.outer, c.call.channels,
                                                            c.call.inner, c.db);
                                   });
}

void parity_executable_object::enqueue_optimizer(const Step& step, const parity_node_desc& node) {
  queue_native(*this, node, region(step.hyperparameter_offset));
}

void parity_executable_object::enqueue_native(const parity_node_desc& node) { queue_native(*this, node); }

void parity_executable_object::enqueue_fill(void* words, int64_t count, uint32_t bits) {
  parity::gpu::rt::device().launch(instance->stream, "fill_words", {},
                                   {{words, static_cast<size_t>(count) * sizeof(uint32_t)}}, [words, count, bits] {
                                     auto* w = static_cast<uint32_t*>(words);
                                     for (int64_t i = 0; i < count; ++i) w[i] = bits;
                                   });
}

void parity_executable_object::bind_library() {}
