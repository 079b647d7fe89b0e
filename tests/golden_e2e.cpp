#include "golden_e2e.h"

#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "golden.h"

namespace golden {

nlohmann::json case_json(const std::string& name) {
  std::ifstream in(dir() / (name + ".json"));
  if (!in) throw std::runtime_error("cannot open " + (dir() / (name + ".json")).string());
  return nlohmann::json::parse(in);
}

sd::GenerateOptions e2e_options(const nlohmann::json& meta, const sd::StateDict& ref) {
  sd::GenerateOptions opt;
  opt.negative_prompt = meta["negative_prompt"].is_null() ? "" : meta["negative_prompt"].get<std::string>();
  opt.guidance_scale = meta["guidance_scale"];
  opt.steps = meta["steps"];
  opt.height = meta["height"];
  opt.width = meta["width"];
  opt.scheduler = sd::scheduler_kind_from_name(meta["scheduler"].get<std::string>());
  if (meta.contains("eta") && !meta["eta"].is_null()) opt.eta = meta["eta"];
  opt.keep_step_latents = true;
  if (meta.contains("generator_seed") && !meta["generator_seed"].is_null()) {
    opt.seed = meta["generator_seed"];  // seeded noise: our generator must draw what diffusers drew
  } else {
    opt.initial_latents = ref.at("initial_latents");  // given latents (init_noise_sigma is 1 here)
  }
  return opt;
}

void check_e2e_result(const sd::GenerateResult& result, const sd::StateDict& ref, const nlohmann::json& entry) {
  const auto tol = tolerance_of(entry);
  CHECK_CLOSE_TO_GOLDEN(result.init_latents.to(torch::kCPU), ref.at("initial_latents"), tol);
  const auto& timesteps = ref.at("timesteps");
  if (timesteps.scalar_type() == torch::kLong) {
    CHECK(torch::equal(result.timesteps.to(torch::kLong), timesteps));
  } else {  // e.g. Euler with linspace spacing: fractional float32 timesteps
    CHECK_CLOSE_TO_GOLDEN(result.timesteps, timesteps, (Tolerance{1e-3, 1e-6}));
  }
  const auto& per_step = ref.at("latents_per_step");
  REQUIRE(result.step_latents.size() == static_cast<size_t>(per_step.size(0)));
  for (size_t i = 0; i < result.step_latents.size(); ++i) {
    INFO("step " << i);
    CHECK_CLOSE_TO_GOLDEN(result.step_latents[i], per_step[static_cast<int64_t>(i)], tol);
  }
  const auto images = result.images01.to(torch::kCPU);
  CHECK_CLOSE_TO_GOLDEN(images.permute({0, 2, 3, 1}), ref.at("image"), tolerance_of(entry, "tolerance_image"));
  auto ours = sd::to_uint8(images).to(torch::kInt);  // [B, H, W, 3]; the golden cases store [H, W, 3] for B = 1
  auto theirs = ref.at("image_uint8").to(torch::kInt).reshape(ours.sizes());
  const int max_level_diff = (ours - theirs).abs().max().item<int>();
  INFO("uint8 max level difference " << max_level_diff);
  CHECK(max_level_diff <= entry.value("tolerance_uint8", 1));
}

}  // namespace golden
