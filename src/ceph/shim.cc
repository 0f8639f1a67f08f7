// A thin C ABI over librados' C++ ObjectReadOperation.
//
// Why C++: `list_watchers` inside a compound read exists only in the C++ API,
// and one compound read per image header (cls calls with FAILOK plus
// list_watchers) is what keeps the exporter at about one round trip per image.
//
// Ownership: Rust creates a batch, appends steps, then submits it. From
// submit on, the batch belongs to the completion callback, which hands it
// back to Rust through `cb`; Rust then reads the results and frees it. A batch
// is never touched by two threads at once.

#include <rados/librados.hpp>

#include <cstdint>
#include <cstring>
#include <list>
#include <map>
#include <new>
#include <string>
#include <vector>

namespace {

enum StepKind { EXEC = 1, WATCHERS = 2, OMAP = 3, READ = 4 };

struct Step {
  StepKind kind;
  int rval = 0;
  ceph::bufferlist out;                       // EXEC, READ
  std::list<obj_watch_t> watchers;            // WATCHERS
  std::map<std::string, ceph::bufferlist> kv; // OMAP
  bool more = false;                          // OMAP
};

}  // namespace

struct rbdx_batch {
  librados::ObjectReadOperation op;
  // std::list keeps element addresses stable while librados holds pointers.
  std::list<Step> steps;
  std::vector<Step*> index;
  librados::AioCompletion* completion = nullptr;
  int rc = 0;
  // The object's version as the OSD replied (0 until completed).
  uint64_t version = 0;
  void (*cb)(void*, rbdx_batch*, int) = nullptr;
  void* cb_arg = nullptr;
  // omap results flattened for iteration from Rust.
  std::vector<const std::pair<const std::string, ceph::bufferlist>*> omap_items;
};

