// Shape and indexing ops: views (reshape, permute, slice, expand), copies that rearrange
// (cat, index_select, gather, where), scatter_add, masked_fill and embedding. Ops that only move
// elements work on every dtype by element size; none of them computes.
#include <algorithm>
#include <numeric>

#include "tensor/autograd.h"
#include "tensor/cpu_helpers.h"
#include "tensor/ops.h"

namespace ivl {
using namespace detail;

namespace {

const OpName kReshape("reshape"), kPermute("permute"), kSlice("slice"), kExpand("expand"), kCat("cat"),
    kIndexSelect("index_select"), kGather("gather"), kScatterAdd("scatter_add"), kMaskedFill("masked_fill"),
    kWhere("where"), kEmbedding("embedding");

// Calls f(W{}) with W an unsigned word as wide as one element.
template <class F> void dispatch_word(DType dtype, F&& f) {
  switch (dtype_size(dtype)) {
    case 1: return f(uint8_t{});
    case 2: return f(uint16_t{});
    case 4: return f(uint32_t{});
    default: return f(uint64_t{});
  }
}

void require_cpu(const Tensor& t, const char* op) {
  if (t.device() == Device::cuda) no_cuda_kernel(op);
}

// Reads an index tensor (i32 or i64, any layout) as int64 values in row-major order, checking bounds.
std::vector<int64_t> read_indices(const Tensor& index, int64_t bound, const char* op) {
  if (index.device() != Device::cpu) no_cuda_kernel(op);
  std::vector<int64_t> out(static_cast<size_t>(index.numel()));
  const Tensor ic = contiguous(index);
  dispatch_index(index.dtype(), op, [&](auto tag) {
    using I = decltype(tag);
    const I* p = static_cast<const I*>(ic.data_ptr());
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<int64_t>(p[i]);
      if (out[i] < 0 || out[i] >= bound)
        fail(std::string(op) + ": index " + int_str(out[i]) + " is out of range [0, " + int_str(bound) + ")");
    }
  });
  return out;
}

}  // namespace

// ---------------------------------------------------------------- views

Tensor reshape(const Tensor& x, const Shape& shape_in) {
  Shape shape = shape_in;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) fail("reshape: only one dim may be -1 in " + shape_str(shape_in));
      infer = static_cast<int64_t>(i);
    } else if (shape[i] < 0) {
      fail("reshape: invalid shape " + shape_str(shape_in));
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || x.numel() % known != 0)
      fail("reshape: cannot reshape " + x.str() + " to " + shape_str(shape_in));
    shape[static_cast<size_t>(infer)] = x.numel() / known;
  }
  if (shape_numel(shape) != x.numel()) fail("reshape: cannot reshape " + x.str() + " to " + shape_str(shape_in));
  if (shape == x.shape()) return x;
  const Tensor src = contiguous(x);
  Tensor out = make_view(src, shape, contiguous_strides(shape), src.offset());
  const Shape in_shape = x.shape();
  return record(kReshape, out, {src}, [in_shape](const Tensor& g) { return std::vector<Tensor>{reshape(g, in_shape)}; });
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& order_in) {
  if (static_cast<int64_t>(order_in.size()) != x.dim())
    fail("permute: order has " + int_str(static_cast<int64_t>(order_in.size())) + " dims, the tensor " + int_str(x.dim()));
  std::vector<int64_t> order, inverse(order_in.size());
  std::vector<bool> seen(order_in.size(), false);
  Shape shape, strides;
  for (size_t i = 0; i < order_in.size(); ++i) {
    const int64_t d = wrap_dim(order_in[i], x.dim(), "permute");
    if (seen[static_cast<size_t>(d)]) fail("permute: dim " + int_str(d) + " appears twice");
    seen[static_cast<size_t>(d)] = true;
    order.push_back(d);
    inverse[static_cast<size_t>(d)] = static_cast<int64_t>(i);
    shape.push_back(x.size(d));
    strides.push_back(x.stride(d));
  }
  bool identity = true;
  for (size_t i = 0; i < order.size(); ++i) identity = identity && order[i] == static_cast<int64_t>(i);
  if (identity) return x;
  Tensor out = make_view(x, shape, strides, x.offset());
  return record(kPermute, out, {x}, [inverse](const Tensor& g) { return std::vector<Tensor>{permute(g, inverse)}; });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  std::vector<int64_t> order(static_cast<size_t>(x.dim()));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::swap(order[static_cast<size_t>(wrap_dim(dim0, x.dim(), "transpose"))],
            order[static_cast<size_t>(wrap_dim(dim1, x.dim(), "transpose"))]);
  return permute(x, order);
}

