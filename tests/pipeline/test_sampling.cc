// Sampler pieces against the golden e2e cases: schedule (bit-exact), packing and ids (exact), the Euler update,
// the uint8 conversion, and the torch-compatible noise generator.
#include <cmath>
#include <cstring>
#include <string>

#include "io/safetensors.h"
#include "pipeline/pipeline.h"
#include "pipeline/sampling.h"
#include "test_util.h"

namespace flux {
namespace {

struct Case {
  const char* name;
  bool dev;
  int height, width, steps;
  uint64_t seed;
};
const Case kCases[] = {{"e2e_schnell_64x64", false, 64, 64, 4, 1},
                       {"e2e_schnell_48x80", false, 48, 80, 4, 2},
                       {"e2e_dev_64x64", true, 64, 64, 6, 1},
                       {"e2e_dev_48x80", true, 48, 80, 6, 3}};

SafetensorsFile open_case(const Case& c) {
  return SafetensorsFile::open(test::golden_dir() + "/" + c.name + ".safetensors");
}

TEST(Sampling, ScheduleBitExact) {
  for (const Case& c : kCases) {
    SafetensorsFile f = open_case(c);
    const Tensor want = f.tensor("timesteps");
    const int64_t seq = (c.height / 16) * (c.width / 16);
    const std::vector<float> got = get_schedule(c.steps, seq, c.dev);
    ASSERT_EQ(static_cast<int64_t>(got.size()), want.numel()) << c.name;
    for (size_t i = 0; i < got.size(); ++i) {
      uint32_t a, b;
      std::memcpy(&a, &got[i], 4);
      std::memcpy(&b, want.data<float>() + i, 4);
      EXPECT_EQ(a, b) << c.name << " t[" << i << "] got " << got[i] << " want " << want.data<float>()[i];
    }
  }
}

TEST(Sampling, LinspaceSymmetric) {
  const std::vector<float> t = torch_linspace_f32(1.0f, 0.0f, 29);
  EXPECT_EQ(t.front(), 1.0f);
  EXPECT_EQ(t.back(), 0.0f);
  for (size_t i = 1; i < t.size(); ++i) EXPECT_LT(t[i], t[i - 1]);
  // Shifted schedules stay in [0, 1] and start at 1.
  const std::vector<float> s = get_schedule(28, 4096, true);
  EXPECT_EQ(s.front(), 1.0f);
  EXPECT_EQ(s.back(), 0.0f);
  for (size_t i = 1; i < s.size(); ++i) EXPECT_LT(s[i], s[i - 1]);
  EXPECT_NEAR(schedule_mu(4096), 1.15, 1e-12);
  EXPECT_NEAR(schedule_mu(256), 0.5, 1e-12);
}

TEST(Sampling, PackUnpackAndIds) {
  for (const Case& c : kCases) {
    SafetensorsFile f = open_case(c);
    const Tensor noise = f.tensor("noise");  // [1, 16, h, w]
    const Tensor z = noise.reshape(Shape{16, noise.dim(2), noise.dim(3)});
    const Tensor packed = pack_latent(z);
    const Tensor want = f.tensor("img");
    ASSERT_EQ(packed.numel(), want.numel());
    EXPECT_EQ(std::memcmp(packed.raw(), want.raw(), packed.nbytes()), 0) << c.name;
    const Tensor back = unpack_latent(packed, z.dim(1), z.dim(2));
    EXPECT_EQ(std::memcmp(back.raw(), z.raw(), z.nbytes()), 0) << c.name;
    const Tensor ids = make_img_ids(z.dim(1), z.dim(2));
    const Tensor want_ids = f.tensor("img_ids");
    ASSERT_EQ(ids.numel(), want_ids.numel());
    EXPECT_EQ(std::memcmp(ids.raw(), want_ids.raw(), ids.nbytes()), 0) << c.name;
    const Tensor txt_ids = f.tensor("txt_ids");
    const Tensor got_txt_ids = make_txt_ids(txt_ids.dim(1));
    EXPECT_EQ(std::memcmp(got_txt_ids.raw(), txt_ids.raw(), txt_ids.nbytes()), 0) << c.name;
  }
}

TEST(Sampling, UnpackRejectsWrongSize) {
  const Tensor x = Tensor::zeros(DType::f32, Shape{15, 64});
  EXPECT_THROW(unpack_latent(x, 8, 8), Error);
  EXPECT_THROW(pack_latent(Tensor::zeros(DType::f32, Shape{16, 7, 8})), Error);
}

// The Euler update with the stored predictions reproduces the stored latents (the update itself, isolated
// from the model): latents[k+1] == latents[k] + (t[k+1] - t[k]) * preds[k], exactly.
TEST(Sampling, EulerUpdateExact) {
  for (const Case& c : kCases) {
    SafetensorsFile f = open_case(c);
    const Tensor latents = f.tensor("latents"), preds = f.tensor("preds"), ts = f.tensor("timesteps");
    const int64_t s = latents.dim(1);
    int step = 0;
    VelocityFn model = [&](const Tensor& img, float t) {
      EXPECT_EQ(t, ts.data<float>()[step]);
      return preds.slice_rows(step, step + 1).reshape(Shape{s, 64});
    };
    StepFn on_step = [&](int k, const Tensor& img, const Tensor&, float, float) {
      const Tensor want = latents.slice_rows(k, k + 1).reshape(Shape{s, 64});
      EXPECT_EQ(std::memcmp(img.raw(), want.raw(), img.nbytes()), 0) << c.name << " step " << k;
      ++step;
    };
    const Tensor start = latents.slice_rows(0, 1).reshape(Shape{s, 64});
    const Tensor out = denoise(model, start, std::span<const float>(ts.data<float>(), ts.numel()), on_step);
    const Tensor last = latents.slice_rows(c.steps, c.steps + 1).reshape(Shape{s, 64});
    EXPECT_EQ(std::memcmp(out.raw(), last.raw(), out.nbytes()), 0) << c.name;
  }
}

TEST(Sampling, DenoiseHonoursStop) {
  std::stop_source src;
  src.request_stop();
  const std::vector<float> ts = {1.0f, 0.0f};
  VelocityFn model = [](const Tensor& img, float) { return img; };
  EXPECT_THROW(denoise(model, Tensor::zeros(DType::f32, Shape{4, 64}), ts, {}, src.get_token()), Cancelled);
}

TEST(Sampling, ImageU8MatchesGolden) {
  for (const Case& c : kCases) {
    SafetensorsFile f = open_case(c);
    const Tensor image = f.tensor("image");
    const Image img = image_from_tensor(image.reshape(Shape{3, image.dim(2), image.dim(3)}));
    const Tensor want = f.tensor("image_u8");
    ASSERT_EQ(img.pixels.size(), static_cast<size_t>(want.numel()));
    EXPECT_EQ(std::memcmp(img.pixels.data(), want.raw(), img.pixels.size()), 0) << c.name;
  }
  // Truncation, not rounding; clamping.
  const Tensor x = Tensor::from_f32(Shape{3, 1, 2}, std::vector<float>{-2.0f, 2.0f, 0.0f, 0.999f, -0.999f, 0.5f});
  const Image img = image_from_tensor(x);
  EXPECT_EQ(img.pixels[0], 0);
  EXPECT_EQ(img.pixels[3], 255);
  EXPECT_EQ(img.pixels[1], 127);  // 127.5 -> 127
}

// The seeded noise against the stored noise tensors (BFL get_noise in float32, drawn by torch on a CPU):
// TorchGenerator reproduces torch.manual_seed + torch.randn bit for bit.
TEST(Sampling, SeededNoise) {
  const Tensor a = get_noise(64, 64, 1), b = get_noise(64, 64, 1), c = get_noise(64, 64, 2);
  EXPECT_EQ(a.shape(), (Shape{16, 8, 8}));
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
  EXPECT_NE(std::memcmp(a.raw(), c.raw(), a.nbytes()), 0);
  EXPECT_EQ(get_noise(48, 80, 1).shape(), (Shape{16, 6, 10}));
  EXPECT_EQ(get_noise(40, 40, 1).shape(), (Shape{16, 6, 6}));  // 2*ceil(H/16)
  // Moments of a large draw.
  TorchGenerator gen(42);
  const std::vector<float> v = gen.randn(1 << 16 | 7);
  double sum = 0, sq = 0;
  for (float x : v) sum += x, sq += double(x) * x;
  const double mean = sum / v.size(), var = sq / v.size() - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(var, 1.0, 0.02);
  // mt19937 seeded like torch.manual_seed(5489) is std::mt19937's default sequence.
  TorchGenerator g5489(5489);
  EXPECT_EQ(g5489.random(), 3499211612u);
  EXPECT_EQ(TorchGenerator(5489 + (uint64_t{1} << 32)).random(), 3499211612u);  // low 32 bits, as torch
  // The scalar twins of torch's polynomial log / sincos stay within a few ulp of the C library's.
  for (float x = 1e-6f; x <= 1.0f; x *= 1.37f)
    EXPECT_NEAR(torch_log_f32(x), std::log(x), 4e-7 * std::fabs(std::log(x)) + 1e-7);
  for (float x = -7.0f; x <= 7.0f; x += 0.013f) {
    float s, c;
    torch_sincos_f32(x, &s, &c);
    EXPECT_NEAR(s, std::sin(x), 3e-7);
    EXPECT_NEAR(c, std::cos(x), 3e-7);
  }
  for (const Case& cs : kCases) {
    SafetensorsFile f = open_case(cs);
    const Tensor want = f.tensor("noise");
    const Tensor got = get_noise(cs.height, cs.width, cs.seed);
    ASSERT_EQ(got.numel(), want.numel());
    const test::Diff d = test::compare(got, want);
    int64_t exact = 0;
    for (int64_t i = 0; i < got.numel(); ++i) exact += got.data<float>()[i] == want.data<float>()[i];
    std::printf("[ noise    ] %s seed %llu: %lld/%lld values bit-equal to the stored noise, max|diff| %.3g\n", cs.name,
                static_cast<unsigned long long>(cs.seed), static_cast<long long>(exact),
                static_cast<long long>(got.numel()), d.max_abs);
    EXPECT_EQ(exact, got.numel()) << cs.name;
  }
}

}  // namespace
}  // namespace flux
