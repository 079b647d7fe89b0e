// CLIPTokenizer::for_model: the tokenizer where Pipeline::load finds it (model_source.h), so that a
// tool tokenizing for a model and the pipeline generating from it cannot read different files.
#include <filesystem>

#include "pipeline/model_source.h"
#include "sd/tokenizer.h"

namespace sd {

CLIPTokenizer CLIPTokenizer::for_model(const std::string& model, const std::filesystem::path& config_dir) {
  namespace fs = std::filesystem;
  const fs::path dir = model_config_dir(model, config_dir);
  if (fs::is_directory(model) && !fs::exists(dir / "tokenizer") && fs::exists(dir / "vocab.json")) {
    return from_folder(dir);
  }
  return from_folder(dir / "tokenizer");
}

}  // namespace sd
