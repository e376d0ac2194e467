// tests/test_plugins.cpp — the plugin ABI and loader end to end: a test plugin found on
// PARITY_BACKEND_PATH, loaded with dlopen and used for a graph (persistent values shared
// across the ABI); broken plugins rejected with the right reason; selection by name, auto and
// PARITY_BACKEND; the built-in tables' buffers, copies and error returns.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "backends/backend_from_table.h"
#include "backends/builtin.h"
#include "parity/parity.h"

namespace parity {
namespace {

// Points PARITY_BACKEND_PATH at the test plugins for the life of the object.
struct TestPluginPath {
  TestPluginPath() { ::setenv("PARITY_BACKEND_PATH", PARITY_TEST_PLUGIN_DIR, 1); }
  ~TestPluginPath() { ::unsetenv("PARITY_BACKEND_PATH"); }
};

BackendInfo info_of(const std::string& name) {
  for (BackendInfo& b : list_backends())
    if (b.name == name) return b;
  ADD_FAILURE() << "list_backends() lacks '" << name << "'";
  return {};
}

// Error text of create_backend(name), with its kind checked.
std::string create_error(const std::string& name, ErrorKind kind) {
  try {
    create_backend(name);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "create_backend('" << name << "') did not throw";
  return {};
}

// c = a + b (b a PARAM), d = reshape(c) to [6], f = fill(2.5); c, d, f kept.
struct AddGraph {
  Graph graph;
  AddGraph() {
    GraphBuilder b;
    Value a = b.input("a", Shape{2, 3});
    Value p = b.parameter("b", Shape{2, 3});
    Value c = b.add(a, p, "c");
    b.reshape(c, Shape{6}, "d");
    b.fill(2.5f, "f");
    graph = b.take();
  }
};

TEST(Plugins, TestPluginIsFoundLoadedAndRunsAGraph) {
  TestPluginPath path;
  BackendInfo info = info_of("testadd");
  EXPECT_TRUE(info.available) << info.detail;
  EXPECT_NE(info.location.find(PARITY_TEST_PLUGIN_DIR), std::string::npos) << info.location;
  EXPECT_NE(info.location.find("libparity-backend-testadd.so"), std::string::npos) << info.location;
  EXPECT_NE(info.capabilities.find("f32"), std::string::npos) << info.capabilities;

  auto be = create_backend("testadd");
  EXPECT_EQ(be->name(), "testadd");
  AddGraph g;
  Plan plan(g.graph, {"c", "d", "f"});
  CompileOptions co;
  co.poison_outputs = true;
  auto exe = be->compile(plan.c_plan(), co, nullptr);
  const float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {10, 20, 30, 40, 50, 60};
  exe->write(plan.value("a"), a, sizeof a);
  exe->write(plan.value("b"), b, sizeof b);
  exe->execute();
  float d[6], f[1];
  exe->read(plan.value("d"), d, sizeof d);
  exe->read(plan.value("f"), f, sizeof f);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(d[i], a[i] + b[i]) << i;
  EXPECT_EQ(f[0], 2.5f);
  EXPECT_GT(exe->memory_bytes(), 0);

  // A second executable sharing the PARAM "b" sees what the first wrote, across the ABI.
  auto second = be->compile(plan.c_plan(), co, exe.get());
  float shared[6];
  second->read(plan.value("b"), shared, sizeof shared);
  EXPECT_EQ(std::memcmp(shared, b, sizeof b), 0);

  // An error inside the plugin comes back as an Error with its message.
  try {
    exe->write(plan.value("a"), a, 5);
    ADD_FAILURE() << "a short write was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("testadd: write 'a': 5 bytes given, the value holds 24"), std::string::npos)
        << e.what();
  }
}

TEST(Plugins, APlanNeedingMoreHostMemoryThanTheMachineHasIsRefusedBeforeCompiling) {
  TestPluginPath path;
  AddGraph g;
  Plan plan(g.graph, {"c", "d", "f"});
  // testadd leaves memory_need NULL: nothing to check, it compiles.
  auto plain = create_backend("testadd");
  EXPECT_FALSE(plain->memory_need(plan.c_plan(), {}, nullptr).has_value());
  EXPECT_NE(plain->compile(plan.c_plan(), {}, nullptr), nullptr);
  // testhuge says 2^61 bytes: refused with both numbers, before its compile runs.
  auto huge = create_backend("testhuge");
  const auto need = huge->memory_need(plan.c_plan(), {}, nullptr);
  ASSERT_TRUE(need.has_value());
  EXPECT_EQ(need->host_bytes, int64_t{1} << 61);
  try {
    huge->compile(plan.c_plan(), {}, nullptr);
    ADD_FAILURE() << "a plan needing 2 EiB of host memory compiled";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::memory);
    const std::string what = e.what();
    EXPECT_NE(what.find("testhuge: the plan needs 2147483648.00 GiB (2305843009213693952 bytes) of host memory"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("this process may still take"), std::string::npos) << what;
  }
}

// ABI 4: a plugin whose probe found no device still plans (nodevice answers the plan's arena
// plus its persistent values, as the CUDA plugin answers from its layout); one without the
// planner gives nothing; a plan it would refuse is refused; an unknown name is the caller's error.
TEST(Plugins, AnUnavailablePluginPlansMemoryWithoutADevice) {
  TestPluginPath path;
  AddGraph g;
  Plan plan(g.graph, {"c", "d", "f"});
  const parity_plan c = plan.c_plan();
  ASSERT_FALSE(info_of("nodevice").available);
  const std::optional<MemoryNeed> need = memory_need_without_device("nodevice", c);
  ASSERT_TRUE(need.has_value());
  EXPECT_EQ(need->device_bytes, c.arena_bytes + 6 * 4);  // the PARAM b is [2,3] f32
  EXPECT_EQ(need->host_bytes, 4096);
  EXPECT_FALSE(memory_need_without_device("testadd", c).has_value());  // no planner (ABI 4 entry NULL)
  EXPECT_FALSE(memory_need_without_device("abi2", c).has_value());     // refused by the loader
  try {
    memory_need_without_device("nosuch", c);
    ADD_FAILURE() << "an unknown backend planned";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument) << e.what();
  }
  std::vector<parity_node_desc> nodes(c.nodes, c.nodes + c.num_nodes);
  nodes[0].inputs[0] = 99;
  parity_plan broken = c;
  broken.nodes = nodes.data();
  try {
    memory_need_without_device("nodevice", broken);
    ADD_FAILURE() << "a plan reading value 99 planned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nodevice: node 'c' reads value 99"), std::string::npos) << e.what();
  }
}