Tensor slice(const Tensor& x, int64_t dim_in, int64_t start, int64_t end, int64_t step) {
  const int64_t dim = wrap_dim(dim_in, x.dim(), "slice");
  if (step <= 0) fail("slice: step must be positive, got " + int_str(step));
  const int64_t size = x.size(dim);
  auto clamp = [size](int64_t i) { return std::clamp(i < 0 ? i + size : i, int64_t{0}, size); };
  start = clamp(start), end = std::max(clamp(end), start);
  Shape shape = x.shape(), strides = x.strides();
  const auto d = static_cast<size_t>(dim);
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  if (shape == x.shape()) return x;
  Tensor out = make_view(x, shape, strides, x.offset() + start * x.stride(dim));
  const Shape in_shape = x.shape();
  return record(kSlice, out, {x}, [=](const Tensor& g) {
    Tensor gx = Tensor::zeros(in_shape, g.dtype(), g.device());
    Shape gstrides = gx.strides();
    gstrides[d] *= step;
    copy_strided(make_view(gx, g.shape(), gstrides, start * gx.stride(dim)), g);
    return std::vector<Tensor>{gx};
  });
}

Tensor narrow(const Tensor& x, int64_t dim_in, int64_t start, int64_t length) {
  const int64_t dim = wrap_dim(dim_in, x.dim(), "narrow");
  if (start < 0) start += x.size(dim);  // as PyTorch: a negative start counts from the end
  if (start < 0 || length < 0 || start + length > x.size(dim))
    fail("narrow: [" + int_str(start) + ", " + int_str(start + length) + ") is outside dim " + int_str(dim) +
         " of " + x.str());
  return slice(x, dim, start, start + length);
}

Tensor expand(const Tensor& x, const Shape& shape_in) {
  if (shape_in.size() < x.shape().size())
    fail("expand: cannot expand " + x.str() + " to fewer dims " + shape_str(shape_in));
  const size_t lead = shape_in.size() - x.shape().size();
  Shape shape = shape_in, strides(shape_in.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      if (shape[i] < 0) fail("expand: -1 is not allowed for a new leading dim in " + shape_str(shape_in));
      continue;
    }
    const int64_t have = x.shape()[i - lead];
    if (shape[i] < -1) fail("expand: invalid size " + int_str(shape[i]) + " in " + shape_str(shape_in));
    if (shape[i] == -1) shape[i] = have;
    if (have == shape[i]) strides[i] = x.strides()[i - lead];
    else if (have != 1) fail("expand: cannot expand " + x.str() + " to " + shape_str(shape_in));
  }
  if (shape == x.shape()) return x;
  Tensor out = make_view(x, shape, strides, x.offset());
  const Shape in_shape = x.shape();
  return record(kExpand, out, {x}, [in_shape](const Tensor& g) { return std::vector<Tensor>{sum_to(g, in_shape)}; });
}

// Adding or removing a size-1 dim keeps every stride valid: a view of any layout, with reshape's node.
static Tensor size_one_view(const Tensor& x, Shape shape, Shape strides) {
  Tensor out = make_view(x, std::move(shape), std::move(strides), x.offset());
  const Shape in_shape = x.shape();
  return record(kReshape, out, {x}, [in_shape](const Tensor& g) { return std::vector<Tensor>{reshape(g, in_shape)}; });
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape shape = x.shape(), strides = x.strides();
  const int64_t stride = d < x.dim() ? x.stride(d) * x.size(d) : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  return size_one_view(x, shape, strides);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) {  // as PyTorch: a 0-d tensor squeezes to itself
    wrap_dim(dim, 1, "squeeze");
    return x;
  }
  const int64_t d = wrap_dim(dim, x.dim(), "squeeze");
  if (x.size(d) != 1) return x;  // as PyTorch: squeezing a dim that is not 1 changes nothing
  Shape shape = x.shape(), strides = x.strides();
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return size_one_view(x, shape, strides);
}

