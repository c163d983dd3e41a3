// The bundle's C++ consumer: the official ONNX Runtime C++ API and the C++17 standard library, nothing else.
//
//   consumer BUNDLE [--provider NAME] [--allow-fallback] [--json]
//                                                  verify: every file's sha256, the manifest, the golden outputs
//   consumer BUNDLE --classify IMAGE               a digit picture: netpbm (PGM P5, PPM P6, PAM P7; prepared as
//                                                  infer.py prepares any picture: digits.hpp) or a prepared .npy
//                                                  digit (uint8 0-255 or float32 0-1; 28x28, 1x28x28, 1x1x28x28)
//                                                  -> label, probability[, "not a digit?" and the reasons]
//
// Before it answers, either way, it checks the bundle as verify.py does: the manifest's schema, every file's
// sha256, the model's inputs and outputs against the manifest, the golden outputs and the golden pictures
// (through its own port of the preparation, digits.hpp).
// It opens the model with the manifest's session options on the target's own first provider (or --provider
// NAME) alone, refusing ONNX Runtime's silent fallback to the CPU ("session.disable_cpu_ep_fallback");
// --allow-fallback runs it on the target's providers this ONNX Runtime has, CPU last, and says "not verified on".
// Exit 0: verified (or classified). 1: the model runs but its outputs drift from the golden outputs beyond
// the manifest's tolerance. 2: the bundle or the input is bad (missing, modified or unlisted file, invalid
// manifest, unreadable image). 3: not verified here: the provider is missing or could not run the model.
#include <onnxruntime_cxx_api.h>

#include <sys/utsname.h>

#include "bundle.hpp"
#include "digits.hpp"
#include "manifest.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

// ---- Tensors: the golden files (ONNX TensorProto .pb, decoded by hand as verify.py does), .npy and PGM.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

static Tensor read_tensor_pb(const fs::path& path) {
  const std::string b = read_file(path);
  size_t i = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0; i < b.size() && shift < 64; shift += 7) {
      const auto c = static_cast<unsigned char>(b[i++]);
      v |= uint64_t(c & 0x7f) << shift;
      if ((c & 0x80) == 0) return v;
    }
    throw BundleError(path.string() + ": truncated tensor");
  };
  Tensor t;
  uint64_t dtype = 0;
  while (i < b.size()) {
    const uint64_t key = varint();
    const int field = int(key >> 3), wire = int(key & 7);
    if (wire == 0) {
      const uint64_t v = varint();
      if (field == 1) t.shape.push_back(int64_t(v));
      if (field == 2) dtype = v;
    } else if (wire == 2) {
      const size_t length = varint(), end = i + length;
      if (end > b.size()) throw BundleError(path.string() + ": truncated tensor");
      if (field == 1) {
        while (i < end) t.shape.push_back(int64_t(varint()));
      } else if (field == 9 || field == 4) {  // raw_data, or packed float_data
        if (length % 4 != 0) throw BundleError(path.string() + ": float data of " + std::to_string(length) + " bytes");
        const size_t before = t.data.size();
        t.data.resize(before + length / 4);
        std::memcpy(t.data.data() + before, b.data() + i, length);
      }
      i = end;
    } else if (wire == 5) {
      if (i + 4 > b.size()) throw BundleError(path.string() + ": truncated tensor");
      if (field == 4) {
        float f;
        std::memcpy(&f, b.data() + i, 4);
        t.data.push_back(f);
      }
      i += 4;
    } else if (wire == 1) {
      if (i + 8 > b.size()) throw BundleError(path.string() + ": truncated tensor");
      i += 8;
    } else {
      throw BundleError(path.string() + ": not an ONNX TensorProto");
    }
  }
  size_t count = 1;
  for (int64_t d : t.shape) count *= size_t(d);
  if (dtype != 1 || count != t.data.size())
    throw BundleError(path.string() + ": not a float32 tensor whose data matches its shape");
  return t;
}

struct Preprocessing {
  double scale, mean, stdev;
};

static Preprocessing preprocessing(const Json& prep) {
  return {prep["scale"].number("preprocessing.scale"),
          prep["mean"].array("preprocessing.mean").at(0).number("preprocessing.mean"),
          prep["std"].array("preprocessing.std").at(0).number("preprocessing.std")};
}

