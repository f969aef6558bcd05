/*
 * Variable registry and templates ("$remote_addr - $status"). The core
 * registers the built-in variables; modules add theirs in conf_init.
 * Templates compile to segments once at config time; rendering walks the
 * segments and calls getters.
 */
#ifndef WEIR_VARS_H
#define WEIR_VARS_H

#include "conf.h"

/* Creates cf->vars and registers the core variables. 0 or -1. */
int vars_init(weir_conf_t *cf);

/* Evaluates one variable by name (without '$') for r; for tests and the
 * access log. 0 set, 1 unset, -1 unknown. */
int vars_get(weir_request_t *r, const weir_conf_t *cf, const char *name, weir_str_t *out);

#endif
