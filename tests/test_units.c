/*
 tests/test_units.c: unit tests of the pieces the model is built from.
   - the quantizers of llmc/ternary.h: edge cases (all-zero tensors and rows,
     huge values, ties at .5), grids and idempotence
   - the straight-through estimator contract of bitlinear_backward
   - the int8 backward of dX (-bq int8) against its equation, bit for bit, on every SIMD path
   - finite-difference gradient checks of every float layer
   - the GELU against double precision: llmc/gelu_cpu.h's e^z, gelu_forward, gelu_backward's
     local gradient
   - matmul_forward against a naive loop at odd shapes
   - gradient accumulation (-d) against one batch of the same tokens
   - the learning-rate / weight-decay schedules, sampling, tokenizer decoding
   - what the loaders check files with: CRC-32, the first non-finite value
 Prints one PASS/FAIL line per check; exits 1 on any failure.
 Build and run: make tests/test_units && ./tests/test_units
*/
#define TESTING
#include "../train_gpt2_1bit.c"

static int num_passed = 0, num_failed = 0;
static void check(int ok, const char *name) {
    if (ok) { printf("PASS: %s\n", name); num_passed++; }
    else { printf("FAIL: %s\n", name); num_failed++; }
}

static uint64_t test_rng = 42;
static void fill_random(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) { x[i] = scale * (2.0f * random_f32(&test_rng) - 1.0f); }
}

// ----------------------------------------------------------------------------
// quantizers

static void test_quantizers(void) {
    // all-zero weights: gamma is floored, every trit is 0, nothing is NaN
    float zeros[64] = {0};
    float gamma = absmean_scale(zeros, 64);
    int ok = gamma == TERNARY_EPS;
    for (int i = 0; i < 64; i++) { ok &= ternarize(zeros[i], gamma) == 0; }
    check(ok, "ternary: all-zero tensor gives gamma = eps and zero trits");

    // ties are rounded half to even, like torch.round: w/gamma = +-0.5 -> 0, +-1.5 -> +-2 -> clamp +-1
    ok = ternarize(0.5f, 1.0f) == 0 && ternarize(-0.5f, 1.0f) == 0 && ternarize(0.5000001f, 1.0f) == 1 &&
         ternarize(1.5f, 1.0f) == 1 && ternarize(-1.5f, 1.0f) == -1 && ternarize(-0.4999999f, 1.0f) == 0;
    check(ok, "ternary: ties at .5 round half to even, then clamp to [-1, 1]");

    // huge and tiny values stay finite and saturate to +-1
    float huge[4] = {1e30f, -1e30f, 1.0f, 0.0f};
    gamma = absmean_scale(huge, 4);
    ok = isfinite(gamma) && ternarize(huge[0], gamma) == 1 && ternarize(huge[1], gamma) == -1 &&
         ternarize(huge[2], gamma) == 0;
    check(ok, "ternary: huge weights give a finite scale and saturate");

    // gamma is mean|W|
    float w[1000];
    fill_random(w, 1000, 0.1f);
    double s = 0;
    for (int i = 0; i < 1000; i++) { s += fabs(w[i]); }
    check(fabsf(absmean_scale(w, 1000) - (float)(s / 1000)) < 1e-7f, "ternary: gamma = mean|W|");

    // weights_quantize: W_q = trit * gamma, about a third zeros for uniform weights
    float wq[1000];
    int8_t trits[1000];
    gamma = weights_quantize(wq, trits, w, 1000, WQ_TERNARY);
    int zerocount = 0;
    ok = 1;
    for (int i = 0; i < 1000; i++) {
        ok &= wq[i] == trits[i] * gamma && trits[i] >= -1 && trits[i] <= 1;
        zerocount += trits[i] == 0;
    }
    check(ok, "ternary: weights_quantize gives W_q = trit * gamma with trits in {-1, 0, 1}");
    check(zerocount > 150 && zerocount < 350, "ternary: uniform weights give about a quarter to a third zeros");

    // binary: sign(W - mean) * mean|W|, sign(0) = +1, never zero
    float wb[4] = {1.0f, 2.0f, 3.0f, 2.0f}; // mean 2: the two 2s sit exactly on the centre
    float beta = weights_quantize(wq, trits, wb, 4, WQ_BINARY);
    ok = beta == 2.0f && trits[0] == -1 && trits[1] == 1 && trits[2] == 1 && trits[3] == 1 && wq[0] == -2.0f;
    check(ok, "binary: sign(W - mean(W)) * mean|W| with sign(0) = +1");

    // activations: all-zero row stays zero and finite
    float row0[16] = {0};
    float sx = absmax_scale(row0, 16);
    ok = isfinite(sx) && quantize_int8(row0[0], sx) == 0;
    check(ok, "int8: all-zero row gives a finite scale and zeros");

    // the row's max maps to +-127, ties round half to even, values clamp
    float row[5] = {-2.0f, 1.0f, 0.0f, 2.0f, -0.5f};
    sx = absmax_scale(row, 5);
    ok = sx == 63.5f && quantize_int8(row[3], sx) == 127 && quantize_int8(row[0], sx) == -127 &&
         quantize_int8(1.0f, 2.5f) == 2 && quantize_int8(1.0f, 3.5f) == 4 && quantize_int8(-1.0f, 2.5f) == -2 &&
         quantize_int8(1000.0f, 1.0f) == 127 && quantize_int8(-1000.0f, 1.0f) == -128;
    check(ok, "int8: max|x| -> 127, ties half to even, clamp to [-128, 127]");

    // huge rows stay finite
    float hrow[3] = {3e38f, -1e38f, 1.0f};
    sx = absmax_scale(hrow, 3);
    ok = isfinite(sx) && sx > 0.0f && quantize_int8(hrow[0], sx) == 127 && quantize_int8(hrow[2], sx) == 0;
    check(ok, "int8: a row with huge values gets a finite, positive scale");

    // a NaN (a diverged run) becomes a code, never an undefined float-to-int8 conversion
    // (UBSan reported one from a packed file with a NaN scale)
    ok = ternarize(NAN, 1.0f) == 1 && ternarize(1.0f, NAN) == 1 && quantize_int8(NAN, 1.0f) == 127 &&
         quantize_int8(1.0f, NAN) == 127 && ternarize(-INFINITY, 1.0f) == -1 && quantize_int8(INFINITY, 1.0f) == 127;
    check(ok, "quantizers: NaN clamps to the top code, inf to its end of the range (no undefined conversion)");

    // bitlinear_input_forward: x_q lies on the row's int8 grid and is idempotent
    int N = 7, IC = 33;
    float x[7 * 33], xq[7 * 33], xq2[7 * 33], rstd[7];
    fill_random(x, (size_t)N * IC, 3.0f);
    QuantConfig q = {WQ_TERNARY, AQ_INT8, 1, BQ_FLOAT};
    bitlinear_input_forward(xq, NULL, NULL, rstd, x, N, IC, &q);
    ok = 1;
    for (int n = 0; n < N; n++) {
        float ss = 0, m = 0;
        for (int i = 0; i < IC; i++) { ss += x[n * IC + i] * x[n * IC + i]; }
        ok &= fabsf(rstd[n] - 1.0f / sqrtf(ss / IC + RMSNORM_EPS)) < 1e-6f * rstd[n];
        for (int i = 0; i < IC; i++) { m = fmaxf(m, fabsf(x[n * IC + i] * rstd[n])); }
        float step = m / 127.0f;
        for (int i = 0; i < IC; i++) {
            float k = xq[n * IC + i] / step;
            ok &= fabsf(k - nearbyintf(k)) < 1e-3f && fabsf(k) <= 127.5f;
        }
    }
    check(ok, "BitLinear input: inner RMSNorm rstd correct and x_q on the 127-step grid of max|x_n|");
    QuantConfig q_noinner = {WQ_TERNARY, AQ_INT8, 0, BQ_FLOAT};
    bitlinear_input_forward(xq2, NULL, NULL, rstd, xq, N, IC, &q_noinner);
    float md = 0;
    for (int i = 0; i < N * IC; i++) { md = fmaxf(md, fabsf(xq2[i] - xq[i])); }
    check(md < 1e-5f, "int8: quantizing x_q again gives x_q (idempotent)");
}