TEST(Plugins, UnsupportedOpsAreRefusedWithTheReason) {
  TestPluginPath path;
  auto be = create_backend("testadd");
  GraphBuilder b;
  b.relu(b.input("x", Shape{4}), "r");
  Graph g = b.take();
  Plan plan(g, {"r"});
  std::string why;
  EXPECT_FALSE(be->supports(plan.c_plan().nodes[0], &why));
  EXPECT_NE(why.find("only FILL, ADD and RESHAPE"), std::string::npos) << why;
  EXPECT_NE(why.find("not RELU (op 3)"), std::string::npos) << why;  // parity_op_name, from plugin.h
  try {
    be->compile(plan.c_plan(), {}, nullptr);
    ADD_FAILURE() << "a plan with relu compiled on testadd";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::backend);
    EXPECT_NE(std::string(e.what()).find("node 'r'"), std::string::npos) << e.what();
  }
}

// Plugins built before PARITY_ABI_CONV2D_GENERAL read a grouped, dilated, asymmetrically padded
// or bias-less convolution as a plain one: they are never handed such a node (supports says why,
// compile and memory_need refuse the plan naming the node). A plain convolution is any ABI's.
TEST(Plugins, AGeneralConvolutionIsNeverHandedToAnOlderAbi) {
  GraphBuilder b;
  Value x = b.input("x", Shape{1, 4, 6, 6});
  b.conv2d(x, b.parameter("w", Shape{4, 4, 3, 3}), b.parameter("b", Shape{4}), 1, 1, "plain");
  Conv2dOptions grouped;
  grouped.groups = 2, grouped.dilation_h = 2;
  b.conv2d(x, b.parameter("wg", Shape{4, 2, 3, 3}), grouped, "grouped");
  Conv2dOptions asymmetric;
  asymmetric.pad_end = true, asymmetric.pad_bottom = 1;
  b.conv2d(x, b.parameter("wa", Shape{2, 4, 3, 3}), b.parameter("ba", Shape{2}), asymmetric, "asym");
  Graph g = b.take();
  Plan plan(g);
  const parity_node_desc* nodes = plan.c_plan().nodes;
  constexpr uint32_t kOlder = PARITY_ABI_CONV2D_GENERAL - 1;  // 4, the ABI before
  EXPECT_EQ(abi_refusal(kOlder, nodes[0]), "");
  const std::string grouped_why = abi_refusal(kOlder, nodes[1]);
  const std::string asymmetric_why = abi_refusal(kOlder, nodes[2]);
  if (PARITY_ABI_VERSION >= PARITY_ABI_CONV2D_GENERAL) {
    EXPECT_NE(grouped_why.find("node 'grouped' (CONV2D) uses groups 2, dilation 2x1, no bias, which plugins built "
                               "for ABI 4 do not know (they need ABI 5)"),
              std::string::npos)
        << grouped_why;
    EXPECT_NE(asymmetric_why.find("asymmetric padding 0,0,1,0 (top,left,bottom,right)"), std::string::npos)
        << asymmetric_why;
  } else {  // ABI 5 not yet numbered: this header's own version knows them (backend_from_table.h)
    EXPECT_EQ(grouped_why, "");
  }
  // Older still: refused whatever the number of this header.
  EXPECT_NE(abi_refusal(3, nodes[1]).find("node 'grouped' (CONV2D) uses groups 2"), std::string::npos);
  EXPECT_NE(abi_refusal(3, nodes[2]).find("asymmetric padding"), std::string::npos);
  EXPECT_EQ(abi_refusal(PARITY_ABI_VERSION, nodes[1]), "");
}

