#include "config_row.h"

#include "environment.h"
#include "table.h"

namespace sd_bench {

std::string precision_column(const PrecisionSpec& precision) {
  return precision.label == "autocast" ? sd::precision_name(precision.precision) : precision.label;
}

Row configuration_row(const CommonOptions& common, const PrecisionSpec& precision, const sd::Pipeline& pipe,
                      int steps, int batch) {
  Row row;
  row["device"] = device_name(common.device);
  row["device_type"] = pipe.device().is_cuda() ? "cuda" : "cpu";
  add_build_columns(row);
  row["git_revision"] = git_revision();
  row["threads"] = pipe.threads();
  row["model"] = common.model;
  row["precision"] = precision_column(precision);
  row["autocast"] = precision.autocast;
  row["channels_last"] = !common.no_channels_last;
  row["prepack_max_pixels"] = pipe.prepack_max_pixels();
  row["attention_slice"] = common.attention_slice;
  row["scheduler"] = common.scheduler;
  row["steps"] = steps;
  row["batch"] = batch;
  row["height"] = common.height;
  row["width"] = common.width;
  row["guidance"] = common.guidance;
  return row;
}

void add_memory_columns(Row& row, const MemoryWindow::Reading& memory, const std::string& window_name) {
  row["peak_rss_bytes"] = optional_json(memory.peak_rss);
  row["peak_rss_window"] = memory.rss_window ? window_name : "process";
  const auto& d = memory.device;
  row["peak_device_allocated_bytes"] = d ? Row(d->peak_allocated) : Row(nullptr);
  row["peak_device_reserved_bytes"] = d ? Row(d->peak_reserved) : Row(nullptr);
  row["reserved_after_run_bytes"] = d ? Row(d->reserved) : Row(nullptr);
}

void add_estimate_columns(Row& row, const sd::MemoryEstimate::Stage& estimated, const MemoryWindow::Reading& memory) {
  row["estimated_stage"] = estimated.name;
  row["estimated_peak_bytes"] = estimated.bytes;
  const std::optional<int64_t> increase = memory.timed_increase;
  row["measured_increase_bytes"] = optional_json(increase);
  row["measured_over_estimate"] =
      increase && estimated.bytes > 0 ? Row(static_cast<double>(*increase) / static_cast<double>(estimated.bytes))
                                      : Row(nullptr);
}

sd::MemoryEstimate::Stage estimated_stage(const sd::MemoryEstimate& estimate, const std::string& name) {
  if (name.empty()) return {estimate.peak_stage, estimate.peak_bytes};
  for (const auto& stage : estimate.stages) {
    if (stage.name == name) return stage;
  }
  return {name, 0};
}

}  // namespace sd_bench
