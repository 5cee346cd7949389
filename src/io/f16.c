/* dtype sizes and names, IEEE half / bfloat16 <-> f32, tensor -> f32. */
#include <math.h>
#include <string.h>

#include "../core/internal.h"
#include "io_internal.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [LINA_DTYPE_F32] = {"F32", 4}, [LINA_DTYPE_F16] = {"F16", 2}, [LINA_DTYPE_BF16] = {"BF16", 2},
    [LINA_DTYPE_F64] = {"F64", 8}, [LINA_DTYPE_I64] = {"I64", 8}, [LINA_DTYPE_I32] = {"I32", 4},
    [LINA_DTYPE_I16] = {"I16", 2}, [LINA_DTYPE_I8] = {"I8", 1},   [LINA_DTYPE_U8] = {"U8", 1},
    [LINA_DTYPE_BOOL] = {"BOOL", 1},
};
#define N_DTYPES ((int)(sizeof dtype_info / sizeof *dtype_info))

size_t lina_dtype_size(lina_dtype t) {
    return (int)t >= 0 && (int)t < N_DTYPES ? dtype_info[t].size : 0;
}

const char *lina_dtype_name(lina_dtype t) {
    return (int)t >= 0 && (int)t < N_DTYPES ? dtype_info[t].name : "?";
}

int lina_dtype_parse(const char *s, lina_dtype *out) {
    for (int i = 0; i < N_DTYPES; i++)
        if (!strcmp(s, dtype_info[i].name)) {
            *out = (lina_dtype)i;
            return 1;
        }
    return 0;
}

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float lina_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {                                                         /* zero / subnormal: man * 2^-24 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* Round to nearest, ties to even; overflow -> inf; NaN stays NaN. */
uint16_t lina_f32_to_f16(float f) {
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {                                  /* below 2^-14: subnormal half */
        /* value / 2^-24, rounded to nearest even, fits 10 bits (or rounds up to the min normal) */
        float v = bits_to_f32(a) * 0x1p24f;
        float r = nearbyintf(v); /* default rounding mode: nearest even */
        return (uint16_t)(sign | (uint16_t)r);
    }
    uint32_t exp = (a >> 23) - 112, man = a & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carries into the exponent correctly */
    return (uint16_t)(sign | h);
}

float lina_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

uint16_t lina_f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);                                            /* nearest even */
    return (uint16_t)(u >> 16);
}

/* Reads go through memcpy: tensor data in a safetensors file need not be aligned. */
lina_status lina_tensor_to_f32(const lina_tensor_view *t, float *dst, int64_t n) {
    if (!t || (!dst && n > 0)) return lina_fail(LINA_ERR_INVALID_ARG, "lina_tensor_to_f32: NULL tensor or destination");
    const char *name = t->name ? t->name : "?";
    if (n != t->numel)
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_tensor_to_f32: tensor '%s' has %lld elements, n = %lld", name,
                         (long long)t->numel, (long long)n);
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case LINA_DTYPE_F32:
        if (n > 0) memcpy(dst, p, (size_t)n * 4);
        return LINA_OK;
    case LINA_DTYPE_F16:
    case LINA_DTYPE_BF16: {
        float (*cvt)(uint16_t) = t->dtype == LINA_DTYPE_F16 ? lina_f16_to_f32 : lina_bf16_to_f32;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = cvt(h);
        }
        return LINA_OK;
    }
    case LINA_DTYPE_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return LINA_OK;
    default:
        return lina_fail(LINA_ERR_UNSUPPORTED, "lina_tensor_to_f32: tensor '%s' has dtype %s, expected F32/F16/BF16/F64",
                         name, lina_dtype_name(t->dtype));
    }
}
