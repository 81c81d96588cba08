#include "io/pickle.h"

#include <cmath>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "common/error.h"

namespace tinv {

// ---------------------------------------------------------------------------------------------
// PickleValue / PickleDict

const char* pickle_kind_name(PickleValue::Kind kind) {
  switch (kind) {
    case PickleValue::Kind::None: return "None";
    case PickleValue::Kind::Bool: return "bool";
    case PickleValue::Kind::Int: return "int";
    case PickleValue::Kind::Float: return "float";
    case PickleValue::Kind::String: return "str";
    case PickleValue::Kind::Bytes: return "bytes";
    case PickleValue::Kind::List: return "list";
    case PickleValue::Kind::Tuple: return "tuple";
    case PickleValue::Kind::Dict: return "dict";
    case PickleValue::Kind::Tensor: return "tensor";
    case PickleValue::Kind::Storage: return "storage";
    case PickleValue::Kind::Global: return "global";
  }
  return "?";
}

namespace {
[[noreturn]] void kind_error(const char* expected, PickleValue::Kind got) {
  throw Error("pickle", str_cat("expected ", expected, ", got ", pickle_kind_name(got)));
}
}  // namespace

PickleValue::PickleValue(bool b) : kind_(Kind::Bool), bool_(b) {}
PickleValue::PickleValue(int64_t i) : kind_(Kind::Int), int_(i) {}
PickleValue::PickleValue(double f) : kind_(Kind::Float), float_(f) {}
PickleValue::PickleValue(std::string s)
    : kind_(Kind::String), string_(std::make_shared<const std::string>(std::move(s))) {}
PickleValue::PickleValue(torch::Tensor t) : kind_(Kind::Tensor), tensor_(std::move(t)) {}

PickleValue PickleValue::make_bytes(std::string b) {
  PickleValue v(std::move(b));
  v.kind_ = Kind::Bytes;
  return v;
}
PickleValue PickleValue::make_list(List items) {
  PickleValue v;
  v.kind_ = Kind::List;
  v.list_ = std::make_shared<List>(std::move(items));
  return v;
}
PickleValue PickleValue::make_tuple(List items) {
  PickleValue v = make_list(std::move(items));
  v.kind_ = Kind::Tuple;
  return v;
}
PickleValue PickleValue::make_dict(const std::vector<std::pair<std::string, PickleValue>>& items,
                                   const std::string& class_name) {
  PickleValue v;
  v.kind_ = Kind::Dict;
  v.dict_ = std::make_shared<PickleDict>();
  v.dict_->class_name = class_name;
  for (const auto& [key, value] : items) v.dict_->set(PickleValue(key), value);
  return v;
}
PickleValue PickleValue::make_storage(torch::Tensor t) {
  PickleValue v(std::move(t));
  v.kind_ = Kind::Storage;
  return v;
}
PickleValue PickleValue::make_global(std::string name) {
  PickleValue v(std::move(name));
  v.kind_ = Kind::Global;
  return v;
}

bool PickleValue::boolean() const {
  if (kind_ != Kind::Bool) kind_error("bool", kind_);
  return bool_;
}
int64_t PickleValue::integer() const {
  if (kind_ != Kind::Int) kind_error("int", kind_);
  return int_;
}
double PickleValue::number() const {
  if (kind_ == Kind::Int) return static_cast<double>(int_);
  if (kind_ != Kind::Float) kind_error("float", kind_);
  return float_;
}
const std::string& PickleValue::string() const {
  if (kind_ != Kind::String && kind_ != Kind::Bytes && kind_ != Kind::Global) kind_error("str", kind_);
  return *string_;
}
const PickleValue::List& PickleValue::items() const {
  if (kind_ != Kind::List && kind_ != Kind::Tuple) kind_error("list or tuple", kind_);
  return *list_;
}
PickleValue::List& PickleValue::items() {
  if (kind_ != Kind::List && kind_ != Kind::Tuple) kind_error("list or tuple", kind_);
  return *list_;
}
const PickleDict& PickleValue::dict() const {
  if (kind_ != Kind::Dict) kind_error("dict", kind_);
  return *dict_;
}
PickleDict& PickleValue::dict() {
  if (kind_ != Kind::Dict) kind_error("dict", kind_);
  return *dict_;
}
const torch::Tensor& PickleValue::tensor() const {
  if (kind_ != Kind::Tensor && kind_ != Kind::Storage) kind_error("tensor", kind_);
  return tensor_;
}
const PickleValue* PickleValue::find(const std::string& key) const {
  return kind_ == Kind::Dict ? dict_->find(key) : nullptr;
}
const void* PickleValue::container_id() const {
  if (list_) return list_.get();
  if (dict_) return dict_.get();
  return nullptr;
}

void PickleDict::set(PickleValue key, PickleValue value) {
  if (key.kind() == PickleValue::Kind::String) {
    auto [it, inserted] = string_index_.emplace(key.string(), items_.size());
    if (!inserted) {
      items_[it->second].second = std::move(value);
      return;
    }
  } else if (key.kind() == PickleValue::Kind::Int) {
    auto [it, inserted] = int_index_.emplace(key.integer(), items_.size());
    if (!inserted) {
      items_[it->second].second = std::move(value);
      return;
    }
  } else {
    throw Error("pickle",
                str_cat("unsupported dict key of type ", pickle_kind_name(key.kind()), " (only str and int keys)"));
  }
  items_.emplace_back(std::move(key), std::move(value));
}
const PickleValue* PickleDict::find(const std::string& key) const {
  auto it = string_index_.find(key);
  return it == string_index_.end() ? nullptr : &items_[it->second].second;
}
const PickleValue* PickleDict::find(int64_t key) const {
  auto it = int_index_.find(key);
  return it == int_index_.end() ? nullptr : &items_[it->second].second;
}
void PickleDict::clear() {
  items_.clear();
  string_index_.clear();
  int_index_.clear();
}

// ---------------------------------------------------------------------------------------------
// Storage types

namespace {

struct StorageType {
  const char* name;  // torch.<name>
  torch::ScalarType dtype;
};
constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", torch::kFloat32},
    {"DoubleStorage", torch::kFloat64},
    {"HalfStorage", torch::kFloat16},
    {"BFloat16Storage", torch::kBFloat16},
    {"LongStorage", torch::kInt64},
    {"IntStorage", torch::kInt32},
    {"ShortStorage", torch::kInt16},
    {"CharStorage", torch::kInt8},
    {"ByteStorage", torch::kUInt8},
    {"BoolStorage", torch::kBool},
    {"ComplexFloatStorage", torch::kComplexFloat},
    {"ComplexDoubleStorage", torch::kComplexDouble},
    {"UntypedStorage", torch::kUInt8},
};

const StorageType* find_storage_type(const std::string& global) {
  if (global.rfind("torch.", 0) != 0) return nullptr;
  std::string name = global.substr(6);
  for (const auto& s : kStorageTypes)
    if (name == s.name) return &s;
  return nullptr;
}

const char* storage_type_name(torch::ScalarType dtype) {
  for (const auto& s : kStorageTypes)
    if (s.dtype == dtype) return s.name;
  throw Error("pickle", str_cat("cannot save tensors of dtype ", c10::toString(dtype)));
}

// The globals the unpickler accepts; everything else is refused before it could be called.
const std::unordered_set<std::string>& allowed_globals() {
  static const std::unordered_set<std::string> names = {
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_parameter",
      "collections.OrderedDict",
      "torch.nn.modules.container.ParameterDict",
      "__builtin__.set",
      "builtins.set",
      "_codecs.encode",
  };
  return names;
}

// ---------------------------------------------------------------------------------------------
// Unpickler

constexpr int kMaxDepth = 1000;
constexpr size_t kMaxDims = 64;

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const StorageLoader& loader, const std::string& where)
      : p_(data), end_(data + size), loader_(loader), where_(where) {}
  ~Unpickler() { release(); }

  PickleValue run();

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw Error(where_, str_cat("bad pickle at byte ", pos_, ": ", message));
  }
  const uint8_t* take(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_)) fail(str_cat("truncated (needs ", n, " more bytes)"));
    const uint8_t* at = p_;
    p_ += n;
    return at;
  }
  uint64_t le(int n) {
    const uint8_t* b = take(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[i];
    return v;
  }
  std::string text(uint64_t n) {
    const uint8_t* b = take(n);
    return std::string(reinterpret_cast<const char*>(b), n);
  }
  std::string line() {
    const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', end_ - p_));
    if (!nl) fail("unterminated GLOBAL name");
    std::string s(reinterpret_cast<const char*>(p_), nl - p_);
    p_ = nl + 1;
    return s;
  }

  PickleValue pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    PickleValue v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PickleValue& top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    return stack_.back();
  }
  // Pops everything above the last MARK.
  PickleValue::List pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    PickleValue::List items(std::make_move_iterator(stack_.begin() + m), std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }
  PickleValue new_list(PickleValue::List items, bool tuple) {
    PickleValue v = tuple ? PickleValue::make_tuple(std::move(items)) : PickleValue::make_list(std::move(items));
    owned_.push_back(v);
    return v;
  }
  PickleValue new_dict(const std::string& class_name = "") {
    PickleValue v = PickleValue::make_dict({}, class_name);
    owned_.push_back(v);
    return v;
  }
  PickleValue& list_target(PickleValue& v) {
    if (v.kind() != PickleValue::Kind::List) fail(str_cat("APPEND to a ", pickle_kind_name(v.kind())));
    return v;
  }
  PickleDict& dict_target(PickleValue& v) {
    if (v.kind() != PickleValue::Kind::Dict) fail(str_cat("SETITEM on a ", pickle_kind_name(v.kind())));
    return v.dict();
  }
  void set_items(PickleDict& d, PickleValue::List& kv) {
    if (kv.size() % 2) fail("SETITEMS with an odd number of items");
    for (size_t i = 0; i < kv.size(); i += 2) set_item(d, std::move(kv[i]), std::move(kv[i + 1]));
  }
  void set_item(PickleDict& d, PickleValue key, PickleValue value) {
    try {
      d.set(std::move(key), std::move(value));
    } catch (const Error& e) {
      fail(e.what());
    }
  }
  void push_int(int64_t v) { stack_.push_back(PickleValue(v)); }
  void memo_put(uint64_t index) { memo_[index] = top(); }
  PickleValue memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail(str_cat("memo key ", index, " not found"));
    return it->second;
  }

  PickleValue global(const std::string& module, const std::string& name);
  PickleValue call(const PickleValue& callable, const PickleValue& args);
  PickleValue ordered_dict(const PickleValue::List& args);
  PickleValue codecs_encode(const PickleValue::List& args);
  PickleValue new_object(const PickleValue& cls, const PickleValue& args);
  void build(PickleValue& obj, const PickleValue& state);
  PickleValue persistent_load(const PickleValue& pid);
  PickleValue rebuild_tensor(const PickleValue::List& args, const char* fn);
  std::vector<int64_t> int_tuple(const PickleValue& v, const char* what);
  void check_result(const PickleValue& result, std::unordered_set<const void*>& keep);
  void release(const std::unordered_set<const void*>& keep = {});
  bool step();
  bool control_op(uint8_t op);
  bool container_op(uint8_t op);
  bool memo_op(uint8_t op);
  bool number_op(uint8_t op);
  bool string_op(uint8_t op);
  bool object_op(uint8_t op);

  const uint8_t* p_;
  const uint8_t* end_;
  size_t pos_ = 0;
  const StorageLoader& loader_;
  const std::string& where_;
  std::vector<PickleValue> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PickleValue> memo_;
  std::unordered_map<std::string, PickleValue> storages_;
  // Every container created, so release() can break cycles and deep chains without recursion.
  std::vector<PickleValue> owned_;
};

