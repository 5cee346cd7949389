/* Generation: per-sequence decoding state (matrix states + conv histories for
 * linear mixers, KV caches for softmax), prefill (chunkwise forms through the
 * trunk with the state as initial state), single-token steps (recurrent
 * lina_attn_step), state save/load/fork, and sampling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "lina/io.h"
#include "lm_internal.h"

/* prompt tokens per trunk pass when every layer is linear (see lina_model_prefill) */
#define PREFILL_SLICE 2048

#define TRY(x)                                                                                     \
    do {                                                                                           \
        lina_status st_ = (x);                                                                     \
        if (st_ != LINA_OK) return st_;                                                            \
    } while (0)

lina_status lina_gen_state_create(const lina_model *m, lina_gen_state **out) {
    lina_gen_state *s = calloc(1, sizeof *s);
    if (!s) return lina_fail(LINA_ERR_OOM, "decoding state: out of memory");
    s->cfg = m->cfg;
    s->n_layers = m->cfg.n_layers;
    s->logits = calloc((size_t)m->cfg.vocab_size, sizeof(float));
    if (!s->logits) {
        free(s);
        return lina_fail(LINA_ERR_OOM, "decoding state: out of memory");
    }
    for (int l = 0; l < s->n_layers; l++) {
        lina_status st = lina_mixer_state_init(m->layer[l].mixer, &s->st[l]);
        if (st != LINA_OK) {
            lina_gen_state_free(s);
            return st;
        }
    }
    *out = s;
    return LINA_OK;
}

void lina_gen_state_free(lina_gen_state *s) {
    if (!s) return;
    for (int l = 0; l < s->n_layers; l++) lina_mixer_state_free(&s->st[l]);
    free(s->logits);
    free(s);
}

const float *lina_gen_state_logits(const lina_gen_state *s) {
    return s->have_logits ? s->logits : NULL;
}

void lina_gen_state_reset(lina_gen_state *s) {
    for (int l = 0; l < s->n_layers; l++) {
        memset(lina_mixer_state_data(&s->st[l]), 0, sizeof(float) * s->st[l].n_floats);
        s->st[l].len = 0;
    }
    s->pos = 0;
    s->have_logits = 0;
}

int lina_gen_state_pos(const lina_gen_state *s) { return s->pos; }

size_t lina_gen_state_bytes(const lina_gen_state *s) {
    size_t n = 0;
    for (int l = 0; l < s->n_layers; l++) {
        const lina_mixer_state *st = &s->st[l];
        if (st->kc) /* only the filled part of a KV cache counts */
            n += (size_t)st->len * s->cfg.n_heads * (s->cfg.head_k_dim + s->cfg.head_v_dim);
        else
            n += st->n_floats;
    }
    return n * sizeof(float);
}

/* A state built for model m (same per-layer sizes). */
static lina_status state_like(const lina_gen_state *src, lina_gen_state **out) {
    lina_gen_state *s = calloc(1, sizeof *s);
    if (!s) return lina_fail(LINA_ERR_OOM, "decoding state: out of memory");
    s->cfg = src->cfg;
    s->n_layers = src->n_layers;
    s->pos = src->pos;
    s->have_logits = src->have_logits;
    s->logits = malloc(sizeof(float) * src->cfg.vocab_size);
    if (!s->logits) {
        free(s);
        return lina_fail(LINA_ERR_OOM, "decoding state: out of memory");
    }
    memcpy(s->logits, src->logits, sizeof(float) * src->cfg.vocab_size);
    for (int l = 0; l < s->n_layers; l++) {
        const lina_mixer_state *a = &src->st[l];
        lina_mixer_state *b = &s->st[l];
        float *data = malloc(sizeof(float) * (a->n_floats ? a->n_floats : 1));
        if (!data) {
            lina_gen_state_free(s);
            return lina_fail(LINA_ERR_OOM, "decoding state: out of memory");
        }
        /* same layout as a, rebased on data */
        const float *base = a->S ? a->S : a->kc;
#define REBASE(p) (a->p ? data + (a->p - base) : NULL)
        b->S = REBASE(S);
        b->hq = REBASE(hq);
        b->hk = REBASE(hk);
        b->hv = REBASE(hv);
        b->kc = REBASE(kc);
        b->vc = REBASE(vc);
#undef REBASE
        b->n_floats = a->n_floats;
        TRY(lina_mixer_state_copy(a, b));
    }
    *out = s;
    return LINA_OK;
}

