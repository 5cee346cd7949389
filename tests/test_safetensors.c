/* safetensors reader / writer and dtype conversions: round trips, every
 * malformed header we can think of, atomic writes that fail cleanly. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lina.h"
#include "lina/io.h"
#include "util/check.h"

static char tmpdir[256];

static void path_in_tmp(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

/* Number of entries in dir whose name contains ".tmp." (leftover temp files). */
static int count_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* ---- dtype conversions ---- */

static void test_f16_conversions(void) {
    /* every non-NaN half survives half -> f32 -> half exactly */
    int bad = 0, first_bad = -1;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lina_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            if (!isnan(lina_bf16_to_f32(lina_f32_to_bf16(f))) || !isnan(lina_f16_to_f32(lina_f32_to_f16(f)))) bad++;
            continue;
        }
        if (lina_f32_to_f16(f) != h) {
            if (first_bad < 0) first_bad = (int)h;
            bad++;
        }
    }
    test_report(bad == 0, "f16_roundtrip_all_65536", "%d mismatches, first at 0x%04x", bad, first_bad);

    struct {
        uint16_t h;
        float f;
    } known[] = {{0x3c00, 1.0f},          {0xc000, -2.0f},           {0x7bff, 65504.0f}, {0x0001, 0x1p-24f},
                 {0x0400, 0x1p-14f},       {0x3555, 0.333251953125f}, {0x7c00, INFINITY}, {0xfc00, -INFINITY},
                 {0x8000, -0.0f},          {0x03ff, 1023 * 0x1p-24f}};
    int ok = 1;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (lina_f16_to_f32(known[i].h) != known[i].f || lina_f32_to_f16(known[i].f) != known[i].h) {
            ok = 0;
            printf("  f16 known value %zu: 0x%04x <-> %g\n", i, known[i].h, known[i].f);
        }
    test_report(ok, "f16_known_values", "%s", "");

    /* rounding: ties to even, overflow to inf, underflow to zero */
    ok = lina_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00 &&            /* tie, even stays */
         lina_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02 &&        /* tie, odd rounds up */
         lina_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01 && /* above tie */
         lina_f32_to_f16(65520.0f) == 0x7c00 && lina_f32_to_f16(65519.0f) == 0x7bff &&
         lina_f32_to_f16(0x1p-26f) == 0x0000 && lina_f32_to_f16(0x1p-25f + 0x1p-30f) == 0x0001 &&
         lina_f32_to_f16(1e30f) == 0x7c00;
    test_report(ok, "f16_rounding", "%s", "");

    ok = lina_bf16_to_f32(0x3f80) == 1.0f && lina_f32_to_bf16(1.0f) == 0x3f80 &&
         lina_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80 &&         /* tie to even */
         lina_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82 &&     /* tie, odd rounds up */
         lina_bf16_to_f32(lina_f32_to_bf16(-3.140625f)) == -3.140625f && lina_f32_to_bf16(INFINITY) == 0x7f80 &&
         isnan(lina_bf16_to_f32(lina_f32_to_bf16(NAN)));
    int bad_bf = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = lina_bf16_to_f32((uint16_t)b);
        if (!isnan(f) && lina_f32_to_bf16(f) != b) bad_bf++;
    }
    test_report(ok && bad_bf == 0, "bf16_conversions", "%d round-trip mismatches", bad_bf);
}

/* ---- round trip ---- */

