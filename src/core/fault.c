/* Fault injection for the crash tests (see certvault/fault.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certvault/fault.h"

#ifdef CV_FAULT_INJECTION

/* Every point, in the order each write path reaches them. The crash test walks this table
 * (certvaultd --fault-points), once for each path a point names. */
static const struct cv_fault_info points[] = {
	{ "import.after_pending_row", "import",
	  "the pending row naming the key id is committed; no key object yet" },
	{ "token.create.after_private_key", "import renew replace",
	  "C_CreateObject made the private key object, not yet the public one" },
	{ "token.create.after_public_key", "import renew replace",
	  "both key objects exist; the database does not use them yet" },
	{ "import.in_activate", "import",
	  "inside the transaction that makes the row active with its audit record, before "
	  "COMMIT" },
	{ "import.after_activate", "import",
	  "the import and its audit record are committed; no response yet" },
	{ "supersede.after_journal", "renew replace",
	  "the key journal names the new key; no key object yet" },
	{ "supersede.in_commit", "renew replace",
	  "inside the transaction that makes the new version current with its audit record, "
	  "before COMMIT" },
	{ "supersede.after_commit", "renew replace",
	  "the new version is current; the superseded key is still in the token" },
	{ "token.destroy.after_public_key", "renew replace delete cancel purge",
	  "C_DestroyObject removed the public key object, not yet the private one" },
	{ "token.destroy.after_private_key", "renew replace delete cancel purge",
	  "both key objects destroyed, not yet checked gone" },
	{ "supersede.after_old_key_destroyed", "renew replace",
	  "the superseded key is gone from the token, its version still says 'destroying'" },
	{ "delete.in_mark", "delete",
	  "inside the transaction that marks the row 'deleting' with its audit record, before "
	  "COMMIT" },
	{ "delete.after_mark", "delete",
	  "the row is marked 'deleting'; every key is still in the token" },
	{ "delete.after_version_key", "delete purge",
	  "a superseded version's key is gone, its version not yet recorded so" },
	{ "delete.before_remove", "delete",
	  "every key of the certificate is gone; its row is still there" },
	{ "purge.in_mark", "purge",
	  "inside the transaction that ends a deleted certificate's hold with the purge's audit "
	  "record, before COMMIT" },
	{ "purge.after_mark", "purge",
	  "the purge is recorded; every key of the deleted certificate is still in the token" },
	{ "purge.before_remove", "purge",
	  "every key of the deleted certificate is gone; its row is still there" },
	{ "generate.after_pending_row", "generate selfsigned",
	  "the pending row naming the key id is committed; no key pair yet" },
	{ "token.generate.after_key_pair", "generate selfsigned",
	  "C_GenerateKeyPair made both objects; the map and the database do not use them yet" },
	{ "generate.in_ready", "generate",
	  "inside the transaction that stores the CSR with its audit record, before COMMIT" },
	{ "merge.in_commit", "selfsigned merge",
	  "inside the transaction that turns the pending row into a certificate with its audit "
	  "record, before COMMIT" },
	{ "generate.after_commit", "generate selfsigned",
	  "the CSR (or the self-signed certificate) and its audit record are committed; no "
	  "response yet" },
	{ "merge.after_commit", "merge",
	  "the merged certificate and its audit record are committed; no response yet" },
	{ "cancel.after_mark", "cancel",
	  "the pending row is marked cancelling with its audit record; its key is still in the "
	  "token" },
};

#define N_POINTS (sizeof(points) / sizeof(points[0]))

int cv_fault_compiled_in(void)
{
	return 1;
}

int cv_fault_point_at(size_t i, struct cv_fault_info *ret)
{
	if (i >= N_POINTS)
		return -1;
	*ret = points[i];
	return 0;
}

void cv_fault_point(const char *name)
{
	const char *want;
	size_t i;

	for (i = 0; i < N_POINTS && strcmp(points[i].name, name) != 0; i++)
		;
	if (i == N_POINTS) {
		fprintf(stderr, "certvaultd: BUG: fault point %s is missing from the table\n", name);
		abort();
	}
	/* Nothing sets the environment after start, so reading it from any thread is safe. */
	want = getenv("CERTVAULT_FAULT");
	if (want == NULL || strcmp(want, name) != 0)
		return;
	/* The test reads this line to know the process died where it asked. */
	fprintf(stderr, "certvaultd: fault point %s: killing the process\n", name);
	raise(SIGKILL);
	_exit(99);
}

#else

int cv_fault_compiled_in(void)
{
	return 0;
}

int cv_fault_point_at(size_t i, struct cv_fault_info *ret)
{
	(void)i;
	(void)ret;
	return -1;
}

#endif