PickleValue Unpickler::global(const std::string& module, const std::string& name) {
  std::string full = module + "." + name;
  if (!allowed_globals().count(full) && !find_storage_type(full))
    fail(str_cat("refusing to unpickle global ", full,
                 " (only tensors, storages, dicts, lists and scalars are loaded)"));
  return PickleValue::make_global(full);
}

std::vector<int64_t> Unpickler::int_tuple(const PickleValue& v, const char* what) {
  if (v.kind() != PickleValue::Kind::Tuple && v.kind() != PickleValue::Kind::List)
    fail(str_cat(what, " must be a tuple, got ", pickle_kind_name(v.kind())));
  std::vector<int64_t> out;
  for (const PickleValue& x : v.items()) {
    if (x.kind() != PickleValue::Kind::Int) fail(str_cat(what, " must hold ints"));
    out.push_back(x.integer());
  }
  if (out.size() > kMaxDims) fail(str_cat(what, " has ", out.size(), " dims"));
  return out;
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, ...)
// and _rebuild_tensor(storage, storage_offset, size, stride): a strided view of the storage.
PickleValue Unpickler::rebuild_tensor(const PickleValue::List& args, const char* fn) {
  if (args.size() < 4) fail(str_cat(fn, " needs at least 4 arguments, got ", args.size()));
  if (args[0].kind() != PickleValue::Kind::Storage)
    fail(str_cat(fn, ": first argument must be a storage, got ", pickle_kind_name(args[0].kind())));
  if (args[1].kind() != PickleValue::Kind::Int) fail(str_cat(fn, ": storage offset must be an int"));
  const torch::Tensor& storage = args[0].tensor();
  int64_t numel = storage.numel(), offset = args[1].integer();
  std::vector<int64_t> size = int_tuple(args[2], "tensor size");
  std::vector<int64_t> stride = int_tuple(args[3], "tensor stride");
  if (size.size() != stride.size())
    fail(str_cat("tensor size has ", size.size(), " dims but stride has ", stride.size()));
  if (offset < 0 || offset > numel) fail(str_cat("storage offset ", offset, " out of range"));
  bool empty = false;
  for (size_t i = 0; i < size.size(); ++i) {
    if (size[i] < 0 || stride[i] < 0) fail("negative tensor size or stride");
    if (size[i] == 0) empty = true;
  }
  if (!empty) {
    // Highest element index: offset + sum((size_i - 1) * stride_i), kept below numel.
    int64_t last = offset;
    for (size_t i = 0; i < size.size(); ++i) {
      int64_t extent = size[i] - 1;
      if (stride[i] != 0 && extent > (numel - last) / stride[i])
        fail(str_cat("tensor view runs past its storage of ", numel, " elements"));
      last += extent * stride[i];
    }
    if (last >= numel) fail(str_cat("tensor view runs past its storage of ", numel, " elements"));
  }
  return PickleValue(storage.as_strided(size, stride, offset));
}