lina_status lina_gen_state_clone(const lina_gen_state *s, lina_gen_state **out) {
    return state_like(s, out);
}

lina_status lina_gen_state_save(const lina_gen_state *s, const char *path) {
    lina_st_writer *w = NULL;
    TRY(lina_st_writer_create(&w));
    lina_status st = LINA_OK;
    char name[64], val[32];
    for (int l = 0; l < s->n_layers && st == LINA_OK; l++) {
        const lina_mixer_state *ms = &s->st[l];
        int64_t shape[1] = {(int64_t)ms->n_floats};
        snprintf(name, sizeof name, "layers.%d.state", l);
        st = lina_st_writer_add(w, name, LINA_DTYPE_F32, 1, shape, ms->S ? ms->S : ms->kc);
        snprintf(name, sizeof name, "layers.%d.len", l);
        snprintf(val, sizeof val, "%d", ms->len);
        if (st == LINA_OK) st = lina_st_writer_set_metadata(w, name, val);
    }
    if (st == LINA_OK && s->have_logits) {
        int64_t shape[1] = {s->cfg.vocab_size};
        st = lina_st_writer_add(w, "logits", LINA_DTYPE_F32, 1, shape, s->logits);
    }
    snprintf(val, sizeof val, "%d", s->pos);
    if (st == LINA_OK) st = lina_st_writer_set_metadata(w, "pos", val);
    snprintf(val, sizeof val, "%d", s->n_layers);
    if (st == LINA_OK) st = lina_st_writer_set_metadata(w, "n_layers", val);
    if (st == LINA_OK) st = lina_st_writer_set_metadata(w, "lina_state", "1");
    if (st == LINA_OK) st = lina_st_writer_save(w, path);
    lina_st_writer_free(w);
    return st;
}

static int meta_int(const lina_st_file *f, const char *key, int *out) {
    const char *v = lina_st_metadata(f, key);
    if (!v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0 || x > (1L << 30)) return 0;
    *out = (int)x;
    return 1;
}

lina_status lina_gen_state_load(const lina_model *m, const char *path, lina_gen_state **out) {
    *out = NULL;
    lina_st_file *f = NULL;
    TRY(lina_st_open(path, &f));
    lina_gen_state *s = NULL;
    lina_status st = lina_gen_state_create(m, &s);
    int n_layers = -1, pos = -1;
    if (st == LINA_OK && (!meta_int(f, "n_layers", &n_layers) || !meta_int(f, "pos", &pos) ||
                          n_layers != s->n_layers))
        st = lina_fail(LINA_ERR_FORMAT, "%s: not a decoding state of this model (n_layers %d vs %d)",
                       path, n_layers, m->cfg.n_layers);
    for (int l = 0; l < s->n_layers && st == LINA_OK; l++) {
        lina_mixer_state *ms = &s->st[l];
        char name[64];
        snprintf(name, sizeof name, "layers.%d.state", l);
        int64_t shape[1] = {(int64_t)ms->n_floats};
        st = lina_st_read_f32(f, name, 1, shape, lina_mixer_state_data(ms));
        snprintf(name, sizeof name, "layers.%d.len", l);
        if (st == LINA_OK && (!meta_int(f, name, &ms->len) || ms->len > m->cfg.max_seq))
            st = lina_fail(LINA_ERR_FORMAT, "%s: bad or missing metadata %s", path, name);
    }
    if (st == LINA_OK && lina_st_find(f, "logits")) {
        int64_t shape[1] = {m->cfg.vocab_size};
        st = lina_st_read_f32(f, "logits", 1, shape, s->logits);
        s->have_logits = st == LINA_OK;
    }
    lina_st_close(f);
    if (st != LINA_OK) {
        lina_gen_state_free(s);
        return st;
    }
    s->pos = pos;
    *out = s;
    return LINA_OK;
}

