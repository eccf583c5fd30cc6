// What an `ivl bench` run measured, as one JSON object on stdout (--json) whose keys are those of
// ../shared/bench/official_cpu.py, so that a script can put the two side by side; and the machine
// facts every benchmark prints (CPU model, BLAS threads, peak resident memory).
#pragma once
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ivl::cli {

std::string cpu_model();
int blas_threads();     // OpenBLAS's thread count
double peak_rss_gib();  // the process's peak resident memory so far
// As Python's statistics.median: the mean of the two middle values of an even count.
double median(std::vector<double> values);
// value to `decimals` places, as the reference script's round(): JSON readers need no 17 digits.
double rounded(double value, int decimals);

class BenchReport {
 public:
  // With json, what the benchmark prints goes to stderr until print(), so that stdout carries the
  // one JSON object alone. The object starts with what, device "cpu", threads and dtype "f32".
  BenchReport(const std::string& what, bool json);
  ~BenchReport();
  BenchReport(const BenchReport&) = delete;
  BenchReport& operator=(const BenchReport&) = delete;

  // ordered_json: the keys print in the order they were set, "what" first, as the reference's dict.
  nlohmann::ordered_json& operator[](const std::string& key) { return fields_[key]; }
  // seconds_min and seconds_median, the keys the reference script reports for its timed runs.
  void set_seconds(const std::vector<double>& seconds);
  // Adds peak_rss_GiB (and peak_gpu_GiB: null, as the reference on the CPU), then with json puts
  // stdout back and prints the object on one line.
  void print();

 private:
  void restore_stdout();
  nlohmann::ordered_json fields_ = nlohmann::ordered_json::object();
  int saved_stdout_ = -1;  // a duplicate of stdout while it points at stderr
};

}  // namespace ivl::cli
