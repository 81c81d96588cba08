// The pickle inside torch.save files: a restricted unpickler and a protocol-2 writer. The
// container around it (zip records) is io/torch_archive.h; io/torch_save.h joins the two.
//
//   tinv::PickleValue v = tinv::unpickle(pkl.data, pkl.size, load_storage, "x.pt: data.pkl");
//   const tinv::PickleValue* p = v.find("string_to_param");      // nullptr when absent
//   torch::Tensor t = p->find("*")->tensor();
//
//   std::vector<torch::Tensor> storages;
//   std::string bytes = tinv::pickle_torch(value, storages);      // storages[i] -> data/<i>
//
// The unpickler runs only the opcodes torch.save (protocol 2) emits and never imports
// anything: the only globals it accepts are the tensor rebuild functions
// (torch._utils._rebuild_tensor_v2, _rebuild_tensor, _rebuild_parameter), torch.*Storage
// types, collections.OrderedDict, torch.nn.modules.container.ParameterDict (read as a dict of
// its parameters), set (read as a list) and _codecs.encode(str, "latin1") (how protocol 2
// spells bytes). Any other global -> tinv::Error "refusing to unpickle global X". Tensor views
// are bounds-checked against their storage; results nest at most 1000 deep and hold no cycles.
// Storages come from the caller's StorageLoader, so this file knows nothing of the archive.
//
// Why our own unpickler rather than libtorch's: a .pt embedding is typically downloaded, and a
// pickle is a program. Python's pickle imports and calls whatever globals it names (evil.pt in
// tests/data calls posix.system). libtorch's loaders are not a safe substitute:
// torch::jit::load reads TorchScript archives, whose code it compiles and runs, and the
// TorchScript unpickler behind torch::pickle_load resolves the class names a pickle mentions
// through a type resolver instead of checking them against a short list, does not know the
// Python-only classes A1111 files pickle (ParameterDict), and reports problems as multi-line
// c10::Errors. Here every global is checked against the list above before anything is built,
// each allowed one builds only plain data (dicts, lists, scalars, tensors over checked storage
// views), and every error is one line naming the file.
//
// The writer emits only _rebuild_tensor_v2, torch.*Storage and collections.OrderedDict, so
// Python's `torch.load(path, weights_only=True)` accepts the files.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tinv {

class PickleDict;

// A value of the pickle's object graph. Lists, tuples and dicts are shared (copying a
// PickleValue copies a reference), as in Python; strings and tensors are cheap to copy.
class PickleValue {
 public:
  enum class Kind {
    None,
    Bool,
    Int,
    Float,
    String,
    Bytes,
    List,
    Tuple,
    Dict,
    Tensor,
    Storage,  // a storage used as a plain value (tensor(): 1-D of its dtype)
    Global
  };  // an allowed global used as a plain value (string(): its name)
  using List = std::vector<PickleValue>;

  PickleValue() = default;  // None
  explicit PickleValue(bool b);
  explicit PickleValue(int64_t i);
  explicit PickleValue(int i) : PickleValue(static_cast<int64_t>(i)) {}
  explicit PickleValue(double f);
  explicit PickleValue(std::string s);
  explicit PickleValue(const char* s) : PickleValue(std::string(s)) {}
  explicit PickleValue(torch::Tensor t);
  static PickleValue make_bytes(std::string b);
  static PickleValue make_list(List items = {});
  static PickleValue make_tuple(List items = {});
  // A dict with string keys in this order; class_name "collections.OrderedDict" pickles an
  // OrderedDict.
  static PickleValue make_dict(const std::vector<std::pair<std::string, PickleValue>>& items = {},
                               const std::string& class_name = "");
  static PickleValue make_storage(torch::Tensor t);
  static PickleValue make_global(std::string name);

  Kind kind() const { return kind_; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_tensor() const { return kind_ == Kind::Tensor; }
  // Accessors throw tinv::Error("pickle", "expected X, got Y") on a kind mismatch.
  bool boolean() const;
  int64_t integer() const;
  double number() const;              // Float, or Int converted
  const std::string& string() const;  // String, Bytes or Global
  const List& items() const;          // List or Tuple
  List& items();
  const PickleDict& dict() const;
  PickleDict& dict();
  const torch::Tensor& tensor() const;  // Tensor or Storage
  // Dict lookup by string key; nullptr when absent or when this is not a dict.
  const PickleValue* find(const std::string& key) const;
  // Address of the shared list/tuple/dict, nullptr for other kinds.
  const void* container_id() const;

 private:
  Kind kind_ = Kind::None;
  bool bool_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::shared_ptr<const std::string> string_;  // shared: memo gets never copy big strings
  std::shared_ptr<List> list_;
  std::shared_ptr<PickleDict> dict_;
  torch::Tensor tensor_;
};

// Insertion-ordered dict with string or int keys; set() overwrites an existing key.
class PickleDict {
 public:
  using Item = std::pair<PickleValue, PickleValue>;
  // Throws tinv::Error when the key is neither a string nor an int.
  void set(PickleValue key, PickleValue value);
  const PickleValue* find(const std::string& key) const;
  const PickleValue* find(int64_t key) const;
  const std::vector<Item>& items() const { return items_; }
  size_t size() const { return items_.size(); }
  void clear();
  // "" for a plain dict; "collections.OrderedDict"; "torch.nn.modules.container.ParameterDict".
  std::string class_name;

 private:
  std::vector<Item> items_;
  std::map<std::string, size_t> string_index_;
  std::map<int64_t, size_t> int_index_;
};

const char* pickle_kind_name(PickleValue::Kind kind);

// Runs the restricted unpickler over `data`; `where` prefixes its errors. For each persistent
// id ("storage", type, key, location, numel) it calls `load_storage(key, dtype, numel)` once per
// key, which returns a 1-D tensor of `numel` elements (or throws tinv::Error): this callback is
// how the unpickler reads the archive's records.
using StorageLoader = std::function<torch::Tensor(const std::string& key, torch::ScalarType dtype, int64_t numel)>;
PickleValue unpickle(const uint8_t* data, size_t size, const StorageLoader& load_storage, const std::string& where);

// Protocol-2 pickle of `value` as torch.save writes it: tensors become persistent ids
// ("storage", torch.<T>Storage, "<i>", "cpu", numel) with `storages[i]` their contiguous CPU
// data; Dicts whose class_name is collections.OrderedDict stay OrderedDicts.
std::string pickle_torch(const PickleValue& value, std::vector<torch::Tensor>& storages);

}  // namespace tinv