// persistent id ("storage", torch.<T>Storage, key, location, numel): the bytes of zip entry
// <dir>/data/<key>, loaded once per key.
PickleValue Unpickler::persistent_load(const PickleValue& pid) {
  if (pid.kind() != PickleValue::Kind::Tuple || pid.items().size() < 5)
    fail("persistent id must be a 5-tuple (\"storage\", type, key, location, numel)");
  const PickleValue::List& t = pid.items();
  if (t[0].kind() != PickleValue::Kind::String || t[0].string() != "storage") fail("persistent id is not a storage");
  if (t[1].kind() != PickleValue::Kind::Global || !find_storage_type(t[1].string()))
    fail("persistent id has no storage type");
  if (t[2].kind() != PickleValue::Kind::String || t[4].kind() != PickleValue::Kind::Int)
    fail("persistent id needs a string key and an int numel");
  torch::ScalarType dtype = find_storage_type(t[1].string())->dtype;
  const std::string& key = t[2].string();
  auto it = storages_.find(key);
  if (it != storages_.end()) {
    if (it->second.tensor().scalar_type() != dtype) fail(str_cat("storage '", key, "' used with two dtypes"));
    return it->second;
  }
  int64_t numel = t[4].integer();
  if (numel < 0) fail("negative storage size");
  torch::Tensor data = loader_(key, dtype, numel);
  if (!data.defined() || data.dim() != 1 || data.numel() != numel || data.scalar_type() != dtype)
    fail(str_cat("storage '", key, "' loaded with the wrong size or dtype"));
  PickleValue v = PickleValue::make_storage(data);
  storages_.emplace(key, v);
  return v;
}

