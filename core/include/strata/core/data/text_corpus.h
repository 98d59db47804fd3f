#pragma once
// Byte-level text corpus over a directory of plain text files (by default the `fortunes`
// package), split into train and validation by file order.

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace strata::core {

inline constexpr const char* kFortunesDir = "/usr/share/games/fortunes";
// Debian's bible-kjv-text as plain text, one file per book (01-genesis.txt ..
// 66-revelation.txt), written by scripts/bible_corpus.sh (scripts/setup.sh runs it).
inline constexpr const char* kBibleDir = "/usr/local/share/strata/bible-kjv";

class TextCorpus {
 public:
  // Reads the regular files of `dir` in name order, skipping `*.dat` and `*.u8` (fortune's
  // index and UTF-8 duplicates), hidden files and subdirectories. The first files whose
  // cumulative size reaches `train_fraction` of the total are the train split, the rest
  // validation: splitting by file, not by byte, keeps one text out of both splits.
  // `missing_hint` ends the error for a missing directory.
  static TextCorpus load(
      const std::string& dir = kFortunesDir, double train_fraction = 0.9,
      const std::string& missing_hint = "for the default, install the fortunes package");
  // A corpus by name, split as load() does: "fortunes" (kFortunesDir) or "bible" (kBibleDir:
  // Genesis to Acts train, the held-out books Romans to Revelation, 9% of the bytes,
  // validation). strata::Error for another name, or for a corpus that is not installed.
  static TextCorpus load_named(const std::string& name);
  // The corpora load_named knows, for flags and messages.
  static const std::vector<std::string>& names();

  const at::Tensor& train() const { return train_; }            // uint8 [train bytes]
  const at::Tensor& validation() const { return validation_; }  // uint8 [validation bytes]
  const std::vector<std::string>& train_files() const { return train_files_; }
  const std::vector<std::string>& validation_files() const { return validation_files_; }

  // `batch` windows at uniformly random offsets of the chosen split: inputs int64
  // [batch, context], targets int64 [batch, context] = the same windows one byte later.
  std::pair<at::Tensor, at::Tensor> sample_batch(bool train, int64_t batch, int64_t context,
                                                 at::Generator gen) const;

 private:
  at::Tensor train_;
  at::Tensor validation_;
  std::vector<std::string> train_files_;
  std::vector<std::string> validation_files_;
};

}  // namespace strata::core
