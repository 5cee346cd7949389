/* Multi-query associative recall (Zoology): the data generator, a training
 * loop over a fixed training set (AdamW, warm-up + cosine, clipping) and the
 * exact-match accuracy on the answer positions. See include/lina/mqar.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "lina/mqar.h"

lina_mqar_config lina_mqar_config_default(void) {
    lina_mqar_config c = {.vocab = 8192, .seq = 512, .pairs = 64, .power_a = 0.01f};
    return c;
}

lina_status lina_mqar_config_check(const lina_mqar_config *c) {
    if (!c) return lina_fail(LINA_ERR_INVALID_ARG, "mqar: config is NULL");
    if (c->seq < 2 || c->seq > 1000000)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar: seq = %d out of range [2, 1000000]", c->seq);
    if (c->seq % 2)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar: seq = %d must be even", c->seq);
    if (c->pairs < 1)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar: pairs = %d must be >= 1", c->pairs);
    if ((long)c->pairs * 4 > c->seq)
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "mqar: %d pairs need 4 x %d = %ld positions (2 per pair + room for the "
                         "queries) but seq = %d",
                         c->pairs, c->pairs, (long)c->pairs * 4, c->seq);
    if (c->vocab <= c->seq)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar: vocab = %d must be larger than seq = %d",
                         c->vocab, c->seq);
    if (c->vocab / 2 - 1 < c->pairs)
        return lina_fail(LINA_ERR_INVALID_ARG,
                         "mqar: vocab = %d too small: %d distinct keys in [1, %d)", c->vocab,
                         c->pairs, c->vocab / 2);
    if (!(c->power_a > 0) || !isfinite(c->power_a) || c->power_a > 10)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar: power_a = %g must be in (0, 10]", c->power_a);
    return LINA_OK;
}

/* k distinct values from [lo, hi) (partial Fisher-Yates over a scratch pool). */
static void draw_distinct(lina_rng *r, int lo, int hi, int k, int32_t *pool, int32_t *out) {
    int n = hi - lo;
    for (int i = 0; i < n; i++) pool[i] = lo + i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)lina_rng_below(r, (uint64_t)(n - i));
        int32_t t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
        out[i] = pool[i];
    }
}

/* k distinct gaps from {0..S-1} with P(g) ~ w[g], drawn one after the other
 * with the chosen ones removed (numpy's choice(replace=False, p=w)). */
static void draw_gaps(lina_rng *r, const double *w, int S, int k, unsigned char *taken, int *gaps) {
    memset(taken, 0, (size_t)S);
    double left = 0;
    for (int g = 0; g < S; g++) left += w[g];
    for (int i = 0; i < k; i++) {
        double u = lina_rng_uniform(r) * left, acc = 0;
        int pick = -1;
        for (int g = 0; g < S; g++) {
            if (taken[g]) continue;
            pick = g;
            acc += w[g];
            if (u < acc) break;
        }
        taken[pick] = 1;
        left -= w[pick];
        gaps[i] = pick;
    }
}

lina_status lina_mqar_generate(const lina_mqar_config *c, int n, uint64_t seed, int32_t *inputs,
                               int32_t *targets) {
    lina_status st = lina_mqar_config_check(c);
    if (st) return st;
    if (n < 0 || !inputs || !targets)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar: generate n = %d or NULL buffers", n);
    int T = c->seq, K = c->pairs, V = c->vocab, half = V / 2, S = (T - 2 * K) / 2;
    double *w = malloc(sizeof(double) * S);             // (S) gap weights (g+1)^(a-1)
    int32_t *pool = malloc(sizeof(int32_t) * half);      // (V/2) scratch for distinct draws
    int32_t *keys = malloc(sizeof(int32_t) * K), *vals = malloc(sizeof(int32_t) * K);
    int *gaps = malloc(sizeof(int) * K);
    unsigned char *taken = malloc((size_t)S);
    if (!w || !pool || !keys || !vals || !gaps || !taken) {
        st = lina_fail(LINA_ERR_OOM, "mqar: out of memory generating %d examples", n);
        goto done;
    }
    for (int g = 0; g < S; g++) w[g] = pow(g + 1.0, (double)c->power_a - 1.0);
    for (int e = 0; e < n; e++) {
        lina_rng r;
        lina_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)e * 0xD1B54A32D192ED03ull + 1);
        int32_t *x = inputs + (size_t)e * T, *y = targets + (size_t)e * T;
        draw_distinct(&r, 1, half, K, pool, keys);
        draw_distinct(&r, half, V, K, pool, vals);
        draw_gaps(&r, w, S, K, taken, gaps);
        for (int t = 0; t < T; t++) {
            x[t] = (int32_t)lina_rng_below(&r, (uint64_t)V); /* noise */
            y[t] = -1;
        }
        for (int i = 0; i < K; i++) {
            x[2 * i] = keys[i];
            x[2 * i + 1] = vals[i];
            int q = 2 * K + 2 * gaps[i]; /* query position */
            x[q] = keys[i];
            y[q] = vals[i];
        }
    }