// ----------------------------------------------------------------------------
// STE contract: dW_latent equals the gradient with respect to W_q

static void test_ste(void) {
    int N = 6, IC = 20, OC = 9;
    float inp[6 * 20], w[9 * 20], wq[9 * 20], bias[9], out[6 * 9], xq[6 * 20], rstd[6], dout[6 * 9];
    int8_t trits[9 * 20];
    fill_random(inp, sizeof(inp) / 4, 2.0f);
    fill_random(w, sizeof(w) / 4, 0.05f);
    fill_random(bias, 9, 0.1f);
    fill_random(dout, sizeof(dout) / 4, 1.0f);
    weights_quantize(wq, trits, w, (size_t)OC * IC, WQ_TERNARY);
    QuantConfig q = {WQ_TERNARY, AQ_INT8, 0, BQ_FLOAT};
    bitlinear_forward(out, xq, rstd, inp, wq, bias, N, IC, OC, &q);
    float dinp[6 * 20] = {0}, dw[9 * 20] = {0}, db[9] = {0}, dxn[6 * 20];
    float *scratch = (float *)mallocCheck(matmul_scratch_size(N, IC, OC) * sizeof(float));
    bitlinear_backward(dinp, dw, db, dout, inp, xq, rstd, wq, N, IC, OC, &q, dxn, scratch);
    // the gradient of y = x_q W_q^T + b with respect to W_q and to x_q, by naive loops
    float md_w = 0, md_x = 0, md_b = 0;
    for (int o = 0; o < OC; o++) {
        float sb = 0;
        for (int n = 0; n < N; n++) { sb += dout[n * OC + o]; }
        md_b = fmaxf(md_b, fabsf(sb - db[o]));
        for (int i = 0; i < IC; i++) {
            float s = 0;
            for (int n = 0; n < N; n++) { s += dout[n * OC + o] * xq[n * IC + i]; }
            md_w = fmaxf(md_w, fabsf(s - dw[o * IC + i]));
        }
    }
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < IC; i++) {
            float s = 0;
            for (int o = 0; o < OC; o++) { s += dout[n * OC + o] * wq[o * IC + i]; }
            md_x = fmaxf(md_x, fabsf(s - dinp[n * IC + i]));
        }
    }
    check(md_w < 1e-5f, "STE: dW_latent = dout^T x_q (the gradient of W_q)");
    check(md_x < 1e-5f, "STE: dx = dout W_q (rounding counts as identity)");
    check(md_b < 1e-5f, "STE: dbias = sum of dout, in full precision");
    free(scratch);
}

// ----------------------------------------------------------------------------
// the int8 backward of dX (-bq int8): against its equation, exactly, on every SIMD path

// dx_q (N,IC) = (gamma / s_g) * (q @ t) by plain loops: q = dY (N,OC) to int8 per row, t the trits (OC,IC)
static void int8_backward_spec(float *dxq, const float *dout, const int8_t *trits, float gamma, int N, int IC, int OC) {
    int8_t *q = (int8_t *)mallocCheck((size_t)OC);
    for (int n = 0; n < N; n++) {
        float s = grad_absmax_scale(dout + (size_t)n * OC, OC);
        for (int o = 0; o < OC; o++) { q[o] = quantize_int8(dout[(size_t)n * OC + o], s); }
        float scale = gamma * (1.0f / s); // as dequant_epilogue: the two scales multiplied first
        for (int i = 0; i < IC; i++) {
            int32_t acc = 0;
            for (int o = 0; o < OC; o++) { acc += (int32_t)q[o] * trits[(size_t)o * IC + i]; }
            dxq[(size_t)n * IC + i] = (float)acc * scale;
        }
    }
    free(q);
}