// ---------------------------------------------------------------- cat and stack

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim_in) {
  if (tensors.empty()) fail("cat: no tensors");
  const Tensor& first = tensors[0];
  const int64_t dim = wrap_dim(dim_in, first.dim(), "cat");
  Shape shape = first.shape();
  shape[static_cast<size_t>(dim)] = 0;
  for (const Tensor& t : tensors) {
    if (t.dim() != first.dim() || t.dtype() != first.dtype() || t.device() != first.device())
      fail("cat: " + t.str() + " does not match " + first.str());
    for (int64_t d = 0; d < t.dim(); ++d)
      if (d != dim && t.size(d) != first.size(d))
        fail("cat: shapes " + shape_str(first.shape()) + " and " + shape_str(t.shape()) + " differ outside dim " + int_str(dim));
    shape[static_cast<size_t>(dim)] += t.size(dim);
  }
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  std::vector<int64_t> sizes;
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    copy_strided(out.detach().narrow(dim, start, t.size(dim)), t);
    sizes.push_back(t.size(dim));
    start += t.size(dim);
  }
  return record(kCat, out, tensors, [sizes, dim](const Tensor& g) {
    std::vector<Tensor> grads;
    int64_t at = 0;
    for (int64_t s : sizes) grads.push_back(narrow(g, dim, at, s)), at += s;
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) fail("stack: no tensors");
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> expanded;
  for (const Tensor& t : tensors) {
    if (t.shape() != tensors[0].shape())
      fail("stack: shapes " + shape_str(tensors[0].shape()) + " and " + shape_str(t.shape()) + " differ");
    expanded.push_back(unsqueeze(t, d));
  }
  return cat(expanded, d);
}

// ---------------------------------------------------------------- index_select, gather, scatter_add

// out[.., k, ..] = x[.., index[k], ..] along dim; the backward adds rows back: gx[.., index[k], ..] += g.
Tensor index_select(const Tensor& x, int64_t dim_in, const Tensor& index) {
  require_cpu(x, "index_select");
  const int64_t dim = wrap_dim(dim_in, x.dim(), "index_select");
  if (index.dim() != 1) fail("index_select: the index must be 1-D, got " + index.str());
  const std::vector<int64_t> idx = read_indices(index, x.size(dim), "index_select");
  const Tensor xc = contiguous(x.detach());
  Shape shape = x.shape();
  shape[static_cast<size_t>(dim)] = static_cast<int64_t>(idx.size());
  Tensor out = Tensor::empty(shape, x.dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  const int64_t n = x.size(dim), k = static_cast<int64_t>(idx.size());
  dispatch_word(x.dtype(), [&](auto word) {
    using W = decltype(word);
    const W* px = static_cast<const W*>(xc.data_ptr());
    W* po = static_cast<W*>(out.data_ptr());
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < k; ++j)
        std::copy_n(px + (o * n + idx[static_cast<size_t>(j)]) * inner, inner, po + (o * k + j) * inner);
  });
  const Shape in_shape = x.shape();
  return record(kIndexSelect, out, {x}, [=](const Tensor& g_in) {
    const Tensor g = contiguous(computes_in_f32(g_in) ? to_dtype(g_in, DType::f32) : g_in);  // bf16 adds in f32
    Tensor gx = Tensor::zeros(in_shape, g.dtype());
    dispatch_float(g.dtype(), "index_select backward", [&](auto tag) {
      using T = decltype(tag);
      const T* pg = static_cast<const T*>(g.data_ptr());
      T* pd = static_cast<T*>(gx.data_ptr());
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < k; ++j)
          for (int64_t i = 0; i < inner; ++i) pd[(o * n + idx[static_cast<size_t>(j)]) * inner + i] += pg[(o * k + j) * inner + i];
    });
    return std::vector<Tensor>{to_dtype(gx, g_in.dtype())};
  });
}

