/* Internal helpers of src/io (not installed). */
#ifndef LINA_IO_INTERNAL_H
#define LINA_IO_INTERNAL_H

#include <stddef.h>

#include "lina/io.h"

/* Parse a safetensors dtype string ("F32", "BF16", ...); 0 if unknown. */
int lina_dtype_parse(const char *s, lina_dtype *out);

/* One piece of a file written by lina_write_chunks_atomic. */
typedef struct {
    const void *data;
    size_t n;
} lina_chunk;

/* Write the concatenation of chunks to path atomically: a temp file
 * "<path>.tmp.XXXXXX" in the same directory, fwrite checks, fflush + fsync,
 * rename over path, fsync of the directory. On any error the temp file is
 * removed and LINA_ERR_IO names the path and the errno string. */
lina_status lina_write_chunks_atomic(const char *path, const lina_chunk *chunks, int n_chunks);

/* mkdir -p: create dir and any missing parents (mode 0755); LINA_ERR_IO names the path
 * that could not be made, or an existing path that is not a directory. */
lina_status lina_make_dirs(const char *dir);

#endif
