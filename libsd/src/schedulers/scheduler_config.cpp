// SchedulerConfig from diffusers' scheduler_config.json.
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "models/config_limits.h"
#include "sd/error.h"
#include "sd/scheduler.h"

namespace sd {

namespace {

using nlohmann::json;

// Python's json module writes the non-standard tokens Infinity, -Infinity and NaN (diffusers saves
// lambda_min_clipped = -inf that way). They become strings here, which the number reader accepts.
std::string quote_non_finite_tokens(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool replaced = false;
    for (const char* token : {"-Infinity", "Infinity", "NaN"}) {
      const std::string t(token);
      if (text.compare(i, t.size(), t) == 0) {
        out += '"' + t + '"';
        i += t.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

class FieldReader {
 public:
  FieldReader(const json& root, std::string origin) : root_(root), origin_(std::move(origin)) {
    // diffusers' from_config drops the fields a config recorded as defaulted, so the target class's
    // own defaults apply to them.
    if (root_.contains("_use_default_values")) {
      const json& list = root_["_use_default_values"];
      SD_CHECK(list.is_array(), where("_use_default_values"), "expected a list of field names, got ", list.dump());
      for (const auto& name : list) {
        SD_CHECK(name.is_string(), where("_use_default_values"), "expected field names, got ", name.dump());
        defaulted_.insert(name.get<std::string>());
      }
    }
  }

  // The value of a present, non-null, not defaulted field; nullptr otherwise.
  const json* find(const char* field) const {
    if (!root_.contains(field) || defaulted_.count(field) != 0) return nullptr;
    const json& v = root_[field];
    return v.is_null() ? nullptr : &v;
  }

  void read(const char* field, std::string& out) const {
    if (const json* v = find(field)) {
      SD_CHECK(v->is_string(), where(field), "expected a string, got ", v->dump());
      out = v->get<std::string>();
    }
  }
  void read(const char* field, bool& out) const {
    if (const json* v = find(field)) {
      SD_CHECK(v->is_boolean(), where(field), "expected true or false, got ", v->dump());
      out = v->get<bool>();
    }
  }
  void read(const char* field, int& out) const {
    if (const json* v = find(field)) {
      SD_CHECK(v->is_number_integer() || (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()),
               where(field), "expected an integer, got ", v->dump());
      const double d = v->get<double>();
      SD_CHECK(d >= -2147483648.0 && d <= 2147483647.0, where(field), "integer out of range: ", v->dump());
      out = static_cast<int>(d);
    }
  }
  void read(const char* field, double& out) const {
    if (const json* v = find(field)) out = number(field, *v);
  }
  void read(const char* field, std::vector<double>& out) const {
    if (const json* v = find(field)) {
      SD_CHECK(v->is_array(), where(field), "expected a list of numbers or null, got ", v->dump().substr(0, 80));
      out.clear();
      for (const auto& x : *v) out.push_back(number(field, x));
    }
  }

  std::string where(const char* field) const {
    return "scheduler config " + origin_ + ": field '" + field + "': ";
  }

 private:
  double number(const char* field, const json& v) const {
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
      const auto& s = v.get_ref<const std::string&>();
      if (s == "Infinity") return std::numeric_limits<double>::infinity();
      if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
      if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    }
    SD_FAIL(where(field), "expected a number, got ", v.dump());
  }

  const json& root_;
  std::string origin_;
  std::set<std::string> defaulted_;
};

}  // namespace

SchedulerConfig SchedulerConfig::from_json_text(const std::string& text, const std::string& origin) {
  json root;
  try {
    root = json::parse(quote_non_finite_tokens(text));
  } catch (const json::exception& e) {
    SD_FAIL("scheduler config ", origin, ": not valid JSON: ", e.what());
  }
  SD_CHECK(root.is_object(), "scheduler config ", origin, ": expected a JSON object, got ", root.type_name());

  // A missing field takes diffusers' default, which for the noise schedule differs from SD's values
  // (every SD config states them). Fields whose default depends on the class (set_alpha_to_one for
  // DDIM, clip_sample) keep the values SD's configs use.
  SchedulerConfig c;
  c.beta_start = 0.0001;
  c.beta_end = 0.02;
  c.beta_schedule = "linear";
  c.steps_offset = 0;

  const FieldReader r(root, origin);
  r.read("_class_name", c.class_name);
  r.read("num_train_timesteps", c.num_train_timesteps);
  r.read("beta_start", c.beta_start);
  r.read("beta_end", c.beta_end);
  r.read("beta_schedule", c.beta_schedule);
  r.read("trained_betas", c.trained_betas);
  r.read("steps_offset", c.steps_offset);
  r.read("set_alpha_to_one", c.set_alpha_to_one);
  r.read("skip_prk_steps", c.skip_prk_steps);
  r.read("clip_sample", c.clip_sample);
  r.read("clip_sample_range", c.clip_sample_range);
  r.read("prediction_type", c.prediction_type);
  r.read("timestep_spacing", c.timestep_spacing);
  r.read("use_karras_sigmas", c.use_karras_sigmas);
  r.read("solver_type", c.solver_type);
  r.read("lower_order_final", c.lower_order_final);
  r.read("euler_at_final", c.euler_at_final);
  r.read("final_sigmas_type", c.final_sigmas_type);
  r.read("lambda_min_clipped", c.lambda_min_clipped);
  r.read("interpolation_type", c.interpolation_type);

  // Validate what every scheduler relies on, naming the field.
  SD_CHECK(c.num_train_timesteps >= 2 && c.num_train_timesteps <= limits::kMaxTrainTimesteps,
           r.where("num_train_timesteps"), "expected 2 to ", limits::kMaxTrainTimesteps, ", got ",
           c.num_train_timesteps);
  for (const auto& [field, beta] : {std::pair<const char*, double>{"beta_start", c.beta_start}, {"beta_end", c.beta_end}}) {
    SD_CHECK(std::isfinite(beta) && beta > 0 && beta < 1, r.where(field), "expected a number in (0, 1), got ", beta);
  }
  for (size_t i = 0; i < c.trained_betas.size(); ++i) {
    SD_CHECK(std::isfinite(c.trained_betas[i]) && c.trained_betas[i] >= 0 && c.trained_betas[i] < 1,
             r.where("trained_betas"), "entry ", i, " = ", c.trained_betas[i], " is outside [0, 1)");
  }
  SD_CHECK(c.steps_offset >= 0 && c.steps_offset < c.num_train_timesteps, r.where("steps_offset"), "expected 0 to ",
           c.num_train_timesteps - 1, ", got ", c.steps_offset);
  SD_CHECK(std::isfinite(c.clip_sample_range) && c.clip_sample_range > 0, r.where("clip_sample_range"),
           "expected a positive finite number, got ", c.clip_sample_range);
  SD_CHECK(c.beta_schedule == "linear" || c.beta_schedule == "scaled_linear" || c.beta_schedule == "squaredcos_cap_v2",
           r.where("beta_schedule"), "expected one of linear, scaled_linear, squaredcos_cap_v2, got '",
           c.beta_schedule, "'");
  SD_CHECK(c.trained_betas.empty() || static_cast<int>(c.trained_betas.size()) == c.num_train_timesteps,
           r.where("trained_betas"), "expected ", c.num_train_timesteps, " values (num_train_timesteps), got ",
           c.trained_betas.size());
  SD_CHECK(c.prediction_type == "epsilon" || c.prediction_type == "v_prediction" || c.prediction_type == "sample",
           r.where("prediction_type"), "expected one of epsilon, v_prediction, sample, got '", c.prediction_type, "'");
  SD_CHECK(c.timestep_spacing.empty() || c.timestep_spacing == "linspace" || c.timestep_spacing == "leading" ||
               c.timestep_spacing == "trailing",
           r.where("timestep_spacing"), "expected one of linspace, leading, trailing, got '", c.timestep_spacing, "'");
  SD_CHECK(c.solver_type == "midpoint" || c.solver_type == "heun", r.where("solver_type"),
           "expected midpoint or heun, got '", c.solver_type, "'");
  SD_CHECK(c.final_sigmas_type == "zero" || c.final_sigmas_type == "sigma_min", r.where("final_sigmas_type"),
           "expected zero or sigma_min, got '", c.final_sigmas_type, "'");
  SD_CHECK(c.interpolation_type == "linear", r.where("interpolation_type"), "only 'linear' is supported, got '",
           c.interpolation_type, "'");

  // Options libsd does not implement: refuse them rather than sample differently from diffusers.
  for (const char* field : {"thresholding", "rescale_betas_zero_snr", "use_lu_lambdas"}) {
    bool on = false;
    r.read(field, on);
    SD_CHECK(!on, r.where(field), "true is not supported");
  }
  std::string algorithm = "dpmsolver++";
  r.read("algorithm_type", algorithm);
  SD_CHECK(algorithm == "dpmsolver++" || algorithm == "deis", r.where("algorithm_type"),
           "only dpmsolver++ is supported, got '", algorithm, "'");
  int solver_order = 2;
  r.read("solver_order", solver_order);
  SD_CHECK(solver_order == 2, r.where("solver_order"), "only 2 (DPM-Solver++ 2M) is supported, got ", solver_order);
  std::string timestep_type = "discrete";
  r.read("timestep_type", timestep_type);
  SD_CHECK(timestep_type == "discrete", r.where("timestep_type"), "only 'discrete' is supported, got '",
           timestep_type, "'");
  return c;
}

SchedulerConfig SchedulerConfig::from_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  SD_CHECK(in.good(), "scheduler config ", path.string(), ": cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  SD_CHECK(!in.bad(), "scheduler config ", path.string(), ": read error");
  return from_json_text(text.str(), path.string());
}

}  // namespace sd
