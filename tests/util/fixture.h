/* Reading test fixtures: where they live and typed access to safetensors entries. */
#ifndef LINA_TEST_FIXTURE_H
#define LINA_TEST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "lina.h"

/* $LINA_TEST_DATA or "tests/data" (the repository's fixtures) */
const char *fixture_data_dir(void);
/* $LINA_SHARED or "../shared" (design notes, golden models) */
const char *fixture_shared_dir(void);
/* The tensor `name` if it exists with this dtype and rank, else NULL. */
const lina_tensor_view *fixture_tensor(const lina_st_file *f, const char *name, lina_dtype dt, int ndim);
/* A model's reference file (golden.safetensors, expected.safetensors): input_ids [B, T]
 * (int64) and logits [B, T, vocab] (f32); with greedy, also greedy_prompt [1, P] and
 * greedy_output [1, P + N] (int64). */
typedef struct {
    lina_st_file *file;
    const lina_tensor_view *prompt, *greedy; /* NULL unless asked for */
    int B, T, vocab;
    int64_t *ids; /* malloc'ed input_ids, B * T */
    float *logits; /* malloc'ed, B * T * vocab */
    char why[400]; /* after a failed open: the reason */
} fixture_ref;
/* 1, or 0 with the reason in r->why (missing file or tensor, shapes that disagree
 * with vocab); *r is then closed. */
int fixture_ref_open(const char *path, int vocab, int greedy, fixture_ref *r);
void fixture_ref_close(fixture_ref *r);
/* The `lina` CLI beside this test binary (BUILD/tests/x -> BUILD/lina) into buf;
 * 0 if it is not built (a line saying the CLI tests are skipped is printed). */
int fixture_lina_exe(char *buf, size_t size);
/* A malloc'ed copy of an int64 tensor's values (NULL on OOM). */
int64_t *fixture_ids(const lina_tensor_view *t);

#endif
