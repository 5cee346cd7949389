/* lina tokenizer: byte-level BPE as used by GPT-2, GPT-NeoX / Pythia / Mamba,
 * Qwen2/3 and OpenAI's tiktoken encodings (r50k_base, cl100k_base).
 *
 * Loaders:
 *   lina_tokenizer_load_hf        Hugging Face tokenizer.json (model BPE, byte-level,
 *                                  pre-tokenizer GPT-2 / cl100k / Qwen2 pattern, NFC normalizer)
 *   lina_tokenizer_load_tiktoken  a tiktoken rank file ("base64 rank" lines) + pattern
 *   lina_tokenizer_load_gpt2      encoder.json + vocab.bpe (OpenAI GPT-2 release)
 * Encoding splits the text into pieces with the pre-tokenizer pattern, then
 * merges the bytes of each piece (lowest merge rank first). Decoding
 * concatenates token bytes (the result may end inside a UTF-8 sequence). */
#ifndef LINA_TOKENIZER_H
#define LINA_TOKENIZER_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lina_tokenizer lina_tokenizer;

/* Pre-tokenizer patterns (the regexes of the reference implementations). */
typedef enum {
    LINA_PRETOK_GPT2 = 0, /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    LINA_PRETOK_CL100K,   /* (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    LINA_PRETOK_QWEN2     /* as CL100K with \p{N} (one digit per piece) */
} lina_pretok;

lina_status lina_tokenizer_load_hf(const char *tokenizer_json, lina_tokenizer **out);
lina_status lina_tokenizer_load_tiktoken(const char *rank_file, lina_pretok pattern, lina_tokenizer **out);
lina_status lina_tokenizer_load_gpt2(const char *encoder_json, const char *vocab_bpe, lina_tokenizer **out);
void lina_tokenizer_free(lina_tokenizer *t);

/* Largest token id + 1 (added tokens included). */
int lina_tokenizer_vocab_size(const lina_tokenizer *t);
/* Id of a token given by its text (added tokens too), or -1. */
int64_t lina_tokenizer_token_id(const lina_tokenizer *t, const char *text);

/* Encode len bytes of UTF-8 text. allow_special: added/special tokens written
 * in the text (e.g. "<|im_start|>") become their ids; otherwise they are
 * encoded as ordinary text. *ids is malloc'ed (free it); *n_ids its length. */
lina_status lina_tokenizer_encode(const lina_tokenizer *t, const char *text, size_t len, int allow_special,
                                  int64_t **ids, size_t *n_ids);
/* Decode to bytes; *text is malloc'ed and NUL-terminated, *len excludes the NUL.
 * An id outside the vocabulary is an error naming it. */
lina_status lina_tokenizer_decode(const lina_tokenizer *t, const int64_t *ids, size_t n_ids, char **text,
                                  size_t *len);

/* The RWKV "world" tokenizer (rwkv_vocab_v20230424.txt: `id 'repr' bytelen`
 * lines, src/tokenizer/rwkv_world.c): greedy longest match over the bytes,
 * no pre-tokenizer. Ids start at 1; decoding concatenates token bytes. */
typedef struct lina_rwkv_tokenizer lina_rwkv_tokenizer;
lina_status lina_rwkv_tokenizer_load(const char *vocab_txt, lina_rwkv_tokenizer **out);
void lina_rwkv_tokenizer_free(lina_rwkv_tokenizer *t);
int lina_rwkv_tokenizer_vocab_size(const lina_rwkv_tokenizer *t); /* largest id + 1 */
lina_status lina_rwkv_tokenizer_encode(const lina_rwkv_tokenizer *t, const char *text, size_t len, int64_t **ids,
                                       size_t *n_ids);
lina_status lina_rwkv_tokenizer_decode(const lina_rwkv_tokenizer *t, const int64_t *ids, size_t n_ids, char **text,
                                       size_t *len);

/* The world vocabulary behind the lina_tokenizer interface (encode ignores
 * allow_special: the vocabulary has no special tokens). */
lina_status lina_tokenizer_load_rwkv_world(const char *vocab_txt, lina_tokenizer **out);
/* A tokenizer file by its kind: a `.txt` file is an RWKV world vocabulary,
 * anything else a Hugging Face tokenizer.json. */
lina_status lina_tokenizer_load_file(const char *path, lina_tokenizer **out);
/* The tokenizer shipped in a checkpoint directory: DIR/tokenizer.json, else the
 * RWKV world vocabulary as fla's / BlinkDL's RWKV checkpoints name it
 * (DIR/rwkv_vocab_v20230424.txt). Neither there: LINA_ERR_IO naming DIR and both names. */
lina_status lina_tokenizer_load_dir(const char *dir, lina_tokenizer **out);

#ifdef __cplusplus
}
#endif
#endif
