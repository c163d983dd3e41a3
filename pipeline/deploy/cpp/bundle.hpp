// Reading a bundle, for the C++ consumer: its error types (by exit code), just enough JSON to read manifest.json,
// SHA-256 (FIPS 180-4) and whole-file reads. C++17 standard library only.
#pragma once

#include <cstdint>
#include <cstring>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace fs = std::filesystem;

struct BundleError : std::runtime_error {  // exit 2
  using std::runtime_error::runtime_error;
};
struct GoldenMismatch : std::runtime_error {  // exit 1
  using std::runtime_error::runtime_error;
};
struct ProviderMissing : std::runtime_error {  // exit 3: not verified here, for want of the provider
  using std::runtime_error::runtime_error;
};

// ---- JSON: just enough to read manifest.json (objects, arrays, strings with \u escapes, numbers, literals).
struct Json {
  using Object = std::map<std::string, Json>;
  using Array = std::vector<Json>;
  std::variant<std::nullptr_t, bool, double, std::string, Array, Object> value;

  const Json& operator[](const std::string& key) const {
    static const Json missing{};
    const auto* object = std::get_if<Object>(&value);
    if (object == nullptr) return missing;
    const auto found = object->find(key);
    return found == object->end() ? missing : found->second;
  }
  bool has(const std::string& key) const {
    const auto* object = std::get_if<Object>(&value);
    return object != nullptr && object->count(key) > 0;
  }
  const Object& object(const std::string& what) const { return as<Object>(what, "an object"); }
  const Array& array(const std::string& what) const { return as<Array>(what, "a list"); }
  const std::string& string(const std::string& what) const { return as<std::string>(what, "a string"); }
  double number(const std::string& what) const { return as<double>(what, "a number"); }
  bool boolean(const std::string& what) const { return as<bool>(what, "true or false"); }
  std::string text() const {  // a provider option or config value as ONNX Runtime takes it: a string
    if (const auto* s = std::get_if<std::string>(&value)) return *s;
    if (const auto* b = std::get_if<bool>(&value)) return *b ? "1" : "0";
    if (const auto* d = std::get_if<double>(&value)) {
      std::ostringstream out;
      out << *d;
      return out.str();
    }
    return "";
  }

