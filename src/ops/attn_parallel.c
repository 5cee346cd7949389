/* TEMPORARY STUB: being written (falls back to the recurrent reference). */
#include "attn_internal.h"
size_t lina_parallel_ws_floats(const lina_attn_job *j, int backward) { return lina_recurrent_ws_floats(j, backward); }
void lina_parallel_forward(const lina_attn_job *j) { lina_recurrent_forward(j); }
void lina_parallel_backward(const lina_attn_job *j) { lina_recurrent_backward(j); }