static lina_status check_state(const lina_model *m, const lina_gen_state *s) {
    if (!m || !s) return lina_fail(LINA_ERR_INVALID_ARG, "generation: NULL model or state");
    if (s->n_layers != m->cfg.n_layers || s->cfg.dim != m->cfg.dim)
        return lina_fail(LINA_ERR_INVALID_ARG, "generation: the state belongs to another model");
    return LINA_OK;
}

lina_status lina_model_prefill(lina_model *m, lina_gen_state *s, int n, const int32_t *tokens,
                               float *logits) {
    TRY(check_state(m, s));
    if (n < 1 || !tokens) return lina_fail(LINA_ERR_INVALID_ARG, "prefill: n = %d tokens", n);
    /* refuse before touching any layer's state */
    for (int l = 0; l < s->n_layers; l++)
        if (m->cfg.mixer[l] == LINA_MIXER_SOFTMAX && s->st[l].len + n > m->cfg.max_seq)
            return lina_fail(LINA_ERR_INVALID_ARG,
                             "softmax attention (layer %d): %d cached + %d new tokens exceed "
                             "max_seq = %d, the longest context this model accepts",
                             l, s->st[l].len, n, m->cfg.max_seq);
    /* Linear mixers carry their state from one call to the next, so a long prompt is
     * consumed in slices of PREFILL_SLICE tokens: the trunk's activations are
     * O(slice), not O(prompt) (a 64K-byte prompt otherwise peaks near 1 GB for a dim-64
     * model). A softmax layer would take every slice after the first token by token
     * (cache scan), so a model with one runs the prompt in one piece. */
    int has_softmax = 0;
    for (int l = 0; l < s->n_layers; l++) has_softmax |= m->cfg.mixer[l] == LINA_MIXER_SOFTMAX;
    int slice = has_softmax || n <= PREFILL_SLICE ? n : PREFILL_SLICE;
    int last = 0; /* rows in the trunk's output of the final slice */
    for (int done = 0; done < n; done += last) {
        last = n - done < slice ? n - done : slice;
        TRY(lina_lm_trunk(m, 1, last, tokens + done, s->st, s->pos));
        s->pos += last;
    }
    lina_lm_head(m, last - 1, 1, s->logits);
    s->have_logits = 1;
    if (logits) memcpy(logits, s->logits, sizeof(float) * m->cfg.vocab_size);
    return LINA_OK;
}

lina_status lina_model_step(lina_model *m, lina_gen_state *s, int32_t token, float *logits) {
    return lina_model_prefill(m, s, 1, &token, logits);
}

/* ---- sampling ---- */

lina_sampler lina_sampler_default(void) {
    lina_sampler s = {1.0f, 0, 1.0f};
    return s;
}

typedef struct {
    float p;
    int i;
} prob_idx;

static int by_prob_desc(const void *a, const void *b) {
    const prob_idx *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->i - y->i;
}

int lina_sample(const lina_sampler *s, const float *logits, int vocab, uint64_t *rng) {
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i;
    if (!(s->temperature > 0)) return best;
    prob_idx *p = malloc(sizeof *p * vocab);
    if (!p) return best;
    double sum = 0;
    for (int i = 0; i < vocab; i++) {
        p[i].p = (float)exp((logits[i] - logits[best]) / s->temperature);
        p[i].i = i;
        sum += p[i].p;
    }
    qsort(p, vocab, sizeof *p, by_prob_desc);
    int n = vocab;
    if (s->top_k > 0 && s->top_k < n) n = s->top_k;
    if (s->top_p > 0 && s->top_p < 1) {
        double cum = 0;
        for (int i = 0; i < n; i++) {
            cum += p[i].p / sum;
            if (cum >= s->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    double kept = 0;
    for (int i = 0; i < n; i++) kept += p[i].p;
    double u = lina_sm64_uniform(rng) * kept, acc = 0;
    int pick = p[n - 1].i;
    for (int i = 0; i < n; i++) {
        acc += p[i].p;
        if (u < acc) {
            pick = p[i].i;
            break;
        }
    }
    free(p);
    return pick;
}
