"""liblina's CUDA attention entry points through ctypes, for the benchmark scripts here
(bench_vs_fla.py, sweep_env.py): the argument structs and a loader that sets the signatures."""
import ctypes as C


class Desc(C.Structure):  # lina_attn_desc (include/lina/ops.h)
    _fields_ = [('B', C.c_int), ('T', C.c_int), ('H', C.c_int), ('HV', C.c_int), ('K', C.c_int),
                ('V', C.c_int), ('gate', C.c_int), ('update', C.c_int), ('normalize', C.c_int),
                ('eps', C.c_float), ('scale', C.c_float), ('form', C.c_int), ('chunk', C.c_int),
                ('cu_seqlens', C.c_void_p), ('n_seqs', C.c_int)]


class Args(C.Structure):  # lina_cuda_attn_fwd_args (include/lina/cuda.h)
    _fields_ = [(n, C.c_void_p) for n in ('q', 'k', 'v', 'g', 'beta', 'h0', 'o', 'ht')]


class BwdArgs(C.Structure):  # lina_cuda_attn_bwd_args (include/lina/cuda.h)
    _fields_ = [(n, C.c_void_p) for n in ('q', 'k', 'v', 'g', 'beta', 'h0', 'dout', 'dht', 'dq', 'dk', 'dv',
                                          'dg', 'dbeta', 'dh0')]


BF16 = 2  # LINA_DTYPE_BF16 (io.h)
GATE = dict(none=0, const=1, scalar=2, vector=3)


def load(path):
    """liblina at path with the signatures of the calls the scripts make."""
    lib = C.CDLL(path)
    lib.lina_cuda_attn_backward.argtypes = [C.POINTER(Desc), C.c_int, C.POINTER(BwdArgs), C.c_void_p]
    lib.lina_cuda_attn_backward.restype = C.c_int
    lib.lina_cuda_attn_forward.argtypes = [C.POINTER(Desc), C.c_int, C.POINTER(Args), C.c_void_p]
    lib.lina_cuda_attn_forward.restype = C.c_int
    lib.lina_attn_flops.argtypes = [C.POINTER(Desc), C.c_int]
    lib.lina_attn_flops.restype = C.c_double
    lib.lina_last_error.restype = C.c_char_p
    return lib
