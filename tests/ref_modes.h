// tests/ref_modes.h: the modes of tests/ref/state_<mode>.bin that both model tests
// (tests/test_gpt2_1bit.c, tests/test_gpt2_1bit.cu) check, and which of them have
// int8 activations (those run again with the integer BitLinear forward)
#ifndef TESTS_REF_MODES_H
#define TESTS_REF_MODES_H

#define NUM_REF_MODES 7
static const char *REF_MODES[NUM_REF_MODES] = {"fp", "ternary", "binary", "ternary_wonly", "ternary_bq8",
                                               "ternary_wonly_bq8", "ternary_rn2"};
static const int REF_MODE_INT8_ACTS[NUM_REF_MODES] = {0, 1, 1, 0, 1, 0, 1};

#endif