static void test_int8_backward(void) {
    // pack2_rows_transposed = transpose, then pack2_rows, at shapes with partial tiles and a partial last byte
    const int shapes[3][2] = {{37, 600}, {300, 40}, {1, 3}};
    for (int k = 0; k < 3; k++) {
        int rows = shapes[k][0], n = shapes[k][1];
        size_t nt = (size_t)rows * n, nb = (size_t)n * pack2_row_bytes(rows);
        int8_t *t = (int8_t *)mallocCheck(nt), *tt = (int8_t *)mallocCheck(nt);
        uint8_t *a = (uint8_t *)mallocCheck(nb), *b = (uint8_t *)mallocCheck(nb);
        for (size_t i = 0; i < nt; i++) { t[i] = (int8_t)(random_u32(&test_rng) % 3) - 1; }
        for (int r = 0; r < rows; r++) {
            for (int i = 0; i < n; i++) { tt[(size_t)i * rows + r] = t[(size_t)r * n + i]; }
        }
        pack2_rows(a, tt, n, rows);
        pack2_rows_transposed(b, t, rows, n);
        char name[128];
        snprintf(name, sizeof(name), "pack2_rows_transposed (%d x %d) = pack2_rows of the transpose", rows, n);
        check(memcmp(a, b, nb) == 0, name);
        free(t); free(tt); free(a); free(b);
    }
    // N = 9: two 4-row tiles and a GEMV row; OC = 300: blocks of 128 and 256 trits and a partial one
    int N = 9, IC = 40, OC = 300;
    size_t nin = (size_t)N * IC, nout = (size_t)N * OC, nw = (size_t)OC * IC;
    float *inp = (float *)mallocCheck(nin * 4), *xq = (float *)mallocCheck(nin * 4), rstd[9];
    float *w = (float *)mallocCheck(nw * 4), *wq = (float *)mallocCheck(nw * 4), bias[300];
    float *out = (float *)mallocCheck(nout * 4), *dout = (float *)mallocCheck(nout * 4);
    float *spec = (float *)mallocCheck(nin * 4), *dxn = (float *)mallocCheck(nin * 4);
    float *d_f = (float *)mallocCheck(nin * 4), *d_i = (float *)mallocCheck(nin * 4), *d_ref = (float *)mallocCheck(nin * 4);
    float *dw_f = (float *)mallocCheck(nw * 4), *dw_i = (float *)mallocCheck(nw * 4), db_f[300], db_i[300];
    int8_t *trits = (int8_t *)mallocCheck(nw), *t_back = (int8_t *)mallocCheck(nw), *qi8 = (int8_t *)mallocCheck(nout);
    int8_t *trits_t = (int8_t *)mallocCheck(nw);
    uint8_t *w2t = (uint8_t *)mallocCheck((size_t)IC * pack2_row_bytes(OC));
    uint8_t *w2t_ref = (uint8_t *)mallocCheck((size_t)IC * pack2_row_bytes(OC));
    uint8_t *w8t = (uint8_t *)mallocCheck(tw_bytes(TW_P8, IC, OC)), *w8t_ref = (uint8_t *)mallocCheck(tw_bytes(TW_P8, IC, OC));
    float inv_s[9];
    int32_t *acc = (int32_t *)mallocCheck(nin * sizeof(int32_t));
    float *scratch = (float *)mallocCheck(matmul_scratch_size(N, IC, OC) * sizeof(float));
    fill_random(inp, nin, 2.0f);
    fill_random(w, nw, 0.05f);
    fill_random(bias, OC, 0.1f);
    fill_random(dout, nout, 1e-3f);
    for (int o = 0; o < OC; o++) { dout[3 * OC + o] = 0.0f; } // an all-zero row of dY: s_g is floored, dx = 0
    const int path0 = cpu_path();
    char name[160];
    for (int mode = WQ_TERNARY; mode <= WQ_BINARY; mode++) {
        const char *mname = WEIGHT_QUANT_NAMES[mode];
        float gamma = weights_quantize(wq, trits, w, nw, mode);
        // the transposed packing equals transposing, then pack2_rows
        for (int o = 0; o < OC; o++) {
            for (int i = 0; i < IC; i++) { trits_t[(size_t)i * OC + o] = trits[(size_t)o * IC + i]; }
        }
        pack2_rows(w2t_ref, trits_t, IC, OC);
        pack2_rows_transposed(w2t, trits, OC, IC);
        unpack2_rows(t_back, w2t, IC, OC);
        snprintf(name, sizeof(name), "int8 backward (%s): pack2_rows_transposed = pack2_rows of the transpose", mname);
        check(memcmp(w2t, w2t_ref, (size_t)IC * pack2_row_bytes(OC)) == 0 && memcmp(t_back, trits_t, nw) == 0, name);
        tw_pack(TW_P8, w8t_ref, trits_t, IC, OC);
        tw_pack_transposed(TW_P8, w8t, trits, OC, IC);
        snprintf(name, sizeof(name), "int8 backward (%s): the int8 panels (TW_P8) packed transposed = packed from the transpose", mname);
        check(memcmp(w8t, w8t_ref, tw_bytes(TW_P8, IC, OC)) == 0, name);
        for (int norm = 0; norm <= 1; norm++) {
            QuantConfig q = {mode, AQ_INT8, norm, BQ_INT8};
            bitlinear_forward(out, xq, rstd, inp, wq, bias, N, IC, OC, &q);
            // the float backward, the spec's dx_q, and the spec's dx (through the inner norm, if any)
            memset(d_f, 0, nin * 4); memset(dw_f, 0, nw * 4); memset(db_f, 0, sizeof(db_f));
            bitlinear_backward(d_f, dw_f, db_f, dout, inp, xq, rstd, wq, N, IC, OC, &q, dxn, scratch);
            int8_backward_spec(spec, dout, trits, gamma, N, IC, OC);
            memset(d_ref, 0, nin * 4);
            if (norm) { bitlinear_norm_backward(d_ref, spec, inp, rstd, N, IC); } else { memcpy(d_ref, spec, nin * 4); }
            for (int p = CPU_PATH_SCALAR; p < CPU_NUM_PATHS; p++) {
                if (!cpu_path_supported(p)) { continue; }
                cpu_path_set(p);
                memset(d_i, 0, nin * 4); memset(dw_i, 0, nw * 4); memset(db_i, 0, sizeof(db_i));
                for (int f = TW_T2; f <= TW_P8; f++) { // both compute forms of the trits
                    memset(d_i, 0, nin * 4); memset(dw_i, 0, nw * 4); memset(db_i, 0, sizeof(db_i));
                    bitlinear_backward_int8(d_i, dw_i, db_i, dout, inp, xq, rstd, f == TW_T2 ? w2t : w8t, f, gamma, qi8,
                                            inv_s, acc, N, IC, OC, &q, dxn, scratch);
                    snprintf(name, sizeof(name), "int8 backward (%s, inner norm %d, path %s, %s): dX bit-identical to "
                             "its equation, (gamma/s_g) (q t) by plain loops", mname, norm, cpu_path_name(p),
                             f == TW_T2 ? "2-bit rows" : "int8 panels");
                    check(memcmp(d_i, d_ref, nin * 4) == 0, name);
                }
                cpu_path_set(path0);
            }
            // dW and db stay float: the float backward's, bit for bit (the same matmul, on the same path)
            memset(d_i, 0, nin * 4); memset(dw_i, 0, nw * 4); memset(db_i, 0, sizeof(db_i));
            bitlinear_backward_int8(d_i, dw_i, db_i, dout, inp, xq, rstd, w2t, TW_T2, gamma, qi8, inv_s, acc, N, IC, OC,
                                    &q, dxn, scratch);
            snprintf(name, sizeof(name), "int8 backward (%s, inner norm %d): dW and db equal the float backward's",
                     mname, norm);
            check(memcmp(dw_i, dw_f, nw * 4) == 0 && memcmp(db_i, db_f, sizeof(db_f)) == 0, name);
            // and dX is the float backward's up to dY's rounding: half a step of 127 per row, through W_q
            float md = 0, mref = 0;
            for (size_t i = 0; i < nin; i++) { md = fmaxf(md, fabsf(d_i[i] - d_f[i])); mref = fmaxf(mref, fabsf(d_f[i])); }
            snprintf(name, sizeof(name), "int8 backward (%s, inner norm %d): dX within 2%% of the float backward's "
                     "(max diff %.1e of max %.1e)", mname, norm, md, mref);
            check(md <= 0.02f * mref && md > 0.0f, name);
            int zero_row = 1;
            for (int i = 0; i < IC; i++) { zero_row &= d_i[3 * IC + i] == 0.0f; }
            snprintf(name, sizeof(name), "int8 backward (%s, inner norm %d): an all-zero row of dY gives dX = 0",
                     mname, norm);
            check(zero_row, name);
        }
    }
    // tiny gradients keep their precision: dY * 2^-60 (about 1e-21, far below the activations' 1e-5
    // floor) gives exactly dX * 2^-60 (a power of two: the same codes, scales exact)
    {
        QuantConfig q = {WQ_TERNARY, AQ_INT8, 0, BQ_INT8};
        float gamma = weights_quantize(wq, trits, w, nw, WQ_TERNARY);
        pack2_rows_transposed(w2t, trits, OC, IC);
        bitlinear_forward(out, xq, rstd, inp, wq, bias, N, IC, OC, &q);
        memset(d_ref, 0, nin * 4); memset(dw_i, 0, nw * 4); memset(db_i, 0, sizeof(db_i));
        bitlinear_backward_int8(d_ref, dw_i, db_i, dout, inp, xq, rstd, w2t, TW_T2, gamma, qi8, inv_s, acc, N, IC, OC, &q,
                                dxn, scratch);
        for (size_t i = 0; i < nout; i++) { dout[i] = ldexpf(dout[i], -60); }
        memset(d_i, 0, nin * 4);
        bitlinear_backward_int8(d_i, dw_i, db_i, dout, inp, xq, rstd, w2t, TW_T2, gamma, qi8, inv_s, acc, N, IC, OC, &q,
                                dxn, scratch);
        int ok = 1;
        for (size_t i = 0; i < nin; i++) { ok &= d_i[i] == ldexpf(d_ref[i], -60); }
        check(ok, "int8 backward: dY scaled by 2^-60 gives dX scaled by 2^-60 exactly (no 1e-5 floor on gradients)");
    }
    free(inp); free(xq); free(w); free(wq); free(out); free(dout); free(spec); free(dxn); free(d_f); free(d_i);
    free(d_ref); free(dw_f); free(dw_i); free(trits); free(t_back); free(qi8); free(trits_t); free(w2t); free(w2t_ref); free(w8t); free(w8t_ref);
    free(acc); free(scratch);
}

