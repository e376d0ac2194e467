// tests/test_backend_kit.cpp — the backend kit's ABI edge: statuses and messages that cross a
// table function, truncation of copied messages, and an I/O error kept as I/O both ways; and
// kit::check_plan, each rule refusing a plan that breaks it and passing one that keeps it.
#include <cmath>
#include <cstring>
#include <vector>
#include <new>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "backends/backend_from_table.h"
#include "backends/kit/abi_guard.h"
#include "backends/builtin.h"
#include "backends/kit/persistent_store.h"
#include "backends/kit/plan_check.h"
#include "backends/kit/poison.h"
#include "backends/native/plugin_support.h"
#include "backends/table_from_backend.h"
#include "parity/error.h"

namespace parity {
namespace {

std::unique_ptr<Backend> make_unreadable(const BackendOptions&) {
  throw Error(ErrorKind::io, "unreadable: cannot open 'weights.bin'");
}

const AdaptedBackendSpec unreadable_spec{"unreadable", "a backend whose creation fails reading a file",
                                         make_unreadable, PARITY_DTYPE_BIT(PARITY_F32), 0};

parity_status unreadable_probe(parity_probe_result* out, parity_error*) {
  return adapted_host_probe(unreadable_spec, out);
}
parity_status unreadable_create(const parity_backend_config* config, parity_backend_t* out, parity_error* err) {
  return adapted_create(unreadable_spec, config, out, err);
}

TEST(BackendKit, IoErrorCrossesTheAbiAsIo) {
  const parity_backend_table table = make_adapted_table(unreadable_spec, unreadable_probe, unreadable_create);
  parity_backend_t handle = nullptr;
  parity_error err{};
  EXPECT_EQ(table.create(nullptr, &handle, &err), PARITY_STATUS_IO);
  EXPECT_EQ(err.status, PARITY_STATUS_IO);
  EXPECT_STREQ(err.message, "unreadable: cannot open 'weights.bin'");
  EXPECT_EQ(handle, nullptr);
}

TEST(BackendKit, IoStatusComesBackAsIoError) {
  static const parity_backend_table table = make_adapted_table(unreadable_spec, unreadable_probe, unreadable_create);
  try {
    make_backend_from_table(&table, BackendOptions{});
    FAIL() << "create should have thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_STREQ(e.what(), "unreadable: cannot open 'weights.bin'");
  }
}

TEST(BackendKit, GuardKeepsStatusAndMessage) {
  parity_error err{};
  EXPECT_EQ(kit::guarded(&err, "x: ", [] { kit::abi_fail(PARITY_STATUS_SHAPE, "x: bad"); },
                         [](const std::exception&, parity_status&, std::string&) {}),
            PARITY_STATUS_SHAPE);
  EXPECT_STREQ(err.message, "x: bad");
  EXPECT_EQ(kit::guarded(&err, "x: ", [] { throw std::bad_alloc(); },
                         [](const std::exception&, parity_status&, std::string&) {}),
            PARITY_STATUS_OUT_OF_MEMORY);
  EXPECT_STREQ(err.message, "x: out of host memory");
  EXPECT_EQ(kit::guarded(&err, "x: ", [] { throw 7; }, [](const std::exception&, parity_status&, std::string&) {}),
            PARITY_STATUS_INTERNAL);
  EXPECT_EQ(kit::guarded(&err, "x: ", [] { throw std::runtime_error("launch failed"); },
                         [](const std::exception& e, parity_status& status, std::string& message) {
                           status = PARITY_STATUS_DEVICE;
                           message = std::string("x: ") + e.what();
                         }),
            PARITY_STATUS_DEVICE);
  EXPECT_STREQ(err.message, "x: launch failed");
  EXPECT_EQ(kit::guarded(&err, "x: ", [] {}, [](const std::exception&, parity_status&, std::string&) {}), PARITY_OK);
}

TEST(BackendKit, CopyMessageTruncatesAndTerminates) {
  char small[4] = {'a', 'a', 'a', 'a'};
  kit::copy_message(small, sizeof small, "abcdef");
  EXPECT_STREQ(small, "abc");
  kit::copy_message(small, 0, "zzz");  // nothing to write into
  EXPECT_STREQ(small, "abc");
}

parity_value_desc value(const char* name, parity_value_kind kind, parity_dtype dtype, int64_t rows, int64_t cols) {
  parity_value_desc v{};
  std::strncpy(v.name, name, sizeof v.name - 1);
  v.kind = kind;
  v.dtype = dtype;
  v.rank = 2;
  v.dims[0] = rows;
  v.dims[1] = cols;
  v.bytes = rows * cols * 4;
  return v;
}

TEST(BackendKit, PersistentStoreSharesByNameAndRefusesAnotherShape) {
  kit::PersistentStore<int> store;
  int made = 0;
  const auto make = [&] { return std::make_shared<int>(++made); };
  const auto refuse = [](const parity_value_desc& kept) {
    throw std::runtime_error("kept " + std::to_string(kept.dims[0]) + "x" + std::to_string(kept.dims[1]));
  };
  const auto w = store.bind(value("w", PARITY_VALUE_PARAM, PARITY_F32, 2, 3), make, refuse);
  EXPECT_EQ(store.bind(value("w", PARITY_VALUE_PARAM, PARITY_F32, 2, 3), make, refuse), w);
  EXPECT_NE(store.bind(value("m", PARITY_VALUE_STATE, PARITY_F32, 2, 3), make, refuse), w);
  EXPECT_EQ(made, 2);
  try {
    store.bind(value("w", PARITY_VALUE_PARAM, PARITY_F32, 3, 2), make, refuse);
    FAIL() << "a shape mismatch should have been refused";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "kept 2x3");
  }
  EXPECT_THROW(store.bind(value("w", PARITY_VALUE_PARAM, PARITY_I32, 2, 3), make, refuse), std::runtime_error);
  int sum = 0;
  store.for_each([&](int entry) { sum += entry; });
  EXPECT_EQ(sum, 3);
  EXPECT_TRUE(kit::is_persistent(PARITY_VALUE_PARAM));
  EXPECT_TRUE(kit::is_persistent(PARITY_VALUE_STATE));
  EXPECT_FALSE(kit::is_persistent(PARITY_VALUE_TEMP));
  EXPECT_FALSE(kit::is_persistent(PARITY_VALUE_INPUT));
}

TEST(BackendKit, PoisonReachesEveryTemporaryAndNothingElse) {
  const std::vector<parity_value_desc> values = {
      value("x", PARITY_VALUE_INPUT, PARITY_F32, 2, 2), value("h", PARITY_VALUE_TEMP, PARITY_F32, 2, 3),
      value("w", PARITY_VALUE_PARAM, PARITY_F32, 1, 1), value("k", PARITY_VALUE_TEMP, PARITY_I32, 1, 5)};
  std::vector<std::vector<int64_t>> filled;
  kit::poison_temps(values, [&](size_t i, int64_t count, uint32_t bits) {
    filled.push_back({static_cast<int64_t>(i), count, static_cast<int64_t>(bits)});
  });
  const std::vector<std::vector<int64_t>> expected = {{1, 6, 0x7fc00000}, {3, 5, 0x7fffffff}};
  EXPECT_EQ(filled, expected);
  float nan_bits;
  const uint32_t bits = kit::poison_bits32(PARITY_F32);
  std::memcpy(&nan_bits, &bits, 4);
  EXPECT_TRUE(std::isnan(nan_bits));
  EXPECT_TRUE(std::isnan(kit::poison_value<float>()));
  EXPECT_TRUE(std::isnan(kit::poison_value<double>()));
  EXPECT_EQ(kit::poison_value<int32_t>(), 0x7fffffff);
}

// The status and message a plugin-side check fails with.
template <class Check>
std::pair<parity_status, std::string> failure_of(Check&& check) {
  try {
    check();
  } catch (const kit::AbiError& e) {
    return {e.status, e.what()};
  }
  return {PARITY_OK, ""};
}

TEST(BackendKit, HostWritesAndReadsOfAValueAreChecked) {
  parity_value_desc kept = value("loss", PARITY_VALUE_TEMP, PARITY_F32, 1, 1);
  kept.keep = 1;
  const std::vector<parity_value_desc> values = {value("x", PARITY_VALUE_INPUT, PARITY_F32, 2, 2),
                                                 value("h", PARITY_VALUE_TEMP, PARITY_F32, 2, 3), kept};
  EXPECT_STREQ(native::value_to_write("t", values, 0, 16).name, "x");
  EXPECT_STREQ(native::value_to_read("t", values, 2, 4).name, "loss");
  const auto no_value = failure_of([&] { native::value_to_write("t", values, 3, 16); });
  EXPECT_EQ(no_value.first, PARITY_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(no_value.second, "t: write of value 3: no such value, the plan has 3");
  const auto temp = failure_of([&] { native::value_to_write("t", values, 1, 24); });
  EXPECT_EQ(temp.second, "t: write to value 'h' refused: only INPUT, PARAM and STATE values can be written");
  const auto size = failure_of([&] { native::value_to_write("t", values, 0, 12); });
  EXPECT_EQ(size.second, "t: write to value 'x' [2,2] needs 16 bytes, got 12");
  const auto unkept = failure_of([&] { native::value_to_read("t", values, 1, 24); });
  EXPECT_EQ(unkept.second, "t: read of value 'h' refused: it is a TEMP value the plan did not mark keep");
}


// --- kit::check_plan ---

// A sound plan: x (INPUT [2,2] f32) -> RELU -> h (TEMP [2,2] f32), and w (PARAM [1,1] f32),
// x and h in a 32-byte arena. Tests break one thing of it at a time.
struct PlanFixture {
  std::vector<parity_value_desc> values;
  std::vector<parity_node_desc> nodes;
  int64_t arena_bytes = 32;

  PlanFixture() {
    values = {value("x", PARITY_VALUE_INPUT, PARITY_F32, 2, 2), value("h", PARITY_VALUE_TEMP, PARITY_F32, 2, 2),
              value("w", PARITY_VALUE_PARAM, PARITY_F32, 1, 1)};
    values[0].offset = 0;
    values[1].offset = 16;
    values[2].offset = -1;
    parity_node_desc relu{};
    std::strcpy(relu.name, "act");
    relu.op = PARITY_OP_RELU;
    relu.num_inputs = 1;
    relu.inputs[0] = 0;
    relu.num_outputs = 1;
    relu.outputs[0] = 1;
    nodes = {relu};
  }
  parity_plan plan() const {
    return parity_plan{static_cast<int32_t>(values.size()), static_cast<int32_t>(nodes.size()), values.data(),
                       nodes.data(), arena_bytes};
  }
};

kit::PlanRules all_rules() {
  kit::PlanRules rules;
  rules.dtypes = PARITY_DTYPE_BIT(PARITY_F32) | PARITY_DTYPE_BIT(PARITY_I32);
  rules.temps_in_arena = true;
  rules.inputs_in_arena = true;
  rules.unique_persistent_names = true;
  rules.outputs_are_temp = true;
  return rules;
}

// check_plan on `fixture` fails with `fault`, its ABI status, and a message starting with the
// backend's name and holding `text`.
void expect_fault(const PlanFixture& fixture, const kit::PlanRules& rules, kit::PlanFault fault,
                  const std::string& text) {
  try {
    kit::check_plan("kt", fixture.plan(), rules);
    ADD_FAILURE() << "the plan should have been refused with: " << text;
  } catch (const kit::PlanError& e) {
    EXPECT_EQ(static_cast<int>(e.fault), static_cast<int>(fault)) << e.what();
    EXPECT_EQ(e.status, kit::status_of(fault));
    EXPECT_EQ(std::string(e.what()).rfind("kt: ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

void expect_accepted(const PlanFixture& fixture, const kit::PlanRules& rules) {
  EXPECT_NO_THROW(kit::check_plan("kt", fixture.plan(), rules));
}

TEST(PlanCheck, ASoundPlanPassesEveryRule) {
  expect_accepted(PlanFixture{}, all_rules());
  expect_accepted(PlanFixture{}, kit::PlanRules{});
  PlanFixture empty;
  empty.values.clear();
  empty.nodes.clear();
  empty.arena_bytes = 0;
  expect_accepted(empty, all_rules());
}

TEST(PlanCheck, MalformedCountsAndArraysAreRefused) {
  const PlanFixture f;
  for (parity_plan bad : {parity_plan{-1, 0, nullptr, nullptr, 0}, parity_plan{0, -1, nullptr, nullptr, 0},
                          parity_plan{1, 0, nullptr, nullptr, 0}, parity_plan{0, 1, nullptr, nullptr, 0},
                          parity_plan{3, 1, f.values.data(), f.nodes.data(), -1}}) {
    try {
      kit::check_plan("kt", bad, all_rules());
      ADD_FAILURE() << "a malformed plan should have been refused";
    } catch (const kit::PlanError& e) {
      EXPECT_EQ(static_cast<int>(e.fault), static_cast<int>(kit::PlanFault::malformed));
      EXPECT_EQ(e.status, PARITY_STATUS_INVALID_ARGUMENT);
      EXPECT_NE(std::string(e.what()).find("kt: the plan is malformed"), std::string::npos) << e.what();
    }
  }
}

TEST(PlanCheck, OpsOutsideTheOpListAreRefusedNamingTheNode) {
  PlanFixture f;
  f.nodes[0].op = PARITY_OP_COUNT;
  expect_fault(f, all_rules(), kit::PlanFault::unknown_op,
               "op " + std::to_string(PARITY_OP_COUNT) + " of node 'act' is not one this build knows");
  const int32_t negative = -1;
  std::memcpy(&f.nodes[0].op, &negative, sizeof negative);
  expect_fault(f, all_rules(), kit::PlanFault::unknown_op, "op -1 of node 'act'");
  EXPECT_EQ(kit::status_of(kit::PlanFault::unknown_op), PARITY_STATUS_UNSUPPORTED);
}

TEST(PlanCheck, ANodeMustHaveItsOpsArity) {
  PlanFixture f;
  f.nodes[0].num_inputs = 2;
  f.nodes[0].inputs[1] = 0;
  expect_fault(f, all_rules(), kit::PlanFault::arity, "node 'act' (RELU) has 2 inputs and 1 outputs; RELU takes 1 and 1");
  f.nodes[0].num_inputs = 1;
  f.nodes[0].num_outputs = PARITY_MAX_NODE_OUTPUTS + 100;  // past the ABI's arrays too
  expect_fault(f, all_rules(), kit::PlanFault::arity, "node 'act' (RELU)");
  f.nodes[0].op = PARITY_OP_ADD;  // two inputs, one output
  f.nodes[0].num_inputs = 2;
  f.nodes[0].inputs[1] = 0;
  f.nodes[0].num_outputs = 1;
  expect_accepted(f, all_rules());
}

TEST(PlanCheck, ANodesValueIndicesMustNameValuesOfThePlan) {
  PlanFixture f;
  f.nodes[0].inputs[0] = 3;
  expect_fault(f, all_rules(), kit::PlanFault::value_index, "node 'act' refers to value 3, outside [0, 3)");
  f.nodes[0].inputs[0] = 0;
  f.nodes[0].outputs[0] = -1;
  expect_fault(f, all_rules(), kit::PlanFault::value_index, "node 'act' refers to value -1");
}

TEST(PlanCheck, OutputsMustBeTempWhenTheRuleSaysSo) {
  PlanFixture f;
  f.nodes[0].outputs[0] = 2;  // the PARAM w
  expect_fault(f, all_rules(), kit::PlanFault::output_kind, "node 'act': output 'w' must be a TEMP value");
  kit::PlanRules rules = all_rules();
  rules.outputs_are_temp = false;
  expect_accepted(f, rules);
}

TEST(PlanCheck, DtypesMustBeParityDtypesTheBackendStores) {
  PlanFixture f;
  f.values[2].dtype = PARITY_I64;
  f.values[2].bytes = 8;
  expect_fault(f, all_rules(), kit::PlanFault::dtype, "plan value 'w' has dtype i64; kt stores f32, i32 values only");
  EXPECT_EQ(kit::status_of(kit::PlanFault::dtype), PARITY_STATUS_UNSUPPORTED);
  kit::PlanRules rules = all_rules();
  rules.dtypes |= PARITY_DTYPE_BIT(PARITY_I64);
  expect_accepted(f, rules);
  const int32_t bogus = 9;
  std::memcpy(&f.values[2].dtype, &bogus, sizeof bogus);
  expect_fault(f, rules, kit::PlanFault::dtype, "plan value 'w': dtype 9 is not a parity_dtype");
}

TEST(PlanCheck, KindsMustBeParityValueKinds) {
  PlanFixture f;
  const int32_t bogus = 7;
  std::memcpy(&f.values[2].kind, &bogus, sizeof bogus);
  expect_fault(f, kit::PlanRules{}, kit::PlanFault::kind, "plan value 'w': kind 7 is not a parity_value_kind");
  f.values[2].kind = PARITY_VALUE_STATE;
  expect_accepted(f, all_rules());
}

TEST(PlanCheck, RanksMustBeWithinTheAbiLimit) {
  PlanFixture f;
  f.values[2].rank = PARITY_MAX_RANK + 1;
  expect_fault(f, kit::PlanRules{}, kit::PlanFault::rank,
               "plan value 'w': rank must be in [0, " + std::to_string(PARITY_MAX_RANK) + "]");
  f.values[2].rank = -1;
  expect_fault(f, kit::PlanRules{}, kit::PlanFault::rank, "plan value 'w': rank must be in");
  f.values[2].rank = 0;  // a scalar: one element
  f.values[2].bytes = 4;
  expect_accepted(f, all_rules());
}

TEST(PlanCheck, DimensionsMustBePositive) {
  PlanFixture f;
  f.values[1].dims[1] = 0;
  f.values[1].bytes = 0;
  expect_fault(f, kit::PlanRules{}, kit::PlanFault::dims,
               "plan value 'h': every dimension must be >= 1, got [2,0]");
  f.values[1].dims[1] = int64_t{1} << 62;  // too many elements for int64 bytes
  expect_fault(f, kit::PlanRules{}, kit::PlanFault::dims, "plan value 'h': shape");
}

TEST(PlanCheck, BytesMustBeTheShapesElementsTimesTheElementSize) {
  PlanFixture f;
  f.values[0].bytes = 12;
  expect_fault(f, kit::PlanRules{}, kit::PlanFault::bytes, "plan value 'x': bytes must be 16 for [2,2] f32, got 12");
}

TEST(PlanCheck, PersistentValuesNeedOneNameEachWhenTheRuleSaysSo) {
  PlanFixture f;
  f.values.push_back(value("w", PARITY_VALUE_STATE, PARITY_F32, 1, 1));
  f.values.back().offset = -1;
  expect_fault(f, all_rules(), kit::PlanFault::persistent_name, "plan value 'w': two persistent values have this name");
  kit::PlanRules rules = all_rules();
  rules.unique_persistent_names = false;
  expect_accepted(f, rules);
  f.values.back().name[0] = '\0';
  expect_fault(f, all_rules(), kit::PlanFault::persistent_name, "a PARAM or STATE value needs a name");
  std::strcpy(f.values.back().name, "m");
  expect_accepted(f, all_rules());
}

TEST(PlanCheck, ArenaValuesMustLieInsideTheArenaAligned) {
  PlanFixture f;
  f.values[1].offset = 24;  // h: bytes [24, 40) of 32
  expect_fault(f, all_rules(), kit::PlanFault::arena, "plan value 'h': bytes [24, 40) must lie inside the arena of 32 bytes");
  kit::PlanRules rules = all_rules();
  rules.temps_in_arena = false;
  expect_accepted(f, rules);

  f.values[1].offset = 16;
  f.values[0].offset = -4;  // x, an INPUT
  expect_fault(f, all_rules(), kit::PlanFault::arena, "plan value 'x': bytes [-4, 12) must lie inside the arena");
  rules = all_rules();
  rules.inputs_in_arena = false;
  expect_accepted(f, rules);

  f.values[0].offset = 2;
  expect_fault(f, all_rules(), kit::PlanFault::arena, "plan value 'x': offset 2 must be a multiple of 4");
  f.values[0].offset = 0;
  f.values[2].offset = 1000;  // persistent values are not in the arena
  expect_accepted(f, all_rules());
}

// ref and cpu both check their plans with the kit, each reporting the fault as its own error kind.
TEST(PlanCheck, RefAndCpuRefuseABrokenPlanNamingThemselves) {
  const std::unique_ptr<Backend> ref = make_ref_backend(BackendOptions{});
  const std::unique_ptr<Backend> cpu = make_cpu_backend(BackendOptions{});
  const auto error_of = [](Backend& backend, const PlanFixture& f) -> std::pair<ErrorKind, std::string> {
    try {
      backend.compile(f.plan(), CompileOptions{}, nullptr);
    } catch (const Error& e) {
      return {e.kind(), e.what()};
    }
    return {ErrorKind::internal, "no error"};
  };
  PlanFixture f;
  EXPECT_NO_THROW(ref->compile(f.plan(), CompileOptions{}, nullptr));
  EXPECT_NO_THROW(cpu->compile(f.plan(), CompileOptions{}, nullptr));

  f.nodes[0].num_inputs = 2;
  const auto ref_arity = error_of(*ref, f);
  EXPECT_EQ(ref_arity.first, ErrorKind::internal);
  EXPECT_EQ(ref_arity.second.rfind("ref: node 'act' (RELU) has 2 inputs", 0), 0u) << ref_arity.second;
  const auto cpu_arity = error_of(*cpu, f);
  EXPECT_EQ(cpu_arity.first, ErrorKind::shape);
  EXPECT_EQ(cpu_arity.second.rfind("cpu: node 'act' (RELU) has 2 inputs", 0), 0u) << cpu_arity.second;

  f = PlanFixture{};
  f.values[2].dtype = PARITY_I64;
  f.values[2].bytes = 8;
  const auto ref_dtype = error_of(*ref, f);
  EXPECT_EQ(ref_dtype.first, ErrorKind::backend);
  EXPECT_EQ(ref_dtype.second, "ref: plan value 'w' has dtype i64; ref stores f32, i32, bf16, f16 values only");
  EXPECT_NO_THROW(cpu->compile(f.plan(), CompileOptions{}, nullptr));  // cpu stores i64

  f = PlanFixture{};
  f.values[1].offset = 24;
  const auto cpu_arena = error_of(*cpu, f);
  EXPECT_EQ(cpu_arena.first, ErrorKind::invalid_argument);
  EXPECT_EQ(cpu_arena.second.rfind("cpu: plan value 'h': bytes [24, 40)", 0), 0u) << cpu_arena.second;
  EXPECT_NO_THROW(ref->compile(f.plan(), CompileOptions{}, nullptr));  // ref keeps each value in its own vector
}

}  // namespace
}  // namespace parity
