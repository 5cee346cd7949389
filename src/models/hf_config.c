/* config.json access for the Hugging Face runner: typed fields with defaults,
 * errors that name the file, the field and the value found. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "hf_internal.h"

lina_status hf_read_json(const char *path, cJSON **out) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return lina_fail(LINA_ERR_IO, "cannot open '%s'", path);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? 2 * cap : 65536;
            if (cap > ((size_t)256 << 20)) {
                free(buf);
                fclose(fp);
                return lina_fail(LINA_ERR_FORMAT, "'%s' is larger than 256 MiB", path);
            }
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(fp);
                return lina_fail(LINA_ERR_OOM, "reading '%s': out of memory", path);
            }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        free(buf);
        return lina_fail(LINA_ERR_IO, "reading '%s' failed", path);
    }
    cJSON *j = cJSON_ParseWithLength(buf, n);
    free(buf);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return lina_fail(LINA_ERR_FORMAT, "'%s' is not a JSON object", path);
    }
    *out = j;
    return LINA_OK;
}

/* A number, or {"__float__": "Infinity"|"-Infinity"|"NaN"} as transformers writes non-finite floats. */
static int json_double(const cJSON *j, double *out) {
    if (cJSON_IsNumber(j)) {
        *out = j->valuedouble;
        return 1;
    }
    const cJSON *f = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "__float__") : NULL;
    if (cJSON_IsString(f)) {
        if (!strcmp(f->valuestring, "Infinity")) *out = INFINITY;
        else if (!strcmp(f->valuestring, "-Infinity")) *out = -INFINITY;
        else return 0;
        return 1;
    }
    return 0;
}

lina_status hf_cfg_int(const cJSON *cfg, const char *path, const char *key, int required, int def, int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) {
        if (required) return lina_fail(LINA_ERR_FORMAT, "'%s': required field '%s' is missing", path, key);
        *out = def;
        return LINA_OK;
    }
    double d = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!(d == floor(d)) || d < -2147483647.0 || d > 2147483647.0) {
        char *s = cJSON_PrintUnformatted(j);
        lina_status st = lina_fail(LINA_ERR_FORMAT, "'%s': field '%s' = %s is not an integer", path, key, s ? s : "?");
        free(s);
        return st;
    }
    *out = (int)d;
    return LINA_OK;
}

lina_status hf_cfg_float(const cJSON *cfg, const char *path, const char *key, int required, double def,
                         double *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) {
        if (required) return lina_fail(LINA_ERR_FORMAT, "'%s': required field '%s' is missing", path, key);
        *out = def;
        return LINA_OK;
    }
    if (!json_double(j, out)) {
        char *s = cJSON_PrintUnformatted(j);
        lina_status st = lina_fail(LINA_ERR_FORMAT, "'%s': field '%s' = %s is not a number", path, key, s ? s : "?");
        free(s);
        return st;
    }
    return LINA_OK;
}

lina_status hf_cfg_bool(const cJSON *cfg, const char *path, const char *key, int def, int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return LINA_OK;
    }
    if (!cJSON_IsBool(j)) return lina_fail(LINA_ERR_FORMAT, "'%s': field '%s' is not true/false", path, key);
    *out = cJSON_IsTrue(j);
    return LINA_OK;
}

lina_status hf_cfg_str(const cJSON *cfg, const char *path, const char *key, const char *def, const char **out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return LINA_OK;
    }
    if (!cJSON_IsString(j)) return lina_fail(LINA_ERR_FORMAT, "'%s': field '%s' is not a string", path, key);
    *out = j->valuestring;
    return LINA_OK;
}

int hf_cfg_has(const cJSON *cfg, const char *key) { return cJSON_GetObjectItemCaseSensitive(cfg, key) != NULL; }

lina_status hf_cfg_require_null(const cJSON *cfg, const char *path, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (j && !cJSON_IsNull(j))
        return lina_fail(LINA_ERR_UNSUPPORTED, "'%s': field '%s' is set; only null is supported", path, key);
    return LINA_OK;
}