static void test_round_trip(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "rt.safetensors");
    test_rng r;
    rng_seed(&r, 7);
    enum { A0 = 3, A1 = 5, A2 = 7 };
    float a[A0 * A1 * A2];
    fill_normal(&r, a, A0 * A1 * A2, 1.0f);
    uint16_t h[11], b[11];
    float hf[11], bf[11];
    for (int i = 0; i < 11; i++) {
        float v = rng_normal(&r) * 10;
        h[i] = lina_f32_to_f16(v);
        b[i] = lina_f32_to_bf16(v);
        hf[i] = lina_f16_to_f32(h[i]);
        bf[i] = lina_bf16_to_f32(b[i]);
    }
    double d[4] = {1.5, -2.25, 1e-3, 3e5};
    int64_t ids[2 * 3] = {0, 1, -5, INT64_MAX, INT64_MIN, 42};
    uint8_t bytes[5] = {1, 2, 3, 254, 255};
    float scalar = 3.5f;

    lina_st_writer *w = NULL;
    int ok = lina_st_writer_create(&w) == LINA_OK;
    const int64_t sa[3] = {A0, A1, A2}, s11[1] = {11}, s4[2] = {2, 2}, sid[2] = {2, 3}, s5[1] = {5}, sempty[2] = {0, 4};
    ok = ok && lina_st_writer_add(w, "layers.0.weight", LINA_DTYPE_F32, 3, sa, a) == LINA_OK;
    ok = ok && lina_st_writer_add(w, "half", LINA_DTYPE_F16, 1, s11, h) == LINA_OK;
    ok = ok && lina_st_writer_add(w, "brain", LINA_DTYPE_BF16, 1, s11, b) == LINA_OK;
    ok = ok && lina_st_writer_add(w, "dbl", LINA_DTYPE_F64, 2, s4, d) == LINA_OK;
    ok = ok && lina_st_writer_add(w, "input_ids", LINA_DTYPE_I64, 2, sid, ids) == LINA_OK;
    ok = ok && lina_st_writer_add(w, "bytes", LINA_DTYPE_U8, 1, s5, bytes) == LINA_OK;
    ok = ok && lina_st_writer_add(w, "scalar", LINA_DTYPE_F32, 0, NULL, &scalar) == LINA_OK;
    ok = ok && lina_st_writer_add(w, "empty", LINA_DTYPE_F32, 2, sempty, NULL) == LINA_OK;
    ok = ok && lina_st_writer_add(w, "we\"ird\\name\n", LINA_DTYPE_U8, 1, s5, bytes) == LINA_OK;
    ok = ok && lina_st_writer_set_metadata(w, "format", "pt") == LINA_OK;
    ok = ok && lina_st_writer_set_metadata(w, "note", "quote \" backslash \\ tab \t") == LINA_OK;
    ok = ok && lina_st_writer_set_metadata(w, "format", "lina") == LINA_OK; /* replaces */
    ok = ok && lina_st_writer_save(w, path) == LINA_OK;
    lina_st_writer_free(w);
    test_report(ok, "write", "%s", lina_last_error());

    lina_st_file *f = NULL;
    lina_status st = lina_st_open(path, &f);
    test_report(st == LINA_OK, "open_written", "%s", lina_last_error());
    if (st) return;
    test_report(lina_st_count(f) == 9, "count", "%d tensors", lina_st_count(f));
    const lina_tensor_view *t = lina_st_find(f, "layers.0.weight");
    ok = t && t->dtype == LINA_DTYPE_F32 && t->ndim == 3 && t->shape[0] == A0 && t->shape[1] == A1 &&
         t->shape[2] == A2 && t->numel == A0 * A1 * A2 && t->nbytes == sizeof a && !memcmp(t->data, a, sizeof a) &&
         ((uintptr_t)t->data % 8) == 0;
    test_report(ok, "f32_tensor_bytes_and_alignment", "%s", "");
    float got[A0 * A1 * A2];
    st = lina_st_read_f32(f, "layers.0.weight", 3, sa, got);
    test_report(st == LINA_OK && !memcmp(got, a, sizeof a), "read_f32", "%s", lina_last_error());

    float g11[11];
    ok = lina_st_read_f32(f, "half", 1, s11, g11) == LINA_OK && !memcmp(g11, hf, sizeof hf);
    ok = ok && lina_st_read_f32(f, "brain", 1, s11, g11) == LINA_OK && !memcmp(g11, bf, sizeof bf);
    float g4[4];
    ok = ok && lina_st_read_f32(f, "dbl", 2, s4, g4) == LINA_OK;
    for (int i = 0; ok && i < 4; i++) ok = g4[i] == (float)d[i];
    test_report(ok, "f16_bf16_f64_to_f32", "%s", lina_last_error());

    t = lina_st_find(f, "input_ids");
    ok = t && t->dtype == LINA_DTYPE_I64 && t->nbytes == sizeof ids && !memcmp(t->data, ids, sizeof ids);
    const lina_tensor_view *u = lina_st_find(f, "bytes"), *s = lina_st_find(f, "scalar"),
                           *e = lina_st_find(f, "empty"), *wn = lina_st_find(f, "we\"ird\\name\n");
    ok = ok && u && u->nbytes == 5 && !memcmp(u->data, bytes, 5);
    ok = ok && s && s->ndim == 0 && s->numel == 1 && !memcmp(s->data, &scalar, 4);
    ok = ok && e && e->numel == 0 && e->nbytes == 0 && e->shape[1] == 4;
    ok = ok && wn && !memcmp(wn->data, bytes, 5);
    test_report(ok, "int_scalar_empty_escaped_name", "%s", "");
    const char *fmt = lina_st_metadata(f, "format"), *note = lina_st_metadata(f, "note");
    test_report(fmt && !strcmp(fmt, "lina") && note && !strcmp(note, "quote \" backslash \\ tab \t") &&
                    !lina_st_metadata(f, "absent"),
                "metadata", "format=%s", fmt ? fmt : "(null)");
    test_report(!lina_st_find(f, "nope") && !lina_st_tensor(f, 9) && lina_st_tensor(f, 0), "find_absent", "%s", "");

    /* errors: wrong shape names file, tensor and both shapes; integer -> f32 refused */
    const int64_t wrong[3] = {A0, A2, A1};
    st = lina_st_read_f32(f, "layers.0.weight", 3, wrong, got);
    const char *msg = lina_last_error();
    test_report(st == LINA_ERR_FORMAT && strstr(msg, path) && strstr(msg, "layers.0.weight") &&
                    strstr(msg, "[3, 5, 7]") && strstr(msg, "[3, 7, 5]"),
                "read_f32_wrong_shape_message", "%s", msg);
    st = lina_st_read_f32(f, "missing.weight", 3, sa, got);
    test_report(st == LINA_ERR_FORMAT && strstr(lina_last_error(), "missing.weight"), "read_f32_missing_tensor", "%s",
                lina_last_error());
    float g6[6];
    st = lina_st_read_f32(f, "input_ids", 2, sid, g6);
    test_report(st == LINA_ERR_UNSUPPORTED && strstr(lina_last_error(), "I64"), "read_f32_integer_refused", "%s",
                lina_last_error());
    lina_st_close(f);
    test_report(count_temp_files(tmpdir) == 0, "no_temp_files_after_save", "%s", "");
}

