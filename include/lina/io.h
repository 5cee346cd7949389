/* lina io: safetensors files (read by mmap, written atomically) and the
 * dtype conversions checkpoints need. */
#ifndef LINA_IO_H
#define LINA_IO_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LINA_DTYPE_F32 = 0,
    LINA_DTYPE_F16,
    LINA_DTYPE_BF16,
    LINA_DTYPE_F64,
    LINA_DTYPE_I64,
    LINA_DTYPE_I32,
    LINA_DTYPE_I16,
    LINA_DTYPE_I8,
    LINA_DTYPE_U8,
    LINA_DTYPE_BOOL
} lina_dtype;

#define LINA_MAX_NDIM 8

typedef struct {
    const char *name;
    lina_dtype dtype;
    int ndim;
    int64_t shape[LINA_MAX_NDIM];
    int64_t numel;
    const void *data; /* points into the mapped file; valid until lina_st_close; may be unaligned */
    size_t nbytes;
} lina_tensor_view;

size_t lina_dtype_size(lina_dtype t);
const char *lina_dtype_name(lina_dtype t); /* "F32", "BF16", ... as in safetensors */

/* A safetensors file opened read-only (memory-mapped). The whole header is
 * validated on open: header length, JSON, dtypes, shapes vs byte counts,
 * offsets inside the file, no overlaps. Errors name the file and tensor. */
typedef struct lina_st_file lina_st_file;

lina_status lina_st_open(const char *path, lina_st_file **out);
void lina_st_close(lina_st_file *f);
int lina_st_count(const lina_st_file *f);
const lina_tensor_view *lina_st_tensor(const lina_st_file *f, int i);
const lina_tensor_view *lina_st_find(const lina_st_file *f, const char *name); /* NULL if absent */
/* The "__metadata__" string value for key, or NULL. */
const char *lina_st_metadata(const lina_st_file *f, const char *key);

/* Scalar conversions: IEEE half and bfloat16 <-> f32 (f32 -> 16 bit rounds to
 * nearest even; overflow gives inf; NaN stays NaN). */
float lina_f16_to_f32(uint16_t h);
uint16_t lina_f32_to_f16(float f);
float lina_bf16_to_f32(uint16_t b);
uint16_t lina_f32_to_bf16(float f);

/* Convert a floating tensor (F32, F16, BF16, F64) to f32. n must equal numel. */
lina_status lina_tensor_to_f32(const lina_tensor_view *t, float *dst, int64_t n);
/* Find a tensor by name, check its shape (ndim dims) and convert to f32.
 * Errors name the file, the tensor, and the expected and found shapes. */
lina_status lina_st_read_f32(const lina_st_file *f, const char *name, int ndim,
                             const int64_t *shape, float *dst);

/* Writer: collect tensors (data is copied), then save atomically
 * (temp file in the same directory, fsync, rename). */
typedef struct lina_st_writer lina_st_writer;

lina_status lina_st_writer_create(lina_st_writer **out);
void lina_st_writer_free(lina_st_writer *w);
lina_status lina_st_writer_add(lina_st_writer *w, const char *name, lina_dtype dtype, int ndim,
                               const int64_t *shape, const void *data);
lina_status lina_st_writer_set_metadata(lina_st_writer *w, const char *key, const char *value);
lina_status lina_st_writer_save(lina_st_writer *w, const char *path);

/* Write a whole text file atomically (temp + fsync + rename), e.g. config.json. */
lina_status lina_write_file_atomic(const char *path, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
