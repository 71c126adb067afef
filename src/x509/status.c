/* x509: a certificate's status at a moment, and the days it has left. */
#include <stdint.h>
#include <string.h>

#include "certvault/x509.h"

enum cv_status cv_status_at(time_t not_before, time_t not_after, time_t now,
			    int64_t soon_seconds)
{
	uint64_t left;

	if (now < not_before)
		return CV_STATUS_UPCOMING;
	if (now > not_after)
		return CV_STATUS_EXPIRED;
	/* not_after >= now: the difference fits in 64 unsigned bits whatever the values */
	left = (uint64_t)(int64_t)not_after - (uint64_t)(int64_t)now;
	if (soon_seconds > 0 && left < (uint64_t)soon_seconds)
		return CV_STATUS_EXPIRES_SOON;
	return CV_STATUS_VALID;
}

static const char *const status_names[] = {
	[CV_STATUS_VALID] = "valid",
	[CV_STATUS_EXPIRES_SOON] = "expires_soon",
	[CV_STATUS_EXPIRED] = "expired",
	[CV_STATUS_UPCOMING] = "upcoming",
};

const char *cv_status_name(enum cv_status s)
{
	if ((unsigned)s >= sizeof(status_names) / sizeof(status_names[0]))
		return "unknown";
	return status_names[s];
}

int cv_status_parse(const char *s, enum cv_status *ret)
{
	size_t i;

	if (s == NULL)
		return CV_ERR_BAD_REQUEST;
	for (i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
		if (strcmp(s, status_names[i]) == 0) {
			*ret = (enum cv_status)i;
			return 0;
		}
	}
	return CV_ERR_BAD_REQUEST;
}

int64_t cv_expires_in_days(time_t not_after, time_t now)
{
	int64_t diff, days;

	if (__builtin_sub_overflow((int64_t)not_after, (int64_t)now, &diff))
		return not_after > now ? INT64_MAX / 86400 : INT64_MIN / 86400;
	days = diff / 86400;
	if (diff % 86400 != 0 && diff < 0)
		days--;
	return days;
}
