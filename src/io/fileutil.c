/* Atomic file writes: temp file in the target's directory, checked writes,
 * fflush + fsync, rename, fsync of the directory; directory creation. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/internal.h"
#include "io_internal.h"

/* fsync the directory holding path so that the rename itself is durable. */
static int fsync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

lina_status lina_write_chunks_atomic(const char *path, const lina_chunk *chunks, int n_chunks) {
    if (!path || !path[0] || (n_chunks > 0 && !chunks))
        return lina_fail(LINA_ERR_INVALID_ARG, "lina_write_file_atomic: empty path or NULL data");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return lina_fail(LINA_ERR_OOM, "'%s': out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        lina_status st = lina_fail(LINA_ERR_IO, "cannot create a temp file for '%s': %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    const char *what = NULL;
    int err = 0;
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        err = errno;
        close(fd);
        what = "fdopen";
        goto fail;
    }
    /* mkstemp makes 0600; a saved model should be readable like any other file */
    (void)fchmod(fd, 0644);
    for (int i = 0; i < n_chunks; i++) {
        if (chunks[i].n == 0) continue;
        if (!chunks[i].data) {
            fclose(fp);
            unlink(tmp);
            free(tmp);
            return lina_fail(LINA_ERR_INVALID_ARG, "writing '%s': chunk %d has NULL data", path, i);
        }
        if (fwrite(chunks[i].data, 1, chunks[i].n, fp) != chunks[i].n) {
            err = errno;
            what = "write";
            fclose(fp);
            goto fail;
        }
    }
    if (fflush(fp) != 0) {
        err = errno;
        what = "flush";
        fclose(fp);
        goto fail;
    }
    if (fsync(fileno(fp)) != 0) {
        err = errno;
        what = "fsync";
        fclose(fp);
        goto fail;
    }
    if (fclose(fp) != 0) {
        err = errno;
        what = "close";
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        what = "rename";
        goto fail;
    }
    (void)fsync_parent_dir(path); /* best effort: some file systems refuse directory fsync */
    free(tmp);
    return LINA_OK;
fail:
    unlink(tmp);
    free(tmp);
    return lina_fail(LINA_ERR_IO, "writing '%s' failed at %s: %s", path, what, strerror(err ? err : EIO));
}

lina_status lina_write_file_atomic(const char *path, const void *data, size_t n) {
    lina_chunk c = {data, n};
    return lina_write_chunks_atomic(path, &c, 1);
}

static lina_status make_one_dir(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) == 0)
        return S_ISDIR(sb.st_mode) ? LINA_OK : lina_fail(LINA_ERR_IO, "'%s' exists and is not a directory", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return lina_fail(LINA_ERR_IO, "cannot create directory '%s': %s", dir, strerror(errno));
    return LINA_OK;
}

lina_status lina_make_dirs(const char *dir) {
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) return lina_fail(LINA_ERR_IO, "directory name of %zu characters", n);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i < n; i++) /* each parent, then the directory itself */
        if (path[i] == '/' && path[i - 1] != '/') {
            path[i] = 0;
            lina_status st = make_one_dir(path);
            path[i] = '/';
            if (st) return st;
        }
    return make_one_dir(path);
}