TEST(Plugins, BrokenPluginsAreRejectedWithTheReason) {
  TestPluginPath path;
  const std::string dir = PARITY_TEST_PLUGIN_DIR;
  struct Case {
    const char* name;
    std::vector<std::string> fragments;
  };
  const Case cases[] = {
      {"badabi", {"ABI mismatch", "plugin ABI version " + std::to_string(PARITY_ABI_VERSION + 1000),
                  "this libparity uses version " + std::to_string(PARITY_ABI_VERSION)}},
      {"abi1", {"ABI mismatch", "plugin ABI version 1", "this libparity uses version " + std::to_string(PARITY_ABI_VERSION)}},
      {"abi2", {"ABI mismatch", "plugin ABI version 2", "this libparity uses version " + std::to_string(PARITY_ABI_VERSION)}},
      {"abi3", {"ABI mismatch", "plugin ABI version 3", "this libparity uses version " + std::to_string(PARITY_ABI_VERSION)}},
      {"abi4", {"ABI mismatch", "plugin ABI version 4", "this libparity uses version " + std::to_string(PARITY_ABI_VERSION)}},
      {"abi5", {"ABI mismatch", "plugin ABI version 5", "this libparity uses version " + std::to_string(PARITY_ABI_VERSION)}},
      {"abi6", {"ABI mismatch", "plugin ABI version 6", "this libparity uses version " + std::to_string(PARITY_ABI_VERSION)}},
      {"abi7", {"ABI mismatch", "plugin ABI version 7", "this libparity uses version " + std::to_string(PARITY_ABI_VERSION)}},
      {"abi8", {"ABI mismatch", "plugin ABI version 8", "this libparity uses version " + std::to_string(PARITY_ABI_VERSION)}},
      {"noentry", {"does not export parity_backend_entry()"}},
      {"nodevice", {"no device: the test driver reports 0 devices"}},
      {"missingdep", {"cannot load:", "libparity_test_cudnn_stand_in.so.9"}},
  };
  for (const Case& c : cases) {
    BackendInfo info = info_of(c.name);
    EXPECT_FALSE(info.available) << c.name;
    const std::string error = create_error(c.name, ErrorKind::backend);
    EXPECT_NE(error.find(std::string("backend '") + c.name + "' is unavailable"), std::string::npos) << error;
    for (const std::string& fragment : c.fragments) {
      EXPECT_NE(info.detail.find(fragment), std::string::npos) << c.name << ": " << info.detail;
      EXPECT_NE(error.find(fragment), std::string::npos) << c.name << ": " << error;
    }
  }
}

