// tests/ref_modes.h: the modes of tests/ref/state_<mode>.bin that both model tests
// (tests/test_gpt2_1bit.c, tests/test_gpt2_1bit.cu) check, which of them have int8
// activations (those run again with the integer BitLinear forward), and the parts of
// the gradient they compare (grad_part_maxes)
#ifndef TESTS_REF_MODES_H
#define TESTS_REF_MODES_H

#define NUM_REF_MODES 7
static const char *REF_MODES[NUM_REF_MODES] = {"fp", "ternary", "binary", "ternary_wonly", "ternary_bq8",
                                               "ternary_wonly_bq8", "ternary_rn2"};
static const int REF_MODE_INT8_ACTS[NUM_REF_MODES] = {0, 1, 1, 0, 1, 0, 1};

// ----------------------------------------------------------------------------
// The parts of the gradient both model tests compare, each against its own max |ref|: every
// parameter tensor whole, then qkvw (L,3C,C) and qkvb (L,3C) again by thirds (the q, k and v
// rows). The q and k rows get their gradient only through the attention's dq and dk, which at
// the test model's nearly uniform attention are 60x smaller than v's: an error there (dq off
// by half) hid inside the whole tensor's bound, and fails every mode by thirds.
#define NUM_GRAD_PARTS (NUM_PARAMETER_TENSORS + 6)

// part p's name (e.g. "qkvw", "qkvw q rows") and, over its elements, max |g - ref| (a NaN wins)
// and max |ref|; param_sizes and the names as in llmc/gpt2_config.h
static void grad_part_maxes(int p, const size_t *param_sizes, int L, int C, const float *g, const float *ref,
                            char *name, size_t name_size, float *md, float *mref) {
    const int tensor = p < NUM_PARAMETER_TENSORS ? p : BITLINEAR_TENSOR[0] + (p - NUM_PARAMETER_TENSORS) / 3;
    size_t off = 0;
    for (int k = 0; k < tensor; k++) { off += param_sizes[k]; }
    // a run of `len` elements every `stride`, `count` times: the whole tensor, or one third of each layer
    size_t first = off, len = param_sizes[tensor], stride = 0;
    int count = 1;
    if (p >= NUM_PARAMETER_TENSORS) {
        const int third = (p - NUM_PARAMETER_TENSORS) % 3;
        const size_t row = param_sizes[tensor] / ((size_t)L * 3 * C); // C for qkvw, 1 for qkvb
        len = (size_t)C * row;
        stride = 3 * len;
        first = off + third * len;
        count = L;
        snprintf(name, name_size, "%s %c rows", PARAMETER_NAMES[tensor], "qkv"[third]);
    } else {
        snprintf(name, name_size, "%s", PARAMETER_NAMES[tensor]);
    }
    *md = 0.0f;
    *mref = 0.0f;
    for (int c = 0; c < count; c++) {
        for (size_t i = first + c * stride; i < first + c * stride + len; i++) {
            const float d = fabsf(g[i] - ref[i]);
            *md = (d > *md || d != d) ? d : *md;
            *mref = fabsf(ref[i]) > *mref ? fabsf(ref[i]) : *mref;
        }
    }
}

#endif
