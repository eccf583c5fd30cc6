// The JSON report and machine facts of `ivl bench` (tools/bench_report.h).
#include "tools/bench_report.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>

extern "C" int openblas_get_num_threads(void);

namespace ivl::cli {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

int blas_threads() { return openblas_get_num_threads(); }

double peak_rss_gib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB on Linux
}

double median(std::vector<double> values) {
  if (values.empty()) throw std::invalid_argument("median of no values");
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

double rounded(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

BenchReport::BenchReport(const std::string& what, bool json) {
  fields_["what"] = what;
  fields_["device"] = "cpu";
  fields_["threads"] = blas_threads();
  fields_["dtype"] = "f32";
  if (!json) return;
  // The benchmarks print their tables with printf; pointing stdout at stderr keeps them readable
  // on the terminal without threading a FILE* through every line of them.
  std::fflush(stdout);
  saved_stdout_ = ::dup(STDOUT_FILENO);
  if (saved_stdout_ < 0 || ::dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
    throw std::runtime_error("--json: cannot point stdout at stderr for the human-readable table");
}

BenchReport::~BenchReport() { restore_stdout(); }

void BenchReport::restore_stdout() {
  if (saved_stdout_ < 0) return;
  std::fflush(stdout);
  ::dup2(saved_stdout_, STDOUT_FILENO);
  ::close(saved_stdout_);
  saved_stdout_ = -1;
}

void BenchReport::set_seconds(const std::vector<double>& seconds) {
  const double middle = median(seconds);  // first: it refuses an empty list
  fields_["seconds_min"] = rounded(*std::min_element(seconds.begin(), seconds.end()), 6);
  fields_["seconds_median"] = rounded(middle, 6);
}

void BenchReport::print() {
  if (saved_stdout_ < 0) return;
  fields_["peak_rss_GiB"] = rounded(peak_rss_gib(), 3);
  fields_["peak_gpu_GiB"] = nullptr;
  restore_stdout();
  std::printf("%s\n", fields_.dump().c_str());
  std::fflush(stdout);
}

}  // namespace ivl::cli