done:
    free(w);
    free(pool);
    free(keys);
    free(vals);
    free(gaps);
    free(taken);
    return st;
}

lina_mqar_train_config lina_mqar_train_default(void) {
    lina_mqar_train_config t = {.steps = 1000, .batch = 16, .warmup = 0, .lr = 1e-3f,
                                .weight_decay = 0.1f, .clip = 1.0f, .seed = 1, .dense_head = 0};
    return t;
}

lina_status lina_mqar_optimizer(lina_model *m, const lina_mqar_train_config *tc, lina_adamw **out) {
    if (!m || !tc || !out) return lina_fail(LINA_ERR_INVALID_ARG, "mqar optimizer: NULL argument");
    lina_adamw_config oc = lina_adamw_default();
    oc.lr = tc->lr;
    oc.weight_decay = tc->weight_decay;
    return lina_adamw_create(m, &oc, out);
}

/* order[0..n) = the permutation of the training set for `epoch`, a function
 * of (seed, epoch) only, so any step's batch can be rebuilt after a resume. */
static void epoch_order(uint64_t seed, int64_t epoch, int n, int *order) {
    lina_rng r;
    lina_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch * 0xBF58476D1CE4E5B9ull + 7);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)lina_rng_below(&r, (uint64_t)i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

/* Seed of setting i's epoch permutations: setting 0 keeps tc->seed, so a
 * one-setting mix is the plain run. */
static uint64_t set_seed(uint64_t seed, int i) { return seed + (uint64_t)i * 0x632BE59BD9B4E019ull; }

int lina_mqar_mix_pick(const lina_mqar_set *sets, int n_sets, uint64_t seed, int step) {
    if (!sets || n_sets <= 1) return 0;
    int64_t total = 0;
    for (int i = 0; i < n_sets; i++) total += sets[i].n_train;
    lina_rng r;
    lina_rng_seed(&r, seed * 0xA24BAED4963EE407ull + (uint64_t)step * 0x9FB21C651E98DF25ull + 11);
    int64_t u = (int64_t)lina_rng_below(&r, (uint64_t)total), acc = 0;
    for (int i = 0; i < n_sets; i++)
        if (u < (acc += sets[i].n_train)) return i;
    return n_sets - 1;
}

lina_status lina_mqar_mix_parse(const char *spec, const lina_mqar_config *base, int default_n,
                                lina_mqar_config *cfgs, int *n_train, int *n_sets) {
    if (!spec || !base || !cfgs || !n_train || !n_sets)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar mix: NULL argument");
    int n = 0;
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item)
            return lina_fail(LINA_ERR_INVALID_ARG,
                             "mqar mix: entry %d of '%s' is empty or too long (want T:K or T:K:N)",
                             n + 1, spec);
        if (n == LINA_MQAR_MAX_MIX)
            return lina_fail(LINA_ERR_INVALID_ARG, "mqar mix: '%s' has more than %d settings", spec,
                             LINA_MQAR_MAX_MIX);
        memcpy(item, p, len);
        item[len] = 0;
        long T = 0, K = 0, N = default_n;
        int used = 0, got = sscanf(item, "%ld:%ld%n", &T, &K, &used);
        if (got == 2 && item[used] == ':') {
            int more = 0;
            got = sscanf(item + used + 1, "%ld%n", &N, &more) == 1 ? 3 : 0;
            used += 1 + more;
        }
        if (got < 2 || item[used] != 0)
            return lina_fail(LINA_ERR_INVALID_ARG,
                             "mqar mix: entry '%s' is not T:K or T:K:N (seq:pairs[:examples])", item);
        if (T < 2 || T > 1000000 || K < 1 || K > 1000000 || N < 1 || N > 100000000)
            return lina_fail(LINA_ERR_INVALID_ARG,
                             "mqar mix: entry '%s': seq %ld, pairs %ld or examples %ld out of range",
                             item, T, K, N);
        cfgs[n] = *base;
        cfgs[n].seq = (int)T;
        cfgs[n].pairs = (int)K;
        n_train[n] = (int)N;
        if (lina_mqar_config_check(&cfgs[n]) != LINA_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", lina_last_error());
            return lina_fail(LINA_ERR_INVALID_ARG, "mqar mix: entry '%s': %s", item, why);
        }
        n++;
        p += len;
        if (*p == ',') p++;
        if (end && !*p)
            return lina_fail(LINA_ERR_INVALID_ARG, "mqar mix: '%s' ends with a comma", spec);
    }
    if (!n) return lina_fail(LINA_ERR_INVALID_ARG, "mqar mix: empty list (want T:K[:N],...)");
    *n_sets = n;
    return LINA_OK;
}