// A prepared digit: its pixels (uint8, white on black, for the not-a-digit statistics) and the model's input.
struct Digit {
  std::vector<uint8_t> pixels;
  Tensor x;
};

static Digit as_input(std::vector<uint8_t> pixels, const Preprocessing& pre, int64_t height, int64_t width) {
  Tensor x{{1, 1, height, width}, digits::normalize(pixels, pre.scale, pre.mean, pre.stdev)};
  return {std::move(pixels), std::move(x)};
}

// A picture file as infer.py reads it: netpbm through digits.hpp's preparation (as digits.py), or a .npy of one
// digit already prepared (white on black, centred; uint8 0-255 or float32 0-1), refused when blank.
static Digit image_input(const fs::path& path, const Preprocessing& pre, int64_t height, int64_t width) {
  const std::string b = read_file(path);
  const std::string suffix = path.extension().string();
  if (suffix == ".pgm" || suffix == ".ppm" || suffix == ".pam") {
    try {
      return as_input(digits::prepare(digits::read_netpbm(b), int(height), int(width)), pre, height, width);
    } catch (const digits::NotAPicture& exc) {
      throw BundleError(path.string() + ": not a readable image (" + exc.what() + ")");
    } catch (const digits::NoInk& exc) {
      throw BundleError(path.string() + ": " + exc.what());
    }
  }
  if (suffix != ".npy") throw BundleError(path.string() + ": give a netpbm picture (.pgm, .ppm, .pam) or a .npy digit");
  const size_t count = size_t(height * width);
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) throw BundleError(path.string() + ": not a .npy file");
  const size_t length = static_cast<unsigned char>(b[8]) | size_t(static_cast<unsigned char>(b[9])) << 8;
  const std::string header = b.substr(10, length);
  const size_t offset = 10 + length, bytes = b.size() > offset ? b.size() - offset : 0;
  const std::string dims = std::to_string(height) + ", " + std::to_string(width) + ")";
  const bool u8 = header.find("'|u1'") != std::string::npos, f32 = header.find("'<f4'") != std::string::npos;
  const bool shape = header.find("(" + dims) != std::string::npos || header.find("(1, " + dims) != std::string::npos ||
                     header.find("(1, 1, " + dims) != std::string::npos;
  if (b[6] != 1 || header.find("'fortran_order': False") == std::string::npos || (!u8 && !f32) || !shape ||
      bytes != (u8 ? count : count * 4))
    throw BundleError(path.string() + ": expected a C-order uint8 (0-255) or float32 (0-1) array of one " + dims.substr(0, dims.size() - 1) + " digit");
  std::vector<uint8_t> pixels;
  for (size_t k = 0; k < count; ++k) {
    float value;
    if (u8) {
      value = static_cast<unsigned char>(b[offset + k]) / 255.0f;
    } else {
      std::memcpy(&value, b.data() + offset + 4 * k, 4);
    }
    if (!std::isfinite(value) || value < 0 || value > 1) throw BundleError(path.string() + ": values outside 0-1 or NaN");
    pixels.push_back(uint8_t(std::floor(value * 255.0 + 0.5)));
  }
  const auto [lo, hi] = std::minmax_element(pixels.begin(), pixels.end());
  if (*hi - *lo < digits::kInkContrast)
    throw BundleError(path.string() + ": no ink found (the digit is blank or one flat colour): nothing to classify");
  return as_input(std::move(pixels), pre, height, width);
}

// The CUDA and TensorRT providers take a V2 options object: create it, set the manifest's key/value pairs, hand
// it to the session options, release it.
template <class Options, class Create, class Update, class Release, class Append>
static void with_v2_options(Create create, Update update, Release release, const std::vector<const char*>& keys,
                            const std::vector<const char*>& values, Append append) {
  Options* raw = nullptr;
  Ort::ThrowOnError(create(&raw));
  std::unique_ptr<Options, Release> owned(raw, release);
  Ort::ThrowOnError(update(raw, keys.data(), values.data(), keys.size()));
  append(*raw);
}