// ----------------------------------------------------------------------------
// GELU against double precision (train_gpt2_1bit.c computes it from e = e^(-2u), llmc/gelu_cpu.h)

#define ULP_1 5.9604644775390625e-8 // 2^-24: a float's unit roundoff

// GELU_EXP_ULPS: gelu_expf(z) against exp(z) in double, in ulps of the result. The degree-6 Taylor
// polynomial's truncation alone is up to 2 ulps at r = -ln2/2 (llmc/gelu_cpu.h); measured over every
// float in [-87, 87]: 2.74 ulps (the same in the -march=native, x86-64-v3 and scalar builds); bound 3.
#define GELU_EXP_ULPS 3.0
// GELU_RTOL: gelu_forward, and the local gradient gelu_backward computes, against the same formulas in
// double. u is rounded to float (an error of a few ulps of u), so e^(-2u), and whatever depends on it,
// carries a relative error of about |2u| ulps: the bound is RTOL * (1 + |2u|) times |gelu(x)| for the
// forward, times |term 1| + |term 2| of gelu'(x) = 1 / (1 + e) + 0.5 x sech^2(u) du/dx for the backward
// (the sum is 0 near x = -0.75, the GELU's minimum: a bound relative to it would not hold there; 4 e /
// (1 + e)^2 carries the same |2u| ulps). Measured on a grid of 4M points over [-20, 20] and 100k near
// 0: forward 2.71, backward 2.68 (-march=native and x86-64-v3); 3.07 and 3.04 in the scalar build (no
// FMA unit: x + 0.044715 x^3 rounds twice); RTOL = 4 ulps. The tanhf forms this replaced were off by up
// to 8e5 ulps * (1 + |2u|) in the negative tail (1 + tanh(u) and 1 - tanh^2(u) cancel there).
// GELU_ATOL: below x = -9.4, e^(-2u) is clamped at e^87; both values are under 1e-34 there.
#define GELU_RTOL (4 * ULP_1)
#define GELU_ATOL 1e-30

