#pragma once
// A slow scalar reference of the HLS fixed-point assignment, written apart from the
// library and plainly: exact integer division for the rounding (floor, remainder,
// comparison with half an LSB), then one explicit rule per overflow mode. It shares
// nothing with quant/src but the FixedPointType struct.

#include <cstdint>

#include "strata/quant/fixed_point.h"

namespace strata::quant::reference {

using int128 = __int128;

// The raw integer V (exact, unsigned 64-bit values included) that type t gives the
// exact value n * 2^e, |n| < 2^62.
int128 assign(int128 n, int e, const FixedPointType& t);

// The raw integer V of `ap_fixed<...> y = x;` in HLS, x decoded from its bits as the
// HLS header does (see fixed_point.h).
int128 assign_double(double x, const FixedPointType& t);

// V * 2^-F rounded once to double / float (through long double, which holds every
// 64-bit V exactly).
double value_double(int128 v, const FixedPointType& t);
float value_float(int128 v, const FixedPointType& t);

}  // namespace strata::quant::reference
