// bench/torch_peer/step_mode.h — `parity-torch-peer --mode step` (step_mode.cpp), the peer's
// side of `parity check model --against torch`.
#pragma once

namespace parity::torch_peer {

int run_step_mode(int argc, char** argv);

}  // namespace parity::torch_peer