static void append_provider(Ort::SessionOptions& options, const std::string& name, const Json& settings) {
  std::unordered_map<std::string, std::string> values;
  if (const auto* object = std::get_if<Json::Object>(&settings.value))
    for (const auto& [key, value] : *object) values[key] = value.text();
  std::vector<const char*> keys, texts;
  for (const auto& [key, value] : values) keys.push_back(key.c_str()), texts.push_back(value.c_str());
  const OrtApi& api = Ort::GetApi();
  if (name == "CPUExecutionProvider") {
    return;  // always there; ONNX Runtime adds it last on its own
  } else if (name == "CUDAExecutionProvider") {
    with_v2_options<OrtCUDAProviderOptionsV2>(
        api.CreateCUDAProviderOptions, api.UpdateCUDAProviderOptions, api.ReleaseCUDAProviderOptions, keys, texts,
        [&](const OrtCUDAProviderOptionsV2& o) { options.AppendExecutionProvider_CUDA_V2(o); });
  } else if (name == "TensorrtExecutionProvider") {
    with_v2_options<OrtTensorRTProviderOptionsV2>(
        api.CreateTensorRTProviderOptions, api.UpdateTensorRTProviderOptions, api.ReleaseTensorRTProviderOptions,
        keys, texts, [&](const OrtTensorRTProviderOptionsV2& o) { options.AppendExecutionProvider_TensorRT_V2(o); });
  } else if (name == "OpenVINOExecutionProvider") {
    options.AppendExecutionProvider_OpenVINO_V2(values);
  } else if (name == "XnnpackExecutionProvider") {
    options.AppendExecutionProvider("XNNPACK", values);
  } else if (name == "CoreMLExecutionProvider") {
    options.AppendExecutionProvider("CoreML", values);
  } else {
    throw BundleError(name + " cannot be added by this consumer (use ONNX Runtime's own factory for it)");
  }
}

static GraphOptimizationLevel graph_level(const std::string& name) {
  if (name == "ORT_DISABLE_ALL") return ORT_DISABLE_ALL;
  if (name == "ORT_ENABLE_BASIC") return ORT_ENABLE_BASIC;
  if (name == "ORT_ENABLE_EXTENDED") return ORT_ENABLE_EXTENDED;
  if (name == "ORT_ENABLE_ALL") return ORT_ENABLE_ALL;
  throw BundleError("manifest.json: unknown target.session.graph_optimization_level " + name);
}

struct Opened {
  std::unique_ptr<Ort::Session> session;
  std::string provider;  // the first provider given to the session: it takes every node it can
  std::string wanted;    // the provider the check was for
};

// What the manifest says the provider needs, in a C++ user's terms: the manifest names the Python package
// (`pip install ...`), which a C++ program cannot use, so that becomes the ONNX Runtime build to link instead.
static std::string needs(const Json& target, const std::string& provider) {
  const Json& install = target["install"][provider];
  if (!install.has("package")) return "";
  std::string package = install["package"].text();
  if (package.rfind("pip install ", 0) == 0) package = "an ONNX Runtime release built with " + provider;
  return "; it needs " + package + (install.has("system") ? " and " + install["system"].text() : std::string());
}

