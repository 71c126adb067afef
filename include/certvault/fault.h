/* Fault injection for the crash tests: named points on every write path that spans the token
 * and the database. In a build configured with CV_FAULT_INJECTION (the Debug builds the tests
 * run; never scripts/run's), the process kills itself with SIGKILL at the point the
 * environment variable CERTVAULT_FAULT names: no cleanup, no flush, as a crash would leave
 * it. In any other build cv_fault_point() compiles to nothing and the table is empty. */
#ifndef CERTVAULT_FAULT_H
#define CERTVAULT_FAULT_H

#include <stddef.h>

struct cv_fault_info {
	const char *name;      /* what CERTVAULT_FAULT says to stop there */
	const char *paths;     /* the write paths that reach it, space-separated */
	const char *where;     /* what is done and what is not when it fires */
};

/* 1 when this build has fault points, else 0. */
int cv_fault_compiled_in(void);

/* Fills *ret with the i-th point of the table. Returns 0, or -1 past the last one (at once in
 * a build without fault points). */
int cv_fault_point_at(size_t i, struct cv_fault_info *ret);

#ifdef CV_FAULT_INJECTION
/* Kills the process when CERTVAULT_FAULT names this point, else returns. A name missing from
 * the table aborts: the table is what the crash test walks, so it must list every point. */
void cv_fault_point(const char *name);
#else
static inline void cv_fault_point(const char *name)
{
	(void)name;
}
#endif

#endif