TEST(Plugins, SelectionByNameAutoAndEnvironment) {
  ::unsetenv("PARITY_BACKEND_PATH");
  // Without the path the test plugin is not found, so its name is unknown.
  EXPECT_NE(create_error("testadd", ErrorKind::invalid_argument).find("unknown backend 'testadd'"), std::string::npos);
  const std::string unknown = create_error("nosuch", ErrorKind::invalid_argument);
  // (onednn, built in where oneDNN was found, comes between simt and cuda)
  EXPECT_NE(unknown.find("unknown backend 'nosuch': choose one of cpu, ref, simt, "), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("cuda, hip"), std::string::npos) << unknown;
  EXPECT_NE(create_error("../evil", ErrorKind::invalid_argument).find("unknown backend '../evil'"), std::string::npos);

  // GPU backends are known, and unavailable with the loader's reason: without the plugin file,
  // "not built" or "file not found" naming the file; with it (the HIP plugin is built wherever
  // hipcc is), its probe's reason, which names the vendor error.
  for (const char* gpu : {"cuda", "hip"}) {
    BackendInfo info = info_of(gpu);
    if (info.available) continue;  // a machine with the plugin and a device
    const std::string error = create_error(gpu, ErrorKind::backend);
    const std::string file = std::string("libparity-backend-") + gpu + ".so";
    if (info.location.empty()) {
      EXPECT_NE(error.find(file), std::string::npos) << error;
      EXPECT_TRUE(error.find("not built") != std::string::npos || error.find("file not found") != std::string::npos)
          << error;
    } else {
      EXPECT_NE(info.location.find(file), std::string::npos) << info.location;
      const std::string vendor_error = std::string(gpu) == "hip" ? "(hipError" : "cudaError";
      EXPECT_TRUE(error.find(file) != std::string::npos || error.find(vendor_error) != std::string::npos) << error;
    }
  }

  EXPECT_EQ(create_backend("cpu")->name(), "cpu");
  EXPECT_EQ(create_backend("ref")->name(), "ref");
  if (!info_of("cuda").available && !info_of("hip").available) {
    EXPECT_EQ(create_backend("auto")->name(), "cpu");
  }

  ::setenv("PARITY_BACKEND", "ref", 1);
  EXPECT_EQ(default_backend_name(), "ref");
  ::unsetenv("PARITY_BACKEND");
  EXPECT_EQ(default_backend_name(), "auto");
}

TEST(Plugins, SearchPathIsEnvironmentThenInstallThenBuildTree) {
  ::setenv("PARITY_BACKEND_PATH", "/first:/second", 1);
  const std::vector<std::string> folders = plugin_search_folders();
  ::unsetenv("PARITY_BACKEND_PATH");
  ASSERT_GE(folders.size(), 3u);
  EXPECT_EQ(folders[0], "/first");
  EXPECT_EQ(folders[1], "/second");
  // This test runs uninstalled, so the build tree's plugin folder is on the path, last.
  EXPECT_EQ(folders.back(), PARITY_BUILD_TREE_PLUGIN_DIR);
}

TEST(Plugins, BackendListsForCheckAndBench) {
  EXPECT_EQ(resolve_backend_list("cpu,ref,cpu"), (std::vector<std::string>{"cpu", "ref"}));
  const std::vector<std::string> all = resolve_backend_list("all");
  EXPECT_NE(std::find(all.begin(), all.end(), "ref"), all.end());
  EXPECT_EQ(std::find(all.begin(), all.end(), "simt") != all.end(), info_of("simt").available);
  try {
    resolve_backend_list("cpu,,ref");
    ADD_FAILURE() << "an empty name was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty name"), std::string::npos) << e.what();
  }
  try {
    resolve_backend_list("ref,nosuch");
    ADD_FAILURE() << "an unknown name was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown backend 'nosuch'"), std::string::npos) << e.what();
  }
}

