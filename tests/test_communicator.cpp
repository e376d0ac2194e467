// tests/test_communicator.cpp — choosing a communicator by name, in a build with MPI or without
// (the collectives themselves run on 2 ranks in test_mpi_communicator.cpp).
#include <gtest/gtest.h>

#include <string>

#include "dist/communicator.h"
#include "parity/error.h"

namespace parity {
namespace {

TEST(Communicator, UnknownKindListsTheKinds) {
  try {
    make_communicator("gloo");
    ADD_FAILURE() << "communicator \"gloo\" was made";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_EQ(std::string(e.what()), "unknown communicator \"gloo\": the kinds are mpi");
  }
}

#if !PARITY_HAVE_MPI
TEST(Communicator, MpiWithoutMpiSaysWhatToInstall) {
  try {
    make_communicator("mpi");
    ADD_FAILURE() << "an MPI communicator was made in a build without MPI";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::backend);
    EXPECT_NE(std::string(e.what()).find("built without MPI (install libopenmpi-dev"), std::string::npos) << e.what();
  }
}
#endif

}  // namespace
}  // namespace parity
