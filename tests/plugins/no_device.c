/* tests/plugins/no_device.c — a plugin written in plain C (proving plugin.h is C) whose probe
 * finds no device, as a GPU plugin on a machine without a GPU does: the loader must report the
 * probe's reason and never create an instance. It plans without a device (ABI 4) as the CUDA
 * plugin does: what compile would allocate is the plan's arena plus its persistent values on the
 * device, and a page of host memory. Every other function refuses politely. */
#include <stdio.h>
#include <string.h>

#include "parity/plugin.h"

static parity_status refuse(parity_error* err) {
  if (err) {
    err->status = PARITY_STATUS_DEVICE;
    snprintf(err->message, sizeof err->message, "nodevice: there is no device");
  }
  return PARITY_STATUS_DEVICE;
}

static parity_status probe(parity_probe_result* out, parity_error* err) {
  (void)err;
  memset(out, 0, sizeof *out);
  out->device_count = 0;
  out->reason = PARITY_UNAVAILABLE_NO_DEVICE;
  snprintf(out->detail, sizeof out->detail, "the test driver reports 0 devices");
  return PARITY_OK;
}

static parity_status create(const parity_backend_config* c, parity_backend_t* out, parity_error* err) {
  (void)c;
  *out = NULL;
  return refuse(err);
}
static void destroy(parity_backend_t b) { (void)b; }
static parity_status get_capabilities(parity_backend_t b, parity_capabilities* out, parity_error* err) {
  (void)b;
  (void)out;
  return refuse(err);
}
static int32_t supports(parity_backend_t b, const parity_node_desc* n, char* reason, size_t len) {
  (void)b;
  /* parity_op_name comes from plugin.h itself (ABI 2): a C plugin links nothing of parity. */
  if (reason && len) snprintf(reason, len, "nodevice: there is no device to run %s", n ? parity_op_name(n->op) : "a node");
  return 0;
}
static parity_status buffer_alloc(parity_backend_t b, int64_t bytes, parity_buffer_t* out, parity_error* err) {
  (void)b;
  (void)bytes;
  *out = NULL;
  return refuse(err);
}
static void buffer_free(parity_backend_t b, parity_buffer_t buf) {
  (void)b;
  (void)buf;
}
static parity_status h2d(parity_backend_t b, parity_buffer_t d, int64_t o, const void* s, int64_t n, parity_error* err) {
  (void)b, (void)d, (void)o, (void)s, (void)n;
  return refuse(err);
}
static parity_status d2h(parity_backend_t b, void* d, parity_buffer_t s, int64_t o, int64_t n, parity_error* err) {
  (void)b, (void)d, (void)s, (void)o, (void)n;
  return refuse(err);
}
static parity_status d2d(parity_backend_t b, parity_buffer_t d, int64_t doff, parity_buffer_t s, int64_t soff, int64_t n,
                         parity_error* err) {
  (void)b, (void)d, (void)doff, (void)s, (void)soff, (void)n;
  return refuse(err);
}
static parity_status compile(parity_backend_t b, const parity_plan* p, uint32_t flags, parity_executable_t share,
                             parity_executable_t* out, parity_error* err) {
  (void)b, (void)p, (void)flags, (void)share;
  *out = NULL;
  return refuse(err);
}
static void executable_destroy(parity_executable_t e) { (void)e; }
static parity_status write_value(parity_executable_t e, int32_t v, const void* h, int64_t n, parity_error* err) {
  (void)e, (void)v, (void)h, (void)n;
  return refuse(err);
}
static parity_status read_value(parity_executable_t e, int32_t v, void* h, int64_t n, parity_error* err) {
  (void)e, (void)v, (void)h, (void)n;
  return refuse(err);
}
static parity_status execute(parity_executable_t e, parity_error* err) {
  (void)e;
  return refuse(err);
}
static parity_status synchronize(parity_executable_t e, parity_error* err) {
  (void)e;
  return refuse(err);
}
static parity_status memory_bytes(parity_executable_t e, int64_t* out, parity_error* err) {
  (void)e;
  *out = 0;
  return refuse(err);
}

/* A plan with a value index out of range is refused, as compile would refuse it. */
static parity_status memory_need_without_device(const parity_plan* plan, uint32_t flags, parity_memory_need* out,
                                                parity_error* err) {
  int64_t persistent = 0;
  int32_t i;
  (void)flags;
  for (i = 0; i < plan->num_values; ++i)
    if (plan->values[i].kind == PARITY_VALUE_PARAM || plan->values[i].kind == PARITY_VALUE_STATE)
      persistent += plan->values[i].bytes;
  for (i = 0; i < plan->num_nodes; ++i)
    if (plan->nodes[i].num_inputs > 0 &&
        (plan->nodes[i].inputs[0] < 0 || plan->nodes[i].inputs[0] >= plan->num_values)) {
      err->status = PARITY_STATUS_INVALID_ARGUMENT;
      snprintf(err->message, sizeof err->message, "nodevice: node '%s' reads value %d of %d", plan->nodes[i].name,
               (int)plan->nodes[i].inputs[0], (int)plan->num_values);
      return PARITY_STATUS_INVALID_ARGUMENT;
    }
  out->device_bytes = plan->arena_bytes + persistent;
  out->host_bytes = 4096;
  return PARITY_OK;
}

static const parity_backend_table table = {
    PARITY_ABI_VERSION, sizeof(parity_backend_table), "nodevice", "test plugin in C without a device",
    probe, create, destroy, get_capabilities, supports, buffer_alloc, buffer_free, h2d, d2h, d2d, compile,
    executable_destroy, write_value, read_value, execute, synchronize, memory_bytes,
    NULL /* write_value_f64 */, NULL /* read_value_f64 */, NULL /* memory_need */, memory_need_without_device,
    NULL /* set_node_hooks */, NULL /* value_address */};

PARITY_PLUGIN_EXPORT const parity_backend_table* parity_backend_entry(void) { return &table; }