// The provider the check must run on: --provider NAME, else the target's own first provider. Without
// --allow-fallback it alone runs the model, with ONNX Runtime's silent CPU fallback refused; missing here, it is
// exit 3 naming what to install (the manifest's target.install). With --allow-fallback the target's providers
// that this ONNX Runtime has run it, CPU last, and the report says which provider was not verified.
static Opened open_session(Ort::Env& env, const fs::path& bundle, const Json& manifest, const std::string& asked,
                           bool allow_fallback) {
  const Json& target = manifest["target"];
  const Json& session = target["session"];
  session.object("target.session");
  Ort::SessionOptions options;
  options.SetLogSeverityLevel(3);
  if (session.has("graph_optimization_level"))
    options.SetGraphOptimizationLevel(graph_level(session["graph_optimization_level"].string("session level")));
  if (session.has("intra_op_num_threads"))
    options.SetIntraOpNumThreads(int(session["intra_op_num_threads"].number("session.intra_op_num_threads")));
  if (session.has("execution_mode") && session["execution_mode"].string("session.execution_mode") == "ORT_PARALLEL")
    options.SetExecutionMode(ORT_PARALLEL);
  if (session.has("config_entries"))
    for (const auto& [key, value] : session["config_entries"].object("session.config_entries"))
      options.AddConfigEntry(key.c_str(), value.text().c_str());

  const std::vector<std::string> available = Ort::GetAvailableProviders();
  auto here = [&](const std::string& name) {
    return std::find(available.begin(), available.end(), name) != available.end();
  };
  const auto& providers = target["providers"].array("target.providers");
  const Json::Array none;
  const auto& settings = target.has("provider_options") ? target["provider_options"].array("provider_options") : none;
  const std::string wanted = asked.empty() ? providers.at(0).string("target.providers[0]") : asked;
  std::string first;
  for (size_t k = 0; k < providers.size(); ++k) {
    const std::string name = providers[k].string("target.providers");
    if (!here(name) || (!allow_fallback && name != wanted)) continue;
    append_provider(options, name, k < settings.size() ? settings[k] : Json{});
    if (first.empty()) first = name;
  }
  if (first.empty()) first = "CPUExecutionProvider";  // ONNX Runtime's own last resort
  if (first != wanted && !allow_fallback) {
    std::string have;
    for (const auto& name : available) have += (have.empty() ? "" : ", ") + name;
    throw ProviderMissing(wanted + (here(wanted) ? " is not among this target's providers" : " is not in this ONNX "
                          "Runtime (it has " + have + ")") + needs(target, wanted) +
                          "; --allow-fallback checks on what this runtime has, not verified on " + wanted);
  }
  if (!allow_fallback && first != "CPUExecutionProvider") options.AddConfigEntry("session.disable_cpu_ep_fallback", "1");
  const fs::path model = bundle / manifest["model"]["file"].string("model.file");
  try {
    return {std::make_unique<Ort::Session>(env, model.c_str(), options), first, wanted};
  } catch (const Ort::Exception& exc) {
    std::string why = exc.what();
    why = why.substr(0, why.find('\n'));
    if (!allow_fallback && first != "CPUExecutionProvider")  // its libraries (CUDA, cuDNN, TensorRT...) failed to load
      throw ProviderMissing(first + " could not run " + model.filename().string() + " here: " + why + needs(target, first));
    throw BundleError("onnxruntime cannot load " + model.filename().string() + " on " + first + ": " + why);
  }
}

static std::vector<float> run(Ort::Session& session, const Tensor& x, std::vector<int64_t>& out_shape) {
  Ort::AllocatorWithDefaultOptions allocator;
  const auto input = session.GetInputNameAllocated(0, allocator);
  const auto output = session.GetOutputNameAllocated(0, allocator);
  const auto expected = session.GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetShape();
  if (expected.size() != x.shape.size()) throw BundleError("the model takes a rank-" + std::to_string(expected.size()) +
                                                           " input, got rank " + std::to_string(x.shape.size()));
  for (size_t axis = 0; axis < expected.size(); ++axis)
    if (expected[axis] > 0 && expected[axis] != x.shape[axis])
      throw BundleError("input dimension " + std::to_string(axis) + " is " + std::to_string(x.shape[axis]) +
                        " but the model takes " + std::to_string(expected[axis]));
  const auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  auto tensor = Ort::Value::CreateTensor<float>(memory, const_cast<float*>(x.data.data()), x.data.size(),
                                                x.shape.data(), x.shape.size());
  const char* inputs[] = {input.get()};
  const char* outputs[] = {output.get()};
  auto result = session.Run(Ort::RunOptions{nullptr}, inputs, &tensor, 1, outputs, 1);
  const auto info = result[0].GetTensorTypeAndShapeInfo();
  if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || info.GetElementCount() == 0)
    throw BundleError("the model's output is not a non-empty float32 tensor");
  out_shape = info.GetShape();
  const float* values = result[0].GetTensorData<float>();
  return std::vector<float>(values, values + info.GetElementCount());
}

struct Golden {
  size_t samples = 0, agreeing = 0;
  double worst = 0;
};

static size_t argmax(const float* row, size_t n) { return size_t(std::max_element(row, row + n) - row); }

