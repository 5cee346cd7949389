#!/usr/bin/python3
"""Run llama.cpp's convert_hf_to_gguf.py under an older PyTorch (Debian's 1.13).

    python bench/hf_gguf_convert.py LLAMA_CPP_DIR MODEL_DIR --outtype f32 --outfile OUT.gguf

The converter only names torch's float8 / unsigned dtypes in a lookup table at
import time; the f32 checkpoints made by bench/hf_make_models.py never hold
them, so stand-ins are enough. Everything else is the converter unchanged.
"""
import runpy
import sys

import torch

for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
             "uint16", "uint32", "uint64"):
    if not hasattr(torch, name):
        setattr(torch, name, type(name, (), {})())  # a distinct placeholder per missing dtype

llama_dir = sys.argv[1]
sys.argv = [llama_dir + "/convert_hf_to_gguf.py"] + sys.argv[2:]
sys.path.insert(0, llama_dir)
runpy.run_path(sys.argv[0], run_name="__main__")
