// Argument checks shared by the CPU and CUDA bindings of the glamor_fast ops.
// Python's check_gla_inputs already validated the public path; these guard direct
// torch.ops.glamor_fast calls with messages that name the argument.
#pragma once
#include <ATen/ATen.h>

namespace glamor_fast {

struct GlaDims {
  int64_t B, Df, Dc, H, W, N, Hd;
};

inline void check_same(const char* name, const at::Tensor& t, const at::Tensor& context) {
  TORCH_CHECK(t.scalar_type() == context.scalar_type(), "glamor_fast: `", name, "` has dtype ",
              t.scalar_type(), " but `context` has ", context.scalar_type());
  TORCH_CHECK(t.device() == context.device(), "glamor_fast: `", name, "` is on ", t.device(),
              " but `context` is on ", context.device());
}

inline GlaDims check_gla_args(const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1,
                              const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
                              const c10::optional<at::Tensor>& scale,
                              const c10::optional<at::Tensor>& shift, c10::DeviceType device_type) {
  TORCH_CHECK(face.dim() == 2, "glamor_fast: `face` must be (B, Df), got shape ", face.sizes());
  TORCH_CHECK(context.dim() == 4, "glamor_fast: `context` must be (B, Dc, H, W), got shape ",
              context.sizes());
  TORCH_CHECK(context.device().type() == device_type, "glamor_fast: `context` is on ",
              context.device(), "; this kernel is for ", device_type, " tensors");
  auto st = context.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16,
              "glamor_fast: unsupported dtype ", st, " of `context`");
  GlaDims d;
  d.B = face.size(0);
  d.Df = face.size(1);
  d.Dc = context.size(1);
  d.H = context.size(2);
  d.W = context.size(3);
  d.N = d.H * d.W;
  TORCH_CHECK(context.size(0) == d.B, "glamor_fast: `context` has batch ", context.size(0),
              " but `face` has ", d.B);
  TORCH_CHECK(d.Df > 0 && d.Dc > 0 && d.N > 0, "glamor_fast: empty feature or cell dimension");
  TORCH_CHECK(w1.dim() == 2 && w1.size(1) == d.Df + d.Dc && w1.size(0) > 0,
              "glamor_fast: `w1` must be (Hd, Df + Dc) = (Hd, ", d.Df + d.Dc, "), got ", w1.sizes());
  d.Hd = w1.size(0);
  TORCH_CHECK(b1.dim() == 1 && b1.size(0) == d.Hd, "glamor_fast: `b1` must be (", d.Hd, ",), got ",
              b1.sizes());
  TORCH_CHECK(w2.dim() == 1 && w2.size(0) == d.Hd, "glamor_fast: `w2` must be (", d.Hd, ",), got ",
              w2.sizes());
  TORCH_CHECK(b2.numel() == 1 && b2.dim() <= 1, "glamor_fast: `b2` must be a scalar, got ", b2.sizes());
  TORCH_CHECK(scale.has_value() == shift.has_value(),
              "glamor_fast: `hidden_scale` and `hidden_shift` go together");
  check_same("face", face, context);
  check_same("w1", w1, context);
  check_same("b1", b1, context);
  check_same("w2", w2, context);
  check_same("b2", b2, context);
  if (scale.has_value()) {
    TORCH_CHECK(scale->dim() == 1 && scale->size(0) == d.Hd && shift->dim() == 1 &&
                    shift->size(0) == d.Hd,
                "glamor_fast: `hidden_scale`/`hidden_shift` must be (", d.Hd, ",), got ",
                scale->sizes(), " and ", shift->sizes());
    check_same("hidden_scale", *scale, context);
    check_same("hidden_shift", *shift, context);
  }
  return d;
}

// The hidden-statistics ops' arguments (face, context, w1, b1 as for the GLA op); float32 or
// float64 only (16-bit callers convert first).
inline GlaDims check_gla_stats_args(const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1,
                                    const at::Tensor& b1, c10::DeviceType device_type) {
  TORCH_CHECK(w1.dim() == 2, "glamor_fast: `w1` must be (Hd, Df + Dc), got shape ", w1.sizes());
  TORCH_CHECK(context.scalar_type() == at::kFloat || context.scalar_type() == at::kDouble,
              "glamor_fast: the hidden statistics take float32 or float64, got ", context.scalar_type());
  const auto opts = context.options();
  return check_gla_args(face, context, w1, b1, at::zeros({w1.size(0)}, opts), at::zeros({}, opts), c10::nullopt,
                        c10::nullopt, device_type);
}

// The backward's own arguments (the forward's are checked by check_gla_args).
// The output gradients are optional: a missing one is zero.
inline void check_gla_backward_args(const GlaDims& d, const c10::optional<at::Tensor>& grad_pooled,
                                    const c10::optional<at::Tensor>& grad_attn,
                                    const c10::optional<at::Tensor>& grad_lse, const at::Tensor& attn,
                                    const at::Tensor& lse) {
  TORCH_CHECK(!grad_pooled.has_value() || grad_pooled->sizes() == at::IntArrayRef({d.B, d.Dc}),
              "glamor_fast: `grad_pooled` must be (B, Dc), got ", grad_pooled->sizes());
  TORCH_CHECK((!grad_attn.has_value() || grad_attn->numel() == d.B * d.N) && attn.numel() == d.B * d.N,
              "glamor_fast: `grad_attn` and `attn` must have B*H*W elements");
  TORCH_CHECK(lse.numel() == d.B && (!grad_lse.has_value() || grad_lse->numel() == d.B),
              "glamor_fast: `lse` and `grad_lse` must have B elements");
}

}  // namespace glamor_fast
