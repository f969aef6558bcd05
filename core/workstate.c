#include "workstate.h"

#include "weir/module.h"

static struct {
    unsigned long fd_room, conns;
    int draining;
} ws = {.fd_room = (unsigned long)-1};

void workstate_set_fd_room(unsigned long room)
{
    ws.fd_room = room;
}

void workstate_set_conns(unsigned long conns)
{
    ws.conns = conns;
}

void workstate_set_draining(void)
{
    ws.draining = 1;
}

unsigned long workstate_upstream_fd_room(void)
{
    return ws.fd_room > ws.conns ? ws.fd_room - ws.conns : 0;
}

int weir_worker_draining(void)
{
    return ws.draining;
}
