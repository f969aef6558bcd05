/*
 * weir [-c FILE] [-M DIR] [-d] [-p PIDFILE]   run (foreground unless -d)
 * weir -t [-c FILE]                           check the config, print the phase chains
 * weir -T [-c FILE]                           check it as -t does, print the effective config
 * weir -s reload|stop|quit|reopen [-c FILE]   signal the running master via its pid file
 * weir -V | --version                         version, ABI, modules dir, build options
 * weir -h | --help                            usage
 *
 * Exit status: 0 success, 1 config or runtime error, 2 usage error.
 *
 * -s finds the master through its pid file and the status file beside it
 * (status.h): no signal goes to a pid that is not running or not the master
 * that wrote them. `-s reload` waits for the master's answer: exit 0 once
 * the new generation's workers were started, 1 with the errors on stderr
 * when the reload was refused, so `systemctl reload` fails on a broken
 * config.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "conf_dump.h"
#include "loop.h"
#include "master.h"
#include "phase.h"
#include "request.h"
#include "status.h"
#include "weir_build.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: weir [-c FILE] [-M DIR] [-d] [-p PIDFILE]\n"
            "       weir -t [-c FILE] [-M DIR]\n"
            "       weir -T [-c FILE] [-M DIR] [-p PIDFILE]\n"
            "       weir -s reload|stop|quit|reopen [-c FILE] [-p PIDFILE]\n"
            "       weir -V | --version\n"
            "       weir -h | --help\n"
            "  -c FILE   config file (default %s)\n"
            "  -M DIR    modules directory, overrides modules_dir\n"
            "  -d        run in the background\n"
            "  -p FILE   pid file, overrides pid_file\n"
            "  -t        test the config and exit (0 ok, 1 errors)\n"
            "  -T        test it as -t does, then print the effective config as YAML\n"
            "            (every key, defaults included; -t accepts it)\n"
            "  -s SIG    send a signal to the running master\n"
            "  -V        print version and build information\n",
            WEIR_DEFAULT_CONFIG);
}

static void print_version(void)
{
    printf("weir %s\n", WEIR_VERSION);
    printf("module ABI %d.%d\n", WEIR_ABI_MAJOR, WEIR_ABI_MINOR);
    printf("modules dir %s\n", WEIR_MODULES_DIR);
    printf("default config %s\n", WEIR_DEFAULT_CONFIG);
    printf("default pid file %s\n", WEIR_PID_FILE);
    printf("log dir %s\n", WEIR_LOG_DIR);
    printf("build %s\n", WEIR_BUILD_OPTIONS);
}

static int signal_number(const char *name)
{
    static const struct {
        const char *name;
        int sig;
    } table[] = {{"reload", SIGHUP}, {"stop", SIGTERM}, {"quit", SIGQUIT}, {"reopen", SIGUSR1}};
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcmp(name, table[i].name) == 0)
            return table[i].sig;
    return 0;
}

int main(int argc, char **argv)
{
    conf_options_t copt = {.file = WEIR_DEFAULT_CONFIG,
                           .core_handlers = core_phase_handlers,
                           .register_core_vars = core_vars_register};
    master_options_t mopt = {0};
    const char *signal_name = NULL;
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int test = 0, opt; /* 1: -t, 2: -T */
    while ((opt = getopt_long(argc, argv, "c:M:dp:tTs:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': copt.file = optarg; break;
        case 'M': copt.modules_dir = optarg; break;
        case 'd': mopt.daemon = 1; break;
        case 'p': mopt.pid_file = copt.pid_file = optarg; break;
        case 't': test = 1; break;
        case 'T': test = 2; break;
        case 's': signal_name = optarg; break;
        case 'V': print_version(); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "weir: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (signal_name && !signal_number(signal_name)) {
        fprintf(stderr, "weir: unknown signal '%s' (use reload, stop, quit or reopen)\n",
                signal_name);
        return 2;
    }
    copt.pid_file_only = signal_name != NULL;
    weir_conf_t *cf = conf_load(&copt);
    if (!cf) {
        if (test)
            fprintf(stderr, "weir: configuration file %s test failed\n", copt.file);
        return 1;
    }
    if (signal_name) {
        int rc = status_signal_master(mopt.pid_file ? mopt.pid_file : cf->pid_file, signal_name,
                                      signal_number(signal_name));
        conf_free(cf);
        return rc;
    }
    if (test) {
        char msg[512];
        if (loop_probe(msg, sizeof(msg)) != 0) { /* the start's first step */
            fprintf(stderr, "weir: %s\nweir: configuration file %s test failed\n", msg,
                    copt.file);
            conf_free(cf);
            return 1;
        }
        /* -T: stdout is the YAML alone, so it can be redirected to a file */
        if (test == 2)
            conf_dump(cf, mopt.pid_file, stdout);
        else
            phases_print(cf, stdout);
        fprintf(test == 2 ? stderr : stdout, "weir: configuration file %s test is successful\n",
                copt.file);
        conf_free(cf);
        return 0;
    }
    mopt.argv = argv;
    return master_run(cf, &copt, &mopt);
}
