// Any digit picture -> a 28x28 MNIST-style digit, and the "not a digit?" check: a line-by-line port of digits.py
// (and of digits.mjs), which says why each step exists. The three must give the same bytes, so every step is
// integer arithmetic or IEEE double arithmetic in the same order as there, and rounding is floor(v + 0.5).
// Also the netpbm reader (PGM P5, PPM P6, PAM P7; maxval 255) every consumer has. C++17 standard library only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace digits {

constexpr int kInkContrast = 40;  // grey levels between paper and ink below which a picture counts as blank
constexpr int kBox = 20;          // MNIST fitted each digit into a 20x20 box, then centred it by mass in 28x28
constexpr int kMaxSide = 4096;    // a digit needs far less; a header claiming more is refused before allocating

struct NoInk : std::runtime_error {
  NoInk() : std::runtime_error("no ink found (the image is blank or one flat colour): nothing to classify") {}
};
struct NotAPicture : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Picture {
  int height = 0, width = 0;
  std::vector<uint8_t> rgba;  // height * width * 4
};

inline int whole(const std::string& text) {
  if (text.empty() || text.size() > 6 || text.find_first_not_of("0123456789") != std::string::npos)
    throw NotAPicture("netpbm header field '" + text.substr(0, 20) + "' is not a whole number");
  return std::stoi(text);
}

// digits.read_netpbm: a binary PGM (P5), PPM (P6) or PAM (P7) with maxval 255 -> RGBA.
inline Picture read_netpbm(const std::string& b) {
  const std::string magic = b.substr(0, 2);
  int width = 0, height = 0, maxval = 0, depth = 0;
  size_t pos = 2;
  auto space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  if (magic == "P5" || magic == "P6") {
    std::vector<std::string> tokens;
    while (tokens.size() < 3) {
      while (pos < b.size() && space(b[pos])) ++pos;
      if (pos < b.size() && b[pos] == '#') {
        while (pos < b.size() && b[pos] != '\n') ++pos;
        continue;
      }
      const size_t start = pos;
      while (pos < b.size() && !space(b[pos])) ++pos;
      if (start == pos) throw NotAPicture("netpbm header ends early");
      tokens.push_back(b.substr(start, pos - start));
    }
    width = whole(tokens[0]), height = whole(tokens[1]), maxval = whole(tokens[2]);
    depth = magic == "P5" ? 1 : 3;
    pos += 1;  // one whitespace byte ends the header
  } else if (magic == "P7") {
    const size_t end = b.find("ENDHDR\n");
    if (end == std::string::npos) throw NotAPicture("PAM header without ENDHDR");
    std::map<std::string, std::string> tags;
    std::istringstream lines(b.substr(3, end - 3));
    for (std::string line; std::getline(lines, line);) {
      if (line.empty() || line[0] == '#') continue;
      const size_t key_end = line.find_first_of(" \t");
      if (key_end == std::string::npos) continue;
      const size_t value = line.find_first_not_of(" \t", key_end);
      const size_t last = line.find_last_not_of(" \t\r");
      if (value != std::string::npos) tags[line.substr(0, key_end)] = line.substr(value, last - value + 1);
    }
    width = whole(tags["WIDTH"]), height = whole(tags["HEIGHT"]), maxval = whole(tags["MAXVAL"]);
    const std::map<std::string, int> depths{{"GRAYSCALE", 1}, {"GRAYSCALE_ALPHA", 2}, {"RGB", 3}, {"RGB_ALPHA", 4}};
    const auto found = depths.find(tags["TUPLTYPE"]);
    depth = found == depths.end() ? 0 : found->second;
    if (depth == 0 || tags["DEPTH"] != std::to_string(depth))
      throw NotAPicture("PAM TUPLTYPE/DEPTH " + tags["TUPLTYPE"] + "/" + tags["DEPTH"] +
                        " is not one of GRAYSCALE, GRAYSCALE_ALPHA, RGB, RGB_ALPHA");
    pos = end + 7;
  } else {
    throw NotAPicture("not a binary netpbm picture (P5, P6 or P7)");
  }
  if (!(width > 0 && width <= kMaxSide && height > 0 && height <= kMaxSide) || maxval != 255)
    throw NotAPicture(std::to_string(width) + "x" + std::to_string(height) + " with maxval " + std::to_string(maxval) +
                      ": wanted 1 to 4096 pixels a side, maxval 255");
  const size_t size = size_t(width) * height * depth;
  const size_t have = b.size() >= pos ? b.size() - pos : 0;
  if (have != size || b.size() < pos)
    throw NotAPicture(std::to_string(have) + " bytes of pixels where " + std::to_string(width) + "x" +
                      std::to_string(height) + "x" + std::to_string(depth) + " = " + std::to_string(size) + " belong");
  Picture picture{height, width, std::vector<uint8_t>(size_t(width) * height * 4)};
  for (size_t i = 0; i < size_t(width) * height; ++i) {
    const auto* s = reinterpret_cast<const uint8_t*>(b.data() + pos + i * depth);
    const bool colour = depth >= 3, alpha = depth == 2 || depth == 4;
    picture.rgba[4 * i] = s[0];
    picture.rgba[4 * i + 1] = colour ? s[1] : s[0];
    picture.rgba[4 * i + 2] = colour ? s[2] : s[0];
    picture.rgba[4 * i + 3] = alpha ? s[depth - 1] : 255;
  }
  return picture;
}

