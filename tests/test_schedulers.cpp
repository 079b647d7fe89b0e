#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "golden.h"
#include "schedulers/schedule_math.h"
#include "sd/error.h"
#include "sd/scheduler.h"

namespace {

// The golden cases' .json files (not the manifest) hold the config diffusers ran with. Python wrote
// lambda_min_clipped as the non-JSON token -Infinity; quote it so nlohmann parses the file (the
// library's config reader accepts the quoted form).
nlohmann::json read_case_json(const std::string& name) {
  std::ifstream in(golden::dir() / (name + ".json"));
  REQUIRE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  for (size_t pos = 0; (pos = s.find("-Infinity", pos)) != std::string::npos; pos += 11) s.replace(pos, 9, "\"-Infinity\"");
  return nlohmann::json::parse(s);
}

struct GoldenScheduler {
  std::string name;
  nlohmann::json info;  // the case .json
  sd::SchedulerKind kind;
  sd::SchedulerConfig config;
  sd::SchedulerOptions options;
};

GoldenScheduler load_golden_scheduler(const std::string& name) {
  GoldenScheduler g;
  g.name = name;
  g.info = read_case_json(name);
  nlohmann::json config = g.info["config"];
  config["_class_name"] = g.info["scheduler_class"];
  // Through the library's own parser, "_use_default_values" included: it decides timestep_spacing.
  g.config = sd::SchedulerConfig::from_json_text(config.dump(), name + ".json");
  g.kind = sd::scheduler_kind_from_config(g.config);
  g.options.eta = g.info["step_kwargs"].value("eta", 0.0);
  return g;
}

at::Tensor unbatched(const at::Tensor& t) { return t.squeeze(0); }

// The seed in a note such as "... torch.Generator('cpu').manual_seed(13026) in sequence".
uint64_t seed_in(const std::string& note) {
  const std::string key = "manual_seed(";
  const auto pos = note.find(key);
  REQUIRE(pos != std::string::npos);
  return std::stoull(note.substr(pos + key.size()));
}

// A stand-in for the UNet: deterministic, depends on the sample and the step.
at::Tensor fake_model(const at::Tensor& x, int64_t i) { return x * 0.3 + torch::sin(x * (1.0 + 0.1 * i)) * 0.5; }

}  // namespace