/* ---- malformed files ---- */

/* Write raw bytes: an 8-byte length (hlen_field), the header text and n_data zero bytes. */
static void write_raw(const char *path, uint64_t hlen_field, const char *header, size_t n_data) {
    FILE *fp = fopen(path, "wb");
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hlen_field >> (8 * i));
    fwrite(le, 1, 8, fp);
    fwrite(header, 1, strlen(header), fp);
    for (size_t i = 0; i < n_data; i++) fputc(0, fp);
    fclose(fp);
}

/* Open must fail with `want` and the message must name the file and contain `needle`. */
static void expect_bad(const char *name, const char *path, lina_status want, const char *needle) {
    lina_st_file *f = NULL;
    lina_status st = lina_st_open(path, &f);
    const char *msg = lina_last_error();
    int ok = st == want && f == NULL && strstr(msg, path) && (!needle || strstr(msg, needle));
    test_report(ok, name, "status %d (want %d), message: %s", (int)st, (int)want, msg);
    lina_st_close(f);
}

static void bad_header(const char *name, const char *header, size_t n_data, const char *needle) {
    char path[512];
    path_in_tmp(path, sizeof path, "bad.safetensors");
    write_raw(path, strlen(header), header, n_data);
    expect_bad(name, path, LINA_ERR_FORMAT, needle);
}

