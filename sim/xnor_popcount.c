/* Bit-packed binary matrix product: out[i][j] = k - popcount(x[i] XOR w[j]) over `words` uint64 words.
 *
 * The compiled twin of fxp.bits.xnor_popcount (numpy), built on first use by sim.native with
 * -O3 -march=native. numpy needs three passes over memory per word (XOR, popcount, add); here a
 * word is XORed, counted and added in registers. With AVX-512 VPOPCNTDQ the count runs on eight
 * words per instruction; elsewhere (and for the tail) it is the scalar popcount. Padding bits are 0 in both operands,
 * so they never count as disagreeing.
 */
#include <stddef.h>
#include <stdint.h>
#if defined(__AVX512VPOPCNTDQ__) && defined(__AVX512F__)
#include <immintrin.h>
#endif

static inline int64_t pop_xor(const uint64_t *a, const uint64_t *b, size_t words) {
    int64_t c = 0;
    size_t t = 0;
#if defined(__AVX512VPOPCNTDQ__) && defined(__AVX512F__)
    __m512i acc = _mm512_setzero_si512();
    for (; t + 8 <= words; t += 8)
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(a + t),
                                                                          _mm512_loadu_si512(b + t))));
    c = _mm512_reduce_add_epi64(acc);
#endif
    for (; t < words; t++)
        c += __builtin_popcountll(a[t] ^ b[t]);
    return c;
}

void xnor_popcount(const uint64_t *x, const uint64_t *w, int64_t m, int64_t n, int64_t words, int64_t k,
                   int64_t *out) {
    /* Blocks of 64 x rows against all w rows keep the x block in L1/L2 while w streams. */
    const int64_t block = 64;
    for (int64_t i0 = 0; i0 < m; i0 += block) {
        int64_t i1 = i0 + block < m ? i0 + block : m;
        for (int64_t j = 0; j < n; j++) {
            const uint64_t *wj = w + j * words;
            for (int64_t i = i0; i < i1; i++)
                out[i * n + j] = k - pop_xor(x + i * words, wj, (size_t)words);
        }
    }
}
