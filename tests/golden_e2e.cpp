#include "golden_e2e.h"

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

}  // namespace golden