static void test_gelu(void) {
    char name[256];
    { // e^z on [-87, 87]: every 1024th float, both signs
        float f87 = 87.0f;
        uint32_t lim;
        memcpy(&lim, &f87, 4);
        double worst = 0;
        for (uint32_t sign = 0; sign < 2; sign++) {
            for (uint32_t b = 0; b <= lim; b += 1024) {
                uint32_t bits = b | (sign << 31);
                float z;
                memcpy(&z, &bits, 4);
                double ref = exp((double)z);
                int ex;
                frexp(ref, &ex); // ref in [2^(ex-1), 2^ex): its float ulp is 2^(ex-24)
                worst = fmax(worst, fabs(gelu_expf(z) - ref) / ldexp(1.0, ex - 24));
            }
        }
        snprintf(name, sizeof(name), "gelu_expf (llmc/gelu_cpu.h) vs exp in double on [-87, 87]: max %.2f ulps (bound %.0f)",
                 worst, GELU_EXP_ULPS);
        check(worst <= GELU_EXP_ULPS, name);
    }
    // gelu_forward and gelu_backward on a fine grid over [-20, 20] and near 0
    enum { NG = 40001, N = NG + 1000 };
    static float x[N], y[N], dinp[N], ones[N];
    uint64_t rng = 7;
    for (int i = 0; i < NG; i++) { x[i] = -20.0f + 40.0f * i / (NG - 1); }
    for (int i = NG; i < N; i++) { x[i] = (random_f32(&rng) - 0.5f) * 1e-3f; }
    for (int i = 0; i < N; i++) { dinp[i] = 0.0f; ones[i] = 1.0f; }
    gelu_forward(y, x, N);
    gelu_backward(dinp, x, ones, N); // dinp = 0 + gelu'(x) * 1: the local gradient, exactly
    double worst_f = 0, worst_b = 0;
    int ok_f = 1, ok_b = 1;
    for (int i = 0; i < N; i++) {
        double xd = x[i], u = 0.7978845608028654 * (xd + 0.044715 * xd * xd * xd);
        double e = exp(-2.0 * u), g = 1.0 / (1.0 + e); // g = 0.5 (1 + tanh(u)), without tanh's cancellation
        double term2 = 0.5 * xd * (4.0 * e * g * g) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * xd * xd);
        double cond = 1.0 + fabs(2.0 * u);
        double ref_f = xd * g, mag_b = fabs(g) + fabs(term2);
        double err_f = fabs(y[i] - ref_f), err_b = fabs(dinp[i] - (g + term2));
        ok_f &= err_f <= GELU_ATOL + GELU_RTOL * cond * fabs(ref_f);
        ok_b &= err_b <= GELU_ATOL + GELU_RTOL * cond * mag_b;
        if (fabs(ref_f) > GELU_ATOL) { worst_f = fmax(worst_f, err_f / (fabs(ref_f) * cond * ULP_1)); }
        if (mag_b > GELU_ATOL) { worst_b = fmax(worst_b, err_b / (mag_b * cond * ULP_1)); }
    }
    snprintf(name, sizeof(name), "gelu_forward (x / (1 + e^-2u)) vs double on [-20, 20]: max error %.2f ulps * (1 + |2u|) (bound 4)",
             worst_f);
    check(ok_f, name);
    snprintf(name, sizeof(name), "gelu_backward's local gradient vs double on [-20, 20]: max error %.2f ulps * (1 + |2u|) "
             "* (|term 1| + |term 2|) (bound 4)", worst_b);
    check(ok_b, name);
}

// ----------------------------------------------------------------------------
// finite differences: loss = sum(out * R) for a fixed random R; compare the
// analytic dinp with (loss(x + h) - loss(x - h)) / 2h in double precision

// the tolerance: float32 forward passes make the central difference noisy by
// about eps_float * |loss| / h, ~1e-5 at these sizes (5e-5 is the largest
// seen); 1e-3 leaves room for other compilers, while a real mistake (a missing
// term, a wrong sign) gives errors of order 1
#define FD_H 1e-2f
#define FD_RTOL 1e-3f

typedef void (*ForwardFn)(float *out, const float *inp, void *ctx);

static double fd_loss(ForwardFn f, void *ctx, const float *inp, float *out, const float *R, int nout) {
    f(out, inp, ctx);
    double s = 0;
    for (int i = 0; i < nout; i++) { s += (double)out[i] * R[i]; }
    return s;
}

// returns max |analytic - numeric| / max(|numeric|) over the first `probe` inputs
static float fd_check(ForwardFn f, void *ctx, float *inp, int nin, const float *analytic, const float *R, int nout) {
    float *out = (float *)mallocCheck((size_t)nout * sizeof(float));
    float md = 0, mref = 1e-3f;
    for (int i = 0; i < nin; i++) {
        float keep = inp[i];
        inp[i] = keep + FD_H;
        double lp = fd_loss(f, ctx, inp, out, R, nout);
        inp[i] = keep - FD_H;
        double lm = fd_loss(f, ctx, inp, out, R, nout);
        inp[i] = keep;
        float num = (float)((lp - lm) / (2.0 * FD_H));
        md = fmaxf(md, fabsf(num - analytic[i]));
        mref = fmaxf(mref, fabsf(num));
    }
    free(out);
    return md / mref;
}

typedef struct { int N, C; float *w, *b, *mean, *rstd; } LNCtx;
static void ln_fwd(float *out, const float *inp, void *c) {
    LNCtx *x = (LNCtx *)c;
    layernorm_forward(out, x->mean, x->rstd, inp, x->w, x->b, x->N, x->C);
}
typedef struct { int n; } GeluCtx;
static void gelu_fwd(float *out, const float *inp, void *c) { gelu_forward(out, inp, ((GeluCtx *)c)->n); }
typedef struct { int B, T, C, NH; float *preatt, *att; } AttCtx;
static void att_fwd(float *out, const float *inp, void *c) {
    AttCtx *x = (AttCtx *)c;
    attention_forward(out, x->preatt, x->att, inp, x->B, x->T, x->C, x->NH);
}
typedef struct { int N, IC, OC; const float *w, *b; float *xq, *rstd; QuantConfig q; } BLCtx;
static void bl_fwd(float *out, const float *inp, void *c) {
    BLCtx *x = (BLCtx *)c;
    bitlinear_forward(out, x->xq, x->rstd, inp, x->w, x->b, x->N, x->IC, x->OC, &x->q);
}
typedef struct { int N, V, Vp; const int *targets; float *probs, *losses; } CECtx;
static void ce_fwd(float *out, const float *logits, void *c) { // out[0] = mean loss
    CECtx *x = (CECtx *)c;
    softmax_forward(x->probs, logits, x->N, x->V, x->Vp);
    crossentropy_forward(x->losses, x->probs, x->targets, x->N, x->Vp);
    double s = 0;
    for (int i = 0; i < x->N; i++) { s += x->losses[i]; }
    out[0] = (float)(s / x->N);
}

