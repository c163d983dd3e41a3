// The manifest, for the C++ consumer: its schema as contents.check_schema has it (the same fields refused, named
// the same way, as verify.py and verify.mjs) and every file's sha256. C++17 standard library only.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "bundle.hpp"

// ---- The bundle.
static const char* kManifest = "manifest.json";
static const char* kSignature = "model.sig";
static const char* kProvenance = "provenance.intoto.json";

// ---- The manifest's schema, as contents.check_schema has it: every block a consumer reads is there, and every
// value it reads has its shape (the same fields, named the same way, as verify.py and verify.mjs).
enum class Want { Number, Text, Numbers, Texts, Mapping, Mappings, Dims, Level, Mode, Threads };

static const char* wanted_text(Want w) {
  switch (w) {
    case Want::Number: return "a number";
    case Want::Text: return "a string";
    case Want::Numbers: return "a list of numbers";
    case Want::Texts: return "a list of strings";
    case Want::Mapping: return "an object";
    case Want::Mappings: return "a list of objects";
    case Want::Dims: return "a list of dimensions (whole numbers, or names for free ones)";
    case Want::Level: return "one of ORT_DISABLE_ALL, ORT_ENABLE_BASIC, ORT_ENABLE_EXTENDED, ORT_ENABLE_ALL";
    case Want::Mode: return "ORT_SEQUENTIAL or ORT_PARALLEL";
    case Want::Threads: return "a whole number from 0 to 1024";
  }
  return "";
}

static bool is(const Json& v, Want w) {
  const auto* list = std::get_if<Json::Array>(&v.value);
  auto all = [&](auto test) { return list != nullptr && std::all_of(list->begin(), list->end(), test); };
  switch (w) {
    case Want::Number: return std::holds_alternative<double>(v.value);
    case Want::Text: return std::holds_alternative<std::string>(v.value);
    case Want::Mapping: return std::holds_alternative<Json::Object>(v.value);
    case Want::Numbers: return all([](const Json& x) { return is(x, Want::Number); }) && !list->empty();
    case Want::Texts: return all([](const Json& x) { return is(x, Want::Text); }) && !list->empty();
    case Want::Mappings: return all([](const Json& x) { return is(x, Want::Mapping); });
    case Want::Level:
    case Want::Mode: {
      const auto* text = std::get_if<std::string>(&v.value);
      const std::vector<std::string> names = w == Want::Mode ? std::vector<std::string>{"ORT_SEQUENTIAL", "ORT_PARALLEL"}
          : std::vector<std::string>{"ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"};
      return text != nullptr && std::find(names.begin(), names.end(), *text) != names.end();
    }
    case Want::Threads: {
      const auto* d = std::get_if<double>(&v.value);
      return d != nullptr && *d >= 0 && *d <= 1024 && std::floor(*d) == *d;
    }
    case Want::Dims:
      return all([](const Json& x) {
        const auto* d = std::get_if<double>(&x.value);
        return is(x, Want::Text) || (d != nullptr && *d >= 0 && std::floor(*d) == *d);
      });
  }
  return false;
}

static const Json::Array& items(const Json& v) {
  static const Json::Array none;
  const auto* list = std::get_if<Json::Array>(&v.value);
  return list == nullptr ? none : *list;
}

static void want(const std::string& where, const Json& value, Want w) {
  if (!is(value, w)) throw BundleError("manifest.json: `" + where + "` missing or not " + wanted_text(w));
}

