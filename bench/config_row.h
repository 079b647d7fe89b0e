#pragma once
// The columns every measurement row begins with, the same in every tool: where it ran (device,
// LibTorch, CUDA, git revision, threads), the model and precision, and the generation's settings.
// Then each tool adds its own measured columns.
#include <string>

#include "measure.h"
#include "options.h"
#include "row.h"
#include "sd/pipeline.h"

namespace sd_bench {

// "autocast" -> the weights' precision (the autocast column says the rest).
std::string precision_column(const PrecisionSpec& precision);

Row configuration_row(const CommonOptions& common, const PrecisionSpec& precision, const sd::Pipeline& pipe,
                      int steps, int batch);

// peak_rss_bytes, peak_rss_window, peak_device_allocated_bytes, peak_device_reserved_bytes and
// reserved_after_run_bytes (null where not measured). `window_name`: what one window covered
// ("configuration", "try").
void add_memory_columns(Row& row, const MemoryWindow::Reading& memory, const std::string& window_name);

// The library's estimate of a stage's activations (sd::Pipeline::estimate_memory) beside what the
// timed runs took above what was held when they began (MemoryWindow::begin_timed_runs; CUDA:
// allocated bytes, CPU: RSS): estimated_stage, estimated_peak_bytes, measured_increase_bytes (null
// where not measured) and measured_over_estimate. With --warmup 0 the timed runs include the first
// run's one-time allocations (prepacked weights). Pages the allocator still holds after the trim
// (fragments in use) can make a later, smaller configuration read a little low: one per process
// is the calibration's method (docs/reliability.md).
void add_estimate_columns(Row& row, const sd::MemoryEstimate::Stage& estimated, const MemoryWindow::Reading& memory);
// The stage called `name` of an estimate ("the VAE decode"), or the peak stage when `name` is empty.
sd::MemoryEstimate::Stage estimated_stage(const sd::MemoryEstimate& estimate, const std::string& name = "");

}  // namespace sd_bench
