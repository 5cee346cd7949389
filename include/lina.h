/* liblina: linear transformers in C. One public header; see docs/ and README.md. */
#ifndef LINA_H
#define LINA_H

#include "lina/core.h"
#include "lina/ops.h"
#include "lina/dplr.h"
#include "lina/fmap.h"
#include "lina/softmax.h"
#include "lina/io.h"
#include "lina/hf.h"
#include "lina/tokenizer.h"
#include "lina/model.h"
#include "lina/icl.h"
#include "lina/mqar.h"
#include "lina/listops.h"
#include "lina/cuda.h" /* device API; returns LINA_ERR_UNSUPPORTED without CUDA */

#endif