static void check_schema(const Json& m) {
  if (!std::holds_alternative<Json::Object>(m.value)) throw BundleError("manifest.json must be a JSON object");
  const std::pair<const char*, const char*> required[] = {
      {"schema", "str"}, {"schema_version", "int"}, {"model", "dict"}, {"target", "dict"}, {"provenance", "dict"},
      {"io", "dict"}, {"preprocessing", "dict"}, {"class_labels", "list"}, {"golden", "dict"}, {"ood", "dict"},
      {"files", "dict"}, {"verified_on", "list"}};
  for (const auto& [key, kind] : required) {
    const Json& v = m[key];
    const std::string k = kind;
    const auto* number = std::get_if<double>(&v.value);
    const bool ok = k == "str"    ? is(v, Want::Text)
                    : k == "int"  ? number != nullptr && std::floor(*number) == *number
                    : k == "dict" ? is(v, Want::Mapping)
                                  : std::holds_alternative<Json::Array>(v.value);
    if (!ok) throw BundleError("manifest.json: `" + std::string(key) + "` missing or not a " + k);
  }
  if (m["schema"].string("schema") != "onnx-deploy-manifest" || m["schema_version"].number("schema_version") != 1)
    throw BundleError("manifest.json: unsupported schema " + m["schema"].string("schema"));
  if (!is(m["golden"]["tolerance"]["atol"], Want::Number) || !std::holds_alternative<Json::Array>(m["golden"]["sets"].value))
    throw BundleError("manifest.json: golden.sets and golden.tolerance.atol are required");
  const Json &pre = m["preprocessing"], &target = m["target"], &golden = m["golden"], &ood = m["ood"];
  const Json empty_list{Json::Array{}};
  want("preprocessing.scale", pre["scale"], Want::Number);
  want("preprocessing.mean", pre["mean"], Want::Numbers);
  want("preprocessing.std", pre["std"], Want::Numbers);
  want("model.file", m["model"]["file"], Want::Text);
  want("target.providers", target["providers"], Want::Texts);
  want("target.session", target["session"], Want::Mapping);
  want("target.provider_options", target.has("provider_options") ? target["provider_options"] : empty_list,
       Want::Mappings);
  const std::pair<const char*, Want> session_values[] = {
      {"graph_optimization_level", Want::Level}, {"execution_mode", Want::Mode},
      {"intra_op_num_threads", Want::Threads}, {"config_entries", Want::Mapping}};
  for (const auto& [key, kind] : session_values)
    if (target["session"].has(key)) want(std::string("target.session.") + key, target["session"][key], kind);
  want("class_labels", m["class_labels"], Want::Texts);
  want("golden.sets", golden["sets"], Want::Texts);
  want("golden.pictures", golden.has("pictures") ? golden["pictures"] : empty_list, Want::Mappings);
  want("files", m["files"], Want::Mapping);
  want("ood.thresholds", ood["thresholds"], Want::Mapping);
  want("io.inputs", m["io"]["inputs"], Want::Mappings);
  want("io.outputs", m["io"]["outputs"], Want::Mappings);
  const auto& pictures = items(golden["pictures"]);
  for (size_t i = 0; i < pictures.size(); ++i) {
    const std::string at = "golden.pictures[" + std::to_string(i) + "].";
    want(at + "file", pictures[i]["file"], Want::Text);
    want(at + "label", pictures[i]["label"], Want::Text);
    want(at + "logits", pictures[i]["logits"], Want::Numbers);
  }
  for (const auto& [name, value] : ood["thresholds"].object("ood.thresholds"))
    want("ood.thresholds." + name, value, Want::Number);
  for (const char* kind : {"inputs", "outputs"}) {
    const auto& entries = items(m["io"][kind]);
    for (size_t i = 0; i < entries.size(); ++i) {
      const std::string at = std::string("io.") + kind + "[" + std::to_string(i) + "].";
      want(at + "name", entries[i]["name"], Want::Text);
      want(at + "shape", entries[i]["shape"], Want::Dims);
      want(at + "dtype", entries[i]["dtype"], Want::Text);
    }
  }
}

static Json load_manifest(const fs::path& bundle) {
  std::error_code error;
  if (!fs::is_regular_file(bundle / kManifest, error)) throw BundleError("no manifest.json in " + bundle.string());
  Json manifest = JsonParser(read_file(bundle / kManifest)).parse();
  check_schema(manifest);
  return manifest;
}

static std::string short_name(const std::string& name) {
  return name.size() <= 80 ? name : name.substr(0, 60) + "... (" + std::to_string(name.size()) + " characters)";
}

static size_t check_files(const fs::path& bundle, const Json& manifest) {
  const auto& listed = manifest["files"].object("files");
  for (const auto& [name, digest] : listed) {
    const fs::path relative(name);
    bool dotdot = false;
    for (const auto& part : relative) dotdot = dotdot || part == "..";
    if (relative.is_absolute() || dotdot) throw BundleError("manifest lists an unsafe path " + short_name(name));
    std::error_code error;  // a name the file system cannot even look up (too long, say) is no file
    if (!fs::is_regular_file(bundle / relative, error))
      throw BundleError("missing file " + short_name(name) + " (listed in manifest.json `files`)");
    if (!is(digest, Want::Text) || sha256_file(bundle / relative) != digest.string("files." + name))
      throw BundleError("sha256 mismatch for " + name + ": the file was modified after packaging");
  }
  // Everything present must be listed, except the manifest and what a signing producer adds after it.
  for (const auto& entry : fs::recursive_directory_iterator(bundle)) {
    if (entry.is_directory() && !entry.is_symlink()) continue;
    const std::string name = fs::relative(entry.path(), bundle).generic_string();
    if (!listed.count(name) && name != kManifest && name != kSignature && name != kProvenance)
      throw BundleError("unlisted file " + name + " in bundle (not in manifest.json)");
  }
  return listed.size();
}