inline std::vector<int64_t> grayscale(const Picture& p) {
  std::vector<int64_t> gray(size_t(p.height) * p.width);
  for (size_t i = 0; i < gray.size(); ++i) {
    const int64_t a = p.rgba[4 * i + 3];
    auto ch = [&](int k) { return (int64_t(p.rgba[4 * i + k]) * a + 255 * (255 - a) + 127) / 255; };
    gray[i] = (ch(0) * 299 + ch(1) * 587 + ch(2) * 114 + 500) / 1000;
  }
  return gray;
}

inline std::vector<int64_t> ink_map(const std::vector<int64_t>& gray, int H, int W) {
  std::vector<int64_t> border;
  for (int c = 0; c < W; ++c) border.push_back(gray[c]);
  for (int c = 0; c < W; ++c) border.push_back(gray[size_t(H - 1) * W + c]);
  for (int r = 0; r < H; ++r) border.push_back(gray[size_t(r) * W]);
  for (int r = 0; r < H; ++r) border.push_back(gray[size_t(r) * W + W - 1]);
  std::sort(border.begin(), border.end());
  const size_t middle = border.size() / 2;
  const int64_t background2 = border.size() % 2 ? border[middle] * 2 : border[middle - 1] + border[middle];
  const auto [lo, hi] = std::minmax_element(gray.begin(), gray.end());
  const bool light_paper = (2 * *hi - background2) < (background2 - 2 * *lo);
  std::vector<int64_t> ink(gray.size());
  int64_t peak = std::numeric_limits<int64_t>::min();
  for (size_t i = 0; i < gray.size(); ++i) {
    const int64_t v = light_paper ? background2 - 2 * gray[i] : 2 * gray[i] - background2;
    peak = std::max(peak, v);
    ink[i] = std::max<int64_t>(v, 0);
  }
  if (peak < 2 * kInkContrast) throw NoInk();
  return ink;
}

