#!/usr/bin/python3
"""Random-weight ~100M-parameter checkpoints in each Hugging Face / fla layout
lina loads, for speed measurements only (the weights mean nothing).

    /usr/bin/python3 bench/hf_make_models.py OUTDIR [--family NAME ...] [--target 100e6] [--tiny]

Writes OUTDIR/<family>/config.json + model.safetensors (f32). Tensor names and
shapes follow the test fixtures (tests/data/hf_fla_oracle/make.py,
tests/data/hf_variants/make.py, tests/data/rwkv7/make.py, tests/data/hf_qwen3_next):

    family          layout                              hidden  vocab    embeddings
    gla             fla GLAForCausalLM                  768     32000    untied
    delta_net       fla DeltaNetForCausalLM             768     32000    untied
    gated_deltanet  fla GatedDeltaNetForCausalLM        768     32000    untied
    retnet          fla RetNetForCausalLM               768     32000    untied
    linear_attn     fla LinearAttentionForCausalLM      768     32000    untied
    hgrn2           fla HGRN2ForCausalLM                768     32000    untied
    rwkv7           fla RWKV7ForCausalLM                512     65536    untied (RWKV world vocabulary)
    mamba2          transformers Mamba2ForCausalLM      768     50288    tied (GPT-NeoX vocabulary, padded to 16)
    qwen3_next      transformers Qwen3NextForCausalLM   512     151936   tied (Qwen3 vocabulary)

The number of layers is chosen so that the total is closest to --target
parameters. The vocabularies of rwkv7, mamba2 and qwen3_next are the sizes of
real tokenizers so that llama.cpp's converter accepts the checkpoints
(bench/hf_bench.sh copies the tokenizer files next to them). --tiny makes
2-layer, hidden-64 versions (a quick check that lina loads every layout).
Weights: N(0, 0.02) for matrices, ones for norm weights, and each family's
usual initial values for decays (A_log, dt_bias), so activations stay finite.
"""
import argparse
import json
import os
import struct

import numpy as np

RNG = np.random.default_rng(2024)


def save_safetensors(path, tensors):
    """tensors: name -> float32 ndarray; written in one pass (header, then data in name order)."""
    header, off = {}, 0
    names = sorted(tensors)
    for n in names:
        nb = tensors[n].nbytes
        header[n] = {"dtype": "F32", "shape": list(tensors[n].shape), "data_offsets": [off, off + nb]}
        off += nb
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for n in names:
            f.write(np.ascontiguousarray(tensors[n], dtype=np.float32).tobytes())
    os.replace(tmp, path)


# Each family is a function (cfg) -> {name: (shape, init)}; init is "w" (N(0, 0.02)),
# "one", "zero", or a callable(shape) -> ndarray.
def mat(*shape):
    return (shape, "w")


def ones(*shape):
    return (shape, "one")


def zeros(*shape):
    return (shape, "zero")


def fla_common(c):
    D, V, I, L = c["hidden_size"], c["vocab_size"], c["intermediate_size"], c["num_hidden_layers"]
    t = {"model.embeddings.weight": mat(V, D), "model.norm.weight": ones(D)}
    if not c["tie_word_embeddings"]:
        t["lm_head.weight"] = mat(V, D)
    for l in range(L):
        p = f"model.layers.{l}."
        t.update({p + "attn_norm.weight": ones(D), p + "mlp_norm.weight": ones(D),
                  p + "mlp.gate_proj.weight": mat(I, D), p + "mlp.up_proj.weight": mat(I, D),
                  p + "mlp.down_proj.weight": mat(D, I)})
    return t


def decay_a_log(n):
    return (n,), lambda s: np.log(np.linspace(1, 16, s[0])).astype(np.float32)


def decay_dt_bias(n):  # softplus^-1 of dt in [1e-3, 1e-1], as Mamba's initialization
    def init(s):
        dt = np.exp(RNG.uniform(np.log(1e-3), np.log(1e-1), s[0]))
        return (dt + np.log(-np.expm1(-dt))).astype(np.float32)
    return (n,), init