TEST_CASE("schedulers: every golden scheduler case matches diffusers step by step", "[unit][scheduler]") {
  const auto cases = golden::cases_of_kind("scheduler");
  REQUIRE(cases.size() >= 21);
  for (const auto& entry : cases) {
    const std::string name = entry["name"];
    SECTION(name) {
      const GoldenScheduler g = load_golden_scheduler(name);
      const auto tol = golden::tolerance_of(entry);
      const auto ref = golden::load_case(name);
      const int steps = g.info["num_inference_steps"];
      INFO(name << " as " << sd::scheduler_name(g.kind) << ", " << steps << " steps");
      auto sched = sd::make_scheduler(g.kind, g.config, g.options);
      sched->set_timesteps(steps);

      // The training schedule, bit for bit.
      const auto ac = sd::sched::alphas_cumprod(g.config);
      CHECK_EXACT_ON_REFERENCE_TORCH(torch::tensor(ac, torch::kFloat), ref.at("alphas_cumprod"), tol);

      // Timesteps: same dtype and exactly the same values.
      const at::Tensor ts = sched->timesteps();
      const at::Tensor ts_ref = ref.at("timesteps");
      CHECK(ts.scalar_type() == ts_ref.scalar_type());
      REQUIRE(ts.sizes() == ts_ref.sizes());
      INFO("timesteps " << ts << " vs " << ts_ref);
      CHECK(torch::equal(ts, ts_ref));

      CHECK_EXACT_ON_REFERENCE_TORCH(torch::tensor(static_cast<float>(sched->init_noise_sigma())),
                                     ref.at("init_noise_sigma").reshape({}), tol);
      if (ref.count("sigmas")) {
        REQUIRE(sched->sigmas().defined());
        CHECK_CLOSE_TO_GOLDEN(sched->sigmas(), ref.at("sigmas"), tol);
      }

      const at::Tensor sample_in = ref.at("sample_in");
      // The initial latents: randn from the case's seed, times init_noise_sigma.
      auto latents_gen = at::detail::createCPUGenerator(seed_in(g.info["sample_in_0"].get<std::string>()));
      CHECK_CLOSE_TO_GOLDEN(torch::randn({4, 8, 8}, latents_gen) * sched->init_noise_sigma(), sample_in[0], tol);
      const at::Tensor model_output = ref.at("model_output");
      const bool has_noise = ref.count("noise") != 0;
      const bool identity_scale = g.info["scale_model_input_is_identity"].get<bool>();
      CHECK(sched->needs_noise() == has_noise);

      // Each step from diffusers' own input, so an error cannot hide behind another step's.
      std::vector<at::Tensor> outs, scaled;
      for (int64_t i = 0; i < ts.size(0); ++i) {
        const at::Tensor x = sample_in[i].unsqueeze(0);
        const at::Tensor scaled_x = sched->scale_model_input(x, i);
        if (identity_scale) CHECK(torch::equal(scaled_x, x));
        scaled.push_back(unbatched(scaled_x));
        sd::StepNoise noise;
        if (has_noise) noise.noise = ref.at("noise")[i].unsqueeze(0);
        outs.push_back(unbatched(sched->step(model_output[i].unsqueeze(0), i, x, noise)));
      }
      if (ref.count("scaled_in")) CHECK_CLOSE_TO_GOLDEN(torch::stack(scaled), ref.at("scaled_in"), tol);
      CHECK_CLOSE_TO_GOLDEN(torch::stack(outs), ref.at("sample_out"), tol);

      if (has_noise) {
        // The golden noise is what a CPU generator seeded as the case says (13008 for 7 steps) draws
        // in sequence, one (1,4,8,8) per step.
        const uint64_t seed = seed_in(g.info["noise_note"].get<std::string>());
        auto gen = at::detail::createCPUGenerator(seed);
        std::vector<at::Tensor> drawn;
        for (int64_t i = 0; i < ts.size(0); ++i) drawn.push_back(unbatched(torch::randn({1, 4, 8, 8}, gen)));
        CHECK(torch::equal(torch::stack(drawn), ref.at("noise")));

        // So a fresh scheduler drawing from that generator reproduces every step.
        auto fresh = sd::make_scheduler(g.kind, g.config, g.options);
        fresh->set_timesteps(steps);
        auto gen2 = at::detail::createCPUGenerator(seed);
        sd::StepNoise from_gen;
        from_gen.generator = &gen2;
        std::vector<at::Tensor> outs2;
        for (int64_t i = 0; i < ts.size(0); ++i) {
          outs2.push_back(unbatched(fresh->step(model_output[i].unsqueeze(0), i, sample_in[i].unsqueeze(0), from_gen)));
        }
        CHECK_CLOSE_TO_GOLDEN(torch::stack(outs2), ref.at("sample_out"), tol);
      }
    }
  }
}

TEST_CASE("schedulers: a seeded run is reproducible", "[unit][scheduler]") {
  const auto config = sd::SchedulerConfig::from_json_file(golden::dir() / "sd-v1-5/scheduler/scheduler_config.json");
  for (const auto kind : sd::all_scheduler_kinds()) {
    for (const double eta : {0.0, 0.7}) {
      if (eta > 0 && kind != sd::SchedulerKind::kDDIM) continue;
      INFO(sd::scheduler_name(kind) << " eta " << eta);
      auto run = [&](uint64_t seed) {
        sd::SchedulerOptions options;
        options.eta = eta;
        auto sched = sd::make_scheduler(kind, config, options);
        sched->set_timesteps(8);
        auto gen = at::detail::createCPUGenerator(seed);
        at::Tensor x = torch::randn({1, 4, 8, 8}, gen) * sched->init_noise_sigma();
        sd::StepNoise noise;
        noise.generator = &gen;
        for (int64_t i = 0; i < sched->timesteps().size(0); ++i) {
          x = sched->step(fake_model(sched->scale_model_input(x, i), i), i, x, noise);
        }
        return x;
      };
      const at::Tensor a = run(1234), b = run(1234), c = run(4321);
      CHECK(torch::isfinite(a).all().item<bool>());
      CHECK(torch::equal(a, b));
      CHECK_FALSE(torch::equal(a, c));
    }
  }
}

