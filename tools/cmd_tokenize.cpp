#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "sd/error.h"
#include "sd/tokenizer.h"

namespace sd_cli {

Run add_tokenize(CLI::App& app) {
  struct Args {
    std::string model = "random:sd-v1-5", prompt;
    bool pieces = false;
  };
  auto args = std::make_shared<Args>();
  app.add_option("--model", args->model,
                 "model folder holding tokenizer/, a single-file checkpoint (uses the bundled SD 1.5 tokenizer), "
                 "or random:sd-v1-5")
      ->capture_default_str();
  app.add_option("--prompt", args->prompt, "text to tokenize")->required();
  app.add_flag("--pieces", args->pieces, "also print the token strings");
  return [args] {
    auto tokenizer = sd::CLIPTokenizer::for_model(args->model);
    auto tokens = tokenizer.encode(args->prompt);
    std::printf("%s\n", nlohmann::json(tokens.ids).dump().c_str());
    if (args->pieces) {
      nlohmann::json pieces = nlohmann::json::array();
      for (auto id : tokens.ids) pieces.push_back(tokenizer.id_to_token(id));
      std::printf("%s\n", pieces.dump().c_str());
    }
    if (tokens.num_truncated > 0) {
      std::fprintf(stderr, "warning: the prompt has %d tokens; %d beyond the limit of %d were dropped\n",
                   tokens.num_tokens, tokens.num_truncated, tokenizer.max_length() - 2);
    }
    return 0;
  };
}

}  // namespace sd_cli