inline std::vector<double> resample_line(const std::vector<double>& source, int size) {
  const int n = int(source.size());
  const double scale = double(n) / size, support = std::max(scale, 1.0);
  std::vector<double> out(size);
  for (int o = 0; o < size; ++o) {
    const double centre = (o + 0.5) * scale;
    const int first = std::max(int(std::trunc(centre - support + 0.5)), 0);
    const int last = std::min(int(std::trunc(centre + support + 0.5)), n);
    std::vector<double> weights;
    for (int i = first; i < last; ++i) weights.push_back(std::max(0.0, 1.0 - std::fabs((i - centre + 0.5) / support)));
    double total = 0.0;
    for (double w : weights) total += w;
    double acc = 0.0;
    for (size_t k = 0; k < weights.size(); ++k) acc = acc + (weights[k] / total) * source[first + k];
    out[o] = acc;
  }
  return out;
}

// digits.prepare: RGBA -> uint8 (height x width), white digit on black. Throws NoInk for a blank picture.
inline std::vector<uint8_t> prepare(const Picture& p, int height = 28, int width = 28) {
  const int H = p.height, W = p.width;
  const std::vector<int64_t> ink = ink_map(grayscale(p), H, W);
  const int64_t peak = *std::max_element(ink.begin(), ink.end());
  int top = H, bottom = -1, left = W, right = -1;
  for (int r = 0; r < H; ++r)
    for (int c = 0; c < W; ++c)
      if (5 * ink[size_t(r) * W + c] > peak)
        top = std::min(top, r), bottom = std::max(bottom, r), left = std::min(left, c), right = std::max(right, c);
  const int ch = bottom - top + 1, cw = right - left + 1;
  std::vector<std::vector<double>> crop(ch, std::vector<double>(cw));
  for (int r = 0; r < ch; ++r)
    for (int c = 0; c < cw; ++c) crop[r][c] = double(ink[size_t(top + r) * W + left + c]) * (255.0 / double(peak));
  const int longest = std::max(ch, cw);
  const int out_h = std::max(1, (ch * kBox * 2 + longest) / (2 * longest));
  const int out_w = std::max(1, (cw * kBox * 2 + longest) / (2 * longest));
  std::vector<std::vector<double>> wide;
  for (const auto& row : crop) wide.push_back(resample_line(row, out_w));
  std::vector<std::vector<double>> boxed(out_h, std::vector<double>(out_w));
  for (int c = 0; c < out_w; ++c) {
    std::vector<double> column(ch);
    for (int r = 0; r < ch; ++r) column[r] = wide[r][c];
    const std::vector<double> resampled = resample_line(column, out_h);
    for (int r = 0; r < out_h; ++r) boxed[r][c] = resampled[r];
  }
  double mass = 0.0, row_moment = 0.0, col_moment = 0.0;
  for (int r = 0; r < out_h; ++r)
    for (int c = 0; c < out_w; ++c) mass += boxed[r][c], row_moment += r * boxed[r][c], col_moment += c * boxed[r][c];
  const int at_top = std::min(std::max(int(std::floor(height / 2.0 - row_moment / mass + 0.5)), 0), height - out_h);
  const int at_left = std::min(std::max(int(std::floor(width / 2.0 - col_moment / mass + 0.5)), 0), width - out_w);
  std::vector<uint8_t> pixels(size_t(height) * width, 0);
  for (int r = 0; r < out_h; ++r)
    for (int c = 0; c < out_w; ++c)
      pixels[size_t(at_top + r) * width + at_left + c] =
          uint8_t(std::min(std::max(std::floor(boxed[r][c] + 0.5), 0.0), 255.0));
  return pixels;
}

// The manifest's formula: x = (pixel_u8 * scale - mean) / std, in doubles, stored as float32.
inline std::vector<float> normalize(const std::vector<uint8_t>& pixels, double scale, double mean, double stdev) {
  std::vector<float> x;
  for (uint8_t p : pixels) x.push_back(float((p * scale - mean) / stdev));
  return x;
}