static void test_finite_differences(void) {
    char name[128];
    { // layernorm
        int N = 3, C = 8;
        float inp[24], out[24], R[24], w[8], b[8], mean[3], rstd[3], dinp[24] = {0}, dw[8] = {0}, db[8] = {0};
        fill_random(inp, 24, 1.0f); fill_random(R, 24, 1.0f); fill_random(w, 8, 1.0f); fill_random(b, 8, 1.0f);
        LNCtx ctx = {N, C, w, b, mean, rstd};
        ln_fwd(out, inp, &ctx);
        layernorm_backward(dinp, dw, db, R, inp, w, mean, rstd, N, C);
        float rel = fd_check(ln_fwd, &ctx, inp, 24, dinp, R, 24);
        snprintf(name, sizeof(name), "finite differences: layernorm dinp (rel err %.1e)", rel);
        check(rel < FD_RTOL, name);
    }
    { // gelu
        float inp[16], out[16], R[16], dinp[16] = {0};
        fill_random(inp, 16, 3.0f); fill_random(R, 16, 1.0f);
        GeluCtx ctx = {16};
        gelu_backward(dinp, inp, R, 16);
        float rel = fd_check(gelu_fwd, &ctx, inp, 16, dinp, R, 16);
        snprintf(name, sizeof(name), "finite differences: gelu (rel err %.1e)", rel);
        check(rel < FD_RTOL, name);
        (void)out;
    }
    { // attention
        int B = 2, T = 4, C = 8, NH = 2;
        int nin = B * T * 3 * C, nout = B * T * C;
        float inp[192], out[64], R[64], preatt[64], att[64], dinp[192] = {0}, dpre[64] = {0}, datt[64] = {0};
        fill_random(inp, nin, 1.0f); fill_random(R, nout, 1.0f);
        AttCtx ctx = {B, T, C, NH, preatt, att};
        att_fwd(out, inp, &ctx);
        attention_backward(dinp, dpre, datt, R, inp, att, B, T, C, NH);
        float rel = fd_check(att_fwd, &ctx, inp, nin, dinp, R, nout);
        snprintf(name, sizeof(name), "finite differences: causal attention (rel err %.1e)", rel);
        check(rel < FD_RTOL, name);
    }
    { // BitLinear with float activations and the inner RMSNorm (the float path of BitLinear)
        int N = 4, IC = 12, OC = 5;
        float inp[48], out[20], R[20], w[60], b[5], xq[48], rstd[4], dinp[48] = {0}, dw[60] = {0}, db[5] = {0};
        float dxn[48];
        fill_random(inp, 48, 2.0f); fill_random(R, 20, 1.0f); fill_random(w, 60, 0.5f); fill_random(b, 5, 0.1f);
        BLCtx ctx = {N, IC, OC, w, b, xq, rstd, {WQ_FP, AQ_NONE, 1, BQ_FLOAT}};
        bl_fwd(out, inp, &ctx);
        float *scratch = (float *)mallocCheck(matmul_scratch_size(N, IC, OC) * sizeof(float));
        bitlinear_backward(dinp, dw, db, R, inp, xq, rstd, w, N, IC, OC, &ctx.q, dxn, scratch);
        float rel = fd_check(bl_fwd, &ctx, inp, 48, dinp, R, 20);
        snprintf(name, sizeof(name), "finite differences: inner RMSNorm + matmul dinp (rel err %.1e)", rel);
        check(rel < FD_RTOL, name);
        // and the weight gradient, perturbing w
        float dw_num[60];
        for (int i = 0; i < 60; i++) {
            float keep = w[i];
            double l[2];
            for (int s = 0; s < 2; s++) {
                w[i] = keep + (s ? -FD_H : FD_H);
                bl_fwd(out, inp, &ctx);
                l[s] = 0;
                for (int j = 0; j < 20; j++) { l[s] += (double)out[j] * R[j]; }
            }
            w[i] = keep;
            dw_num[i] = (float)((l[0] - l[1]) / (2 * FD_H));
        }
        float md = 0, mref = 1e-3f;
        for (int i = 0; i < 60; i++) { md = fmaxf(md, fabsf(dw_num[i] - dw[i])); mref = fmaxf(mref, fabsf(dw_num[i])); }
        snprintf(name, sizeof(name), "finite differences: matmul dweight (rel err %.1e)", md / mref);
        check(md / mref < FD_RTOL, name);
        free(scratch);
    }
    { // softmax + cross-entropy over a padded vocab
        int N = 3, V = 7, Vp = 8;
        float logits[24], probs[24], losses[3], dlogits[24] = {0}, R[1] = {1.0f};
        int targets[3] = {0, 3, 6};
        fill_random(logits, 24, 2.0f);
        CECtx ctx = {N, V, Vp, targets, probs, losses};
        float out[1];
        ce_fwd(out, logits, &ctx);
        crossentropy_softmax_backward(dlogits, probs, targets, N, V, Vp);
        float rel = fd_check(ce_fwd, &ctx, logits, 24, dlogits, R, 1);
        int pad_zero = dlogits[7] == 0.0f && dlogits[15] == 0.0f && dlogits[23] == 0.0f;
        snprintf(name, sizeof(name), "finite differences: softmax + cross-entropy, padded logits get 0 (rel err %.1e)", rel);
        check(rel < FD_RTOL && pad_zero, name);
    }
}

// ----------------------------------------------------------------------------
// matmul at shapes that are not multiples of its tiles

static void test_matmul_shapes(void) {
    int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {4, 16, 2}, {7, 13, 5}, {9, 64, 3}, {33, 70, 129}, {64, 3072, 8},
                      {6, 9000, 5}}; // K > MATMUL_K_CHUNK: accumulated chunks
    int ok = 1;
    for (int s = 0; s < 8; s++) {
        int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *a = (float *)mallocCheck((size_t)M * K * 4), *w = (float *)mallocCheck((size_t)N * K * 4);
        float *b = (float *)mallocCheck((size_t)N * 4), *out = (float *)mallocCheck((size_t)M * N * 4);
        fill_random(a, (size_t)M * K, 1.0f); fill_random(w, (size_t)N * K, 1.0f); fill_random(b, N, 1.0f);
        matmul_forward(out, a, w, b, M, K, N);
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                double ref = b[n];
                for (int k = 0; k < K; k++) { ref += (double)a[m * K + k] * w[n * K + k]; }
                ok &= fabs(out[m * N + n] - ref) <= 1e-4 * (1 + sqrt((double)K));
            }
        }
        free(a); free(w); free(b); free(out);
    }
    check(ok, "matmul_forward equals a naive double loop at 8 odd shapes (one with K over a chunk)");
}

// ----------------------------------------------------------------------------
// gradient accumulation (-d): the trainer's step over k micro-batches of B/k rows, each backward
// pass adding the gradient of its micro-batch's mean loss, the sum taken times 1/k, against one
// forward and backward pass over all B rows. Equal up to float rounding: the mean loss and every
// gradient (the sums over rows run in another order), and the weights after one AdamW step.

