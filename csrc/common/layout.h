// The memory-format rule every glamor_fast op follows for its outputs: channels_last out for a
// channels_last (and not also contiguous) input, contiguous otherwise.
#pragma once
#include <ATen/ATen.h>

namespace glamor_fast {

inline bool is_channels_last(const at::Tensor& t) {
  return t.is_contiguous(at::MemoryFormat::ChannelsLast) && !t.is_contiguous();
}

}  // namespace glamor_fast