// For torch.gather / scatter_add: calls f(position in index (row-major), offset into x) for every
// element of `index`, where the offset replaces coordinate `dim` by the index value.
template <class F>
static void for_each_gather(const Tensor& x_contig, int64_t dim, const Tensor& index, const char* op, F&& f) {
  if (index.dim() != x_contig.dim()) fail(std::string(op) + ": index " + index.str() + " and input " + x_contig.str() + " differ in rank");
  for (int64_t d = 0; d < x_contig.dim(); ++d)
    if (d != dim && index.size(d) > x_contig.size(d))
      fail(std::string(op) + ": index " + shape_str(index.shape()) + " is larger than the input " +
           shape_str(x_contig.shape()) + " in dim " + int_str(d));
  const std::vector<int64_t> idx = read_indices(index, x_contig.size(dim), op);
  const Shape& xs = x_contig.strides();
  std::vector<int64_t> coord(static_cast<size_t>(index.dim()), 0);
  for (size_t p = 0; p < idx.size(); ++p) {
    int64_t offset = 0;
    for (size_t d = 0; d < coord.size(); ++d) offset += (static_cast<int64_t>(d) == dim ? idx[p] : coord[d]) * xs[d];
    f(static_cast<int64_t>(p), offset);
    for (size_t d = coord.size(); d-- > 0;) {
      if (++coord[d] < index.shape()[d]) break;
      coord[d] = 0;
    }
  }
}

Tensor gather(const Tensor& x, int64_t dim_in, const Tensor& index) {
  require_cpu(x, "gather");
  const int64_t dim = wrap_dim(dim_in, x.dim(), "gather");
  const Tensor xc = contiguous(x.detach());
  Tensor out = Tensor::empty(index.shape(), x.dtype());
  dispatch_word(x.dtype(), [&](auto word) {
    using W = decltype(word);
    const W* px = static_cast<const W*>(xc.data_ptr());
    W* po = static_cast<W*>(out.data_ptr());
    for_each_gather(xc, dim, index, "gather", [&](int64_t p, int64_t offset) { po[p] = px[offset]; });
  });
  const Shape in_shape = x.shape();
  return record(kGather, out, {x}, [=](const Tensor& g) {
    return std::vector<Tensor>{scatter_add(Tensor::zeros(in_shape, g.dtype(), g.device()), dim, index, g)};
  });
}

Tensor scatter_add(const Tensor& x, int64_t dim_in, const Tensor& index, const Tensor& src) {
  check_same_dtype(x, src, "scatter_add");
  if (computes_in_f32(x))
    return to_dtype(scatter_add(to_dtype(x, DType::f32), dim_in, index, to_dtype(src, DType::f32)), x.dtype());
  if (common_device({x, src}, "scatter_add") == Device::cuda) no_cuda_kernel("scatter_add");
  const int64_t dim = wrap_dim(dim_in, x.dim(), "scatter_add");
  if (index.dim() != src.dim()) fail("scatter_add: index " + index.str() + " and src " + src.str() + " differ in rank");
  for (int64_t d = 0; d < index.dim(); ++d)
    if (index.size(d) > src.size(d)) fail("scatter_add: index " + index.str() + " is larger than src " + src.str());
  Tensor out = clone(x.detach());
  const Tensor sc = contiguous(src.detach());
  const Shape src_strides = sc.strides();
  dispatch_float(x.dtype(), "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    const T* ps = static_cast<const T*>(sc.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    // The index may be smaller than src: map the index position back to src's coordinates.
    const Shape ishape = index.shape();
    std::vector<int64_t> coord(ishape.size(), 0);
    for_each_gather(out, dim, index, "scatter_add", [&](int64_t, int64_t offset) {
      int64_t s = 0;
      for (size_t d = 0; d < coord.size(); ++d) s += coord[d] * src_strides[d];
      po[offset] += ps[s];
      for (size_t d = coord.size(); d-- > 0;) {
        if (++coord[d] < ishape[d]) break;
        coord[d] = 0;
      }
    });
  });
  const Shape src_shape = src.shape();
  return record(kScatterAdd, out, {x, src}, [=](const Tensor& g) {
    Tensor gsrc = gather(g, dim, index);
    if (gsrc.shape() != src_shape) {  // src larger than index: the rest of src got no gradient
      Tensor padded = Tensor::zeros(src_shape, g.dtype(), g.device());
      copy_strided(make_view(padded, gsrc.shape(), padded.strides(), 0), gsrc);
      gsrc = padded;
    }
    return std::vector<Tensor>{g, gsrc};
  });
}