// Tolerances, relative (measured at the shapes below: loss 1.2e-7, gradients 2.9e-7, weights after
// one AdamW step 2.6e-6: its first step is about lr * sign(g), which amplifies the rounding of
// gradients near 0). Each is 8x to 40x what was measured, and far below what a wrong scale (a
// factor k) or an activation gradient left over from the micro-batch before (O(1)) would give.
#define ACCUM_LOSS_RTOL 1e-6
#define ACCUM_GRAD_RTOL 1e-5
#define ACCUM_PARAM_RTOL 1e-4
// The largest difference |a*scale - b| in each parameter tensor, relative to that tensor's largest
// |b|; returns the worst tensor's. (Elementwise relative errors mean nothing where a gradient is a
// sum that nearly cancels: such an element is 1e-7 of its tensor's largest and differs in its 3rd digit.)
static double accum_error(const float *a, float scale, const float *b, const size_t *param_sizes) {
    double worst = 0.0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        double diff = 0.0, mag = 0.0;
        for (size_t i = 0; i < param_sizes[t]; i++) {
            diff = fmax(diff, fabs((double)a[i] * scale - b[i]));
            mag = fmax(mag, fabs(b[i]));
        }
        worst = fmax(worst, mag > 0.0 ? diff / mag : diff);
        a += param_sizes[t];
        b += param_sizes[t];
    }
    return worst;
}

static void test_grad_accumulation(void) {
    GPT2Config cfg = {.max_seq_len = 16, .vocab_size = 60, .padded_vocab_size = 64, .num_layers = 2, .num_heads = 2,
                      .channels = 32};
    enum { B = 4, T = 16 };
    int inputs[B * T], targets[B * T];
    for (int i = 0; i < B * T; i++) {
        inputs[i] = (int)(random_u32(&test_rng) % 60);
        targets[i] = (int)(random_u32(&test_rng) % 60);
    }
    QuantConfig modes[2] = {quant_config_fp(), quant_config_b158()};
    const char *names[2] = {"fp", "b1.58"};
    for (int m = 0; m < 2; m++) {
        GPT2 one; // one batch of B rows, one step
        gpt2_build_random(&one, &cfg, modes[m], 7);
        gpt2_forward(&one, inputs, targets, B, T);
        gpt2_zero_grad(&one);
        gpt2_backward(&one);
        float *grads_one = (float *)mallocCheck(one.num_parameters * sizeof(float));
        memcpy(grads_one, one.grads_memory, one.num_parameters * sizeof(float));
        gpt2_update(&one, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1);
        for (int k = 2; k <= 4; k *= 2) {
            int b = B / k;
            GPT2 acc; // k micro-batches of B/k rows, as the trainer's main loop does them
            gpt2_build_random(&acc, &cfg, modes[m], 7);
            gpt2_allocate_activations(&acc, b, T);
            gpt2_zero_grad(&acc);
            double loss = 0.0;
            for (int j = 0; j < k; j++) {
                gpt2_forward(&acc, inputs + j * b * T, targets + j * b * T, b, T);
                gpt2_backward(&acc);
                loss += acc.mean_loss;
            }
            float mean_loss = (float)(loss / k);
            double grad_err = accum_error(acc.grads_memory, 1.0f / k, grads_one, one.param_sizes);
            gpt2_update(&acc, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f / k, 1);
            double param_err = accum_error(acc.params_memory, 1.0f, one.params_memory, one.param_sizes);
            char name[512];
            snprintf(name, sizeof(name), "gradient accumulation, %s: %d micro-batches of %d x %d = one batch of %d x %d "
                     "(loss %.7f vs %.7f; largest difference per tensor, relative: gradients %.2g, weights after "
                     "AdamW %.2g)", names[m], k, b, T, B, T, mean_loss, one.mean_loss, grad_err, param_err);
            check(fabsf(mean_loss - one.mean_loss) <= ACCUM_LOSS_RTOL * fabsf(one.mean_loss) &&
                  grad_err <= ACCUM_GRAD_RTOL && param_err <= ACCUM_PARAM_RTOL, name);
            gpt2_free(&acc);
        }
        free(grads_one);
        gpt2_free(&one);
    }
}

// ----------------------------------------------------------------------------
// schedules, sampling, tokenizer

static void test_schedules(void) {
    Schedule s = {1.5e-3f, 10, 100, 0.1f, 0.5f, 2.0f / 3.0f, 0.1f, 0.5f};
    int ok = fabsf(schedule_lr(&s, 0) - 1.5e-4f) < 1e-9f && fabsf(schedule_lr(&s, 9) - 1.5e-3f) < 1e-9f;
    check(ok, "schedule: linear warmup reaches the peak at the last warmup step");
    float before = schedule_lr(&s, 49), after = schedule_lr(&s, 50);
    check(after < 0.75f * before && after > 0.6f * before, "schedule: the second stage drops to the lower peak");
    check(fabsf(schedule_lr(&s, 100) - 1.5e-4f) < 1e-8f, "schedule: ends at lr * final fraction");
    check(schedule_wd(&s, 49) == 0.1f && schedule_wd(&s, 50) == 0.0f, "schedule: weight decay switches off at half");
    Schedule plain = s;
    plain.stage2_drop = 1.0f;
    check(fabsf(schedule_lr(&plain, 50) - schedule_lr(&plain, 49)) < 1e-4f * 1.5e-3f + 5e-5f,
          "schedule: drop 1 is the plain cosine (continuous at the split)");
}

