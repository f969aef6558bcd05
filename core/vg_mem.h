#ifndef WEIR_VG_MEM_H
#define WEIR_VG_MEM_H
/*
 * Client requests for valgrind's memcheck (tools/valgrind-weir), or nothing
 * when <valgrind/memcheck.h> is not installed (Debian ships it in the package
 * valgrind). Outside valgrind each one costs a few instructions.
 *
 * memcheck sees memory written by system calls it knows, not by io_uring:
 * the kernel fills a receive buffer later, asynchronously, and memcheck still
 * believes the buffer holds whatever malloc left there ("uninitialised").
 * Where weir consumes such a completion it says which bytes are now defined.
 * (Buffers in mmap()ed memory, the CQ ring and the provided-buffer pool, are
 * defined from the start and need nothing.)
 */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define WEIR_MEM_DEFINED(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#define WEIR_MEM_UNDEFINED(p, n) ((void)VALGRIND_MAKE_MEM_UNDEFINED((p), (n)))
#define WEIR_MEM_NOACCESS(p, n) ((void)VALGRIND_MAKE_MEM_NOACCESS((p), (n)))
#endif
#endif
#ifndef WEIR_MEM_DEFINED
#define WEIR_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#define WEIR_MEM_UNDEFINED(p, n) ((void)(p), (void)(n))
#define WEIR_MEM_NOACCESS(p, n) ((void)(p), (void)(n))
#endif

#endif
