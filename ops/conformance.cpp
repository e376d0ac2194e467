// ops/conformance.cpp — the random draws of `parity check ops` and the walk over every op
// rule's conformance family: the built-in cases in draw order, and the user's `--op/--shape` case.
#include "ops/conformance.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "ops/op_rule.h"
#include "parity/error.h"

namespace parity::ops {

Tensor Draw::values(const Shape& shape, float scale) {
  Tensor t(shape, DType::f32);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> k(-3, 3);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = exact_ ? float(k(rng_)) : scale * u(rng_);
  return t;
}

Tensor Draw::positive(const Shape& shape, float hi) {
  Tensor t(shape, DType::f32);
  std::uniform_real_distribution<float> u(0.0f, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = u(rng_);
  return t;
}

Tensor Draw::labels(int64_t n, int64_t classes) {
  Tensor t(Shape{n}, DType::i32);
  std::uniform_int_distribution<int64_t> u(0, classes - 1);
  for (int64_t i = 0; i < n; ++i) t.i32()[i] = static_cast<int32_t>(u(rng_));
  return t;
}

Draw Draw::fork(uint64_t stream) const {
  std::seed_seq seq{static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32), static_cast<uint32_t>(stream),
                    static_cast<uint32_t>(stream >> 32)};
  uint32_t words[2];
  seq.generate(words, words + 2);
  return Draw((uint64_t{words[1]} << 32) | words[0], exact_, smooth_);
}

void Draw::add_kinks(Tensor& t) {
  if (smooth_) {
    std::vector<int64_t> order(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    std::shuffle(order.begin(), order.end(), rng_);
    for (int64_t i = 0; i < t.numel(); ++i) {
      double k = double(order[static_cast<size_t>(i)] - t.numel() / 2);
      k += k >= 0 ? 0.5 : -0.5;  // never 0
      t.f32()[i] = static_cast<float>(k * 1e-3 * std::max(1.0, 2000.0 / double(t.numel())));
    }
    return;
  }
  for (int64_t i = 0; i < t.numel(); i += 7) t.f32()[i] = 0.0f;
  for (int64_t i = 3; i + 1 < t.numel(); i += 5) t.f32()[i + 1] = t.f32()[i];
}

namespace {

// Every family, once, in draw order.
std::vector<const ConformanceFamily*> families() {
  std::vector<const ConformanceFamily*> out;
  for (int op = 0; op < PARITY_OP_COUNT; ++op)
    if (const ConformanceFamily* f = rule(static_cast<parity_op>(op)).conformance) out.push_back(f);
  std::stable_sort(out.begin(), out.end(),
                   [](const ConformanceFamily* a, const ConformanceFamily* b) { return a->draw_order < b->draw_order; });
  return out;
}

std::vector<std::string> spellings_of(const ConformanceFamily& f) {
  std::vector<std::string> out;
  std::string word;
  for (const char* p = f.spellings;; ++p) {
    if (*p == ' ' || *p == '\0') {
      if (!word.empty()) out.push_back(word);
      word.clear();
      if (*p == '\0') break;
    } else {
      word += *p;
    }
  }
  return out;
}

// After the f32 cases [first, end) of a family: each case of an op that accepts half values
// (OpRule::half) once more in bf16 and in f16, its f32 operands rounded to the half dtype except
// those that stay f32 (HalfSupport::f32_operands: the bias). Made from the f32 cases, so they
// draw nothing and leave every other case's values alone.
void add_half_cases(std::vector<OpCase>& cases, size_t first) {
  const size_t end = cases.size();
  for (DType half : {DType::bf16, DType::f16})
    for (size_t i = first; i < end; ++i) {
      const OpRule& r = rule(cases[i].op);
      if (!r.half) continue;
      OpCase c = cases[i];
      for (size_t k = 0; k < c.operands.size(); ++k) {
        Tensor& t = c.operands[k].tensor;
        if (t.dtype() == DType::f32 && !((r.half->f32_operands >> k) & 1u)) t = cast_tensor(t, half);
      }
      c.label += fmt::format(" {}", to_string(half));
      cases.push_back(std::move(c));
    }
}

bool selects(const ConformanceFamily& f, const std::string& family) {
  for (const std::string& s : spellings_of(f)) {
    if (s.back() == '*' ? family.rfind(s.substr(0, s.size() - 1), 0) == 0 : family == s) return true;
  }
  return false;
}

}  // namespace

std::vector<OpCase> builtin_cases(Draw& draw) {
  std::vector<OpCase> cases;
  for (const ConformanceFamily* f : families()) {
    const size_t first = cases.size();
    if (f->draw_order < kSharedDrawFamilies) {
      f->builtin(cases, draw);
    } else {
      Draw own = draw.fork(static_cast<uint64_t>(f->draw_order));
      f->builtin(cases, own);
    }
    add_half_cases(cases, first);
  }
  return cases;
}

std::string op_spellings() {
  std::string out;
  for (const ConformanceFamily* f : families())
    for (std::string s : spellings_of(*f)) {
      if (s.back() == '*') s.pop_back();
      out += (out.empty() ? "" : ", ") + s;
    }
  return out;
}

std::string shape_meanings() {
  std::string out;
  for (const ConformanceFamily* f : families()) {
    const std::vector<std::string> spellings = spellings_of(*f);
    if (spellings.empty()) continue;
    std::string first = spellings[0];
    if (first.back() == '*') first.pop_back();
    out += (out.empty() ? "" : "; ") + first + " " + f->shape_meaning;
  }
  return out;
}

std::vector<OpCase> user_cases(Draw& draw, const std::string& op, const std::vector<int64_t>& shape) {
  std::string family = op;
  for (char& c : family) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const ConformanceFamily* f : families()) {
    if (!selects(*f, family)) continue;
    if (shape.size() < f->shape_min || shape.size() > f->shape_max)
      throw Error(ErrorKind::invalid_argument,
                  fmt::format("check ops: --shape for {} is {} ({} numbers), got {}", op, f->shape_meaning,
                              f->shape_min == f->shape_max ? fmt::format("{}", f->shape_min)
                                                           : fmt::format("{}-{}", f->shape_min, f->shape_max),
                              shape.size()));
    for (int64_t d : shape)
      if (d < 0 || (d == 0 && !f->zero_allowed))
        throw Error(ErrorKind::invalid_argument, fmt::format("check ops: --shape values must be > 0, got {}", d));
    std::vector<OpCase> cases;
    f->from_shape(cases, draw, shape);
    add_half_cases(cases, 0);
    return cases;
  }
  throw Error(ErrorKind::invalid_argument,
              fmt::format("check ops: --op '{}' is not an op family: {}", op, op_spellings()));
}

}  // namespace parity::ops
