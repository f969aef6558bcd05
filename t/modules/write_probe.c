/*
 * Test module for `user:` (t/integration/test_operation.py): in each worker,
 * after the drop of privileges, tries to open `write_probe` (a path) for
 * writing and logs the outcome, "write_probe: <path>: opened" or the error.
 * The open is blocking, which worker_init may be (it runs before accepting).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "weir/module.h"

extern WEIR_MODULE_EXPORT const weir_module_t weir_module;

struct probe {
    const char *path;
};

static int probe_worker_init(const weir_conf_t *cf)
{
    const struct probe *p = weir_main_conf(cf, &weir_module);
    if (!p->path)
        return 0;
    int fd = open(p->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    weir_log(&weir_module, WEIR_LOG_NOTICE, "%s: %s (uid %d)", p->path,
             fd >= 0 ? "opened" : strerror(errno), (int)geteuid());
    if (fd >= 0)
        close(fd);
    return 0;
}

static const weir_directive_t probe_directives[] = {
    {.key = "write_probe", .scopes = WEIR_SCOPE_MAIN, .type = WEIR_DIRECTIVE_STRING,
     .offset = offsetof(struct probe, path), .help = "a file to try to open for writing"},
    {.key = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "write_probe",
    .version = "1.0.0",
    .conf_size = {[WEIR_SCOPE_INDEX_MAIN] = sizeof(struct probe)},
    .directives = probe_directives,
    .worker_init = probe_worker_init,
};