// OrderedDict() or OrderedDict([(key, value), ...]).
PickleValue Unpickler::ordered_dict(const PickleValue::List& a) {
  PickleValue d = new_dict("collections.OrderedDict");
  if (a.size() > 1) fail("OrderedDict takes at most one argument");
  if (a.size() == 1) {
    if (a[0].kind() != PickleValue::Kind::List && a[0].kind() != PickleValue::Kind::Tuple)
      fail("OrderedDict argument must be a list of pairs");
    for (const PickleValue& kv : a[0].items()) {
      if (kv.kind() != PickleValue::Kind::Tuple || kv.items().size() != 2)
        fail("OrderedDict argument must be a list of pairs");
      set_item(d.dict(), kv.items()[0], kv.items()[1]);
    }
  }
  return d;
}

PickleValue Unpickler::codecs_encode(const PickleValue::List& a) {
  // Protocol 2 writes bytes b as _codecs.encode(b.decode("latin1"), "latin1").
  if (a.size() != 2 || a[0].kind() != PickleValue::Kind::String || a[1].kind() != PickleValue::Kind::String ||
      (a[1].string() != "latin1" && a[1].string() != "latin-1"))
    fail("_codecs.encode is only accepted as encode(str, \"latin1\")");
  std::string out;
  const std::string& s = a[0].string();
  for (size_t i = 0; i < s.size(); ++i) {  // UTF-8 code points below 256 -> bytes
    uint8_t c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if ((c & 0xE0) == 0xC0 && c <= 0xC3 && i + 1 < s.size()) {
      out.push_back(static_cast<char>(((c & 0x03) << 6) | (s[++i] & 0x3F)));
    } else {
      fail("_codecs.encode: string is not latin1");
    }
  }
  return PickleValue::make_bytes(std::move(out));
}