// 8-connected pieces of a 0/1 image, in row-major order (digits.components).
inline int components(const std::vector<uint8_t>& ink, int height, int width) {
  std::vector<uint8_t> seen(ink.size(), 0);
  int found = 0;
  for (int start = 0; start < height * width; ++start) {
    if (!ink[start] || seen[start]) continue;
    found += 1;
    seen[start] = 1;
    std::vector<int> stack{start};
    while (!stack.empty()) {
      const int index = stack.back(), r = index / width, c = index % width;
      stack.pop_back();
      for (int dr = -1; dr <= 1; ++dr)
        for (int dc = -1; dc <= 1; ++dc) {
          const int rr = r + dr, cc = c + dc;
          if (rr >= 0 && rr < height && cc >= 0 && cc < width && ink[rr * width + cc] && !seen[rr * width + cc]) {
            seen[rr * width + cc] = 1;
            stack.push_back(rr * width + cc);
          }
        }
    }
  }
  return found;
}

// digits.ink_stats: shape statistics of a prepared digit (white on black).
inline std::map<std::string, double> ink_stats(const std::vector<uint8_t>& pixels, int height = 28, int width = 28) {
  const int peak = *std::max_element(pixels.begin(), pixels.end());
  if (peak == 0) return {{"ink_fraction", 0.0}, {"components", 0.0}, {"aspect", 0.0}, {"solid", 0.0}};
  std::vector<uint8_t> ink(pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i) ink[i] = 2 * pixels[i] >= peak;
  auto at = [&](int r, int c) { return r >= 0 && r < height && c >= 0 && c < width ? ink[r * width + c] : 0; };
  int count = 0, inside = 0, top = height, bottom = -1, left = width, right = -1;
  for (int r = 0; r < height; ++r)
    for (int c = 0; c < width; ++c) {
      if (!ink[r * width + c]) continue;
      count += 1;
      top = std::min(top, r), bottom = std::max(bottom, r), left = std::min(left, c), right = std::max(right, c);
      if (at(r - 1, c) && at(r + 1, c) && at(r, c - 1) && at(r, c + 1)) inside += 1;
    }
  return {{"ink_fraction", double(count) / (height * width)}, {"components", components(ink, height, width)},
          {"aspect", double(right - left + 1) / (bottom - top + 1)}, {"solid", double(inside) / count}};
}

// logsumexp of the logits, in doubles in index order (digits.energy).
inline double energy(const std::vector<float>& logits) {
  double top = -std::numeric_limits<double>::infinity();
  for (float v : logits) top = std::max(top, double(v));
  double total = 0.0;
  for (float v : logits) total += std::exp(double(v) - top);
  return top + std::log(total);
}

// digits.not_a_digit: why a prepared picture is probably not a digit (empty: it looks like one), against the
// manifest's ood.thresholds ("<statistic>_<min|max>" -> bound; an absent bound is not checked).
inline std::vector<std::string> not_a_digit(std::map<std::string, double> stats, const std::vector<float>& logits,
                                            const std::map<std::string, double>& thresholds) {
  stats["energy"] = energy(logits);
  static const char* checks[][3] = {{"ink_fraction", "min", "too little ink"}, {"ink_fraction", "max", "too much ink"},
                                    {"components", "max", "in too many pieces"}, {"aspect", "max", "too wide"},
                                    {"solid", "max", "solid like a blob or a photo"}, {"energy", "min", "no class fits"}};
  std::vector<std::string> reasons;
  for (const auto& check : checks) {
    const std::string name = check[0], side = check[1];
    const auto bound = thresholds.find(name + "_" + side);
    if (bound == thresholds.end()) continue;
    const double value = stats[name];
    if (side == "min" ? value < bound->second : value > bound->second) {
      std::ostringstream why;
      why << check[2] << " (" << name << " ";
      if (name == "components") {
        why << int(value);
      } else {
        why.setf(std::ios::fixed);
        why.precision(2);
        why << value;
        why.unsetf(std::ios::fixed);
      }
      why.precision(6);
      why << (side == "min" ? " < " : " > ") << bound->second << ")";
      reasons.push_back(why.str());
    }
  }
  return reasons;
}

}  // namespace digits