// ---------------------------------------------------------------- where, masked_fill

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  if (common_device({condition, a, b}, "where") == Device::cuda) no_cuda_kernel("where");
  check_same_dtype(a, b, "where");
  if (condition.dtype() != DType::boolean) fail("where: the condition must be bool, got " + condition.str());
  const Shape shape = broadcast_shapes(broadcast_shapes(condition.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = Tensor::empty(shape, a.dtype());
  const Shape so = out.strides(), sc = broadcast_strides(condition, shape), sa = broadcast_strides(a, shape),
              sb = broadcast_strides(b, shape);
  const uint8_t* pc = static_cast<const uint8_t*>(condition.data_ptr());
  dispatch_word(a.dtype(), [&](auto word) {
    using W = decltype(word);
    const W* pa = static_cast<const W*>(a.data_ptr());
    const W* pb = static_cast<const W*>(b.data_ptr());
    W* po = static_cast<W*>(out.data_ptr());
    for_each_row<4>(shape, {&so, &sc, &sa, &sb}, [&](auto base, int64_t n, auto step) {
      for (int64_t i = 0; i < n; ++i)
        po[base[0] + i] = pc[base[1] + i * step[1]] ? pa[base[2] + i * step[2]] : pb[base[3] + i * step[3]];
    });
  });
  const Shape shape_a = a.shape(), shape_b = b.shape();
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record(kWhere, out, {a, b}, [=](const Tensor& g) {
    const Tensor zero = Tensor::scalar(0, g.dtype(), g.device());
    return std::vector<Tensor>{need_a ? sum_to(where(condition, g, zero), shape_a) : Tensor(),
                               need_b ? sum_to(where(condition, zero, g), shape_b) : Tensor()};
  });
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  if (broadcast_shapes(mask.shape(), x.shape(), "masked_fill") != x.shape())
    fail("masked_fill: the mask " + mask.str() + " must broadcast to the input " + x.str());
  Tensor fill = Tensor::scalar(value, x.dtype(), x.device());
  Tensor out = where(mask, fill, x.detach());
  return record(kMaskedFill, out, {x}, [mask](const Tensor& g) { return std::vector<Tensor>{masked_fill(g, mask, 0.0)}; });
}

// ---------------------------------------------------------------- embedding

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  require_cpu(weight, "embedding");
  if (weight.dim() != 2) fail("embedding: the weight must be [vocab, dim], got " + weight.str());
  const Tensor flat = reshape(ids.detach(), {ids.numel()});
  Tensor rows;
  {
    NoGrad no_grad;
    rows = index_select(weight, 0, flat);
  }
  Shape shape = ids.shape();
  shape.push_back(weight.size(1));
  Tensor out = reshape(rows, shape);
  const int64_t vocab = weight.size(0);
  const Tensor out_view = out.detach();
  return record(kEmbedding, out_view, {weight}, [=](const Tensor& g) {
    const Tensor g2 = reshape(g, {flat.numel(), g.size(-1)});
    const Tensor idx = unsqueeze(flat, 1).expand({flat.numel(), g.size(-1)});
    return std::vector<Tensor>{scatter_add(Tensor::zeros({vocab, g.size(-1)}, g.dtype(), g.device()), 0, idx, g2)};
  });
}

}  // namespace ivl
