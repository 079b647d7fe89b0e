#include "lora/lora_apply.h"

#include <chrono>
#include <cmath>
#include <set>
#include <sstream>

#include "lora/lora_file.h"
#include "lora/lora_targets.h"
#include "models/conv2d.h"
#include "sd/error.h"

namespace sd::lora {
namespace {

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream s;
  s << shape;
  return s.str();
}

// One LoRA module's share of a layer's update: factor * up @ down.
struct Term {
  at::Tensor down, up;
  double factor = 0;
};

struct Planned {
  const Target* target = nullptr;
  Component component = Component::kUNet;
  std::vector<Term> terms;
};

// Whether down/up fit the layer's weight; *why says how not.
bool fits(const LoraModule& m, const at::Tensor& weight, std::string* why) {
  const int64_t out = weight.size(0);
  const int64_t fan_in = weight.numel() / out;
  bool ok = m.up.size(0) == out && m.down.numel() / m.rank == fan_in;
  if (ok && m.down.dim() == 4 && weight.dim() == 4) {
    ok = m.down.size(1) == weight.size(1) && m.down.size(2) == weight.size(2) && m.down.size(3) == weight.size(3);
  } else if (ok && m.down.dim() == 4) {  // a 1x1-conv LoRA on a linear layer (SD 2.x's proj_in/out)
    ok = m.down.size(2) == 1 && m.down.size(3) == 1;
  } else if (ok && weight.dim() == 4) {  // a linear-shaped LoRA on a 1x1 convolution
    ok = weight.size(2) == 1 && weight.size(3) == 1;
  }
  if (!ok) {
    *why = "down " + shape_text(m.down.sizes()) + " and up " + shape_text(m.up.sizes()) + " do not fit the layer's weight " +
           shape_text(weight.sizes());
  }
  return ok;
}

const Target* resolve(const LoraModule& m, const TargetIndex& unet, const TargetIndex& text, const UNetLayout& layout) {
  const TargetIndex& index = m.component == Component::kUNet ? unet : text;
  if (!m.underscored) return index.find_dotted(m.name);
  if (m.component == Component::kUNet && is_ldm_unet_name(m.name)) return find_ldm_unet(index, m.name, layout);
  return index.find_underscored(m.name);
}

void drop_packed(torch::nn::Module* module) {
  if (auto* conv = dynamic_cast<Conv2dImpl*>(module)) conv->drop_packed_weight();
}

// One line, as every libsd error: the first offending keys, then how many more (lenient mode's
// report lists them all).
[[noreturn]] void fail_listing(const std::string& what, const std::vector<std::string>& items) {
  constexpr size_t kShown = 5;
  std::ostringstream s;
  s << what << ": ";
  for (size_t i = 0; i < items.size() && i < kShown; ++i) s << (i ? "; " : "") << items[i];
  if (items.size() > kShown) s << "; and " << items.size() - kShown << " more";
  s << " (the pipeline is unchanged; LoadOptions::lora_lenient / --lora-lenient skips such keys)";
  throw Error(s.str());
}

}  // namespace

LoraReport LoraState::set(const std::vector<LoraSpec>& loras, bool lenient, const LoraModels& models) {
  const auto start = std::chrono::steady_clock::now();
  SD_CHECK(models.unet != nullptr && models.text_encoder != nullptr, "LoRA: the pipeline has no UNet or text encoder");
  LoraReport report;
  for (const LoraSpec& spec : loras) {
    SD_CHECK(std::isfinite(spec.scale), "LoRA ", spec.path.string(), ": the scale must be a finite number, got ",
             spec.scale);
  }

  // 1. Read, check and resolve everything; nothing changes yet.
  const TargetIndex unet_index(*models.unet), text_index(*models.text_encoder);
  std::map<std::string, Planned> plan;
  std::vector<std::string> misfits;
  for (const LoraSpec& spec : loras) {
    LoraFile file = read_lora_file(spec.path);
    const std::string origin = spec.path.string();
    for (const std::string& unknown : file.unknown) misfits.push_back(origin + ": " + unknown);
    std::set<std::string> seen;  // a layer named twice in one file
    for (const LoraModule& m : file.modules) {
      const Target* target = resolve(m, unet_index, text_index, models.unet_layout);
      if (target == nullptr) {
        misfits.push_back(origin + ": " + m.key + ": matches no layer of the " + component_name(m.component));
        continue;
      }
      std::string why;
      if (!fits(m, target->weight, &why)) {
        misfits.push_back(origin + ": " + m.key + ": " + why + " ('" + target->name + "')");
        continue;
      }
      const std::string id = std::string(component_name(m.component)) + ":" + target->name;
      if (!seen.insert(id).second) {
        misfits.push_back(origin + ": " + m.key + ": a second LoRA for layer '" + target->name + "'");
        continue;
      }
      Planned& p = plan[id];
      p.target = target;
      p.component = m.component;
      p.terms.push_back(Term{m.down, m.up, spec.scale * m.alpha / static_cast<double>(m.rank)});
    }
  }
  if (!misfits.empty()) {
    if (!lenient) fail_listing(std::to_string(misfits.size()) + " LoRA key(s) do not fit this model", misfits);
    report.skipped = misfits;
  }

  // 2. Back to the base weights where the new LoRAs change nothing, then merge.
  // The loaded weights are inference tensors (moved to the device under InferenceMode): they can be
  // changed in place only under it.
  c10::InferenceMode inference;
  try {
    for (auto it = base_.begin(); it != base_.end();) {
      if (plan.count(it->first) == 0) {
        it->second.weight.copy_(it->second.base);
        drop_packed(it->second.module);
        it = base_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [id, p] : plan) {
      auto kept = base_.find(id);
      if (kept == base_.end()) {
        kept = base_.emplace(id, Kept{p.target->module, p.target->weight, p.target->weight.clone()}).first;
      }
      const torch::Tensor& weight = kept->second.weight;
      // A copy even when the base is fp32 already: the base must stay as it is.
      torch::Tensor merged = kept->second.base.to(torch::TensorOptions().dtype(torch::kFloat), /*non_blocking=*/false,
                                                  /*copy=*/true, torch::MemoryFormat::Contiguous);
      // merged += factor * up @ down, in one pass over the weight (no product temporary).
      auto flat = merged.view({merged.size(0), -1});
      for (const Term& t : p.terms) {
        const auto up = t.up.to(weight.device(), torch::kFloat).flatten(1);
        const auto down = t.down.to(weight.device(), torch::kFloat).flatten(1);
        flat.addmm_(up, down, /*beta=*/1.0, /*alpha=*/t.factor);
      }
      weight.copy_(merged);
      drop_packed(kept->second.module);
      (p.component == Component::kUNet ? report.unet_modules : report.text_encoder_modules)++;
    }
  } catch (const std::exception& e) {
    // Out of memory or a device error midway: leave the base model rather than half a merge.
    for (auto& [id, kept] : base_) {
      kept.weight.copy_(kept.base);
      drop_packed(kept.module);
    }
    base_.clear();
    SD_FAIL("LoRA: merging failed (", std::string(e.what()).substr(0, std::string(e.what()).find('\n')),
            "); the pipeline was reset to its base weights, without LoRAs");
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace sd::lora
