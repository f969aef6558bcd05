/*
 * Pure parts of module rewrite, in plain C with PCRE2 and libc only, so the
 * unit test uses them without the weir core: splitting a rule's text, reading
 * a replacement's capture references and query part, compiling and matching
 * its regex, escaping a rendered path or query, and the query decision.
 *
 * Rule text
 * ---------
 * A rule is "REGEX REPLACEMENT": surrounding blanks (space, tab) are ignored;
 * REGEX runs up to the first blank that is not escaped by a backslash ("\ "
 * is a literal space to PCRE2, so it stays in the regex; "\\ " ends it), then
 * one or more blanks, then REPLACEMENT up to the next blank. Anything after
 * that is an error (nginx's flags such as "permanent" do not exist here).
 *
 * Replacement syntax is weir's template syntax: "$name", "${name}", "$$" for
 * a literal '$', and "$0".."$9" / "${0}".."${9}" for capture groups ("$10" is
 * group 1 followed by the text "0"). The first literal '?' splits it: the part
 * before is the new path, the part after (possibly empty) the new query.
 */
#ifndef WEIR_REWRITE_RULE_H
#define WEIR_REWRITE_RULE_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif

#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

/* The two words of a rule; pointers into the text given to
 * rewrite_rule_split(), not NUL-terminated. */
struct rewrite_text {
    const char *regex;
    size_t regex_len;
    const char *repl;
    size_t repl_len;
};

/* Splits "REGEX REPLACEMENT" (see above). 0, or -1 with the reason in err:
 * empty rule, missing replacement, or text after the replacement. */
int rewrite_rule_split(const char *text, struct rewrite_text *out, char *err, size_t errlen);

/* The highest capture group (0..9) the replacement refers to, or -1 when it
 * refers to none. Reads the template syntax as weir_template_compile() does. */
int rewrite_max_capture(const char *repl, size_t len);

/* Where the query part starts: sets *at to the offset of the first literal
 * '?' (not one inside "${...}") and returns 1, or returns 0 when there is
 * none (the rule keeps the request's query). */
int rewrite_query_at(const char *repl, size_t len, size_t *at);

/* A compiled regex with its own match block, sized for its groups. Both are
 * malloc'ed by PCRE2 and belong to the struct until rewrite_regex_free(). The
 * match block is scratch for rewrite_regex_match(), so one regex must not be
 * matched from two threads at once (weir workers are single-threaded). */
struct rewrite_regex {
    pcre2_code *re;
    pcre2_match_data *md;
    uint32_t ngroups; /* capture groups in the pattern, not counting $0 */
    int jit;          /* 1 when pcre2_jit_compile succeeded */
};

/* Compiles pat (len bytes, no PCRE2 flags: paths are bytes, not UTF-8) and
 * JIT-compiles it when the library can; the interpreter runs otherwise.
 * 0, or -1 with "invalid regex: MESSAGE at offset N" (or out of memory) in
 * err and *rx zeroed. */
int rewrite_regex_compile(struct rewrite_regex *rx, const char *pat, size_t len, char *err,
                          size_t errlen);

/* Matches subject (len bytes, searched anywhere unless the regex is
 * anchored). 1 on a match, with *ovector pointing at PCRE2-style offset pairs
 * (unset groups are SIZE_MAX) and *npairs the number of pairs to read, valid
 * until the next match on rx; 0 on no match; -1 on a matching error (e.g. a
 * resource limit), with the PCRE2 message in err. */
int rewrite_regex_match(struct rewrite_regex *rx, const char *subject, size_t len,
                        const size_t **ovector, size_t *npairs, char *err, size_t errlen);

/* NULL members are fine; zeroes *rx. */
void rewrite_regex_free(struct rewrite_regex *rx);

/* Escaping of a rendered path or query so that it can go into a request line
 * as it is: bytes outside '!'..'~' (CTL, space, DEL, non-ASCII) and '#'
 * become "%XX" (uppercase hex); in a path (query == 0) '?' does too. '%' is
 * left alone: request paths are kept percent-encoded, so an escape in a
 * capture is already one. rewrite_escape_len() gives the escaped length (equal
 * to len when nothing needs escaping); rewrite_escape() writes exactly that
 * many bytes to dst (no NUL). */
size_t rewrite_escape_len(const char *s, size_t len, int query);
void rewrite_escape(char *dst, const char *s, size_t len, int query);

/* The query decision after a match: 1 when the request's query must be set
 * to the rendered query part, 0 when it stays. A rule without a query part
 * (rule_sets_query == 0) keeps it; a rule with one replaces it, except that
 * an empty new query on a request that had no '?' at all changes nothing
 * (so "/a?" is never sent for "/a"). */
int rewrite_query_replace(int rule_sets_query, size_t new_len, int request_had_query);

/* The redirect statuses: 301, 302, 307 and 308. */
int rewrite_redirect_status_ok(long status);

#endif