static void test_malformed(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "bad.safetensors");

    FILE *fp = fopen(path, "wb");
    fwrite("\x10\0\0", 1, 3, fp);
    fclose(fp);
    expect_bad("bad_shorter_than_length_field", path, LINA_ERR_FORMAT, "shorter");

    const char *good = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    write_raw(path, strlen(good), good, 24);
    lina_st_file *f = NULL;
    lina_status st = lina_st_open(path, &f);
    test_report(st == LINA_OK && lina_st_count(f) == 1, "handmade_good_file_opens", "%s", lina_last_error());
    lina_st_close(f);

    write_raw(path, strlen(good), good, 23); /* truncated data */
    expect_bad("bad_truncated_data", path, LINA_ERR_FORMAT, "'w'");
    write_raw(path, strlen(good), good, 0);
    truncate(path, 8 + 20); /* truncated inside the header */
    expect_bad("bad_truncated_header", path, LINA_ERR_FORMAT, "past the end");
    write_raw(path, 1000, good, 24);
    expect_bad("bad_header_length_past_eof", path, LINA_ERR_FORMAT, "1000");
    write_raw(path, UINT64_MAX, good, 24);
    expect_bad("bad_header_length_huge", path, LINA_ERR_FORMAT, "past the end");
    write_raw(path, 0, good, 24);
    expect_bad("bad_header_length_zero", path, LINA_ERR_FORMAT, "zero");

    bad_header("bad_json", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}", 24, "JSON");
    bad_header("bad_json_garbage", "{not json at all}", 0, "JSON");
    bad_header("bad_json_trailing", "{}xyz", 0, "trailing");
    bad_header("bad_not_object", "[1,2]", 0, "'{'");
    bad_header("bad_entry_not_object", "{\"w\":5}", 0, "'w'");
    bad_header("bad_unknown_dtype", "{\"w\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "F8");
    bad_header("bad_dtype_not_string", "{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    bad_header("bad_missing_dtype", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    bad_header("bad_missing_shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "shape");
    bad_header("bad_missing_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets");
    bad_header("bad_shape_bytes_mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
               "24 bytes");
    bad_header("bad_dtype_size_mismatch", "{\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
               "12 bytes");
    bad_header("bad_offsets_past_end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 16,
               "past the data area");
    bad_header("bad_offsets_reversed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 16,
               "data_offsets");
    bad_header("bad_offsets_three", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 16,
               "data_offsets");
    bad_header("bad_offsets_negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 16,
               "data_offsets");
    bad_header("bad_overlap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
               24, "overlap");
    bad_header("bad_overlap_identical",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, "overlap");
    bad_header("bad_negative_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2,3],\"data_offsets\":[0,24]}}", 24, "-2");
    bad_header("bad_fractional_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5,2],\"data_offsets\":[0,12]}}", 12,
               "1.5");
    bad_header("bad_string_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
               "dimension");
    bad_header("bad_huge_dims_overflow",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0,
               "overflow");
    bad_header("bad_huge_bytes_overflow",
               "{\"w\":{\"dtype\":\"F64\",\"shape\":[1099511627776,1048576],\"data_offsets\":[0,0]}}", 0, "overflow");
    bad_header("bad_dim_beyond_2p53", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,0]}}", 0,
               "dimension");
    bad_header("bad_too_many_dims",
               "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "at most 8");
    bad_header("bad_duplicate_name",
               "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
               2, "twice");
    bad_header("bad_metadata_not_string", "{\"__metadata__\":{\"step\":5}}", 0, "step");
    bad_header("bad_metadata_not_object", "{\"__metadata__\":[\"a\"]}", 0, "__metadata__");
    bad_header("bad_empty_name", "{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "empty name");

    /* allowed: an empty header object, a zero-size tensor, trailing spaces, empty metadata */
    path_in_tmp(path, sizeof path, "ok.safetensors");
    const char *okh = "{\"__metadata__\":{},\"e\":{\"dtype\":\"BOOL\",\"shape\":[0,3],\"data_offsets\":[0,0]}}    ";
    write_raw(path, strlen(okh), okh, 0);
    st = lina_st_open(path, &f);
    test_report(st == LINA_OK && lina_st_count(f) == 1 && lina_st_find(f, "e")->numel == 0, "ok_empty_tensor_padding",
                "%s", lina_last_error());
    lina_st_close(f);

    path_in_tmp(path, sizeof path, "does-not-exist.safetensors");
    expect_bad("bad_missing_file", path, LINA_ERR_IO, "No such file");
    expect_bad("bad_directory", tmpdir, LINA_ERR_IO, "regular file");
}

/* ---- atomic writes ---- */

static void test_atomic(void) {
    char path[512], dir_path[512];
    path_in_tmp(path, sizeof path, "config.json");
    const char *v1 = "{\"a\": 1}\n", *v2 = "{\"a\": 2, \"b\": [1, 2, 3]}\n";
    lina_status st = lina_write_file_atomic(path, v1, strlen(v1));
    st = st ? st : lina_write_file_atomic(path, v2, strlen(v2)); /* overwrite */
    char buf[128] = {0};
    FILE *fp = fopen(path, "rb");
    size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
    if (fp) fclose(fp);
    struct stat sb;
    test_report(st == LINA_OK && n == strlen(v2) && !strcmp(buf, v2) && stat(path, &sb) == 0 &&
                    (sb.st_mode & 0444) == 0444,
                "write_file_atomic_overwrite", "%s", lina_last_error());

    /* a non-existent directory: fails with IO naming the path and errno, no temp file */
    path_in_tmp(dir_path, sizeof dir_path, "no/such/dir/out.safetensors");
    lina_st_writer *w = NULL;
    float x[3] = {1, 2, 3};
    const int64_t s3[1] = {3};
    lina_st_writer_create(&w);
    lina_st_writer_add(w, "x", LINA_DTYPE_F32, 1, s3, x);
    st = lina_st_writer_save(w, dir_path);
    const char *msg = lina_last_error();
    test_report(st == LINA_ERR_IO && strstr(msg, dir_path) && strstr(msg, "No such file") &&
                    count_temp_files(tmpdir) == 0 && access(dir_path, F_OK) != 0,
                "save_into_missing_dir_fails_cleanly", "%s", msg);

    /* target is an existing directory: the temp file gets written, rename fails, temp removed */
    path_in_tmp(dir_path, sizeof dir_path, "a_directory");
    mkdir(dir_path, 0755);
    st = lina_st_writer_save(w, dir_path);
    msg = lina_last_error();
    test_report(st == LINA_ERR_IO && strstr(msg, dir_path) && strstr(msg, "rename") && count_temp_files(tmpdir) == 0,
                "save_over_directory_removes_temp", "%s", msg);
    rmdir(dir_path);

    /* writer argument errors */
    const int64_t neg[1] = {-1};
    int ok = lina_st_writer_add(w, "x", LINA_DTYPE_F32, 1, s3, x) == LINA_ERR_INVALID_ARG &&
             strstr(lina_last_error(), "twice");
    ok = ok && lina_st_writer_add(w, "y", LINA_DTYPE_F32, 1, neg, x) == LINA_ERR_INVALID_ARG;
    ok = ok && lina_st_writer_add(w, "__metadata__", LINA_DTYPE_F32, 1, s3, x) == LINA_ERR_INVALID_ARG;
    ok = ok && lina_st_writer_add(w, "z", LINA_DTYPE_F32, 9, s3, x) == LINA_ERR_INVALID_ARG;
    ok = ok && lina_st_writer_add(w, "z", LINA_DTYPE_F32, 1, s3, NULL) == LINA_ERR_INVALID_ARG;
    test_report(ok, "writer_rejects_bad_tensors", "%s", lina_last_error());
    lina_st_writer_free(w);
}

static void cleanup_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    char p[600];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/lina_st_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        test_report(0, "mkdtemp", "%s", tmpdir);
        return test_finish();
    }
    test_f16_conversions();
    test_round_trip();
    test_malformed();
    test_atomic();
    cleanup_tmpdir();
    return test_finish();
}
