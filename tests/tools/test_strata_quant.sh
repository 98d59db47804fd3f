#!/usr/bin/env bash
# strata-quant from the outside: cast prints exact values one per line (and raw
# integers with --raw), reads stdin, describes types; bad input is one error line.
set -uo pipefail
bin="$1"
source "$(dirname "$0")/../cli_test_lib.sh"

# expect_output NAME EXPECTED ARGS...: strata-quant ARGS prints exactly EXPECTED.
expect_output() {
  local name="$1" expected="$2"; shift 2
  local got
  if got=$("$bin" "$@" 2>"$tmp/stderr") && [[ "$got" == "$expected" ]]; then
    pass "$name"
  else
    fail "$name: got '$got', expected '$expected' ($(cat "$tmp/stderr"))"
  fi
}

expect_error() {
  local name="$1" pattern="$2"; shift 2
  fails_with_one_line "$name" "$pattern" "$bin" "$@" && pass "$name: $(cat "$tmp/stderr")"
}

expect_output "AP_RND, AP_SAT" $'1.25\n-0.75\n3.96875\n-4\n0.03125' \
  cast --type 'ap_fixed<8,3,AP_RND,AP_SAT>' --values 1.25,-0.75,100,-100,0.04
expect_output "raw integers" $'1.25 40\n-0.75 -24' \
  cast --type 'ap_fixed<8,3,AP_RND,AP_SAT>' --values 1.25,-0.75 --raw
expect_output "UG902 AP_WRAP_SM" $'-4\n2' cast --type 'ap_fixed<4,4,AP_RND,AP_WRAP_SM>' --values 19,-19
expect_output "unsigned wrap of a negative" "15" cast --type 'ap_ufixed<4,4>' --values=-1
expect_output "negative first value" $'-0.75\n1' cast --type 'ap_fixed<8,3>' --values -0.75,1
expect_output "rounding carry overflows" "-2" cast --type 'ap_fixed<4,2,AP_RND>' --values 1.875
expect_output "exact decimal of 64 bits" "0.1000000000000000055511151231257827021181583404541015625" \
  cast --type 'ap_fixed<64,1>' --values 0.1
expect_output "ap_ufixed<64> raw is unsigned" "18446744073709551615 18446744073709551615" \
  cast --type 'ap_ufixed<64,64,AP_TRN,AP_SAT>' --values 1e30 --raw
expect_output "hex floats, inf, nan" $'0.03125\n3.96875\n3.96875' \
  cast --type 'ap_fixed<8,3,AP_TRN,AP_SAT>' --values 0x1p-5,inf,nan
if got=$(printf '0.1 0.2\n0.3,0.9\n' | "$bin" cast --type 'ap_ufixed<4,0,AP_RND>') &&
   [[ "$got" == $'0.125\n0.1875\n0.3125\n0.875' ]]; then
  pass "values from stdin"
else
  fail "values from stdin: got '$got'"
fi
expect_output "type" $'ap_fixed<8,3,AP_RND,AP_SAT>\nwidth 8, integer bits 3, fraction bits 5, signed\nmin -4\nmax 3.96875\nlsb 0.03125' \
  type --type 'ap_fixed< 8, 3, AP_RND, AP_SAT >'
expect_output "type with I > W" $'ap_ufixed<4,8>\nwidth 4, integer bits 8, fraction bits -4, unsigned\nmin 0\nmax 240\nlsb 16' \
  type --type 'ap_ufixed<4,8>'

expect_error "W=0" "type 'ap_fixed<0,3>': width W=0 out of range, expected 1 to 64" \
  cast --type 'ap_fixed<0,3>' --values 1
expect_error "mode typo" "unknown quantization mode 'AP_RDN' (did you mean AP_RND?)" \
  cast --type 'ap_fixed<8,3,AP_RDN>' --values 1
expect_error "missing '>'" "missing '>' at the end" cast --type 'ap_fixed<8,3,AP_RND' --values 1
expect_error "not a number" "value 'abc': not a number" cast --type 'ap_fixed<8,3>' --values 1,abc
expect_error "no subcommand" "subcommand"
expect_error "no type" "type" cast --values 1
expect_error "unknown flag" "bogus" cast --type 'ap_fixed<8,3>' --bogus
if "$bin" --help | grep -q "cast" && "$bin" cast --help | grep -q -- "--raw"; then
  pass "help lists subcommands and flags"
else
  fail "help"
fi

finish
