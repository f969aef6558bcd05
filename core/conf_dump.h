/*
 * weir -T: the effective configuration of a loaded generation, printed as
 * YAML that `weir -t` accepts and that means the same configuration (see
 * conf_dump.c for what is printed and why).
 */
#ifndef WEIR_CONF_DUMP_H
#define WEIR_CONF_DUMP_H

#include <stdio.h>

#include "conf.h"

/* Writes the whole configuration of cf (a generation conf_load accepted) to
 * out. pid_override is -p (printed as pid_file; NULL: the config's); cf's
 * modules_dir is printed as it is, -M included, made absolute against the
 * current directory. */
void conf_dump(const weir_conf_t *cf, const char *pid_override, FILE *out);

/* Writes s as one YAML scalar that the loader (conf_yaml.c) reads back as
 * exactly s: plain when that is unambiguous, else single-quoted ('' for a
 * quote), else double-quoted with escapes for what a YAML stream cannot
 * hold as it is (control characters, line separators, the BOM). s must be
 * UTF-8, as every scalar the loader makes is (libyaml refuses other input
 * and its escapes produce UTF-8); a byte of invalid UTF-8 is written "\xHH",
 * valid YAML that reads back as U+00HH, since YAML has no way to write the
 * byte itself. */
void conf_dump_scalar(FILE *out, const char *s);

#endif
