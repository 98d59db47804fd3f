#pragma once
// The flags of a program that trains fortunes-lm-moe (train_lm --moe): the expert flags bind
// to the MoE layers' options (strata/moe/moe_layer.h), so the program reads them there.

#include <CLI/CLI.hpp>

#include "strata/moe/moe_layer.h"

namespace strata::programs {

struct MoEFlags {
  bool enabled = false;  // --moe
  int ep = 1;            // --ep: the process grid's expert-parallel size
  // --experts, --top-k, --expert-ffn (hidden), --capacity-factor, --drop-priority,
  // --balance-loss, --z-loss, --router-jitter. d_model and expert_group are the program's
  // to set once it has built its model's options and its grid.
  moe::MoELayerOptions layer{/*d_model=*/1, /*experts=*/8, /*hidden=*/512};
};

// --moe, --experts, --top-k, --expert-ffn, --capacity-factor, --drop-priority,
// --balance-loss, --z-loss, --router-jitter, --ep.
void add_moe_flags(CLI::App& app, MoEFlags& flags);
// After parsing, before any communication: MoE flags without --moe, a top-k above the
// experts, experts not divisible by --ep are strata::Errors naming the flags.
void check_moe_flags(const CLI::App& app, const MoEFlags& flags);

}  // namespace strata::programs
