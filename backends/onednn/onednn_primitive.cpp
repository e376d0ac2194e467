// backends/onednn/onednn_primitive.cpp — a node run by one oneDNN primitive: the reorders at its
// edges, its scratchpads, its stream, the host steps around it and the OpenMP thread count it
// runs with; plain memories over bound values.
#include <omp.h>

#include <cstring>

#include "backends/onednn/onednn_ops.h"

namespace parity {
namespace onednn {

PrimitiveNode::PrimitiveNode(const Context& context)
    : engine_(context.engine), threads_(context.threads), stream_(context.engine) {}

PrimitiveNode::Step PrimitiveNode::step(const dnnl::primitive& primitive, const dnnl::memory::desc& scratchpad,
                                        std::unordered_map<int, dnnl::memory> args) const {
  if (scratchpad.get_size() > 0)
    args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(scratchpad, engine_));  // allocated now, never at run
  return Step{primitive, std::move(args)};
}

PrimitiveNode::Step PrimitiveNode::reorder(const dnnl::memory& from, const dnnl::memory& to) const {
  const dnnl::reorder::primitive_desc pd(from, to, user_scratchpad_attr());
  return step(dnnl::reorder(pd), pd.scratchpad_desc(), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
}

dnnl::memory PrimitiveNode::input(const dnnl::memory& plain, const dnnl::memory::desc& wanted) {
  if (plain.get_desc() == wanted) return plain;
  dnnl::memory reordered(wanted, engine_);
  before_.push_back(reorder(plain, reordered));
  return reordered;
}

dnnl::memory PrimitiveNode::output(const dnnl::memory& plain, const dnnl::memory::desc& given) {
  if (plain.get_desc() == given) return plain;
  dnnl::memory reordered(given, engine_);
  after_.push_back(reorder(reordered, plain));
  return reordered;
}

void PrimitiveNode::set_primitive(const dnnl::primitive& primitive, const dnnl::memory::desc& scratchpad,
                                  std::unordered_map<int, dnnl::memory> args) {
  main_.assign(1, step(primitive, scratchpad, std::move(args)));
}

void PrimitiveNode::set_host_steps(std::function<void()> before, std::function<void()> after) {
  host_before_ = std::move(before);
  host_after_ = std::move(after);
}

void PrimitiveNode::run() {
  if (host_before_) host_before_();
  // nthreads-var is per thread in OpenMP, and execute() may come from any thread: set it each
  // time (a store to the calling thread's ICV, no synchronisation).
  omp_set_num_threads(threads_);
  for (const std::vector<Step>* steps : {&before_, &main_, &after_})
    for (const Step& s : *steps) s.primitive.execute(stream_, s.args);
  stream_.wait();
  if (host_after_) host_after_();
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
