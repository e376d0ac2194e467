// examples/train_few_steps.cpp — parity as a program outside its tree uses it (only the
// installed headers and parity::parity): build the seed CNN, pick a backend from a flag, train
// a few Adam steps on one synthetic batch and check that the loss falls.
//
//   train_few_steps [--backend NAME] [--steps N]      (NAME: cuda, hip, cpu, simt, ref, auto;
//                                                       default $PARITY_BACKEND, else auto)
#include <cstdio>
#include <cstdlib>
#include <string>

#include <parity/parity.h>

int main(int argc, char** argv) {
  std::string backend = parity::default_backend_name();
  int steps = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--backend" && i + 1 < argc) backend = argv[++i];
    else if (arg == "--steps" && i + 1 < argc) steps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--backend NAME] [--steps N]\n", argv[0]);
      return 2;
    }
  }
  if (steps < 2) {
    std::fprintf(stderr, "--steps must be >= 2, got %d\n", steps);
    return 2;
  }
  try {
    const parity::ModelSpec& spec = parity::model_spec("seed-cnn");
    const int64_t batch = 32;
    parity::Trainer trainer(spec, parity::create_backend(backend), parity::OptimizerConfig{}, batch);
    trainer.load_weights(parity::init_weights(spec, /*seed=*/0));

    // Image n shows a bright horizontal bar at a row chosen by its label: easy to learn.
    parity::Tensor x(parity::Shape{batch, spec.channels, spec.height, spec.width}, parity::DType::f32);
    parity::Tensor y(parity::Shape{batch}, parity::DType::i32);
    for (int64_t n = 0; n < batch; ++n) {
      const int32_t label = static_cast<int32_t>(n % spec.num_classes);
      y.i32()[n] = label;
      float* image = x.f32() + n * spec.channels * spec.height * spec.width;
      for (int col = 0; col < spec.width; ++col) image[(2 * label + 4) * spec.width + col] = 1.0f;
    }

    std::printf("backend %s (%d threads)\n", trainer.backend().name().c_str(), trainer.backend().threads());
    float first = 0, last = 0;
    for (int s = 0; s < steps; ++s) {
      const parity::StepResult r = trainer.train_step(x, y);
      std::printf("step %d: loss %.4f, %g/%lld correct\n", s + 1, r.loss, r.correct, static_cast<long long>(r.images));
      if (s == 0) first = r.loss;
      last = r.loss;
    }
    if (!(last < first)) {
      std::fprintf(stderr, "the loss did not fall: %.4f -> %.4f\n", first, last);
      return 1;
    }
    return 0;
  } catch (const parity::Error& e) {
    std::fprintf(stderr, "error (%s): %s\n", parity::to_string(e.kind()), e.what());
    return 1;
  }
}