lina_status lina_mqar_train_steps_mix(lina_model *m, lina_adamw *opt, int n_sets,
                                      const lina_mqar_set *sets, const lina_mqar_train_config *tc,
                                      int step0, int step1, lina_mqar_progress cb, void *user) {
    if (!m || !opt || !sets || !tc)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar train: NULL argument");
    if (n_sets < 1 || n_sets > LINA_MQAR_MAX_MIX)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar train: %d settings (want 1..%d)", n_sets,
                         LINA_MQAR_MAX_MIX);
    int Tmax = 0;
    for (int i = 0; i < n_sets; i++) {
        if (sets[i].seq < 1 || sets[i].n_train < 1 || !sets[i].inputs || !sets[i].targets)
            return lina_fail(LINA_ERR_INVALID_ARG,
                             "mqar train: setting %d has T = %d, n_train = %d or NULL data", i,
                             sets[i].seq, sets[i].n_train);
        if (sets[i].seq > Tmax) Tmax = sets[i].seq;
    }
    if (tc->batch < 1 || tc->steps < 0 || tc->warmup < 0)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar train: batch = %d, steps = %d, warmup = %d",
                         tc->batch, tc->steps, tc->warmup);
    if (step0 < 0 || step1 < step0 || step1 > tc->steps)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar train: steps [%d, %d) outside [0, %d]", step0,
                         step1, tc->steps);
    if (!(tc->lr > 0) || !isfinite(tc->lr))
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar train: lr = %g must be > 0", tc->lr);
    int B = tc->batch;
    lina_status st = LINA_OK;
    int *order[LINA_MQAR_MAX_MIX] = {0};     /* per setting: (n_train) epoch permutation */
    int64_t have_epoch[LINA_MQAR_MAX_MIX];   /* which epoch order[i] holds, -1 none */
    int64_t used[LINA_MQAR_MAX_MIX] = {0};   /* per setting: steps before this one that used it */
    int32_t *x = malloc(sizeof(int32_t) * (size_t)B * Tmax); // (B, T) batch tokens
    int32_t *y = malloc(sizeof(int32_t) * (size_t)B * Tmax); // (B, T) batch targets
    int oom = !x || !y;
    for (int i = 0; i < n_sets; i++) {
        have_epoch[i] = -1;
        oom |= !(order[i] = malloc(sizeof(int) * sets[i].n_train));
    }
    if (oom) {
        st = lina_fail(LINA_ERR_OOM, "mqar train: out of memory (batch %d x %d)", B, Tmax);
        goto done;
    }
    for (int s = 0; s < step0; s++) used[lina_mqar_mix_pick(sets, n_sets, tc->seed, s)]++;
    for (int s = step0; s < step1; s++) {
        int i = lina_mqar_mix_pick(sets, n_sets, tc->seed, s), T = sets[i].seq, n = sets[i].n_train;
        for (int b = 0; b < B; b++) { /* example used[i] B + b of setting i's endless epoch stream */
            int64_t idx = used[i] * B + b, epoch = idx / n;
            if (epoch != have_epoch[i]) epoch_order(set_seed(tc->seed, i), have_epoch[i] = epoch, n, order[i]);
            size_t e = (size_t)order[i][idx % n];
            memcpy(x + (size_t)b * T, sets[i].inputs + e * T, sizeof(int32_t) * T);
            memcpy(y + (size_t)b * T, sets[i].targets + e * T, sizeof(int32_t) * T);
        }
        used[i]++;
        float loss = 0;
        lina_model_zero_grads(m);
        st = tc->dense_head ? lina_model_forward(m, B, T, x, y, NULL, &loss)
                            : lina_model_forward_scored(m, B, T, x, y, NULL, &loss, NULL);
        if (st) goto done;
        if (!isfinite(loss)) {
            st = lina_fail(LINA_ERR_NONFINITE, "mqar train: loss %g at step %d", loss, s + 1);
            goto done;
        }
        if ((st = lina_model_backward(m, 1.0f))) goto done;
        if (tc->clip > 0) lina_clip_grad_norm(m, tc->clip);
        float lr = lina_lr_schedule(s, tc->warmup, tc->steps, tc->lr, tc->lr * 0.1f);
        if ((st = lina_adamw_step(opt, m, lr))) goto done;
        if (cb) cb(user, s + 1, tc->steps, loss);
    }