PickleValue Unpickler::call(const PickleValue& callable, const PickleValue& args) {
  if (callable.kind() != PickleValue::Kind::Global)
    fail(str_cat("REDUCE on a ", pickle_kind_name(callable.kind()), ", not a global"));
  if (args.kind() != PickleValue::Kind::Tuple) fail("REDUCE arguments must be a tuple");
  const std::string& fn = callable.string();
  const PickleValue::List& a = args.items();
  if (fn == "torch._utils._rebuild_tensor_v2" || fn == "torch._utils._rebuild_tensor")
    return rebuild_tensor(a, fn.c_str());
  if (fn == "torch._utils._rebuild_parameter") {
    // _rebuild_parameter(data, requires_grad, backward_hooks): the data is all we keep.
    if (a.empty() || a[0].kind() != PickleValue::Kind::Tensor) fail("_rebuild_parameter needs a tensor");
    return a[0];
  }
  if (fn == "collections.OrderedDict") return ordered_dict(a);
  if (fn == "__builtin__.set" || fn == "builtins.set") {
    if (a.empty()) return new_list({}, false);
    if (a.size() != 1 || a[0].kind() != PickleValue::Kind::List) fail("set() takes a list");
    return new_list(a[0].items(), false);
  }
  if (fn == "_codecs.encode") return codecs_encode(a);
  fail(str_cat("cannot call global ", fn));
}

PickleValue Unpickler::new_object(const PickleValue& cls, const PickleValue& args) {
  if (cls.kind() != PickleValue::Kind::Global) fail("NEWOBJ on a non-class");
  const std::string& name = cls.string();
  if (name == "torch.nn.modules.container.ParameterDict" || name == "collections.OrderedDict") return new_dict(name);
  fail(str_cat("cannot instantiate ", name));
}

// BUILD: a ParameterDict's state is the module __dict__; its `_parameters` become the entries.
// Tensors may carry an (ignored) state; anything else is refused.
void Unpickler::build(PickleValue& obj, const PickleValue& state) {
  if (obj.kind() == PickleValue::Kind::Tensor) return;
  if (obj.kind() == PickleValue::Kind::Dict && obj.dict().class_name == "torch.nn.modules.container.ParameterDict") {
    const PickleValue* params = state.find("_parameters");
    if (!params || !params->is_dict()) fail("ParameterDict state has no _parameters dict");
    for (const auto& [k, v] : params->dict().items()) set_item(obj.dict(), k, v);
    return;
  }
  fail(str_cat("BUILD on a ", pickle_kind_name(obj.kind()), " is not supported"));
}

// Executes one opcode; returns false at STOP. Each family handler returns false for an opcode
// that is not its own.
bool Unpickler::step() {
  uint8_t op = *take(1);
  if (op == '.') return false;  // STOP
  if (!control_op(op) && !container_op(op) && !memo_op(op) && !number_op(op) && !string_op(op) && !object_op(op))
    fail(str_cat("unsupported opcode 0x", std::hex, static_cast<int>(op)));
  return true;
}

