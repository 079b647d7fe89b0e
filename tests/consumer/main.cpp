// Uses only the installed public API: tokenizer, scheduler, the safetensors writer/reader, errors.
#include <sd/sd.h>

#include <cstdio>
#include <filesystem>

int main(int argc, char** argv) try {
  if (argc != 2) return 2;
  auto tokenizer = sd::CLIPTokenizer::for_model("random:sd-v1-5");
  auto tokens = tokenizer.encode("a photo of an astronaut");
  auto scheduler = sd::make_scheduler(sd::SchedulerKind::kDDIM, sd::SchedulerConfig{});
  scheduler->set_timesteps(10);
  const std::filesystem::path file = argv[1];
  sd::save_safetensors(file, sd::NamedTensors{{"timesteps", scheduler->timesteps()}});
  sd::SafetensorsFile read(file);
  std::printf("tokens=%zu first=%lld timesteps=%lld precision=%s\n", tokens.ids.size(),
              static_cast<long long>(tokens.ids[1]), static_cast<long long>(read.get("timesteps").size(0)),
              sd::precision_name(sd::Precision::kBF16).c_str());
  std::printf("%s\n", sd::build_info_line().c_str());
  // An exception thrown inside libsd.so, caught here by its type (libsd exports its typeinfo).
  try {
    sd::precision_from_name("fp8");
  } catch (const sd::Error& e) {
    std::printf("caught sd::Error: %s\n", e.what());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
