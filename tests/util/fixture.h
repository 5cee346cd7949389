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
/* The `lina` CLI beside this test binary (BUILD/tests/x -> BUILD/lina) into buf;
 * 0 if it is not built (a line saying the CLI tests are skipped is printed). */
int fixture_lina_exe(char *buf, size_t size);
/* A malloc'ed copy of an int64 tensor's values (NULL on OOM). */
int64_t *fixture_ids(const lina_tensor_view *t);

#endif