done:
    for (int i = 0; i < n_sets; i++) free(order[i]);
    free(x);
    free(y);
    return st;
}

lina_status lina_mqar_train_steps(lina_model *m, lina_adamw *opt, int T, int n_train,
                                  const int32_t *inputs, const int32_t *targets,
                                  const lina_mqar_train_config *tc, int step0, int step1,
                                  lina_mqar_progress cb, void *user) {
    if (T < 1 || n_train < 1)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar train: T = %d, n_train = %d", T, n_train);
    lina_mqar_set one = {.seq = T, .pairs = 0, .n_train = n_train, .inputs = inputs, .targets = targets};
    return lina_mqar_train_steps_mix(m, opt, 1, &one, tc, step0, step1, cb, user);
}

typedef struct {
    lina_mqar_progress cb;
    void *user;
    int tail_from; /* steps after this one count towards the final loss */
    double tail_sum;
} tail_mean;

static void tail_progress(void *user, int step, int steps, double loss) {
    tail_mean *t = user;
    if (step > t->tail_from) t->tail_sum += loss;
    if (t->cb) t->cb(t->user, step, steps, loss);
}

lina_status lina_mqar_train(lina_model *m, int T, int n_train, const int32_t *inputs,
                            const int32_t *targets, const lina_mqar_train_config *tc,
                            lina_mqar_progress cb, void *user, double *final_loss) {
    if (!m || !tc) return lina_fail(LINA_ERR_INVALID_ARG, "mqar train: NULL argument");
    lina_adamw *opt = NULL;
    lina_status st = lina_mqar_optimizer(m, tc, &opt);
    if (st) return st;
    int tail = tc->steps < 50 ? tc->steps : 50;
    tail_mean t = {cb, user, tc->steps - tail, 0};
    st = lina_mqar_train_steps(m, opt, T, n_train, inputs, targets, tc, 0, tc->steps, tail_progress,
                               &t);
    if (!st && final_loss) *final_loss = tail ? t.tail_sum / tail : NAN;
    lina_adamw_free(opt);
    return st;
}

lina_status lina_mqar_accuracy(lina_model *m, int T, int n, const int32_t *inputs,
                               const int32_t *targets, int batch, double *accuracy, double *loss) {
    if (!m || !inputs || !targets || !accuracy)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar accuracy: NULL argument");
    if (T < 1 || n < 1 || batch < 1)
        return lina_fail(LINA_ERR_INVALID_ARG, "mqar accuracy: T = %d, n = %d, batch = %d", T, n,
                         batch);
    int V = lina_model_get_config(m)->vocab_size;
    if (batch > n) batch = n;
    float *logits = NULL; /* (S, V): the scored rows of one batch */
    size_t logits_rows = 0;
    long answers = 0, correct = 0;
    double loss_sum = 0; /* sum over answers of -log p(value) */
    lina_status st = LINA_OK;
    for (int e0 = 0; e0 < n; e0 += batch) {
        int B = n - e0 < batch ? n - e0 : batch, S = 0;
        const int32_t *x = inputs + (size_t)e0 * T, *y = targets + (size_t)e0 * T;
        size_t valid = 0;
        for (size_t i = 0; i < (size_t)B * T; i++) valid += y[i] >= 0;
        if (!valid) continue;
        if (valid > logits_rows) {
            free(logits);
            logits = malloc(sizeof(float) * valid * V);
            logits_rows = logits ? valid : 0;
            if (!logits) {
                st = lina_fail(LINA_ERR_OOM, "mqar accuracy: out of memory for %zu x %d logits",
                               valid, V);
                break;
            }
        }
        float l = 0;
        if ((st = lina_model_forward_scored(m, B, T, x, y, logits, &l, &S))) break;
        loss_sum += (double)l * S;
        for (size_t i = 0, r = 0; i < (size_t)B * T; i++) {
            if (y[i] < 0) continue;
            const float *z = logits + r++ * V;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (z[v] > z[best]) best = v;
            answers++;
            correct += best == y[i];
        }
    }
    free(logits);
    if (st) return st;
    if (!answers) return lina_fail(LINA_ERR_INVALID_ARG, "mqar accuracy: no answer positions");
    *accuracy = (double)correct / answers;
    if (loss) *loss = loss_sum / answers;
    return LINA_OK;
}
