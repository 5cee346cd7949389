/* Multi-query associative recall (MQAR), the synthetic recall task of
 * "Zoology: Measuring and Improving Recall in Efficient Language Models"
 * (Arora, Eyuboglu et al. 2023), used by the DeltaNet paper (Yang et al. 2024).
 *
 * One example of length T with K key-value pairs over a vocabulary V:
 *   positions 0 .. 2K-1:  k_1 v_1 k_2 v_2 ... k_K v_K
 *       keys   distinct, uniform in [1, V/2)     (first half of the vocabulary)
 *       values distinct, uniform in [V/2, V)     (second half)
 *   positions 2K .. T-1:  every pair's key is queried once, at position
 *       2K + 2 g_i, with the gaps g_1..g_K drawn without replacement from
 *       {0, .., S-1}, S = (T - 2K) / 2, with P(g) proportional to
 *       (g + 1)^(a - 1) (power law, a = 0.01: short gaps are likely);
 *       all other positions hold uniform random tokens in [0, V) (noise).
 *   targets: the queried key's value at each query position (the model must
 *       predict it while reading the key), -1 (ignored) everywhere else.
 * Needs T even, 4K <= T (room for the K queries) and V > T (Zoology's checks).
 * Accuracy = fraction of answer positions whose argmax logit is the value. */
#ifndef LINA_MQAR_H
#define LINA_MQAR_H

#include "core.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int vocab;     /* V (8192) */
    int seq;       /* T (512) */
    int pairs;     /* K (64) */
    float power_a; /* gap power law exponent a (0.01); 1 = uniform gaps */
} lina_mqar_config;

lina_mqar_config lina_mqar_config_default(void); /* V 8192, T 512, K 64, a 0.01 */
/* Checks ranges; the message names the offending value. */
lina_status lina_mqar_config_check(const lina_mqar_config *c);

/* n examples from seed: inputs (n, T) tokens, targets (n, T) values at the
 * answer positions and -1 elsewhere. Example i depends only on (seed, i). */
lina_status lina_mqar_generate(const lina_mqar_config *c, int n, uint64_t seed, int32_t *inputs,
                               int32_t *targets);

typedef struct {
    int steps;          /* optimizer steps */
    int batch;          /* examples per step */
    int warmup;         /* linear warm-up steps, then cosine decay to lr/10 */
    float lr;           /* peak learning rate */
    float weight_decay; /* AdamW decoupled weight decay */
    float clip;         /* global gradient-norm clip, 0 = off */
    uint64_t seed;      /* order of the training examples (epoch e's permutation: f(seed, e)) */
    int dense_head;     /* 1: LM head at every position (the slow path, for timing); 0: scored rows only */
} lina_mqar_train_config;

lina_mqar_train_config lina_mqar_train_default(void); /* 1000 steps, batch 16, lr 1e-3, wd 0.1, clip 1 */

/* Called every step with the step's mean loss (1-based step). */
typedef void (*lina_mqar_progress)(void *user, int step, int steps, double loss);

/* AdamW on the n_train examples (inputs/targets (n_train, T)), visited in a
 * fresh seeded permutation each epoch (lina_mqar_train_steps over all steps). *final_loss (may be NULL): mean loss
 * of the last min(50, steps) steps. */
lina_status lina_mqar_train(lina_model *m, int T, int n_train, const int32_t *inputs,
                            const int32_t *targets, const lina_mqar_train_config *tc,
                            lina_mqar_progress cb, void *user, double *final_loss);

/* The AdamW optimizer lina_mqar_train uses (lr, weight decay from tc). */
lina_status lina_mqar_optimizer(lina_model *m, const lina_mqar_train_config *tc, lina_adamw **out);

/* Steps [step0, step1) (0-based) of the tc->steps-step run, with an optimizer
 * from lina_mqar_optimizer holding the state after step0 steps. The batch of
 * step s is examples s*B .. s*B+B-1 of the stream of seeded epoch permutations
 * and the learning rate is the schedule's at s, so a run split into pieces
 * (interrupted, checkpointed, resumed) equals the run done at once. */
lina_status lina_mqar_train_steps(lina_model *m, lina_adamw *opt, int T, int n_train,
                                  const int32_t *inputs, const int32_t *targets,
                                  const lina_mqar_train_config *tc, int step0, int step1,
                                  lina_mqar_progress cb, void *user);

/* ---- training on a mix of settings (Zoology trains on (64, 4), (128, 8),
 * (256, 16), (256, 32), (256, 64) at once and tests on longer ones) ---- */

#define LINA_MQAR_MAX_MIX 16

/* One training setting of a mix: its own training set of n_train examples. */
typedef struct {
    int seq;                /* T of this setting */
    int pairs;              /* K of this setting */
    int n_train;            /* examples; a step uses this setting with probability n_train / sum */
    const int32_t *inputs;  /* (n_train, seq) tokens */
    const int32_t *targets; /* (n_train, seq) values at the answers, -1 elsewhere */
} lina_mqar_set;

/* Parses "T:K[:N],T:K[:N],..." (at most LINA_MQAR_MAX_MIX entries; N defaults
 * to default_n) into cfgs[i] (vocab and power_a from base, each checked with
 * lina_mqar_config_check) and n_train[i]. The message names the bad entry. */
lina_status lina_mqar_mix_parse(const char *spec, const lina_mqar_config *base, int default_n,
                                lina_mqar_config *cfgs, int *n_train, int *n_sets);

/* The setting step s (0-based) trains on: drawn with probabilities
 * n_train[i] / sum from a generator seeded by (seed, s) only (as if the
 * settings' examples were pooled and shuffled, as Zoology does), so a resumed
 * run picks the same settings. Always 0 for one setting. */
int lina_mqar_mix_pick(const lina_mqar_set *sets, int n_sets, uint64_t seed, int step);

/* lina_mqar_train_steps over a mix: each step is one batch of tc->batch
 * examples of the setting lina_mqar_mix_pick chooses (one length per batch, so
 * short settings make cheap steps). Setting i visits its examples in seeded
 * epoch permutations of its own; its j-th step takes examples jB .. jB+B-1 of
 * that stream. With one setting this is exactly lina_mqar_train_steps. */
lina_status lina_mqar_train_steps_mix(lina_model *m, lina_adamw *opt, int n_sets,
                                      const lina_mqar_set *sets, const lina_mqar_train_config *tc,
                                      int step0, int step1, lina_mqar_progress cb, void *user);

/* Exact-match accuracy over the answer positions of n examples (evaluated
 * `batch` at a time) and the mean cross-entropy there (loss may be NULL). */
lina_status lina_mqar_accuracy(lina_model *m, int T, int n, const int32_t *inputs,
                               const int32_t *targets, int batch, double *accuracy, double *loss);

#ifdef __cplusplus
}
#endif
#endif