// Framing and stack shuffling.
bool Unpickler::control_op(uint8_t op) {
  switch (op) {
    case 0x80: take(1); return true;                         // PROTO
    case 0x95: take(8); return true;                         // FRAME (the frames are contiguous here)
    case '(': marks_.push_back(stack_.size()); return true;  // MARK
    case '0': pop(); return true;                            // POP
    case '1': pop_mark(); return true;                       // POP_MARK
    case '2': stack_.push_back(top()); return true;          // DUP
    default: return false;
  }
}

// Building lists, tuples and dicts.
bool Unpickler::container_op(uint8_t op) {
  switch (op) {
    case '}': stack_.push_back(new_dict()); return true;                  // EMPTY_DICT
    case ']': stack_.push_back(new_list({}, false)); return true;         // EMPTY_LIST
    case ')': stack_.push_back(new_list({}, true)); return true;          // EMPTY_TUPLE
    case 't': stack_.push_back(new_list(pop_mark(), true)); return true;  // TUPLE
    case 0x85:
    case 0x86:
    case 0x87: {  // TUPLE1..3
      size_t n = op - 0x84;
      PickleValue::List items(n);
      for (size_t i = n; i-- > 0;) items[i] = pop();
      stack_.push_back(new_list(std::move(items), true));
      return true;
    }
    case 's': {  // SETITEM
      PickleValue value = pop(), key = pop();
      set_item(dict_target(top()), std::move(key), std::move(value));
      return true;
    }
    case 'u': {  // SETITEMS
      PickleValue::List kv = pop_mark();
      set_items(dict_target(top()), kv);
      return true;
    }
    case 'a': {  // APPEND
      PickleValue value = pop();
      list_target(top()).items().push_back(std::move(value));
      return true;
    }
    case 'e': {  // APPENDS
      PickleValue::List values = pop_mark();
      auto& items = list_target(top()).items();
      for (auto& v : values) items.push_back(std::move(v));
      return true;
    }
    default: return false;
  }
}

bool Unpickler::memo_op(uint8_t op) {
  switch (op) {
    case 'q': memo_put(le(1)); return true;                    // BINPUT
    case 'r': memo_put(le(4)); return true;                    // LONG_BINPUT
    case 0x94: memo_put(memo_.size()); return true;            // MEMOIZE
    case 'h': stack_.push_back(memo_get(le(1))); return true;  // BINGET
    case 'j': stack_.push_back(memo_get(le(4))); return true;  // LONG_BINGET
    default: return false;
  }
}

