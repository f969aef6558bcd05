/*
 * What a start needs beyond a valid config, checked as the config is loaded
 * (conf_start_checks), so `weir -t` sees it and a reload is refused for it:
 * the error log can be opened for append, and the pid file's directory is
 * writable. Module files were opened, log files of modules opened and TLS
 * certificates read by the loader itself; `user:` was resolved. What is
 * left to the start is what cannot be tried without acting: binding the
 * listen addresses and writing the pid file.
 *
 * Opening the error log creates it when missing, as the start would (and as
 * nginx -t does): a check that only looked at the directory would pass a
 * file the master cannot open.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

static const weir_node_t *error_log_node(const weir_conf_t *cf)
{
    const weir_node_t *n = weir_node_get(cf->root, "error_log");
    if (n && n->type == WEIR_NODE_MAPPING)
        n = weir_node_get(n, "path");
    return n;
}

static void check_error_log(weir_conf_t *cf)
{
    if (strcmp(cf->error_log, "stderr") == 0)
        return;
    int fd = open(cf->error_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        close(fd);
        return;
    }
    weir_conf_error(cf, error_log_node(cf), "cannot open error log %s: %s", cf->error_log,
                    strerror(errno));
}

static void check_pid_dir(weir_conf_t *cf, const char *pid_file, const weir_node_t *at)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(pid_file, '/');
    size_t n = slash ? (size_t)(slash - pid_file) : 0;
    if (n >= sizeof(dir))
        n = sizeof(dir) - 1;
    memcpy(dir, slash ? pid_file : ".", slash ? n : 1);
    dir[slash ? (n ? n : 1) : 1] = '\0';
    if (access(dir, W_OK | X_OK) == 0)
        return;
    weir_conf_error(cf, at, "cannot write pid file %s: directory %s: %s%s", pid_file, dir,
                    strerror(errno), at ? "" : " (set pid_file, or use -p)");
}

void conf_start_checks(weir_conf_t *cf, const char *pid_override)
{
    check_error_log(cf);
    if (pid_override)
        check_pid_dir(cf, pid_override, NULL);
    else if (cf->pid_file)
        check_pid_dir(cf, cf->pid_file, weir_node_get(cf->root, "pid_file"));
}