extern "C" {

typedef void (*rbdx_callback)(void* arg, rbdx_batch* batch, int rc);

rbdx_batch* rbdx_batch_new() { return new (std::nothrow) rbdx_batch(); }

void rbdx_batch_free(rbdx_batch* b) {
  if (b == nullptr) return;
  if (b->completion != nullptr) b->completion->release();
  delete b;
}

static Step* push(rbdx_batch* b, StepKind kind) {
  b->steps.emplace_back();
  Step* s = &b->steps.back();
  s->kind = kind;
  b->index.push_back(s);
  return s;
}

// A cls method call whose failure does not fail the other steps.
int rbdx_batch_exec(rbdx_batch* b, const char* cls, const char* method,
                    const char* in, size_t in_len) {
  try {
    Step* s = push(b, EXEC);
    ceph::bufferlist inbl;
    inbl.append(in, in_len);
    b->op.exec(cls, method, inbl, &s->out, &s->rval);
    b->op.set_op_flags2(LIBRADOS_OP_FLAG_FAILOK);
    return (int)b->index.size() - 1;
  } catch (...) {
    return -ENOMEM;
  }
}

int rbdx_batch_list_watchers(rbdx_batch* b) {
  try {
    Step* s = push(b, WATCHERS);
    b->op.list_watchers(&s->watchers, &s->rval);
    b->op.set_op_flags2(LIBRADOS_OP_FLAG_FAILOK);
    return (int)b->index.size() - 1;
  } catch (...) {
    return -ENOMEM;
  }
}

int rbdx_batch_omap_get_vals(rbdx_batch* b, const char* start_after,
                             size_t start_after_len, const char* prefix,
                             uint64_t max) {
  try {
    Step* s = push(b, OMAP);
    b->op.omap_get_vals2(std::string(start_after, start_after_len),
                         std::string(prefix), max, &s->kv, &s->more, &s->rval);
    return (int)b->index.size() - 1;
  } catch (...) {
    return -ENOMEM;
  }
}

// Fails the whole operation unless the object is at version `ver` (its
// user version, the one `rbdx_batch_version` reports): with -ERANGE when it
// is newer, -EOVERFLOW when older. Not FAILOK, and added first, so no step
// after it runs on a mismatch.
int rbdx_batch_assert_version(rbdx_batch* b, uint64_t ver) {
  try {
    b->op.assert_version(ver);
    return 0;
  } catch (...) {
    return -ENOMEM;
  }
}

// The whole of the object's data. Not FAILOK: a failed read fails the
// batch (a missing object fails it with -ENOENT anyway).
int rbdx_batch_read(rbdx_batch* b) {
  try {
    Step* s = push(b, READ);
    b->op.read(0, 0, &s->out, &s->rval);
    return (int)b->index.size() - 1;
  } catch (...) {
    return -ENOMEM;
  }
}

static void on_complete(librados::completion_t, void* arg) {
  rbdx_batch* b = static_cast<rbdx_batch*>(arg);
  b->rc = b->completion->get_return_value();
  b->version = b->completion->get_version64();
  b->cb(b->cb_arg, b, b->rc);
}

// Sends the batch as one compound read. On success, `cb` is called exactly
// once, from a librados thread, and from then on owns the batch. On failure
// (negative return) the caller still owns it.
int rbdx_batch_submit(rados_ioctx_t ioctx, const char* oid, size_t oid_len,
                      rbdx_batch* b, rbdx_callback cb, void* cb_arg) {
  try {
    librados::IoCtx io;
    librados::IoCtx::from_rados_ioctx_t(ioctx, io);
    b->cb = cb;
    b->cb_arg = cb_arg;
    b->completion = librados::Rados::aio_create_completion(b, on_complete);
    if (b->completion == nullptr) return -ENOMEM;
    int r = io.aio_operate(std::string(oid, oid_len), b->completion, &b->op,
                           nullptr);
    if (r < 0) {
      b->completion->release();
      b->completion = nullptr;
    }
    return r;
  } catch (...) {
    return -ENOMEM;
  }
}

// The whole operation's return code.
int rbdx_batch_rc(const rbdx_batch* b) { return b->rc; }

// The object's version the completed operation read.
uint64_t rbdx_batch_version(const rbdx_batch* b) { return b->version; }

size_t rbdx_batch_len(const rbdx_batch* b) { return b->index.size(); }

// A step's own return code; -EINVAL for an index out of range.
int rbdx_step_rval(const rbdx_batch* b, size_t i) {
  if (i >= b->index.size()) return -EINVAL;
  return b->index[i]->rval;
}

// The output bytes of an EXEC or READ step. The pointer is valid until the
// batch is freed.
int rbdx_step_output(rbdx_batch* b, size_t i, const char** data, size_t* len) {
  if (i >= b->index.size()) return -EINVAL;
  if (b->index[i]->kind != EXEC && b->index[i]->kind != READ) return -EINVAL;
  Step* s = b->index[i];
  *len = s->out.length();
  *data = *len ? s->out.c_str() : "";
  return 0;
}

size_t rbdx_step_watcher_count(const rbdx_batch* b, size_t i) {
  if (i >= b->index.size() || b->index[i]->kind != WATCHERS) return 0;
  return b->index[i]->watchers.size();
}

// Watcher `j` of a WATCHERS step: address (NUL-terminated, copied into
// addr_out of addr_cap bytes), entity number and cookie.
int rbdx_step_watcher(const rbdx_batch* b, size_t i, size_t j, char* addr_out,
                      size_t addr_cap, int64_t* watcher_id, uint64_t* cookie) {
  if (i >= b->index.size() || b->index[i]->kind != WATCHERS) return -EINVAL;
  const auto& ws = b->index[i]->watchers;
  if (j >= ws.size() || addr_cap == 0) return -EINVAL;
  auto it = ws.begin();
  std::advance(it, j);
  size_t n = strnlen(it->addr, sizeof(it->addr));
  if (n >= addr_cap) n = addr_cap - 1;
  memcpy(addr_out, it->addr, n);
  addr_out[n] = 0;
  *watcher_id = it->watcher_id;
  *cookie = it->cookie;
  return 0;
}

// Number of omap entries of an OMAP step, and whether more remain.
size_t rbdx_step_omap_count(rbdx_batch* b, size_t i, int* more) {
  if (i >= b->index.size() || b->index[i]->kind != OMAP) return 0;
  Step* s = b->index[i];
  *more = s->more ? 1 : 0;
  b->omap_items.clear();
  for (const auto& kv : s->kv) b->omap_items.push_back(&kv);
  return b->omap_items.size();
}

// Entry `j` of the OMAP step last counted with rbdx_step_omap_count.
int rbdx_step_omap_entry(rbdx_batch* b, size_t j, const char** key,
                         size_t* key_len, const char** val, size_t* val_len) {
  if (j >= b->omap_items.size()) return -EINVAL;
  auto* kv = b->omap_items[j];
  *key = kv->first.data();
  *key_len = kv->first.size();
  // c_str() makes the value contiguous; the bufferlist is ours to change.
  auto& bl = const_cast<ceph::bufferlist&>(kv->second);
  *val_len = bl.length();
  *val = *val_len ? bl.c_str() : "";
  return 0;
}

}  // extern "C"
