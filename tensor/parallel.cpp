// A fixed pool of sleeping worker threads behind parallel_for (see parallel.h).
#include "tensor/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ivl {
namespace {

int configured_threads() {
  for (const char* name : {"IVL_NUM_THREADS", "OPENBLAS_NUM_THREADS"}) {
    const char* value = std::getenv(name);
    if (!value || !*value) continue;
    char* end = nullptr;
    const long n = std::strtol(value, &end, 10);
    if (*end == '\0' && n >= 1) return static_cast<int>(std::min<long>(n, 256));
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

thread_local bool inside_body = false;

class Pool {
 public:
  explicit Pool(int threads) { grow(threads); }
  // Never destroyed (see pool()), so the workers are never joined.

  int threads() const { return threads_.load(); }
  // At least n threads, the caller included (workers are added, never removed).
  void grow(int n) {
    std::lock_guard<std::mutex> caller(run_mutex_);
    while (threads_.load() < n) {
      workers_.emplace_back([this] { work(); });
      ++threads_;
    }
  }

  void run(int64_t n, int64_t chunks, const std::function<void(int64_t, int64_t)>& body) {
    std::unique_lock<std::mutex> caller(run_mutex_);  // one parallel_for at a time from outside
    {
      std::lock_guard<std::mutex> lock(mutex_);
      body_ = &body, n_ = n, chunks_ = chunks, next_ = 1, unfinished_ = chunks - 1, error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_chunk(0);
    for (;;) {  // take chunks the workers have not reached yet
      int64_t chunk;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (next_ >= chunks_) break;
        chunk = next_++;
      }
      finish(chunk);
    }
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return unfinished_ == 0; });
    body_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    uint64_t seen = 0;
    for (;;) {
      int64_t chunk;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen && next_ < chunks_; });
        chunk = next_++;
        if (next_ >= chunks_) seen = generation_;
      }
      finish(chunk);
    }
  }

  void finish(int64_t chunk) {
    run_chunk(chunk);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--unfinished_ == 0) done_.notify_one();
  }

  void run_chunk(int64_t chunk) {
    const int64_t begin = n_ * chunk / chunks_, end = n_ * (chunk + 1) / chunks_;
    inside_body = true;
    try {
      (*body_)(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    inside_body = false;
  }

  std::atomic<int> threads_{1};
  std::vector<std::thread> workers_;
  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t n_ = 0, chunks_ = 0, next_ = 0, unfinished_ = 0;
  uint64_t generation_ = 0;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool* instance = new Pool(configured_threads());
  return *instance;
}

std::atomic<int> thread_limit{0};  // 0: not set, the configured count

}  // namespace

int parallel_threads() {
  const int limit = thread_limit.load();
  return limit > 0 ? limit : pool().threads();
}

int set_parallel_threads(int n) {
  const int previous = parallel_threads();
  n = std::clamp(n, 1, 256);
  pool().grow(n);
  thread_limit.store(n);
  return previous;
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = std::min<int64_t>(n / grain, inside_body ? 1 : parallel_threads());
  if (chunks <= 1) return body(0, n);
  pool().run(n, chunks, body);
}

}  // namespace ivl