static Golden check_golden(const fs::path& bundle, const Json& manifest, Ort::Session& session) {
  const Json& tolerance = manifest["golden"]["tolerance"];
  const double atol = tolerance["atol"].number("golden.tolerance.atol");
  const bool top1 = !tolerance.has("top1_must_match") || tolerance["top1_must_match"].boolean("top1_must_match");
  Golden golden;
  for (const auto& set : manifest["golden"]["sets"].array("golden.sets")) {
    const std::string name = set.string("golden.sets[]");
    const Tensor x = read_tensor_pb(bundle / name / "input_0.pb");
    const Tensor expected = read_tensor_pb(bundle / name / "output_0.pb");
    std::vector<int64_t> shape;
    const std::vector<float> actual = run(session, x, shape);
    if (shape != expected.shape || shape.size() != 2) throw GoldenMismatch(name + ": output shape differs from golden");
    double delta = 0;
    for (size_t k = 0; k < actual.size(); ++k) {
      const double d = std::fabs(double(actual[k]) - expected.data[k]);
      if (!(d <= delta)) delta = d;  // a NaN difference sticks, and fails the tolerance below
    }
    if (!(delta <= atol)) {
      std::ostringstream why;
      why << name << ": max |delta| " << delta << " exceeds atol " << atol;
      throw GoldenMismatch(why.str());
    }
    const size_t rows = size_t(shape[0]), classes = size_t(shape[1]);
    size_t same = 0;
    for (size_t r = 0; r < rows; ++r)
      same += argmax(&actual[r * classes], classes) == argmax(&expected.data[r * classes], classes);
    if (top1 && same != rows) throw GoldenMismatch(name + ": top-1 labels differ from the golden outputs");
    golden.samples += rows, golden.agreeing += same, golden.worst = std::max(golden.worst, delta);
  }
  if (golden.samples == 0) throw BundleError("manifest.json lists no golden sets");
  return golden;
}

// session.check_io: the model takes and returns what the manifest declares (names, element types, shapes; a named
// dimension matches any free one), and one class label per output class.
static std::string dtype_name(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "double";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
    default: return "type " + std::to_string(int(type));
  }
}

static std::string shape_text(const std::vector<std::string>& dims) {
  std::string out = "[";
  for (size_t k = 0; k < dims.size(); ++k) out += (k ? ", " : "") + dims[k];
  return out + "]";
}

static void check_io(const Json& manifest, Ort::Session& session) {
  Ort::AllocatorWithDefaultOptions allocator;
  for (const bool inputs : {true, false}) {
    const std::string kind = inputs ? "inputs" : "outputs";
    const auto& declared = items(manifest["io"][kind]);
    const size_t count = inputs ? session.GetInputCount() : session.GetOutputCount();
    if (declared.size() != count)
      throw BundleError("manifest io." + kind + " declares " + std::to_string(declared.size()) + " but the model has " +
                        std::to_string(count));
    for (size_t i = 0; i < count; ++i) {
      const std::string at = "manifest io." + kind + "[" + std::to_string(i) + "].";
      const std::string name = (inputs ? session.GetInputNameAllocated(i, allocator)
                                       : session.GetOutputNameAllocated(i, allocator)).get();
      const auto type = inputs ? session.GetInputTypeInfo(i) : session.GetOutputTypeInfo(i);
      if (type.GetONNXType() != ONNX_TYPE_TENSOR) throw BundleError(at + "dtype: the model's is not a tensor");
      const auto info = type.GetTensorTypeAndShapeInfo();
      std::vector<std::string> found, wanted;
      for (int64_t d : info.GetShape()) found.push_back(d >= 0 ? std::to_string(d) : "?");
      for (const auto& d : items(declared[i]["shape"]))
        wanted.push_back(is(d, Want::Text) ? "?" : std::to_string(int64_t(d.number("shape"))));
      if (declared[i]["name"].string("name") != name)
        throw BundleError(at + "name is \"" + declared[i]["name"].string("name") + "\" but the model's is \"" + name + "\"");
      if (declared[i]["dtype"].string("dtype") != dtype_name(info.GetElementType()))
        throw BundleError(at + "dtype is \"" + declared[i]["dtype"].string("dtype") + "\" but the model's is \"" +
                          dtype_name(info.GetElementType()) + "\"");
      if (wanted != found) throw BundleError(at + "shape is " + shape_text(wanted) + " but the model's is " + shape_text(found));
    }
  }
  const auto classes = session.GetOutputTypeInfo(0).GetTensorTypeAndShapeInfo().GetShape();
  const size_t labels = items(manifest["class_labels"]).size();
  if (!classes.empty() && classes.back() > 0 && size_t(classes.back()) != labels)
    throw BundleError("manifest class_labels has " + std::to_string(labels) + " labels but the model has " +
                      std::to_string(classes.back()) + " classes");
}