// Ints, floats, booleans and None.
bool Unpickler::number_op(uint8_t op) {
  switch (op) {
    case 'J': push_int(static_cast<int32_t>(le(4))); return true;  // BININT
    case 'K': push_int(static_cast<int64_t>(le(1))); return true;  // BININT1
    case 'M': push_int(static_cast<int64_t>(le(2))); return true;  // BININT2
    case 0x8a: {                                                   // LONG1: little-endian two's complement
      uint64_t n = le(1);
      if (n > 8) fail(str_cat("integer of ", n, " bytes does not fit 64 bits"));
      const uint8_t* b = take(n);
      uint64_t v = 0;
      for (uint64_t i = n; i-- > 0;) v = (v << 8) | b[i];
      if (n > 0 && n < 8 && (b[n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
      push_int(static_cast<int64_t>(v));
      return true;
    }
    case 'G': {  // BINFLOAT: big-endian double
      const uint8_t* b = take(8);
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits = (bits << 8) | b[i];
      double d;
      std::memcpy(&d, &bits, 8);
      stack_.push_back(PickleValue(d));
      return true;
    }
    case 'N': stack_.emplace_back(); return true;                  // NONE
    case 0x88: stack_.push_back(PickleValue(true)); return true;   // NEWTRUE
    case 0x89: stack_.push_back(PickleValue(false)); return true;  // NEWFALSE
    default: return false;
  }
}

// Text (str) and bytes.
bool Unpickler::string_op(uint8_t op) {
  switch (op) {
    case 'X': stack_.push_back(PickleValue(text(le(4)))); return true;   // BINUNICODE
    case 0x8c: stack_.push_back(PickleValue(text(le(1)))); return true;  // SHORT_BINUNICODE
    case 0x8d: stack_.push_back(PickleValue(text(le(8)))); return true;  // BINUNICODE8
    case 'T': {                                                          // BINSTRING (signed length)
      int32_t n = static_cast<int32_t>(le(4));
      if (n < 0) fail("negative BINSTRING length");
      stack_.push_back(PickleValue(text(n)));
      return true;
    }
    case 'U': stack_.push_back(PickleValue(text(le(1)))); return true;               // SHORT_BINSTRING
    case 'B': stack_.push_back(PickleValue::make_bytes(text(le(4)))); return true;   // BINBYTES
    case 'C': stack_.push_back(PickleValue::make_bytes(text(le(1)))); return true;   // SHORT_BINBYTES
    case 0x8e: stack_.push_back(PickleValue::make_bytes(text(le(8)))); return true;  // BINBYTES8
    default: return false;
  }
}

// Globals, calls, object construction and persistent ids: the only opcodes that build anything
// beyond plain data, each through the checks of global(), call(), new_object(), build() and
// persistent_load().
bool Unpickler::object_op(uint8_t op) {
  switch (op) {
    case 'c': {  // GLOBAL "module\nname\n"
      std::string module = line();
      std::string name = line();
      stack_.push_back(global(module, name));
      return true;
    }
    case 0x93: {  // STACK_GLOBAL
      PickleValue name = pop(), module = pop();
      if (name.kind() != PickleValue::Kind::String || module.kind() != PickleValue::Kind::String)
        fail("STACK_GLOBAL needs two strings");
      stack_.push_back(global(module.string(), name.string()));
      return true;
    }
    case 'R': {  // REDUCE
      PickleValue args = pop(), callable = pop();
      stack_.push_back(call(callable, args));
      return true;
    }
    case 0x81: {  // NEWOBJ
      PickleValue args = pop(), cls = pop();
      stack_.push_back(new_object(cls, args));
      return true;
    }
    case 'b': {  // BUILD
      PickleValue state = pop();
      build(top(), state);
      return true;
    }
    case 'Q': {  // BINPERSID
      PickleValue pid = pop();
      stack_.push_back(persistent_load(pid));
      return true;
    }
    default: return false;
  }
}

// The result must be acyclic and at most kMaxDepth deep (so destroying it cannot overflow the
// stack); `keep` receives every container reachable from it.
void Unpickler::check_result(const PickleValue& result, std::unordered_set<const void*>& keep) {
  struct Frame {
    const PickleValue* value;
    size_t next;
  };
  std::unordered_set<const void*> on_path;
  std::vector<Frame> path;
  auto enter = [&](const PickleValue* v) {
    const void* id = v->container_id();
    if (!id || keep.count(id)) return;
    if (on_path.count(id)) fail("the pickled object graph has a cycle");
    if (path.size() >= static_cast<size_t>(kMaxDepth)) fail("object graph nested too deep");
    on_path.insert(id);
    path.push_back({v, 0});
  };
  enter(&result);
  while (!path.empty()) {
    Frame& f = path.back();
    const PickleValue* child = nullptr;
    const PickleValue* second = nullptr;
    if (f.value->is_dict()) {
      const auto& items = f.value->dict().items();
      if (f.next < items.size()) second = &items[f.next].second;
    } else {
      const auto& items = f.value->items();
      if (f.next < items.size()) child = &items[f.next];
    }
    if (child || second) {
      ++f.next;
      enter(child ? child : second);
      continue;
    }
    const void* id = f.value->container_id();
    on_path.erase(id);
    keep.insert(id);
    path.pop_back();
  }
}

// Empties every container not in `keep`: each one's destruction then frees only leaves.
void Unpickler::release(const std::unordered_set<const void*>& keep) {
  for (PickleValue& v : owned_) {
    if (keep.count(v.container_id())) continue;
    if (v.is_dict())
      v.dict().clear();
    else
      v.items().clear();
  }
  stack_.clear();
  memo_.clear();
  storages_.clear();
  owned_.clear();
}

PickleValue Unpickler::run() {
  const uint8_t* begin = p_;
  while (true) {
    pos_ = static_cast<size_t>(p_ - begin);
    if (!step()) break;
  }
  if (stack_.size() != 1 || !marks_.empty()) fail(str_cat("STOP with ", stack_.size(), " values on the stack"));
  PickleValue result = stack_.back();
  std::unordered_set<const void*> keep;
  check_result(result, keep);
  release(keep);
  return result;
}

}  // namespace

PickleValue unpickle(const uint8_t* data, size_t size, const StorageLoader& load_storage, const std::string& where) {
  Unpickler u(data, size, load_storage, where);
  return u.run();
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

class Pickler {
 public:
  explicit Pickler(std::vector<torch::Tensor>& storages) : storages_(storages) {}
  std::string finish(const PickleValue& v) {
    op(0x80);
    op(2);  // PROTO 2
    write(v, 0);
    op('.');
    return std::move(out_);
  }

 private:
  void op(uint8_t c) { out_.push_back(static_cast<char>(c)); }
  void le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) op(static_cast<uint8_t>(v >> (8 * i)));
  }
  void str(const std::string& s) {  // BINUNICODE
    op('X');
    le(s.size(), 4);
    out_ += s;
  }
  void global(const std::string& module, const std::string& name) {
    op('c');
    out_ += module + "\n" + name + "\n";
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      le(v, 1);
    } else if (v >= 0 && v < 65536) {
      op('M');
      le(v, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      le(static_cast<uint32_t>(v), 4);
    } else {  // LONG1, 8 bytes two's complement
      op(0x8a);
      op(8);
      le(static_cast<uint64_t>(v), 8);
    }
  }
  void tensor(const torch::Tensor& t) {
    torch::Tensor data = t.detach().to(torch::kCPU).contiguous();
    std::string key = std::to_string(storages_.size());
    storages_.push_back(data);
    global("torch._utils", "_rebuild_tensor_v2");
    op('(');
    op('(');  // persistent id ("storage", torch.<T>Storage, key, "cpu", numel)
    str("storage");
    global("torch", storage_type_name(data.scalar_type()));
    str(key);
    str("cpu");
    integer(data.numel());
    op('t');
    op('Q');  // BINPERSID
    integer(0);
    op('(');
    for (int64_t s : data.sizes()) integer(s);
    op('t');
    op('(');
    for (int64_t s : data.strides()) integer(s);
    op('t');
    op(0x89);  // requires_grad = False
    global("collections", "OrderedDict");
    op(')');
    op('R');  // backward_hooks = OrderedDict()
    op('t');
    op('R');
  }
  void binfloat(double d) {  // BINFLOAT: big-endian double
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    op('G');
    for (int i = 7; i >= 0; --i) op(static_cast<uint8_t>(bits >> (8 * i)));
  }
  void sequence(const PickleValue& v, int depth) {
    bool tuple = v.kind() == PickleValue::Kind::Tuple;
    op(tuple ? '(' : ']');
    if (!tuple && !v.items().empty()) op('(');
    for (const PickleValue& x : v.items()) write(x, depth + 1);
    if (tuple)
      op('t');
    else if (!v.items().empty())
      op('e');
  }
  void dict(const PickleDict& d, int depth) {
    if (d.class_name == "collections.OrderedDict") {
      global("collections", "OrderedDict");
      op(')');
      op('R');
    } else if (d.class_name.empty()) {
      op('}');
    } else {
      throw Error("pickle", "cannot save a " + d.class_name);
    }
    if (d.size() == 0) return;
    op('(');
    for (const auto& [key, value] : d.items()) {
      write(key, depth + 1);
      write(value, depth + 1);
    }
    op('u');
  }
  void write(const PickleValue& v, int depth) {
    if (depth > kMaxDepth) throw Error("pickle", "value nested too deep to save");
    using K = PickleValue::Kind;
    switch (v.kind()) {
      case K::None: op('N'); break;
      case K::Bool: op(v.boolean() ? 0x88 : 0x89); break;
      case K::Int: integer(v.integer()); break;
      case K::Float: binfloat(v.number()); break;
      case K::String: str(v.string()); break;
      case K::Bytes:
        op('B');
        le(v.string().size(), 4);
        out_ += v.string();
        break;
      case K::List:
      case K::Tuple: sequence(v, depth); break;
      case K::Dict: dict(v.dict(), depth); break;
      case K::Tensor: tensor(v.tensor()); break;
      case K::Storage:
      case K::Global: throw Error("pickle", str_cat("cannot save a ", pickle_kind_name(v.kind())));
    }
  }

  std::vector<torch::Tensor>& storages_;
  std::string out_;
};

}  // namespace

std::string pickle_torch(const PickleValue& value, std::vector<torch::Tensor>& storages) {
  return Pickler(storages).finish(value);
}

}  // namespace tinv