TEST_CASE("schedulers: stochastic steps demand noise", "[unit][scheduler]") {
  sd::SchedulerConfig config;  // SD 1.5's values
  sd::SchedulerOptions options;
  options.eta = 0.5;
  std::vector<std::unique_ptr<sd::Scheduler>> stochastic;
  stochastic.push_back(sd::make_scheduler(sd::SchedulerKind::kEulerAncestral, config));
  stochastic.push_back(sd::make_scheduler(sd::SchedulerKind::kDDIM, config, options));
  for (auto& sched : stochastic) {
    CHECK(sched->needs_noise());
    sched->set_timesteps(5);
    const at::Tensor x = torch::ones({1, 4, 8, 8});
    CHECK_THROWS_AS(sched->step(x, 0, x), sd::Error);
    sd::StepNoise wrong_shape;
    wrong_shape.noise = torch::zeros({1, 4, 4, 4});
    CHECK_THROWS_AS(sched->step(x, 0, x, wrong_shape), sd::Error);
  }
  CHECK_FALSE(sd::make_scheduler(sd::SchedulerKind::kDDIM, config)->needs_noise());
}

TEST_CASE("schedulers: v_prediction and epsilon agree on consistent model outputs", "[unit][scheduler]") {
  // For a sample built from a known x0 and noise, an epsilon model and a v model that both predict
  // them exactly must take the same first step.
  const auto base = sd::SchedulerConfig::from_json_file(golden::dir() / "sd-v1-5/scheduler/scheduler_config.json");
  torch::manual_seed(7);
  const at::Tensor x0 = torch::randn({1, 4, 8, 8}) * 0.5;
  const at::Tensor eps = torch::randn({1, 4, 8, 8});
  for (const auto kind : sd::all_scheduler_kinds()) {
    INFO(sd::scheduler_name(kind));
    auto config_v = base;
    config_v.prediction_type = "v_prediction";
    auto s_eps = sd::make_scheduler(kind, base);
    auto s_v = sd::make_scheduler(kind, config_v);
    s_eps->set_timesteps(10);
    s_v->set_timesteps(10);
    at::Tensor x, v;
    const bool dpm = kind == sd::SchedulerKind::kDPMSolverMultistep || kind == sd::SchedulerKind::kDPMSolverMultistepKarras;
    if (dpm) {
      // DPM-Solver works on the variance-preserving sample x = alpha x0 + sigma_t eps.
      const double sigma = s_eps->sigmas()[0].item<double>();
      const double alpha = 1 / std::sqrt(sigma * sigma + 1), sigma_t = sigma * alpha;
      x = x0 * alpha + eps * sigma_t;
      v = eps * alpha - x0 * sigma_t;
    } else if (s_eps->sigmas().defined()) {
      // k-diffusion parameterization: x = x0 + sigma eps, v = (eps - sigma x0) / sqrt(sigma^2 + 1).
      const double sigma = s_eps->sigmas()[0].item<double>();
      x = x0 + eps * sigma;
      v = (eps - x0 * sigma) / std::sqrt(sigma * sigma + 1);
    } else {
      const auto ac = sd::sched::alphas_cumprod(base);
      const double a = ac[s_eps->timesteps()[0].item<int64_t>()];
      x = x0 * std::sqrt(a) + eps * std::sqrt(1 - a);
      v = eps * std::sqrt(a) - x0 * std::sqrt(1 - a);
    }
    sd::StepNoise noise;
    noise.noise = torch::zeros_like(x);
    const at::Tensor out_eps = s_eps->step(eps, 0, x, noise);
    const at::Tensor out_v = s_v->step(v, 0, x, noise);
    CHECK_CLOSE_TO_GOLDEN(out_v, out_eps, (golden::Tolerance{1e-4, 1e-5}));
  }
}

