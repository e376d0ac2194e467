// backends/onednn/onednn_primitive.cpp — a node run by one oneDNN primitive: its scratchpad,
// its stream and the OpenMP thread count it runs with; plain memories over bound values.
#include <omp.h>

#include <cstring>

#include "backends/onednn/onednn_ops.h"

namespace parity {
namespace onednn {

PrimitiveNode::PrimitiveNode(const Context& context, dnnl::primitive primitive,
                             const dnnl::memory::desc& scratchpad, std::unordered_map<int, dnnl::memory> args)
    : threads_(context.threads),
      stream_(context.engine),
      primitive_(std::move(primitive)),
      args_(std::move(args)) {
  if (scratchpad.get_size() > 0) {
    scratchpad_ = dnnl::memory(scratchpad, context.engine);  // allocated by oneDNN now, never at run
    args_.emplace(DNNL_ARG_SCRATCHPAD, scratchpad_);
  }
}

void PrimitiveNode::run() {
  // nthreads-var is per thread in OpenMP, and execute() may come from any thread: set it each
  // time (a store to the calling thread's ICV, no synchronisation).
  omp_set_num_threads(threads_);
  primitive_.execute(stream_, args_);
  stream_.wait();
}

dnnl::primitive_attr user_scratchpad_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::memory plain_memory(const Context& context, const cpu::BoundValue& v, const dnnl::memory::dims& dims,
                          dnnl::memory::format_tag tag) {
  const dnnl::memory::desc desc(dims, dnnl::memory::data_type::f32, tag);
  return dnnl::memory(desc, context.engine, v.data);
}

bool is_reference_impl(const char* impl, std::string* why) {
  if (std::strncmp(impl, "ref", 3) != 0) return false;
  *why = std::string("oneDNN offers only its reference implementation (") + impl + ") for this shape";
  return true;
}

}  // namespace onednn
}  // namespace parity