static void test_sampling(void) {
    float logits[6] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f, -3.0f};
    int scratch[6];
    check(sample_logits(logits, 6, 0.0f, 0, 0.9f, scratch) == 1, "sampling: temperature 0 is argmax");
    check(sample_logits(logits, 6, 1.0f, 1, 0.99f, scratch) == 1, "sampling: top-k 1 is argmax");
    int ok = 1;
    for (int i = 0; i < 200; i++) {
        int t = sample_logits(logits, 6, 1.0f, 2, random_f32(&test_rng), scratch);
        ok &= t == 1 || t == 3;
    }
    check(ok, "sampling: top-k 2 only draws the two largest");
    int counts[6] = {0};
    for (int i = 0; i < 20000; i++) { counts[sample_logits(logits, 6, 1.0f, 0, random_f32(&test_rng), scratch)]++; }
    double z = 0;
    for (int i = 0; i < 6; i++) { z += exp(logits[i]); }
    ok = 1;
    for (int i = 0; i < 6; i++) { ok &= fabs(counts[i] / 20000.0 - exp(logits[i]) / z) < 0.02; }
    check(ok, "sampling: frequencies follow softmax(logits) within 0.02");
    // the decoder's contract: a top-k sample depends only on the top k (index, logit) pairs,
    // so logits below them may be replaced by -inf; ties at the boundary go to the lower index
    enum { N = 1000, K = 40 };
    float full[N], cut[N];
    int big_scratch[N];
    for (int i = 0; i < N; i++) { full[i] = random_normal(&test_rng); }
    full[10] = full[20] = full[30] = 5.0f; // a three-way tie at the top
    int order[N];
    for (int i = 0; i < N; i++) { order[i] = i; }
    for (int i = 1; i < N; i++) { // the reference order: insertion sort by (logit desc, index asc)
        int v = order[i], j = i - 1;
        while (j >= 0 && (full[order[j]] < full[v] || (full[order[j]] == full[v] && order[j] > v))) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = v;
    }
    for (int i = 0; i < N; i++) { cut[i] = -INFINITY; }
    for (int j = 0; j < K; j++) { cut[order[j]] = full[order[j]]; }
    ok = 1;
    int in_top = 1;
    for (int i = 0; i < 2000; i++) {
        uint64_t a = test_rng, b = test_rng;
        int t1 = sample_logits(full, N, 0.8f, K, random_f32(&a), big_scratch);
        int t2 = sample_logits(cut, N, 0.8f, K, random_f32(&b), big_scratch);
        ok &= t1 == t2;
        in_top &= cut[t1] != -INFINITY;
        random_u32(&test_rng);
    }
    check(ok && in_top, "sampling: top-k samples are identical when the logits outside the top k are -inf");
    float tie[5] = {1.0f, 3.0f, 3.0f, 3.0f, 0.0f};
    int sc5[5];
    ok = 1;
    for (int i = 0; i < 200; i++) {
        int t = sample_logits(tie, 5, 1.0f, 2, random_f32(&test_rng), sc5);
        ok &= t == 1 || t == 2;
    }
    check(ok, "sampling: a tie at the k-th logit keeps the lower indices");
}

static void test_tokenizer(void) {
    // a tiny tokenizer file: ids 0..3 = "a", "bc", "\xe2\x82" (half of a euro sign), "\xac"
    char path[] = "/tmp/test_tokenizer_XXXXXX";
    int fd = mkstemp(path);
    FILE *fp = fdopen(fd, "wb");
    uint32_t header[256] = {0};
    header[0] = TOKENIZER_MAGIC; header[1] = TOKENIZER_VERSION; header[2] = 4; header[3] = 1;
    fwrite(header, 4, 256, fp);
    const char *toks[4] = {"a", "bc", "\xe2\x82", "\xac"};
    for (int i = 0; i < 4; i++) {
        unsigned char len = (unsigned char)strlen(toks[i]);
        fwrite(&len, 1, 1, fp);
        fwrite(toks[i], 1, len, fp);
    }
    fclose(fp);
    Tokenizer t;
    tokenizer_init(&t, path);
    char buf[64] = {0};
    int ids[5] = {0, 1, 2, 3, 0};
    for (int i = 0; i < 5; i++) { strcat(buf, tokenizer_decode(&t, ids[i])); }
    check(t.init_ok && t.vocab_size == 4 && t.eot_token == 1 && strcmp(buf, "abc\xe2\x82\xac" "a") == 0 &&
          tokenizer_decode(&t, 4) == NULL, "tokenizer: decodes tokens (and split UTF-8) back to bytes");
    tokenizer_free(&t);
    remove(path);
    // the real GPT-2 tokenizer, when prepro has written it
    Tokenizer g;
    FILE *probe = fopen("data/gpt2_tokenizer.bin", "rb");
    if (probe != NULL) {
        fclose(probe);
        tokenizer_init(&g, "data/gpt2_tokenizer.bin");
        char s[64] = {0};
        int hello[3] = {15496, 11, 995}; // "Hello", ",", " world" in GPT-2 BPE
        for (int i = 0; i < 3; i++) { strcat(s, tokenizer_decode(&g, hello[i])); }
        check(g.vocab_size == 50257 && g.eot_token == 50256 && strcmp(s, "Hello, world") == 0,
              "tokenizer: data/gpt2_tokenizer.bin decodes [15496, 11, 995] to \"Hello, world\"");
        tokenizer_free(&g);
    }
}

// ----------------------------------------------------------------------------
// the loaders' checks: CRC-32 and the first non-finite value

static void test_file_checks(void) {
    // the standard check value of CRC-32 (zlib.crc32(b"123456789")), and chaining
    const char *digits = "123456789";
    uint8_t buf[1001];
    for (int i = 0; i < 1001; i++) { buf[i] = (uint8_t)(i * 7 + 3); }
    int ok = crc32_update(0, digits, 9) == 0xCBF43926u && crc32_update(0, digits, 0) == 0u;
    for (int cut = 0; cut <= 1001; cut += 77) { // every split, through both the 8-byte and the byte loop
        ok &= crc32_update(crc32_update(0, buf, (size_t)cut), buf + cut, (size_t)(1001 - cut)) == crc32_update(0, buf, 1001);
    }
    uint32_t c = crc32_update(0, buf, 1001);
    buf[500] ^= 1;
    ok &= crc32_update(0, buf, 1001) != c;
    check(ok, "CRC-32: the check value 0xCBF43926 of \"123456789\", chained updates, a flipped bit changes it");

    float x[100];
    for (int i = 0; i < 100; i++) { x[i] = (float)i - 50.0f; }
    ok = first_non_finite(x, 100) == 100;
    x[63] = INFINITY;
    ok &= first_non_finite(x, 100) == 63;
    x[17] = NAN;
    ok &= first_non_finite(x, 100) == 17 && first_non_finite(x, 17) == 17;
    x[0] = -INFINITY;
    ok &= first_non_finite(x, 100) == 0 && first_non_finite(x, 0) == 0;
    check(ok, "first_non_finite finds the first NaN, inf or -inf (and none in finite data)");
}

int main(void) {
    test_quantizers();
    test_file_checks();
    test_ste();
    test_int8_backward();
    test_finite_differences();
    test_gelu();
    test_matmul_shapes();
    test_grad_accumulation();
    test_schedules();
    test_sampling();
    test_tokenizer();
    printf("(test_units: %d checks passed, %d checks failed)\n", num_passed, num_failed);
    return num_failed == 0 ? 0 : 1;
}
