// libFuzzer target for the safetensors header parser (`make fuzz`). Exceptions are the expected
// answer to bad input; a crash, an AddressSanitizer report, or an accepted header whose tensors do
// not tile the data buffer inside the input is a bug.
#include <cstddef>
#include <cstdint>
#include <exception>

#include "nn/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ivl::SafetensorsHeader header;
  try {
    header = ivl::parse_safetensors_header(data, size, "fuzz input");
  } catch (const std::exception&) {
    return 0;
  }
  // An accepted header promises that every tensor's bytes lie inside the input, back to back.
  uint64_t expected_begin = 0;
  volatile uint8_t checksum = 0;
  for (const auto& entry : header.entries) {
    if (entry.begin != expected_begin || entry.end < entry.begin) __builtin_trap();
    if (static_cast<uint64_t>(ivl::shape_numel(entry.shape)) * ivl::dtype_size(entry.dtype) != entry.nbytes())
      __builtin_trap();
    // Reading the claimed bytes lets AddressSanitizer check the promise.
    for (uint64_t i = entry.begin; i < entry.end; ++i) checksum = checksum + data[header.data_start + i];
    expected_begin = entry.end;
  }
  if (header.data_start + expected_begin != size) __builtin_trap();
  return 0;
}
