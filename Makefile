# lina: build liblina (static + shared), the `lina` CLI, tests and benchmarks.
#   make            build everything into $(BUILD)/
#   make test       install missing Debian packages, build, run the test suite
#   make install    PREFIX=/usr/local: library, headers, pkg-config file lina.pc
# Options: BUILD=dir  CUDA=0|1 (default: 1 when nvcc is found)  SANITIZE=1  ARCH=-march=...

BUILD   ?= build
PREFIX  ?= /usr/local
ARCH    ?= -march=native
CC      ?= cc
OPT     ?= -O2
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(ARCH) -g -fPIC -fopenmp -Wall -Wextra -Wno-unused-parameter \
           -Wshadow -Wvla -Iinclude -MMD -MP
LDLIBS  += -lm -fopenmp

# ---- dependency detection ----
BLAS_OMP_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
ifneq ($(wildcard $(BLAS_OMP_DIR)/libopenblas.so),)
  # The OpenMP build of OpenBLAS runs single-threaded inside our parallel regions.
  BLAS_CFLAGS := -I/usr/include/x86_64-linux-gnu/openblas-openmp
  BLAS_LIBS   := -L$(BLAS_OMP_DIR) -Wl,-rpath,$(BLAS_OMP_DIR) -lopenblas
  BLAS_NAME   := openblas (openmp build)
else ifneq ($(shell pkg-config --exists openblas 2>/dev/null && echo y),)
  BLAS_CFLAGS := $(shell pkg-config --cflags openblas)
  BLAS_LIBS   := $(shell pkg-config --libs openblas)
  BLAS_NAME   := openblas (pkg-config; prefer libopenblas-openmp-dev)
else
  BLAS_NAME   := MISSING (apt-get install libopenblas-openmp-dev)
endif
ifneq ($(wildcard /usr/include/cjson/cJSON.h),)
  JSON_NAME := cjson
  JSON_LIBS := -lcjson
else
  JSON_NAME := MISSING (apt-get install libcjson-dev)
endif
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifeq ($(CUDA),)
  CUDA := $(if $(NVCC),1,0)
endif
CFLAGS += $(BLAS_CFLAGS)
LDLIBS += $(BLAS_LIBS) $(JSON_LIBS) -lpthread

ifeq ($(SANITIZE),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDLIBS  += -fsanitize=address,undefined
  CUDA := 0
endif

# ---- sources ----
LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/cuda/*' | sort)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_UTIL_SRC := $(wildcard tests/util/*.c)
CUDA_SRC := $(wildcard src/cuda/*.cu)
CUDA_C_SRC := $(wildcard src/cuda/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_UTIL_OBJ := $(TEST_UTIL_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

ifeq ($(CUDA),1)
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  NVCCFLAGS ?= -O3 -std=c++17 -Iinclude -Xcompiler -fPIC \
               -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=compute_80
  CFLAGS  += -DLINA_HAVE_CUDA -I$(CUDA_HOME)/include
  LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lstdc++
  LIB_OBJ += $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o) $(CUDA_C_SRC:%.c=$(BUILD)/obj/%.o)
  CUDA_NAME := yes ($(NVCC), sm_90a + compute_80 PTX)
else
  CUDA_NAME := no
endif

# keep intermediate objects (tests/util) between builds
.SECONDARY:

.PHONY: all lib cli tests test test-sanitize demo install uninstall clean features
all: features lib cli tests

features:
	@echo "lina build: BLAS: $(BLAS_NAME) | OpenMP: yes ($(CC) -fopenmp) | JSON: $(JSON_NAME) | CUDA: $(CUDA_NAME) | ARCH: $(ARCH)$(if $(filter 1,$(SANITIZE)), | ASan+UBSan,)"

lib: $(BUILD)/liblina.a $(BUILD)/liblina.so
cli: $(BUILD)/lina
tests: $(TEST_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/liblina.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/liblina.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS) -Wl,-soname,liblina.so.0

$(BUILD)/lina: $(CLI_OBJ) $(BUILD)/liblina.a
	$(CC) -o $@ $(CLI_OBJ) $(BUILD)/liblina.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_UTIL_OBJ) $(BUILD)/liblina.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -Itests -o $@ $< $(TEST_UTIL_OBJ) $(BUILD)/liblina.a $(LDLIBS)

# GPU tests (need a CUDA device; CI has none and never builds them): $(BUILD)/cuda-tests/*
CUDA_TEST_SRC := $(wildcard tests/cuda/test_*.c)
.PHONY: cuda-tests
cuda-tests: $(CUDA_TEST_SRC:tests/cuda/%.c=$(BUILD)/cuda-tests/%)
$(BUILD)/cuda-tests/%: tests/cuda/%.c tests/cuda/cuda_util.c tests/cuda/cuda_util.h $(TEST_UTIL_OBJ) $(BUILD)/liblina.a
	@test "$(CUDA)" = 1 || { echo "cuda-tests need CUDA=1 (nvcc)"; exit 1; }
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -Itests -o $@ $< tests/cuda/cuda_util.c $(TEST_UTIL_OBJ) $(BUILD)/liblina.a $(LDLIBS)

# `make test`: dependencies, build, the suite (ends with "N passed, N failed").
test:
	@bash scripts/ensure_deps.sh test
	@$(MAKE) --no-print-directory all
	@bash tests/run.sh $(BUILD)

# The suite once more under AddressSanitizer + UndefinedBehaviorSanitizer (CPU only).
test-sanitize:
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=1 CUDA=0 lib tests
	@ASAN_OPTIONS=detect_leaks=1 LINA_SANITIZE=1 bash tests/run.sh build-asan

# The main job on a built-in default: train a small model, then generate from it.
demo:
	@bash scripts/ensure_deps.sh demo
	@$(MAKE) --no-print-directory all
	@bash scripts/demo.sh $(BUILD)

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/lina $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(BUILD)/liblina.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/liblina.so $(DESTDIR)$(PREFIX)/lib/liblina.so.0
	ln -sf liblina.so.0 $(DESTDIR)$(PREFIX)/lib/liblina.so
	install -m 644 include/lina.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/lina/*.h $(DESTDIR)$(PREFIX)/include/lina/
	-install -m 755 $(BUILD)/lina $(DESTDIR)$(PREFIX)/bin/ 2>/dev/null
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/.*LINA_VERSION_STRING "\(.*\)"/\1/p' include/lina/core.h)|' \
	    -e 's|@LIBS@|$(strip $(LDLIBS))|' lina.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/lina.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/liblina.* $(DESTDIR)$(PREFIX)/include/lina.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/lina.pc $(DESTDIR)$(PREFIX)/bin/lina
	rm -rf $(DESTDIR)$(PREFIX)/include/lina

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
