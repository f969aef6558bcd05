#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const char *scalar(weir_conf_t *cf, const weir_node_t *n)
{
    if (n->type == WEIR_NODE_SCALAR && n->scalar[0])
        return n->scalar;
    weir_conf_error(cf, n, "'%s' expects a name from the %s database, got %s", n->key,
                    strcmp(n->key, "user") == 0 ? "passwd" : "group", conf_node_type_word(n));
    return NULL;
}

int privs_conf(weir_conf_t *cf, const weir_node_t *user, const weir_node_t *group)
{
    const char *uname = user ? scalar(cf, user) : NULL;
    const char *gname = group ? scalar(cf, group) : NULL;
    if ((user && !uname) || (group && !gname))
        return -1;
    if (group && !user)
        return weir_conf_error(cf, group, "'group' needs 'user' (the workers' user; group "
                                          "defaults to its primary group)");
    if (!user)
        return 0;
    errno = 0;
    struct passwd *pw = getpwnam(uname);
    if (!pw)
        return weir_conf_error(cf, user, "unknown user '%s'%s%s (name a user of the passwd "
                                         "database, e.g. nobody)",
                               uname, errno ? ": " : "", errno ? strerror(errno) : "");
    cf->user = weir_conf_strdup(cf, uname);
    cf->uid = pw->pw_uid;
    cf->gid = pw->pw_gid;
    if (gname) {
        errno = 0;
        struct group *gr = getgrnam(gname);
        if (!gr)
            return weir_conf_error(cf, group, "unknown group '%s'%s%s (name a group of the "
                                              "group database, e.g. nogroup)",
                                   gname, errno ? ": " : "", errno ? strerror(errno) : "");
        cf->gid = gr->gr_gid;
        cf->group = weir_conf_strdup(cf, gname);
    }
    return 0;
}

void privs_check_master(const weir_conf_t *cf)
{
    if (cf->user && geteuid() != 0 && (geteuid() != cf->uid || getegid() != cf->gid))
        log_warn("user: %s: the master does not run as root, so the workers cannot change "
                 "identity; they run as uid %d",
                 cf->user, (int)geteuid());
}

int privs_drop(const weir_conf_t *cf)
{
    if (!cf->user || geteuid() != 0)
        return 0;
    const char *step = "setgroups";
    if (setgroups(0, NULL) < 0)
        goto fail;
    step = "setgid";
    if (setgid(cf->gid) < 0)
        goto fail;
    step = "setuid";
    if (setuid(cf->uid) < 0)
        goto fail;
    step = "verify";
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
        goto fail;
    if (ru != cf->uid || eu != cf->uid || su != cf->uid || rg != cf->gid || eg != cf->gid ||
        sg != cf->gid || getgroups(0, NULL) != 0 || (cf->uid != 0 && setuid(0) == 0)) {
        errno = EPERM;
        goto fail;
    }
    return 0;
fail:
    log_error("worker: cannot drop privileges to user %s (uid %d, gid %d): %s: %s; exiting",
              cf->user, (int)cf->uid, (int)cf->gid, step, strerror(errno));
    return -1;
}