TEST_CASE("schedulers: config parsing", "[unit][scheduler]") {
  SECTION("SD 1.5's file") {
    const auto path = golden::dir() / "sd-v1-5/scheduler/scheduler_config.json";
    const auto c = sd::SchedulerConfig::from_json_file(path);
    CHECK(c.class_name == "PNDMScheduler");
    CHECK(c.beta_schedule == "scaled_linear");
    CHECK(c.beta_start == 0.00085);
    CHECK(c.beta_end == 0.012);
    CHECK(c.steps_offset == 1);
    CHECK(c.skip_prk_steps);
    CHECK_FALSE(c.set_alpha_to_one);
    CHECK(sd::scheduler_kind_from_config(c) == sd::SchedulerKind::kPNDM);
  }
  SECTION("missing fields take diffusers' defaults") {
    const auto c = sd::SchedulerConfig::from_json_text(R"({"_class_name": "EulerDiscreteScheduler"})", "test");
    CHECK(c.num_train_timesteps == 1000);
    CHECK(c.beta_start == 0.0001);
    CHECK(c.beta_end == 0.02);
    CHECK(c.beta_schedule == "linear");
    CHECK(c.steps_offset == 0);
    CHECK(c.prediction_type == "epsilon");
    CHECK(c.timestep_spacing.empty());
    CHECK(c.trained_betas.empty());
    CHECK_FALSE(c.use_karras_sigmas);
  }
  SECTION("fields listed in _use_default_values count as missing") {
    const auto c = sd::SchedulerConfig::from_json_text(
        R"({"timestep_spacing": "leading", "prediction_type": "epsilon", "_use_default_values": ["timestep_spacing"]})",
        "test");
    CHECK(c.timestep_spacing.empty());
  }
  SECTION("non-finite numbers as Python writes them") {
    const auto c = sd::SchedulerConfig::from_json_text(R"({"lambda_min_clipped": -Infinity, "trained_betas": null})",
                                                       "test");
    CHECK(std::isinf(c.lambda_min_clipped));
    CHECK(c.lambda_min_clipped < 0);
  }
  SECTION("a bad beta_schedule names the field and the file") {
    try {
      sd::SchedulerConfig::from_json_text(R"({"beta_schedule": "quadratic"})", "my/scheduler_config.json");
      FAIL("no error");
    } catch (const sd::Error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find("beta_schedule") != std::string::npos);
      CHECK(msg.find("my/scheduler_config.json") != std::string::npos);
      CHECK(msg.find("quadratic") != std::string::npos);
    }
    sd::SchedulerConfig c;
    c.beta_schedule = "quadratic";
    CHECK_THROWS_WITH(sd::make_scheduler(sd::SchedulerKind::kEuler, c), Catch::Contains("beta_schedule"));
  }
  SECTION("a field of the wrong type names the field") {
    CHECK_THROWS_WITH(sd::SchedulerConfig::from_json_text(R"({"steps_offset": "one"})", "cfg.json"),
                      Catch::Contains("steps_offset") && Catch::Contains("cfg.json"));
    CHECK_THROWS_WITH(sd::SchedulerConfig::from_json_text(R"({"timestep_spacing": "sometimes"})", "cfg.json"),
                      Catch::Contains("timestep_spacing"));
    CHECK_THROWS_AS(sd::SchedulerConfig::from_json_text("{not json", "cfg.json"), sd::Error);
    CHECK_THROWS_AS(sd::SchedulerConfig::from_json_text("[1, 2]", "cfg.json"), sd::Error);
    CHECK_THROWS_WITH(sd::SchedulerConfig::from_json_file("/nonexistent/scheduler_config.json"),
                      Catch::Contains("/nonexistent/scheduler_config.json"));
  }
  SECTION("unsupported options are refused, not ignored") {
    CHECK_THROWS_WITH(sd::SchedulerConfig::from_json_text(R"({"thresholding": true})", "cfg.json"),
                      Catch::Contains("thresholding"));
    CHECK_THROWS_WITH(sd::SchedulerConfig::from_json_text(R"({"rescale_betas_zero_snr": true})", "cfg.json"),
                      Catch::Contains("rescale_betas_zero_snr"));
  }
}

