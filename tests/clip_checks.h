#pragma once
// The CLIP text encoder's recorded outputs (a golden "clip_text_encoder" case): last and every
// hidden state, the pooled output, the penultimate state with and without the final LayerNorm.
#include <catch2/catch.hpp>
#include <string>

#include "golden.h"
#include "models/clip_text.h"

namespace golden {

inline void check_clip_outputs(sd::CLIPTextModel& clip, const sd::StateDict& ref, Tolerance tol) {
  auto out = clip->forward(ref.at("input_ids"), /*output_hidden_states=*/true);
  CHECK_CLOSE_TO_GOLDEN(out.last_hidden_state, ref.at("last_hidden_state"), tol);
  CHECK_CLOSE_TO_GOLDEN(out.pooler_output, ref.at("pooler_output"), tol);
  REQUIRE(out.hidden_states.size() == static_cast<size_t>(clip->config.num_hidden_layers + 1));
  for (size_t i = 0; i < out.hidden_states.size(); ++i) {
    INFO("hidden_states." << i);
    CHECK_CLOSE_TO_GOLDEN(out.hidden_states[i], ref.at("hidden_states." + std::to_string(i)), tol);
  }
  CHECK_CLOSE_TO_GOLDEN(out.hidden_states[out.hidden_states.size() - 2], ref.at("penultimate_hidden_state"), tol);
  CHECK_CLOSE_TO_GOLDEN(clip->encode(ref.at("input_ids"), 0), ref.at("last_hidden_state"), tol);
  CHECK_CLOSE_TO_GOLDEN(clip->encode(ref.at("input_ids"), 1), ref.at("penultimate_hidden_state_final_ln"), tol);
}

}  // namespace golden