 private:
  template <class T>
  const T& as(const std::string& what, const char* kind) const {
    const auto* v = std::get_if<T>(&value);
    if (v == nullptr) throw BundleError("manifest.json: `" + what + "` missing or not " + kind);
    return *v;
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}
  Json parse() {
    Json value = parse_value();
    skip_space();
    if (i_ != s_.size()) fail("trailing characters");
    return value;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;
  int depth_ = 0;
  static constexpr int kMaxDepth = 64;  // a manifest nests a few levels; deeper is an attack on the stack

  [[noreturn]] void fail(const std::string& why) const {
    throw BundleError("manifest.json is not valid JSON: " + why + " at byte " + std::to_string(i_));
  }
  void skip_space() {
    while (i_ < s_.size() && std::strchr(" \t\r\n", s_[i_]) != nullptr) ++i_;
  }
  char next() {
    skip_space();
    if (i_ >= s_.size()) fail("unexpected end");
    return s_[i_];
  }
  void expect(const char* word) {
    const size_t n = std::strlen(word);
    if (s_.compare(i_, n, word) != 0) fail(std::string("expected ") + word);
    i_ += n;
  }
  Json parse_value() {
    const char c = next();
    if ((c == '{' || c == '[') && ++depth_ > kMaxDepth) fail("nested too deeply");
    if (c == '{') return parse_object();
    if (c == '[') return parse_array();
    if (c == '"') return Json{parse_string()};
    if (c == 't') return expect("true"), Json{true};
    if (c == 'f') return expect("false"), Json{false};
    if (c == 'n') return expect("null"), Json{nullptr};
    return Json{parse_number()};
  }
  // JSON's number grammar exactly (no inf, nan, hex or leading '+'), read locale-free.
  double parse_number() {
    const size_t start = i_;
    auto digits = [&]() {
      const size_t from = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      return i_ > from;
    };
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ < s_.size() && s_[i_] == '0') {
      ++i_;
    } else if (!digits()) {
      fail("unexpected character");
    }
    if (i_ < s_.size() && s_[i_] == '.' && (++i_, !digits())) fail("bad number");
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) fail("bad number");
    }
    double value = 0;
    const auto [end, error] = std::from_chars(s_.data() + start, s_.data() + i_, value);
    if (error != std::errc() || end != s_.data() + i_) fail("bad number");
    return value;
  }
  Json parse_object() {
    Json::Object object;
    ++i_;
    if (next() == '}') return ++i_, --depth_, Json{object};
    for (;;) {
      if (next() != '"') fail("expected a key");
      std::string key = parse_string();
      if (next() != ':') fail("expected ':'");
      ++i_;
      object[key] = parse_value();
      const char c = next();
      ++i_;
      if (c == '}') return --depth_, Json{object};
      if (c != ',') fail("expected ',' or '}'");
    }
  }
  Json parse_array() {
    Json::Array array;
    ++i_;
    if (next() == ']') return ++i_, --depth_, Json{array};
    for (;;) {
      array.push_back(parse_value());
      const char c = next();
      ++i_;
      if (c == ']') return --depth_, Json{array};
      if (c != ',') fail("expected ',' or ']'");
    }
  }
  unsigned hex4() {
    unsigned code = 0;
    for (int k = 0; k < 4; ++k, ++i_) {
      const char c = i_ < s_.size() ? s_[i_] : '\0';
      const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (digit < 0) fail("bad \\u escape");
      code = code * 16 + unsigned(digit);
    }
    return code;
  }
  std::string parse_string() {
    std::string out;
    ++i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) break;
      c = s_[i_++];
      const char* plain = std::strchr("\"\\/bfnrt", c);
      if (plain != nullptr && c != 'u') {
        out += "\"\\/\b\f\n\r\t"[plain - "\"\\/bfnrt"];
        continue;
      }
      if (c != 'u') fail("bad escape");
      unsigned code = hex4();
      if (code >= 0xDC00 && code < 0xE000) fail("lone low surrogate");
      if (code >= 0xD800 && code < 0xDC00) {  // must be a surrogate pair
        if (s_.compare(i_, 2, "\\u") != 0) fail("lone high surrogate");
        i_ += 2;
        const unsigned low = hex4();
        if (low < 0xDC00 || low >= 0xE000) fail("bad surrogate pair");
        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
      }
      append_utf8(out, code);
    }
    if (i_ >= s_.size()) fail("unterminated string");
    ++i_;
    return out;
  }
  static void append_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out += char(code);
    } else if (code < 0x800) {
      out += char(0xC0 | (code >> 6));
      out += char(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      out += char(0xE0 | (code >> 12));
      out += char(0x80 | ((code >> 6) & 0x3F));
      out += char(0x80 | (code & 0x3F));
    } else {
      out += char(0xF0 | (code >> 18));
      out += char(0x80 | ((code >> 12) & 0x3F));
      out += char(0x80 | ((code >> 6) & 0x3F));
      out += char(0x80 | (code & 0x3F));
    }
  }
};

// ---- SHA-256 (FIPS 180-4), to check every file against the manifest.
class Sha256 {
 public:
  void update(const unsigned char* data, size_t n) {
    for (size_t k = 0; k < n; ++k) {
      block_[used_++] = data[k];
      if (used_ == 64) compress(), used_ = 0;
    }
    bits_ += uint64_t(n) * 8;
  }
  std::string hex() {
    const uint64_t bits = bits_;
    const unsigned char pad = 0x80, zero = 0;
    update(&pad, 1);
    while (used_ != 56) update(&zero, 1);
    for (int k = 7; k >= 0; --k) block_[used_++] = (unsigned char)(bits >> (8 * k));
    compress();
    std::ostringstream out;
    for (uint32_t word : h_) out << std::hex << std::setw(8) << std::setfill('0') << word;
    return out.str();
  }

 private:
  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char block_[64] = {};
  size_t used_ = 0;
  uint64_t bits_ = 0;

  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress() {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t w[64];
    for (int t = 0; t < 16; ++t)
      w[t] = uint32_t(block_[4 * t]) << 24 | uint32_t(block_[4 * t + 1]) << 16 | uint32_t(block_[4 * t + 2]) << 8 |
             block_[4 * t + 3];
    for (int t = 16; t < 64; ++t) {
      const uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int t = 0; t < 64; ++t) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[t] + w[t];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    const uint32_t add[8] = {a, b, c, d, e, f, g, h};
    for (int k2 = 0; k2 < 8; ++k2) h_[k2] += add[k2];
  }
};

static std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BundleError("cannot read " + path.string());
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

static std::string sha256_file(const fs::path& path) {
  const std::string bytes = read_file(path);
  Sha256 digest;
  digest.update(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return digest.hex();
}