def gla(c):
    t, D, H = fla_common(c), c["hidden_size"], c["num_heads"]
    K, Vd, r = int(D * c["expand_k"]), int(D * c["expand_v"]), c["gate_low_rank_dim"]
    for l in range(c["num_hidden_layers"]):
        a = f"model.layers.{l}.attn."
        t.update({a + "q_proj.weight": mat(K, D), a + "k_proj.weight": mat(K, D), a + "v_proj.weight": mat(Vd, D),
                  a + "g_proj.weight": mat(Vd, D), a + "gk_proj.0.weight": mat(r, D),
                  a + "gk_proj.1.weight": mat(K, r), a + "gk_proj.1.bias": zeros(K),
                  a + "g_norm.weight": ones(Vd // H), a + "o_proj.weight": mat(D, Vd)})
    return t


def delta_net(c):
    t, D, H, W = fla_common(c), c["hidden_size"], c["num_heads"], c["conv_size"]
    for l in range(c["num_hidden_layers"]):
        a = f"model.layers.{l}.attn."
        for n in "qkv":
            t[a + n + "_proj.weight"] = mat(D, D)
            t[a + n + "_conv1d.weight"] = mat(D, 1, W)
        t.update({a + "b_proj.weight": mat(H, D), a + "o_norm.weight": ones(D // H), a + "o_proj.weight": mat(D, D)})
    return t


def gated_deltanet(c):
    t, D, H, Kh, W = fla_common(c), c["hidden_size"], c["num_heads"], c["head_dim"], c["conv_size"]
    Vd = H * int(Kh * c["expand_v"])
    for l in range(c["num_hidden_layers"]):
        a = f"model.layers.{l}.attn."
        t.update({a + "q_proj.weight": mat(H * Kh, D), a + "k_proj.weight": mat(H * Kh, D),
                  a + "v_proj.weight": mat(Vd, D), a + "a_proj.weight": mat(H, D), a + "b_proj.weight": mat(H, D),
                  a + "A_log": decay_a_log(H), a + "dt_bias": decay_dt_bias(H),
                  a + "q_conv1d.weight": mat(H * Kh, 1, W), a + "k_conv1d.weight": mat(H * Kh, 1, W),
                  a + "v_conv1d.weight": mat(Vd, 1, W), a + "g_proj.weight": mat(Vd, D),
                  a + "o_norm.weight": ones(Vd // H), a + "o_proj.weight": mat(D, Vd)})
    return t


def retnet(c):
    t, D, H = fla_common(c), c["hidden_size"], c["num_heads"]
    K, Vd = int(D * c["expand_k"]), int(D * c["expand_v"])
    for l in range(c["num_hidden_layers"]):
        a = f"model.layers.{l}.attn."
        t.update({a + "q_proj.weight": mat(K, D), a + "k_proj.weight": mat(K, D), a + "v_proj.weight": mat(Vd, D),
                  a + "g_proj.weight": mat(Vd, D), a + "g_norm.weight": ones(Vd // H),
                  a + "o_proj.weight": mat(D, Vd)})
    return t


def linear_attn(c):
    t, D, H = fla_common(c), c["hidden_size"], c["num_heads"]
    Kh = D // H
    for l in range(c["num_hidden_layers"]):
        a = f"model.layers.{l}.attn."
        t.update({a + "q_proj.weight": mat(D, D), a + "k_proj.weight": mat(D, D), a + "v_proj.weight": mat(D, D),
                  a + "norm.weight": ones(Kh), a + "o_proj.weight": mat(D, D)})
        for q in "qk":  # elementwise_product feature map: layer1(x) * layer2(x)
            for n in ("layer1", "layer2"):
                t[f"{a}feature_map_{q}.{n}.weight"] = mat(Kh, Kh)
                t[f"{a}feature_map_{q}.{n}.bias"] = zeros(Kh)
    return t


def hgrn2(c):
    t, D, L = fla_common(c), c["hidden_size"], c["num_hidden_layers"]
    t["model.lower_bounds"] = zeros(L, D)
    for l in range(L):
        a = f"model.layers.{l}.attn."
        t.update({a + "q_proj.weight": mat(D, D), a + "f_proj.weight": mat(D, D), a + "i_proj.weight": mat(D, D),
                  a + "g_norm.weight": ones(D), a + "o_proj.weight": mat(D, D)})
    return t


def rwkv7(c):
    D, V, I, L = c["hidden_size"], c["vocab_size"], c["intermediate_size"], c["num_hidden_layers"]
    Kh = c["head_dim"]
    t = {"model.embeddings.weight": mat(V, D), "lm_head.weight": mat(V, D), "model.norm.weight": ones(D),
         "model.norm.bias": zeros(D), "model.layers.0.pre_norm.weight": ones(D),
         "model.layers.0.pre_norm.bias": zeros(D)}
    lerp = lambda s: RNG.uniform(0, 1, s).astype(np.float32)
    for l in range(L):
        p, a = f"model.layers.{l}.", f"model.layers.{l}.attn."
        for n in ("attn_norm", "ffn_norm"):
            t[p + n + ".weight"], t[p + n + ".bias"] = ones(D), zeros(D)
        for n in "rwkvag":
            t[a + "x_" + n] = ((1, 1, D), lerp)
        t.update({a + "k_k": ones(D), a + "k_a": ones(D), a + "r_k": mat(D // Kh, Kh),
                  a + "r_proj.weight": mat(D, D), a + "k_proj.weight": mat(D, D), a + "v_proj.weight": mat(D, D),
                  a + "o_proj.weight": mat(D, D), a + "g_norm.weight": ones(D), a + "g_norm.bias": zeros(D),
                  p + "ffn.x_k": ((D,), lerp), p + "ffn.key.weight": mat(I, D), p + "ffn.value.weight": mat(D, I)})
        loras = [("w", c["decay_low_rank_dim"], True), ("a", c["a_low_rank_dim"], True),
                 ("g", c["gate_low_rank_dim"], False)] + ([("v", c["v_low_rank_dim"], True)] if l > 0 else [])
        for n, r, bias in loras:
            t[f"{a}{n}_lora.lora.0.weight"], t[f"{a}{n}_lora.lora.2.weight"] = mat(r, D), mat(D, r)
            if bias:
                t[f"{a}{n}_lora.lora.2.bias"] = zeros(D)
    return t


def mamba2(c):
    D, V, L = c["hidden_size"], c["vocab_size"], c["num_hidden_layers"]
    Di, N, G, W = c["expand"] * D, c["state_size"], c["n_groups"], c["conv_kernel"]
    nh = Di // c["head_dim"]
    conv = Di + 2 * G * N
    t = {"backbone.embeddings.weight": mat(V, D), "backbone.norm_f.weight": ones(D)}
    for l in range(L):
        m = f"backbone.layers.{l}.mixer."
        t.update({f"backbone.layers.{l}.norm.weight": ones(D), m + "A_log": decay_a_log(nh), m + "D": ones(nh),
                  m + "conv1d.weight": mat(conv, 1, W), m + "conv1d.bias": zeros(conv),
                  m + "dt_bias": decay_dt_bias(nh), m + "in_proj.weight": mat(2 * Di + 2 * G * N + nh, D),
                  m + "norm.weight": ones(Di), m + "out_proj.weight": mat(D, Di)})
    return t


def qwen3_next(c):
    D, V, L = c["hidden_size"], c["vocab_size"], c["num_hidden_layers"]
    Hk, Hv, Dk, Dv = (c["linear_num_key_heads"], c["linear_num_value_heads"], c["linear_key_head_dim"],
                      c["linear_value_head_dim"])
    H, Hkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    E, mi, si = c["num_experts"], c["moe_intermediate_size"], c["shared_expert_intermediate_size"]
    # Qwen3-Next RMSNorms scale by (1 + w): zeros are the identity (the gated norm of the
    # linear layers scales by w itself)
    t = {"model.embed_tokens.weight": mat(V, D), "model.norm.weight": zeros(D)}
    for l, kind in enumerate(c["layer_types"]):
        p = f"model.layers.{l}."
        t.update({p + "input_layernorm.weight": zeros(D), p + "post_attention_layernorm.weight": zeros(D)})
        if kind == "linear_attention":
            a = p + "linear_attn."
            t.update({a + "in_proj_qkvz.weight": mat(2 * Hk * Dk + 2 * Hv * Dv, D),
                      a + "in_proj_ba.weight": mat(2 * Hv, D),
                      a + "conv1d.weight": mat(2 * Hk * Dk + Hv * Dv, 1, c["linear_conv_kernel_dim"]),
                      a + "dt_bias": decay_dt_bias(Hv), a + "A_log": decay_a_log(Hv), a + "norm.weight": ones(Dv),
                      a + "out_proj.weight": mat(D, Hv * Dv)})
        else:
            a = p + "self_attn."
            t.update({a + "q_proj.weight": mat(2 * H * hd, D), a + "k_proj.weight": mat(Hkv * hd, D),
                      a + "v_proj.weight": mat(Hkv * hd, D), a + "o_proj.weight": mat(D, H * hd),
                      a + "q_norm.weight": zeros(hd), a + "k_norm.weight": zeros(hd)})
        m = p + "mlp."
        t[m + "gate.weight"] = mat(E, D)
        for e in range(E):
            t.update({f"{m}experts.{e}.gate_proj.weight": mat(mi, D), f"{m}experts.{e}.up_proj.weight": mat(mi, D),
                      f"{m}experts.{e}.down_proj.weight": mat(D, mi)})
        t.update({m + "shared_expert.gate_proj.weight": mat(si, D), m + "shared_expert.up_proj.weight": mat(si, D),
                  m + "shared_expert.down_proj.weight": mat(D, si), m + "shared_expert_gate.weight": mat(1, D)})
    return t


FLA = dict(vocab_size=32000, hidden_size=768, norm_eps=1e-6, hidden_ratio=4, intermediate_size=2048,
           hidden_act="swish", fuse_norm=False, tie_word_embeddings=False, conv_size=4, bos_token_id=1,
           eos_token_id=2)
FAMILIES = {
    "gla": (gla, dict(FLA, model_type="gla", architectures=["GLAForCausalLM"], num_heads=4, num_kv_heads=None,
                      expand_k=0.5, expand_v=1.0, use_gk=True, use_gv=False, use_output_gate=True,
                      use_short_conv=False, feature_map=None, clamp_min=None, elementwise_affine=True,
                      gate_low_rank_dim=16, gate_logit_normalizer=16, attn_mode="chunk")),
    "delta_net": (delta_net, dict(FLA, model_type="delta_net", architectures=["DeltaNetForCausalLM"], num_heads=12,
                                  expand_k=1.0, expand_v=1.0, use_beta=True, use_short_conv=True,
                                  qk_activation="silu", qk_norm="l2", use_gate=False, use_output_norm=True,
                                  allow_neg_eigval=False, attn_mode="chunk")),
    "gated_deltanet": (gated_deltanet, dict(FLA, model_type="gated_deltanet",
                                            architectures=["GatedDeltaNetForCausalLM"], num_heads=6, head_dim=128,
                                            expand_v=2.0, num_v_heads=None, use_gate=True, use_short_conv=True,
                                            allow_neg_eigval=False, attn_mode="chunk")),
    "retnet": (retnet, dict(FLA, model_type="retnet", architectures=["RetNetForCausalLM"], num_heads=8,
                            num_kv_heads=None, expand_k=1.0, expand_v=2.0, feature_map=None, use_output_gate=True,
                            elementwise_affine=True, attn_mode="chunk")),
    "linear_attn": (linear_attn, dict(FLA, model_type="linear_attn", architectures=["LinearAttentionForCausalLM"],
                                      num_heads=12, num_kv_heads=None, expand_k=1.0, expand_v=1.0,
                                      feature_map="elementwise_product", tie_feature_map_qk=False, norm_q=False,
                                      norm_k=False, norm_feature_map=False, elementwise_affine=True,
                                      attn_mode="chunk")),
    "hgrn2": (hgrn2, dict(FLA, model_type="hgrn2", architectures=["HGRN2ForCausalLM"], expand_ratio=128,
                          num_heads=None, use_short_conv=False, use_lower_bound=True, elementwise_affine=True,
                          attn_mode="chunk")),
    "rwkv7": (rwkv7, dict(model_type="rwkv7", architectures=["RWKV7ForCausalLM"], vocab_size=65536, hidden_size=512,
                          head_dim=64, decay_low_rank_dim=64, gate_low_rank_dim=128, a_low_rank_dim=64,
                          v_low_rank_dim=32, intermediate_size=2048, hidden_act="sqrelu", norm_first=True,
                          norm_bias=True, norm_eps=1e-5, tie_word_embeddings=False, value_dim=None, attn=None,
                          fuse_norm=True, bos_token_id=0, eos_token_id=0)),
    "mamba2": (mamba2, dict(model_type="mamba2", architectures=["Mamba2ForCausalLM"], vocab_size=50288,
                            hidden_size=768, expand=2, head_dim=64, num_heads=24, state_size=128, n_groups=1,
                            conv_kernel=4, chunk_size=256, hidden_act="silu", layer_norm_epsilon=1e-5,
                            residual_in_fp32=True, rescale_prenorm_residual=False, use_bias=False,
                            use_conv_bias=True, tie_word_embeddings=True, time_step_min=0.001, time_step_max=0.1,
                            time_step_floor=1e-4, time_step_rank=48, bos_token_id=0, eos_token_id=0,
                            pad_token_id=1)),
    "qwen3_next": (qwen3_next, dict(model_type="qwen3_next", architectures=["Qwen3NextForCausalLM"],
                                    vocab_size=151936, hidden_size=512, head_dim=64, num_attention_heads=8,
                                    num_key_value_heads=2, linear_num_key_heads=4, linear_num_value_heads=8,
                                    linear_key_head_dim=64, linear_value_head_dim=64, linear_conv_kernel_dim=4,
                                    num_experts=16, num_experts_per_tok=2, moe_intermediate_size=256,
                                    shared_expert_intermediate_size=512, intermediate_size=1024,
                                    decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True,
                                    rms_norm_eps=1e-6, rope_theta=10000.0, partial_rotary_factor=0.25,
                                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                     "partial_rotary_factor": 0.25},
                                    full_attention_interval=4, attention_bias=False, hidden_act="silu",
                                    max_position_embeddings=8192, tie_word_embeddings=True,
                                    bos_token_id=151643, eos_token_id=151645)),
}


def with_layers(cfg, L):
    c = dict(cfg, num_hidden_layers=L)
    if c["model_type"] == "qwen3_next":  # three Gated DeltaNet layers, then one gated softmax attention layer
        c["layer_types"] = ["full_attention" if (l + 1) % 4 == 0 else "linear_attention" for l in range(L)]
    return c


def n_params(shapes):
    return sum(int(np.prod(s)) for s, _ in shapes.values())


def choose_layers(fn, cfg, target):
    """L minimizing |params(L) - target|; qwen3_next takes whole 3:1 groups (so it has attention layers)."""
    step = 4 if cfg["model_type"] == "qwen3_next" else 1
    return min(range(step, 49, step), key=lambda L: abs(n_params(fn(with_layers(cfg, L))) - target))


def materialize(shapes):
    out = {}
    for name, (shape, init) in shapes.items():
        if init == "w":
            out[name] = (RNG.standard_normal(shape, dtype=np.float32) * np.float32(0.02))
        elif init == "one":
            out[name] = np.ones(shape, np.float32)
        elif init == "zero":
            out[name] = np.zeros(shape, np.float32)
        else:
            out[name] = init(shape)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--family", action="append", choices=sorted(FAMILIES))
    ap.add_argument("--target", type=float, default=100e6, help="parameters (default 100e6)")
    ap.add_argument("--tiny", action="store_true", help="2 layers, hidden 64: a quick load check")
    args = ap.parse_args()
    for fam in args.family or list(FAMILIES):
        fn, cfg = FAMILIES[fam]
        if args.tiny:
            cfg = dict(cfg, hidden_size=64, intermediate_size=128)
            for k, v in (("head_dim", 16), ("num_heads", 4 if fam != "mamba2" else 8), ("linear_key_head_dim", 16),
                         ("linear_value_head_dim", 16), ("state_size", 16), ("expand_ratio", 16),
                         ("moe_intermediate_size", 32), ("shared_expert_intermediate_size", 32),
                         ("decay_low_rank_dim", 8), ("a_low_rank_dim", 8),
                         ("v_low_rank_dim", 8)):
                if k in cfg:
                    cfg[k] = v
            if fam == "mamba2":
                cfg["head_dim"] = 16
            cfg = with_layers(cfg, 4 if fam == "qwen3_next" else 2)
        else:
            cfg = with_layers(cfg, choose_layers(fn, cfg, args.target))
        shapes = fn(cfg)
        d = os.path.join(args.outdir, fam)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        save_safetensors(os.path.join(d, "model.safetensors"), materialize(shapes))
        print(f"{fam}: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, vocab {cfg['vocab_size']}, "
              f"{n_params(shapes) / 1e6:.1f}M parameters -> {d}", flush=True)


if __name__ == "__main__":
    main()