// The model's input height and width (the manifest's, which check_io proved are the model's).
static std::pair<int64_t, int64_t> picture_size(const Json& manifest) {
  const auto& inputs = items(manifest["io"]["inputs"]);
  const Json::Array shape = inputs.empty() ? Json::Array{} : items(inputs[0]["shape"]);
  if (shape.size() != 4 || !is(shape[2], Want::Number) || !is(shape[3], Want::Number))
    throw BundleError("manifest io.inputs[0].shape is not (N, 1, height, width)");
  return {int64_t(shape[2].number("shape")), int64_t(shape[3].number("shape"))};
}

// golden.check_golden_pictures: each picture, decoded here and prepared by digits.hpp with the manifest's
// preprocessing, gives the recorded logits (within atol) and, through class_labels, the recorded label.
static size_t check_golden_pictures(const fs::path& bundle, const Json& manifest, Ort::Session& session) {
  const double atol = manifest["golden"]["tolerance"]["atol"].number("golden.tolerance.atol");
  const Preprocessing pre = preprocessing(manifest["preprocessing"]);
  const auto [height, width] = picture_size(manifest);
  const auto& labels = items(manifest["class_labels"]);
  const auto& pictures = items(manifest["golden"]["pictures"]);
  for (const auto& picture : pictures) {
    const std::string file = picture["file"].string("golden.pictures[].file");
    digits::Picture decoded;
    try {
      decoded = digits::read_netpbm(read_file(bundle / file));
    } catch (const digits::NotAPicture& exc) {
      throw BundleError("golden picture " + file + ": " + exc.what());
    }
    std::vector<uint8_t> pixels;
    try {
      pixels = digits::prepare(decoded, int(height), int(width));
    } catch (const digits::NoInk& exc) {
      throw GoldenMismatch(file + ": the bundle's preparation refuses it: " + exc.what());
    }
    std::vector<int64_t> shape;
    const std::vector<float> logits = run(session, as_input(std::move(pixels), pre, height, width).x, shape);
    const auto& recorded = items(picture["logits"]);
    double delta = recorded.size() == logits.size() ? 0 : std::numeric_limits<double>::infinity();
    for (size_t k = 0; k < logits.size() && k < recorded.size(); ++k) {
      const double d = std::fabs(double(logits[k]) - recorded[k].number("logits"));
      if (!(d <= delta)) delta = d;
    }
    const size_t best = argmax(logits.data(), logits.size());
    const std::string label = best < labels.size() ? labels[best].string("class_labels") : "?";
    if (label != picture["label"].string("label") || !(delta <= atol)) {
      std::ostringstream why;
      why << file << ": prepared as the manifest says, the model answers " << label << " (max |delta| " << delta
          << " from the recorded logits, atol " << atol << ") where " << picture["label"].string("label")
          << " was recorded: preprocessing, class_labels or the preparation code changed";
      throw GoldenMismatch(why.str());
    }
  }
  return pictures.size();
}

// The whole check of a bundle, before this consumer answers anything.
struct Checked {
  Json manifest;
  size_t files = 0, pictures = 0;
  Golden golden;
};

static Checked check_bundle(Ort::Env& env, const fs::path& bundle, Opened& opened, const std::string& provider,
                            bool allow_fallback) {
  Checked c;
  c.manifest = load_manifest(bundle);
  c.files = check_files(bundle, c.manifest);
  opened = open_session(env, bundle, c.manifest, provider, allow_fallback);
  check_io(c.manifest, *opened.session);
  c.golden = check_golden(bundle, c.manifest, *opened.session);
  c.pictures = check_golden_pictures(bundle, c.manifest, *opened.session);
  return c;
}

static std::string machine() {
  struct utsname name {};
  return uname(&name) == 0 ? name.machine : "unknown";
}

struct Options {
  fs::path bundle = ".";
  std::string provider, image;
  bool as_json = false, allow_fallback = false;
};