TEST_CASE("schedulers: kind names round trip", "[unit][scheduler]") {
  const auto kinds = sd::all_scheduler_kinds();
  CHECK(kinds.size() == 7);
  for (const auto kind : kinds) {
    const std::string name = sd::scheduler_name(kind);
    INFO(name);
    CHECK(sd::scheduler_kind_from_name(name) == kind);
    CHECK(sd::make_scheduler(kind, sd::SchedulerConfig{})->kind() == kind);
  }
  CHECK(sd::scheduler_kind_from_name("euler-a") == sd::SchedulerKind::kEulerAncestral);
  CHECK(sd::scheduler_kind_from_name("dpm++2m-karras") == sd::SchedulerKind::kDPMSolverMultistepKarras);
  CHECK_THROWS_WITH(sd::scheduler_kind_from_name("heun"), Catch::Contains("heun") && Catch::Contains("dpm++2m-karras"));

  sd::SchedulerConfig c;
  c.class_name = "DPMSolverMultistepScheduler";
  CHECK(sd::scheduler_kind_from_config(c) == sd::SchedulerKind::kDPMSolverMultistep);
  c.use_karras_sigmas = true;
  CHECK(sd::scheduler_kind_from_config(c) == sd::SchedulerKind::kDPMSolverMultistepKarras);
  c.class_name = "UniPCMultistepScheduler";
  CHECK_THROWS_WITH(sd::scheduler_kind_from_config(c), Catch::Contains("_class_name"));
}

TEST_CASE("schedulers: misuse is reported", "[unit][scheduler]") {
  sd::SchedulerConfig config;
  auto pndm = sd::make_scheduler(sd::SchedulerKind::kPNDM, config);
  const at::Tensor x = torch::zeros({1, 4, 8, 8});
  CHECK_THROWS_AS(pndm->step(x, 0, x), sd::Error);  // before set_timesteps
  pndm->set_timesteps(5);
  CHECK(pndm->timesteps().size(0) == 6);
  CHECK_THROWS_AS(pndm->step(x, 6, x), sd::Error);  // out of range
  CHECK_THROWS_AS(pndm->step(x, 1, x), sd::Error);  // out of order
  CHECK_THROWS_AS(pndm->set_timesteps(0), sd::Error);
}

TEST_CASE("schedulers: Euler and LMS with Karras sigmas use DPM-Solver's golden-checked Karras schedule",
          "[unit][scheduler]") {
  // diffusers builds the Karras sigmas of all three the same way; only DPM-Solver has golden data,
  // so the others must agree with it (DPM rounds the timesteps to integers, Euler and LMS keep them).
  const GoldenScheduler g = load_golden_scheduler("schedulers/dpmpp_2m_karras_25");
  const auto ref = golden::load_case("schedulers/dpmpp_2m_karras_25");
  for (const auto kind : {sd::SchedulerKind::kEuler, sd::SchedulerKind::kLMS}) {
    INFO(sd::scheduler_name(kind));
    auto sched = sd::make_scheduler(kind, g.config);
    sched->set_timesteps(25);
    CHECK_EXACT_ON_REFERENCE_TORCH(sched->sigmas(), ref.at("sigmas"),
                                   golden::tolerance_of(golden::find_case("schedulers/dpmpp_2m_karras_25")));
    CHECK(torch::equal(sched->timesteps().round().to(torch::kLong), ref.at("timesteps")));
    CHECK(sched->timesteps().scalar_type() == torch::kFloat);
  }
}
