#include "strata/core/data/text_corpus.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "strata/core/error.h"
#include "strata/core/input_files.h"

namespace strata::core {
namespace fs = std::filesystem;
namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  const std::string text = read_input(path);
  return std::vector<uint8_t>(text.begin(), text.end());
}

at::Tensor to_tensor(const std::vector<uint8_t>& bytes) {
  at::Tensor out = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
  std::copy(bytes.begin(), bytes.end(), out.data_ptr<uint8_t>());
  return out;
}

}  // namespace

TextCorpus TextCorpus::load(const std::string& dir, double train_fraction,
                            const std::string& missing_hint) {
  check_input_directory(dir, "text corpus directory", missing_hint);
  STRATA_CHECK(train_fraction > 0.0 && train_fraction < 1.0, "text corpus train_fraction ",
               train_fraction, ", expected a value between 0 and 1 (exclusive)");

  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name.empty() || name[0] == '.') continue;
    if (ends_with(name, ".dat") || ends_with(name, ".u8")) continue;
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());  // directory order is arbitrary; splits must not be
  STRATA_CHECK(!names.empty(), "text corpus directory '", dir,
               "' has no text files (only *.dat, *.u8, hidden files or subdirectories)");

  std::vector<std::vector<uint8_t>> contents;
  uint64_t total = 0;
  for (const std::string& name : names) {
    contents.push_back(read_bytes(dir + "/" + name));
    total += contents.back().size();
  }
  STRATA_CHECK(total > 0, "text corpus directory '", dir, "': all ", names.size(),
               " text files are empty");

  TextCorpus corpus;
  std::vector<uint8_t> train, validation;
  uint64_t cumulative = 0;
  const double train_target = train_fraction * static_cast<double>(total);
  for (size_t i = 0; i < names.size(); ++i) {
    // A file belongs to train while the bytes before it have not reached the target.
    const bool to_train = static_cast<double>(cumulative) < train_target;
    auto& split = to_train ? train : validation;
    split.insert(split.end(), contents[i].begin(), contents[i].end());
    (to_train ? corpus.train_files_ : corpus.validation_files_).push_back(names[i]);
    cumulative += contents[i].size();
  }
  STRATA_CHECK(!validation.empty(), "text corpus directory '", dir, "': ", names.size(),
               " file(s) of ", total, " bytes leave nothing for validation at train_fraction ",
               train_fraction, "; expected at least two non-empty files");
  corpus.train_ = to_tensor(train);
  corpus.validation_ = to_tensor(validation);
  return corpus;
}

const std::vector<std::string>& TextCorpus::names() {
  static const std::vector<std::string> names = {"fortunes", "bible"};
  return names;
}

TextCorpus TextCorpus::load_named(const std::string& name) {
  if (name == "fortunes") return load(kFortunesDir, 0.9, "install the fortunes package");
  if (name == "bible") {
    return load(kBibleDir, 0.9,
                "install bible-kjv-text and bible-kjv and run scripts/bible_corpus.sh (or "
                "scripts/setup.sh)");
  }
  STRATA_FAIL("text corpus '", name, "' is unknown, expected fortunes or bible");
}

std::pair<at::Tensor, at::Tensor> TextCorpus::sample_batch(bool train, int64_t batch,
                                                           int64_t context,
                                                           at::Generator gen) const {
  const at::Tensor& data = train ? train_ : validation_;
  const char* split = train ? "train" : "validation";
  STRATA_CHECK(data.defined(), "text corpus: sample_batch on a corpus that was not loaded");
  STRATA_CHECK(batch >= 1, "text corpus: batch ", batch, ", expected at least 1");
  STRATA_CHECK(context >= 1, "text corpus: context ", context, ", expected at least 1");
  STRATA_CHECK(data.size(0) >= context + 1, "text corpus: context ", context, " needs at least ",
               context + 1, " bytes, the ", split, " split has ", data.size(0));
  // Window i covers bytes [start_i, start_i + context]; inputs drop its last byte and
  // targets its first, so targets[t] is the byte that follows inputs[t].
  const at::Tensor starts = at::randint(0, data.size(0) - context, {batch}, gen, at::kLong);
  const at::Tensor positions = starts.unsqueeze(1) + at::arange(context + 1, at::kLong);
  const at::Tensor windows = data.index({positions}).to(at::kLong);
  return {windows.slice(1, 0, context).contiguous(), windows.slice(1, 1).contiguous()};
}

}  // namespace strata::core