static int verify(const Options& o) {
  Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "bundle-consumer");
  Opened opened;
  const Checked checked = check_bundle(env, o.bundle, opened, o.provider, o.allow_fallback);
  const Json& manifest = checked.manifest;
  const size_t files = checked.files;
  const Golden& golden = checked.golden;
  const std::string target = manifest["target"]["name"].string("target.name");
  // What this run established: the files match the manifest. Nothing in a bundle proves who made it; a
  // signature would, and this consumer does not check one (model_signing's own CLI does).
  const bool signed_bundle = fs::exists(o.bundle / kSignature);
  const std::string established = signed_bundle ? "signature present, not checked" : "consistent";
  const bool on_target = opened.provider == opened.wanted;
  if (o.as_json) {
    std::cout << std::setprecision(17) << "{\"onnxruntime\": \"" << Ort::GetVersionString() << "\", \"machine\": \""
              << machine() << "\", \"consumer\": \"C++\", \"provider\": \"" << opened.provider
              << "\", \"verified_on_provider\": " << (on_target ? "true" : "false") << ", \"established\": \""
              << established << "\", \"files\": " << files << ", \"golden_samples\": " << golden.samples
              << ", \"golden_pictures\": " << checked.pictures << ", \"max_abs_delta\": " << golden.worst
              << ", \"top1_agreement\": " << double(golden.agreeing) / golden.samples << "}\n";
    return 0;
  }
  std::cout << established << ": " << files << " files match manifest.json"
            << (signed_bundle ? " (check model.sig with `model_signing verify key`)"
                              : " (authenticity: compare the archive with its published .sha256)")
            << "\n";
  if (on_target)
    std::cout << "verified " << target << " with ONNX Runtime " << Ort::GetVersionString() << " (C++): ";
  else
    std::cout << "not verified on " << opened.wanted << ": checked " << target << " instead with ONNX Runtime "
              << Ort::GetVersionString() << " (C++): ";
  std::cout << golden.samples << " golden samples and " << checked.pictures << " pictures on " << opened.provider
            << ", max |delta| " << golden.worst << "\n";
  return 0;
}

// One picture, after the bundle's own check: PATH<TAB>LABEL<TAB>PROBABILITY, with a fourth field "not a digit?
// REASONS" when it looks like no digit (the manifest's ood bounds), as infer.py prints it.
static int classify(const Options& o) {
  Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "bundle-consumer");
  Opened opened;
  const Checked checked = check_bundle(env, o.bundle, opened, o.provider, o.allow_fallback);
  const Json& manifest = checked.manifest;
  const auto [height, width] = picture_size(manifest);
  const Digit digit = image_input(o.image, preprocessing(manifest["preprocessing"]), height, width);
  std::vector<int64_t> shape;
  const std::vector<float> logits = run(*opened.session, digit.x, shape);
  const float top = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (float v : logits) total += std::exp(double(v) - top);
  const size_t best = argmax(logits.data(), logits.size());
  std::map<std::string, double> thresholds;
  for (const auto& [name, value] : manifest["ood"]["thresholds"].object("ood.thresholds"))
    thresholds[name] = value.number("ood.thresholds." + name);
  const auto reasons = digits::not_a_digit(digits::ink_stats(digit.pixels, int(height), int(width)), logits, thresholds);
  std::cout << o.image << "\t" << items(manifest["class_labels"]).at(best).string("class_labels") << "\t" << std::fixed
            << std::setprecision(4) << 1.0 / total;
  for (size_t k = 0; k < reasons.size(); ++k) std::cout << (k ? "; " : "\tnot a digit? ") << reasons[k];
  std::cout << "\n";
  return 0;
}

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  Options o;
  bool bundle_given = false;
  for (size_t k = 0; k < args.size(); ++k) {
    if (args[k] == "--json") {
      o.as_json = true;
    } else if (args[k] == "--allow-fallback") {
      o.allow_fallback = true;
    } else if ((args[k] == "--provider" || args[k] == "--classify") && k + 1 < args.size()) {
      (args[k] == "--provider" ? o.provider : o.image) = args[k + 1];
      ++k;
    } else if (!bundle_given && args[k].rfind("--", 0) != 0) {
      o.bundle = args[k];
      bundle_given = true;
    } else {
      std::cerr << "usage: consumer BUNDLE [--provider NAME] [--allow-fallback] [--json]\n"
                   "       consumer BUNDLE --classify IMAGE.pgm|.npy [--provider NAME] [--allow-fallback]\n";
      return 2;
    }
  }
  try {
    return o.image.empty() ? verify(o) : classify(o);
  } catch (const GoldenMismatch& exc) {
    std::cerr << "verification failed: " << exc.what() << "\n";
    return 1;
  } catch (const ProviderMissing& exc) {
    std::cerr << "not verified: " << exc.what() << "\n";
    return 3;
  } catch (const std::exception& exc) {  // BundleError, Ort::Exception, std::out_of_range
    std::cerr << "error: " << exc.what() << "\n";
    return 2;
  }
}