TEST(Plugins, PersistentValuesAreSharedOnlyWithinOneInstance) {
  auto one = create_backend("cpu");
  auto two = create_backend("cpu");
  AddGraph g;
  Plan plan(g.graph, {"d"});
  auto exe = one->compile(plan.c_plan(), {}, nullptr);
  EXPECT_NO_THROW(one->compile(plan.c_plan(), {}, exe.get()));
  try {
    two->compile(plan.c_plan(), {}, exe.get());
    ADD_FAILURE() << "an executable of another instance was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("same backend instance"), std::string::npos) << e.what();
  }
}

// The built-in tables directly: buffers and copies, and exceptions turned into status + message.
TEST(Plugins, BuiltinTablesKeepTheContract) {
  size_t count = 0;
  const BuiltinBackend* builtins = builtin_backends(&count);
  ASSERT_GE(count, 2u);
  for (size_t i = 0; i < count; ++i) {
    const parity_backend_table* t = builtins[i].table();
    SCOPED_TRACE(t->name);
    EXPECT_EQ(t->abi_version, static_cast<uint32_t>(PARITY_ABI_VERSION));
    EXPECT_STREQ(t->name, builtins[i].name);
    parity_probe_result probe{};
    ASSERT_EQ(t->probe(&probe, nullptr), PARITY_OK);
    EXPECT_EQ(probe.device_count, 1);

    parity_backend_config config{};
    config.struct_size = sizeof config;
    config.threads = 1;
    parity_backend_t be = nullptr;
    parity_error err{};
    ASSERT_EQ(t->create(&config, &be, &err), PARITY_OK) << err.message;

    parity_buffer_t a = nullptr, b = nullptr;
    ASSERT_EQ(t->buffer_alloc(be, 16, &a, &err), PARITY_OK) << err.message;
    ASSERT_EQ(t->buffer_alloc(be, 16, &b, &err), PARITY_OK) << err.message;
    const char in[8] = "parity!";
    char out[8] = {};
    EXPECT_EQ(t->copy_host_to_device(be, a, 4, in, 8, &err), PARITY_OK) << err.message;
    EXPECT_EQ(t->copy_device_to_device(be, b, 0, a, 4, 8, &err), PARITY_OK) << err.message;
    EXPECT_EQ(t->copy_device_to_host(be, out, b, 0, 8, &err), PARITY_OK) << err.message;
    EXPECT_STREQ(out, "parity!");
    EXPECT_EQ(t->copy_device_to_host(be, out, b, 12, 8, &err), PARITY_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(err.message).find("bytes [12, 20) must lie within the buffer of 16 bytes"), std::string::npos)
        << err.message;
    t->buffer_free(be, a);
    t->buffer_free(be, b);

    // A malformed plan: the backend's exception comes back as a status and its message.
    parity_value_desc v{};
    std::strcpy(v.name, "x");
    v.dtype = PARITY_F32;
    v.rank = PARITY_MAX_RANK + 1;  // both backends refuse it
    v.offset = 0;
    v.bytes = 4;
    parity_plan plan{1, 0, &v, nullptr, 16};
    parity_executable_t exe = nullptr;
    const parity_status s = t->compile(be, &plan, 0, nullptr, &exe, &err);
    EXPECT_NE(s, PARITY_OK);
    EXPECT_EQ(std::string(err.message).rfind(std::string(t->name) + ":", 0), 0u) << err.message;
    EXPECT_EQ(exe, nullptr);
    t->executable_destroy(exe);  // NULL is a no-op
    EXPECT_EQ(t->compile(be, &plan, 0x80, nullptr, &exe, &err), PARITY_STATUS_UNSUPPORTED);
    // A node that is not an op: refused at compile with the node named.
    parity_node_desc bogus{};
    std::strcpy(bogus.name, "bogus");
    bogus.op = PARITY_OP_COUNT;
    parity_plan with_bogus{0, 1, nullptr, &bogus, 0};
    EXPECT_EQ(t->compile(be, &with_bogus, 0, nullptr, &exe, &err), PARITY_STATUS_UNSUPPORTED);
    EXPECT_NE(std::string(err.message).find("node 'bogus' (op " + std::to_string(PARITY_OP_COUNT) + ") is not supported"), std::string::npos) << err.message;
    t->destroy(be);
  }
}

}  // namespace
}  // namespace parity
